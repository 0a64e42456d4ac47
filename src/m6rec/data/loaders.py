"""Readers for every supported input, all ending in `validate.build_dataset`.

A dataset *spec* is a built-in name (``ml-100k``) or a path: a folder in the shared layout
(``interactions.csv[.gz]`` + optional ``items.*`` / ``users.*``), a folder or file prefix of
RecBole atomic files (``.inter .item .user .kg .link``), or one interactions file
(CSV / Parquet / JSON lines). A comma-separated list of specs means several domains.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from m6rec.data.dataset import Dataset
from m6rec.data.errors import DataError
from m6rec.data.validate import HEADER, LINE, build_dataset, check_tie_break

BUILTIN = ("ml-100k",)
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq", ".jsonl", ".jsonl.gz",
                  ".ndjson", ".ndjson.gz", ".json", ".json.gz")


# -- bytes and text -------------------------------------------------------------------------------
def read_bytes(path: Path) -> bytes:
    """Whole file as bytes: gunzipped when it is gzip; empty files are a `DataError`."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read file: {e.strerror or e}") from None
    if not raw:
        raise DataError(path, "file is empty (0 bytes)")
    if raw[:2] == b"\x1f\x8b" or path.suffix == ".gz":
        if raw[:2] != b"\x1f\x8b":
            raise DataError(path, "not a valid gzip file (no gzip header: the name ends in .gz "
                                  "but the content is not gzip-compressed)")
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise DataError(path, "not a valid gzip file (truncated: compressed data ends "
                                  "early)") from None
        except (OSError, zlib.error) as e:
            raise DataError(path, f"not a valid gzip file (corrupt: {e})") from None
    if not raw.strip():
        raise DataError(path, "file is empty" + (" (only whitespace)" if raw else ""))
    return raw


def decode_text(raw: bytes, path: Path) -> str:
    """Strict UTF-8 (BOM dropped); a bad byte is a `DataError` naming its line and column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - raw.rfind(b"\n", 0, e.start)
        raise DataError(path, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {col}; "
                              "save the file as UTF-8)", line=line) from None
    return text.lstrip("\ufeff")


def read_text(path: Path) -> str:
    """Whole file as text: gunzipped when it is gzip, strict UTF-8 (BOM dropped)."""
    return decode_text(read_bytes(path), path)


def _read_csv_arrow(raw: bytes, sep: str) -> pd.DataFrame | None:
    """PyArrow's multi-threaded reader for the plain case, or None to use the exact reader.

    Plain = no quote character, no NUL, at least two columns, a clean header and one row per
    non-empty line, so every row's line number is its position + 2 and the values (all read
    as str, nothing trimmed, empty = "") are exactly what the ``csv`` module reads. Anything
    else (quotes, blank lines, a bad row, bad UTF-8) goes to the exact reader, which names the
    line of any problem.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if b'"' in raw or b"\x00" in raw:
        return None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    end = raw.find(b"\n")
    first = raw[: end if end >= 0 else len(raw)].rstrip(b"\r")
    try:
        header = [h.strip() for h in first.decode("utf-8").split(sep)]
    except UnicodeDecodeError:
        return None
    if len(header) < 2 or not all(header) or len(set(header)) != len(header) or end < 0:
        return None
    body = raw[end + 1:]
    n_lines = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    try:
        table = pcsv.read_csv(
            pa.py_buffer(body),
            read_options=pcsv.ReadOptions(column_names=header, block_size=1 << 24),
            parse_options=pcsv.ParseOptions(delimiter=sep, quote_char=False,
                                            ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(
                column_types={h: pa.string() for h in header}, strings_can_be_null=False,
                quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    if table.num_rows != n_lines or table.num_rows == 0:  # a blank line was skipped
        return None
    df = table.to_pandas()
    df[LINE] = np.arange(2, table.num_rows + 2, dtype=np.int64)
    df.attrs[HEADER] = 1
    return df


def read_csv(path: Path, sep: str | None = None) -> pd.DataFrame:
    """CSV/TSV with a header -> DataFrame of str plus ``_line`` (exact, quoted newlines too).

    Plain files are parsed by PyArrow (`_read_csv_arrow`), the rest by the ``csv`` module; both
    give the same table."""
    raw = read_bytes(path)
    if sep is None:
        sep = "\t" if ".tsv" in path.name else ","
    fast = _read_csv_arrow(raw, sep)
    if fast is not None:
        return fast
    text = decode_text(raw, path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, "file is empty") from None
    except csv.Error as e:
        raise DataError(path, f"malformed CSV header ({e})", line=1) from None
    if not header or not any(h.strip() for h in header):
        raise DataError(path, "the header line is empty (the first line must name the columns)",
                        line=1)
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DataError(path, f"duplicate column {dup!r} in the header", line=1)
    rows, lines = [], []
    try:
        start = reader.line_num + 1
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                start = reader.line_num + 1
                continue
            if len(row) != len(header):
                raise DataError(path, f"expected {len(header)} fields ({', '.join(header)}), "
                                      f"found {len(row)}", line=start)
            rows.append(row)
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as e:  # point at the line where the broken row starts
        why = ("a quoted field is never closed" if "unexpected end of data" in str(e)
               else str(e))
        raise DataError(path, f"malformed CSV ({why})", line=start) from None
    df = pd.DataFrame(rows, columns=header, dtype=object)
    df[LINE] = lines
    df.attrs[HEADER] = 1
    return df


def _json_text(v: object) -> object:
    """A JSON value as table text: lists joined by ``|``, objects and booleans as JSON."""
    if v is None or isinstance(v, str):
        return "" if v is None else v
    if isinstance(v, list):
        return "|".join(_json_text(x) for x in v)
    if isinstance(v, dict | bool):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _json_lines(text: str, path: Path) -> list[tuple[dict, int]]:
    out = []
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 is valid JSON
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"invalid JSON ({e.msg} at column {e.colno})", line=n) from None
        if not isinstance(rec, dict):
            raise DataError(path, f"each line must be a JSON object, found {type(rec).__name__}",
                            line=n)
        out.append((rec, n))
    return out


_WS = re.compile(r"\s*")


def _json_array(text: str, path: Path) -> list[tuple[dict, int]]:
    """Records of one top-level JSON array, each with the line its object starts on."""
    dec = json.JSONDecoder()
    counted, line = 0, 1

    def line_at(pos: int) -> int:
        nonlocal counted, line
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    out: list[tuple[dict, int]] = []
    i = _WS.match(text, text.index("[") + 1).end()
    if text.startswith("]", i):
        i += 1
    else:
        while True:
            try:
                rec, j = dec.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise DataError(path, f"invalid JSON ({e.msg} at column {e.colno})",
                                line=e.lineno) from None
            if not isinstance(rec, dict):
                raise DataError(path, "each element of the JSON array must be an object, found "
                                      f"{type(rec).__name__}", line=line_at(i))
            out.append((rec, line_at(i)))
            i = _WS.match(text, j).end()
            if text.startswith(",", i):
                i = _WS.match(text, i + 1).end()
            elif text.startswith("]", i):
                i += 1
                break
            else:
                raise DataError(path, "invalid JSON (expected ',' or ']' after an array element)",
                                line=line_at(i))
    if text[i:].strip():
        raise DataError(path, "invalid JSON (extra data after the array)",
                        line=line_at(_WS.match(text, i).end()))
    return out


def read_jsonl(path: Path) -> pd.DataFrame:
    """JSON lines (one object per line), or for ``.json`` also one array of objects.

    Values become table text as in a CSV (lists joined by ``|``); a missing key is empty.
    """
    text = read_text(path)
    is_array = path.name.lower().endswith((".json", ".json.gz")) and text.lstrip().startswith("[")
    pairs = _json_array(text, path) if is_array else _json_lines(text, path)
    records = [{k: _json_text(v) for k, v in rec.items()} for rec, _ in pairs]
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    df = df.astype(object)
    df[LINE] = [n for _, n in pairs]
    df.attrs[HEADER] = None
    return df


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet table; "line" in its errors is the 1-based row number."""
    try:
        if path.stat().st_size == 0:
            raise DataError(path, "file is empty (0 bytes)")
        df = pd.read_parquet(path)
    except DataError:
        raise
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(path, f"cannot read Parquet ({type(e).__name__}: {e})") from None
    df = df.reset_index(drop=True)
    df[LINE] = range(1, len(df) + 1)
    df.attrs[HEADER] = None
    return df


def read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return read_parquet(path)
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")):
        return read_jsonl(path)
    return read_csv(path)


def apply_mapping(df: pd.DataFrame, mapping: dict[str, str] | None, path: Path) -> pd.DataFrame:
    """Rename the file's columns to m6rec's names: ``mapping`` is {our name: file's name}."""
    if not mapping:
        return df
    header = df.attrs.get(HEADER, 1)
    have = ", ".join(str(c) for c in df.columns if c != LINE) or "(none)"
    renames: dict[str, str] = {}
    for ours, theirs in mapping.items():
        if theirs not in df.columns:
            raise DataError(path, f"missing column '{theirs}' (mapped to '{ours}'; columns "
                                  f"found: {have})", line=header)
        if theirs in renames:
            raise DataError(path, f"column '{theirs}' is mapped to both '{renames[theirs]}' and "
                                  f"'{ours}'", line=header)
        renames[theirs] = ours
    for theirs, ours in renames.items():
        if ours != theirs and ours in df.columns and ours not in renames:
            raise DataError(path, f"column '{theirs}' is mapped to '{ours}', but the file has a "
                                  f"column '{ours}' too (map or rename one of them)", line=header)
    return df.rename(columns=renames)


# -- RecBole atomic files -------------------------------------------------------------------------
def read_atomic(path: Path) -> pd.DataFrame:
    """One RecBole atomic file: tab-separated, header ``name:type``; names lose their type."""
    text = read_text(path)
    lines = text.split("\n")
    if not lines[0].strip():
        raise DataError(path, "the header line is empty (RecBole atomic files start with "
                              "tab-separated name:type fields)", line=1)
    header = [f.strip() for f in lines[0].rstrip("\r").split("\t")]
    names, types = [], []
    for field in header:
        if ":" not in field:
            raise DataError(path, f"header field {field!r} has no ':type' (RecBole atomic files "
                                  f"need name:type with type in {', '.join(RECBOLE_TYPES)})",
                            line=1)
        nm, tp = field.rsplit(":", 1)
        if not nm:
            raise DataError(path, f"header field {field!r} has no name", line=1)
        if nm in names:
            raise DataError(path, f"duplicate field {nm!r} in the header", line=1)
        if tp not in RECBOLE_TYPES:
            raise DataError(path, f"header field {field!r} has unknown type {tp!r} "
                                  f"(expected one of {', '.join(RECBOLE_TYPES)})", line=1)
        names.append(nm)
        types.append(tp)
    rows, nums = [], []
    for n, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != len(names):
            raise DataError(path, f"expected {len(names)} tab-separated fields "
                                  f"({', '.join(header)}), found {len(parts)}", line=n)
        rows.append(parts)
        nums.append(n)
    df = pd.DataFrame(rows, columns=names, dtype=object)
    df[LINE] = nums
    df.attrs[HEADER] = 1
    for nm, tp in zip(names, types, strict=True):  # check now so the error names file and line
        if tp == "float":
            s = df[nm].str.strip()
            bad = (pd.to_numeric(s, errors="coerce").isna() & (s != "")).to_numpy()
        elif tp == "float_seq":
            s = df[nm]
            bad = s.map(lambda v: any(_not_float(x) for x in v.split())).to_numpy(bool)
        else:
            continue
        if bad.any():
            pos = int(bad.nonzero()[0][0])
            raise DataError(path, f"field '{nm}' is declared {tp} but holds "
                                  f"{df[nm].iloc[pos]!r}", line=int(df[LINE].iloc[pos]))
    return df


def _not_float(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return True
    return False


def _atomic_file(prefix: Path, suffix: str) -> Path | None:
    for suf in (suffix, suffix + ".gz"):
        p = prefix.with_name(prefix.name + suf)
        if p.is_file():
            return p
    return None


def load_recbole(path: str | Path, name: str | None = None, *, tie_break: str = "hash") -> Dataset:
    """RecBole atomic files: a folder holding ``NAME.inter[.gz]`` etc., or the prefix ``dir/NAME``.

    ``tie_break`` orders equal timestamps (see `validate.build_dataset`).
    """
    path = Path(path)
    if path.is_dir():
        inters = sorted(path.glob("*.inter")) + sorted(path.glob("*.inter.gz"))
        if not inters:
            raise DataError(path, "no .inter file in this folder")
        prefixes = sorted({p.name.split(".inter")[0] for p in inters})
        if len(prefixes) > 1:
            raise DataError(path, f"several RecBole datasets in this folder ({', '.join(prefixes)})"
                                  ": give the prefix, e.g. folder/NAME")
        prefix = path / prefixes[0]
    else:
        prefix = path.with_name(path.name.split(".inter")[0])
    inter_path = _atomic_file(prefix, ".inter")
    if inter_path is None:
        raise DataError(prefix, "no .inter file for this RecBole prefix")
    inter = read_atomic(inter_path)
    inter = _recbole_columns(inter, inter_path)
    parts: dict[str, object] = {}
    for kind in ("item", "user", "kg", "link"):
        p = _atomic_file(prefix, f".{kind}")
        if p is not None:
            parts[kind] = (read_atomic(p), str(p))
    items = parts.get("item")
    users = parts.get("user")
    kg = parts.get("kg")
    link = parts.get("link")
    return build_dataset(
        name or prefix.name, inter, str(inter_path),
        items=items[0] if items else None, items_path=items[1] if items else "",
        users=users[0] if users else None, users_path=users[1] if users else "",
        kg=kg[0] if kg else None, kg_path=kg[1] if kg else "",
        link=link[0] if link else None, link_path=link[1] if link else "",
        source=str(prefix), tie_break=tie_break)


def _recbole_columns(inter: pd.DataFrame, path: Path) -> pd.DataFrame:
    if "event_type" in inter.columns and "event" not in inter.columns:
        inter = inter.rename(columns={"event_type": "event"})
    return inter


# -- the shared folder layout and single files ----------------------------------------------------
def _find(folder: Path, stem: str) -> Path | None:
    for suf in TABLE_SUFFIXES:
        p = folder / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


def load_folder(path: str | Path, name: str | None = None, *, tie_break: str = "hash") -> Dataset:
    """``interactions.*`` (``user_id,item_id,timestamp,position[,rating][,event]``) + optional
    ``items.*`` (``item_id`` + text columns) and ``users.*`` (``user_id`` + profile columns)."""
    folder = Path(path)
    inter_path = _find(folder, "interactions")
    if inter_path is None:
        raise DataError(folder, "no interactions.csv[.gz] / .parquet / .jsonl in this folder")
    items_path = _find(folder, "items")
    users_path = _find(folder, "users")
    return load_files(inter_path, items=items_path, users=users_path,
                      name=name or folder.name, source=str(folder), tie_break=tie_break)


def load_files(interactions: str | Path, items: str | Path | None = None,
               users: str | Path | None = None, columns: dict[str, str] | None = None,
               item_columns: dict[str, str] | None = None,
               user_columns: dict[str, str] | None = None, name: str | None = None,
               source: str = "", *, tie_break: str = "hash") -> Dataset:
    """Interactions (+ catalogue, + profiles) from CSV / Parquet / JSON-lines files.

    ``columns`` maps m6rec's names (``user_id``, ``item_id``, ``timestamp``, ``position``,
    ``rating``, ``event``) to the file's column names; likewise ``item_columns`` (``item_id``)
    and ``user_columns`` (``user_id``). ``tie_break`` orders equal timestamps (see
    `validate.build_dataset`).
    """
    check_tie_break(tie_break)
    ipath = Path(interactions)
    inter = apply_mapping(read_table(ipath), columns, ipath)
    item_df = users_df = None
    if items is not None:
        items = Path(items)
        item_df = apply_mapping(read_table(items), item_columns, items)
    if users is not None:
        users = Path(users)
        users_df = apply_mapping(read_table(users), user_columns, users)
    return build_dataset(name or _stem(ipath), inter, str(ipath),
                         items=item_df, items_path=str(items or ""),
                         users=users_df, users_path=str(users or ""), source=source or str(ipath),
                         tie_break=tie_break)


def from_dataframe(df: pd.DataFrame, columns: dict[str, str] | None = None,
                   items: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
                   name: str = "data", *, tie_break: str = "hash") -> Dataset:
    """A `Dataset` from pandas DataFrames (``columns`` as in `load_files`; rows count from 1)."""
    inter = df.reset_index(drop=True)  # a new frame: the caller's is never touched
    inter.attrs[HEADER] = None
    inter = apply_mapping(inter, columns, Path("<DataFrame>"))
    inter[LINE] = range(1, len(inter) + 1)
    if items is not None:
        items = items.reset_index(drop=True)
        items.attrs[HEADER] = None
        items[LINE] = range(1, len(items) + 1)
    if users is not None:
        users = users.reset_index(drop=True)
        users.attrs[HEADER] = None
        users[LINE] = range(1, len(users) + 1)
    return build_dataset(name, inter, "<DataFrame>", items=items, items_path="<items DataFrame>",
                         users=users, users_path="<users DataFrame>", source="DataFrame",
                         tie_break=tie_break)


def _stem(p: Path) -> str:
    n = p.name
    for suf in TABLE_SUFFIXES + (".inter", ".inter.gz"):
        if n.endswith(suf):
            return n[: -len(suf)]
    return p.stem


# -- specs ----------------------------------------------------------------------------------------
def builtin_path(name: str) -> Path:
    return Path(str(resources.files("m6rec") / "data" / "builtin" / name))


def load_dataset(spec: str | Path, name: str | None = None, *, tie_break: str = "hash") -> Dataset:
    """One dataset from a built-in name or a path (see the module docstring).

    ``tie_break`` orders equal timestamps: ``hash`` (default), ``hash:SALT`` or ``file``.
    """
    check_tie_break(tie_break)
    kw = {"tie_break": tie_break}
    spec_s = str(spec).strip()
    if spec_s in BUILTIN:
        return load_recbole(builtin_path(spec_s), name=name or spec_s, **kw)
    path = Path(spec_s).expanduser()
    if not path.exists():
        # a RecBole prefix like data/ml-100k (files data/ml-100k.inter ...)
        if _atomic_file(path, ".inter") is not None:
            return load_recbole(path, name=name, **kw)
        raise DataError(spec_s, f"no such dataset: not a built-in ({', '.join(BUILTIN)}) "
                                "and no file or folder at this path")
    if path.is_dir():
        if _find(path, "interactions") is not None:
            return load_folder(path, name=name, **kw)
        if any(path.glob("*.inter")) or any(path.glob("*.inter.gz")):
            return load_recbole(path, name=name, **kw)
        raise DataError(path, "folder holds neither interactions.csv[.gz] nor RecBole .inter files")
    if ".inter" in path.name:
        return load_recbole(path, name=name, **kw)
    return load_files(path, name=name, **kw)


def load_datasets(spec: str, *, tie_break: str = "hash") -> list[Dataset]:
    """A comma-separated list of specs -> one `Dataset` per domain, names made unique.

    All or nothing: when one spec fails, the `DataError` propagates and no list is returned.
    """
    check_tie_break(tie_break)
    parts = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not parts:
        raise DataError(None, "empty dataset spec")
    out: list[Dataset] = []
    seen: set[str] = set()
    for p in parts:
        ds = load_dataset(p, tie_break=tie_break)
        base, k = ds.name, 2
        while ds.name in seen:
            ds.name = f"{base}-{k}"
            k += 1
        seen.add(ds.name)
        out.append(ds)
    return out
