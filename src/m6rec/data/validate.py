"""Turn parsed tables into a checked `Dataset`, or raise `DataError` naming file, line and problem.

Every check runs before anything is returned: a caller gets a whole dataset or an error, never a
half-loaded one. Parsed tables carry a ``_line`` column (1-based line in their file) so errors can
point at the offending row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from m6rec.data.dataset import Dataset, KnowledgeGraph
from m6rec.data.errors import DataError

LINE = "_line"
HEADER = "header_line"  # DataFrame.attrs key: the header's line (1 for CSV / RecBole, None else)


def _cell(v: object) -> str:
    """One value as text: missing -> "", integral floats without ".0" (ids read as numbers)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, float | np.floating):
        if v != v:
            return ""
        return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))
    return str(v)


def as_str(s: pd.Series) -> pd.Series:
    """A column as object-dtype str, missing values (None, NaN, NA) as ""."""
    if pd.api.types.infer_dtype(s, skipna=False) == "string" and not s.isna().any():  # fast
        return s.astype(object)
    return pd.Series([_cell(v) for v in s.to_numpy(dtype=object)], index=s.index, dtype=object)


def _line_of(df: pd.DataFrame, mask: np.ndarray) -> tuple[int | None, int]:
    """(line of the first True row, row position) for an error message."""
    pos = int(np.flatnonzero(mask)[0])
    line = int(df[LINE].iloc[pos]) if LINE in df.columns else pos + 1
    return line, pos


def _columns(df: pd.DataFrame) -> str:
    return ", ".join(str(c) for c in df.columns if c != LINE) or "(none)"


def require_columns(df: pd.DataFrame, required: list[str], path: str, mapping: dict | None = None):
    """Raise when a required column is missing (pointing at the header line when there is one)."""
    for col in required:
        if col not in df.columns:
            src = (mapping or {}).get(col, col)
            raise DataError(path, f"missing column '{src}' (columns found: {_columns(df)})",
                            line=df.attrs.get(HEADER, 1))


def require_rows(df: pd.DataFrame, path: str):
    if len(df) == 0:
        what = ("the file has a header only" if df.attrs.get(HEADER, 1) is not None
                else "the table is empty")
        raise DataError(path, f"no data rows ({what})", line=None)


def _raise_first(df: pd.DataFrame, mask: np.ndarray, path: str, text: pd.Series, problem: str):
    line, pos = _line_of(df, mask)
    raise DataError(path, problem.format(value=text.iloc[pos]), line=line)


_PLAIN_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$|^\s*$"


def _is_str(s: pd.Series) -> bool:
    """A pandas string column (Arrow-backed ``str``) without missing values."""
    return isinstance(s.dtype, pd.StringDtype) and not s.isna().any()


def fast_numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """``(values, empty)`` for a column that is plainly numeric, else None.

    Numeric dtypes (Parquet) and string columns whose every value is a plain decimal number or
    blank (checked with one PyArrow regex, then cast by PyArrow) take this path; whatever else
    goes through the general parser, which names the first bad value."""
    if pd.api.types.is_bool_dtype(raw):
        return None
    if pd.api.types.is_integer_dtype(raw) and not raw.isna().any():
        vals = raw.to_numpy(np.float64)
        return vals, np.zeros(len(vals), bool)
    if pd.api.types.is_float_dtype(raw) and raw.dtype.kind == "f":
        vals = raw.to_numpy(np.float64, copy=True)
        return vals, np.isnan(vals)
    if _is_str(raw):
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pc.utf8_trim_whitespace(pa.array(raw))
        if not pc.all(pc.match_substring_regex(arr, _PLAIN_NUMBER)).as_py():
            return None
        empty = pc.equal(pc.utf8_length(arr), 0)
        vals = pc.cast(pc.if_else(empty, pa.scalar(None, arr.type), arr), pa.float64())
        return (vals.to_numpy(zero_copy_only=False).astype(np.float64, copy=False),
                empty.to_numpy(zero_copy_only=False))
    return None


def parse_numbers(df: pd.DataFrame, col: str, path: str, what: str,
                  allow_empty: bool) -> np.ndarray:
    """A column -> float64; empty -> NaN when allowed; unparsable or infinite -> `DataError`."""
    fast = fast_numbers(df[col])
    if fast is not None:
        vals, empty = fast
        if (allow_empty or not empty.any()) and not np.isinf(vals).any():
            return vals
    s = as_str(df[col]).str.strip()
    vals = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
    empty = (s == "").to_numpy()
    bad = np.isnan(vals) & ~empty
    if bad.any():
        _raise_first(df, bad, path, s, f"unparsable {what} {{value!r}} in column '{col}'")
    if not allow_empty and empty.any():
        _raise_first(df, empty, path, s, f"empty {what} in column '{col}'")
    inf = np.isinf(vals)
    if inf.any():
        _raise_first(df, inf, path, s, f"{what} must be finite, got {{value!r}} in column '{col}'")
    return vals


def _datetime_seconds(raw: pd.Series) -> np.ndarray:
    """datetime64 (any unit, naive = UTC, or tz-aware) -> float64 unix seconds, NaT -> NaN."""
    if getattr(raw.dt, "tz", None) is not None:
        raw = raw.dt.tz_convert("UTC").dt.tz_localize(None)
    return (raw - pd.Timestamp(0)).dt.total_seconds().to_numpy(np.float64)


def parse_timestamps(df: pd.DataFrame, col: str, path: str) -> np.ndarray:
    """Unix seconds (numbers) or ISO-8601 date/times -> float64 seconds; empty -> NaN.

    Either every row has a timestamp or none has (then order comes from ``position``).
    """
    raw = df[col]
    fast = fast_numbers(raw)
    if fast is not None:
        vals, empty = fast
        if not np.isinf(vals).any() and (empty.all() or not empty.any()):
            return vals
    if pd.api.types.is_datetime64_any_dtype(raw):
        vals = _datetime_seconds(raw)
        s = raw.astype(str)
        empty = np.isnan(vals)
    else:
        s = as_str(raw).str.strip()
        empty = (s == "").to_numpy()
        vals = pd.to_numeric(s, errors="coerce").to_numpy(np.float64, copy=True)  # written below
        todo = np.isnan(vals) & ~empty
        if todo.any():
            dt = pd.to_datetime(s[todo], errors="coerce", format="ISO8601", utc=True)
            secs = _datetime_seconds(dt)
            vals[todo] = secs
            bad = np.zeros(len(s), bool)
            bad[np.flatnonzero(todo)[np.isnan(secs)]] = True
            if bad.any():
                _raise_first(df, bad, path, s,
                             f"unparsable timestamp {{value!r}} in column '{col}' "
                             "(expected unix seconds or an ISO-8601 date/time)")
    inf = np.isinf(vals)
    if inf.any():
        _raise_first(df, inf, path, s,
                     f"timestamp must be finite, got {{value!r}} in column '{col}'")
    if (~empty).any() and empty.any():
        line, _ = _line_of(df, empty)
        raise DataError(path, f"empty timestamp in column '{col}' while other rows have one "
                              "(give every row a timestamp, or none and a position column)",
                        line=line)
    return vals


def check_ids(df: pd.DataFrame, col: str, path: str, keep_dtype: bool = False):
    """Ids as stripped str in place (``df`` is the caller's own copy); an empty id is an error.

    ``keep_dtype``: a pandas string column stays one (stripped by PyArrow) and an integer column
    becomes one (same text as `as_str`), instead of a column of Python objects."""
    raw = df[col]
    if keep_dtype and pd.api.types.is_integer_dtype(raw) and not raw.isna().any():
        s = raw.astype("str")
    elif keep_dtype and _is_str(raw):
        s = raw.str.strip()
    else:
        s = as_str(raw).str.strip()
    bad = (s == "").to_numpy()
    if bad.any():
        line, _ = _line_of(df, bad)
        raise DataError(path, f"empty {col}", line=line)
    df[col] = s


def text_columns(df: pd.DataFrame, skip: tuple[str, ...]):
    """Every other column as str in place, missing values as "" (catalogue and profile text)."""
    for c in df.columns:
        if c not in skip:
            df[c] = as_str(df[c])


def dedupe_catalogue(items: pd.DataFrame, path: str, key: str = "item_id") -> pd.DataFrame:
    """Drop exact duplicate rows; a duplicate id with different text is an error."""
    check_ids(items, key, path)
    text_columns(items, (key, LINE))
    fields = [c for c in items.columns if c not in (key, LINE)]
    dup = items.duplicated(key, keep=False).to_numpy()
    if dup.any():
        d = items[dup]
        for _, grp in d.groupby(key, sort=False):
            first = grp.iloc[0]
            for _, row in grp.iloc[1:].iterrows():
                diff = [c for c in fields if row[c] != first[c]]
                if diff:
                    first_line = first[LINE] if LINE in grp.columns else "?"
                    raise DataError(
                        path, f"duplicate {key} {row[key]!r} with different text in "
                              f"'{diff[0]}' (first defined at line {first_line})",
                        line=int(row[LINE]) if LINE in grp.columns else None)
        items = items.drop_duplicates(key, keep="first")
    return items.reset_index(drop=True)


def tie_hash(users: pd.Series, items: pd.Series, salt: str = "") -> np.ndarray:
    """A stable 64-bit hash of (user_id, item_id): breaks timestamp ties, never by item id.

    The same ids give the same hash on every run and machine; a ``salt`` gives another order.
    """
    key = as_str(users) + "\x1f" + as_str(items)
    if salt:
        key = salt + "\x1e" + key
    return pd.util.hash_array(key.to_numpy(dtype=object), categorize=False)


TIE_BREAKS = ("hash", "hash:SALT", "file")


def check_tie_break(tie_break: str) -> str:
    """``hash`` (default), ``hash:SALT`` or ``file``; anything else is a `ValueError`."""
    if tie_break in ("hash", "file") or (tie_break.startswith("hash:") and len(tie_break) > 5):
        return tie_break
    raise ValueError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}")


def tie_keys(inter: pd.DataFrame, tie_break: str) -> np.ndarray:
    """Secondary sort key for equal times: the (salted) id hash, or the row order for ``file``."""
    if tie_break == "file":
        return np.arange(len(inter), dtype=np.int64)
    salt = tie_break[5:] if tie_break.startswith("hash:") else ""
    return tie_hash(inter["user_id"], inter["item_id"], salt)


def sort_order(inter: pd.DataFrame, user_idx: np.ndarray, time_key: np.ndarray,
               tie_break: str) -> np.ndarray:
    """Row order by user, then time, then the tie key (a stable sort).

    The same order as sorting on ``(user, time, tie_keys(...))``, but the id hash is computed only
    for the rows that share a user and a time with another row (the only ones it can move)."""
    order = np.lexsort((time_key, user_idx))
    if tie_break == "file":
        return order
    u, t = user_idx[order], time_key[order]
    same = (u[1:] == u[:-1]) & (t[1:] == t[:-1])
    if not same.any():
        return order
    tied = np.zeros(len(order), bool)
    tied[1:] |= same
    tied[:-1] |= same
    rows = np.sort(order[tied])
    tie = np.zeros(len(order), np.uint64)
    tie[rows] = tie_keys(inter.iloc[rows], tie_break)
    return np.lexsort((tie, time_key, user_idx))


def build_dataset(
    name: str,
    inter: pd.DataFrame,
    inter_path: str,
    items: pd.DataFrame | None = None,
    items_path: str = "",
    users: pd.DataFrame | None = None,
    users_path: str = "",
    kg: pd.DataFrame | None = None,
    kg_path: str = "",
    link: pd.DataFrame | None = None,
    link_path: str = "",
    source: str = "",
    *,
    tie_break: str = "hash",
) -> Dataset:
    """Check parsed tables and assemble a `Dataset`.

    ``inter`` has ``user_id``, ``item_id`` and optionally ``timestamp``, ``position``,
    ``rating``, ``event`` (strings or numbers); the others are keyed by ``item_id`` /
    ``user_id``; ``kg`` has ``head_id, relation_id, tail_id``; ``link`` has
    ``item_id, entity_id``. Interactions are sorted by user, then timestamp (or ``position``,
    or file order when there is neither); equal times are ordered by ``tie_break``: ``hash``
    (a stable hash of user and item id, never the item id itself), ``hash:SALT`` or ``file``.
    No input frame is modified.
    """
    check_tie_break(tie_break)
    inter = inter.copy()
    require_columns(inter, ["user_id", "item_id"], inter_path)
    require_rows(inter, inter_path)
    check_ids(inter, "user_id", inter_path, keep_dtype=True)
    check_ids(inter, "item_id", inter_path, keep_dtype=True)
    n = len(inter)
    u_codes, u_first = pd.factorize(inter["user_id"])  # ids in order of first appearance
    i_codes, i_first = pd.factorize(inter["item_id"])

    ts = (parse_timestamps(inter, "timestamp", inter_path) if "timestamp" in inter.columns
          else np.full(n, np.nan))
    if "position" in inter.columns:
        order = parse_numbers(inter, "position", inter_path, "position",
                              allow_empty=not np.isnan(ts).all())
    else:
        order = (inter[LINE].to_numpy(np.float64) if LINE in inter.columns
                 else np.arange(n, dtype=float))
    time_key = np.where(np.isnan(ts), order, ts) if not np.isnan(ts).all() else order
    rating = (parse_numbers(inter, "rating", inter_path, "rating", allow_empty=False)
              if "rating" in inter.columns else None)

    # catalogue
    if items is not None:
        require_columns(items, ["item_id"], items_path)
        require_rows(items, items_path)
        items = dedupe_catalogue(items.copy(), items_path)
        i_pos = pd.Index(items["item_id"]).get_indexer(i_first)
        unknown = i_pos[i_codes] < 0
        if unknown.any():
            line, pos = _line_of(inter, unknown)
            raise DataError(inter_path, f"unknown item id {inter['item_id'].iloc[pos]!r}: "
                                        f"not in the catalogue {items_path}", line=line)
        item_ids = items["item_id"].to_numpy(dtype=object)
        catalogue = items.drop(columns=["item_id", LINE], errors="ignore")
    else:
        item_ids = np.asarray(i_first, dtype=object)
        i_pos = np.arange(len(item_ids))
        catalogue = pd.DataFrame(index=range(len(item_ids)))
    catalogue = catalogue.reset_index(drop=True)

    # users
    user_ids = np.asarray(u_first, dtype=object)
    profiles = None
    if users is not None:
        require_columns(users, ["user_id"], users_path)
        require_rows(users, users_path)
        users = users.copy()
        check_ids(users, "user_id", users_path)
        dup = users.duplicated("user_id").to_numpy()
        if dup.any():
            line, pos = _line_of(users, dup)
            uid = users["user_id"].iloc[pos]
            first, _ = _line_of(users, (users["user_id"] == uid).to_numpy())
            raise DataError(users_path, f"duplicate user_id {uid!r} (first defined at line "
                                        f"{first})", line=line)
        text_columns(users, ("user_id", LINE))
        extra = users.loc[~users["user_id"].isin(pd.Index(user_ids)), "user_id"].to_numpy(object)
        user_ids = np.concatenate([user_ids, extra])
        profiles = (users.set_index("user_id").reindex(user_ids)
                    .drop(columns=[LINE], errors="ignore").reset_index(drop=True))
        for c in profiles.columns:  # users without a profile row get ""
            profiles[c] = profiles[c].fillna("").to_numpy(dtype=object)

    i_index = pd.Index(item_ids)
    user_idx = u_codes.astype(np.int64)  # profiles only append users after the log's
    out = pd.DataFrame({
        "user_idx": user_idx,
        "item_idx": np.asarray(i_pos, dtype=np.int64)[i_codes],
        "timestamp": ts,
    })
    if rating is not None:
        out["rating"] = rating.astype(np.float32)
    event_types: list[str] = []
    if "event" in inter.columns:
        codes, uniques = pd.factorize(as_str(inter["event"]).str.strip(), sort=True)
        out["event"] = codes.astype(np.int64)
        event_types = [str(x) for x in uniques]
    order = sort_order(inter, user_idx, np.asarray(time_key, np.float64), tie_break)
    out = out.take(order).reset_index(drop=True)
    starts = np.zeros(len(user_ids) + 1, np.int64)
    np.cumsum(np.bincount(user_idx, minlength=len(user_ids)), out=starts[1:])
    sorted_users = user_idx[order]
    out["seq"] = np.arange(n, dtype=np.int64) - starts[sorted_users]
    out = out[["user_idx", "item_idx", "timestamp", "seq"]
              + [c for c in ("rating", "event") if c in out.columns]]

    graph = None
    if kg is not None or link is not None:
        graph = build_kg(kg, kg_path, link, link_path, i_index)

    return Dataset(name=name, inter=out, user_ids=np.asarray(user_ids, dtype=object),
                   item_ids=np.asarray(item_ids, dtype=object), items=catalogue, users=profiles,
                   kg=graph, event_types=event_types, source=source)


def build_kg(kg: pd.DataFrame | None, kg_path: str, link: pd.DataFrame | None, link_path: str,
             items: pd.Index) -> KnowledgeGraph:
    if kg is None:
        raise DataError(link_path, "item links (.link) without knowledge-graph triples (.kg): "
                                   "a knowledge graph needs both files")
    if link is None:
        raise DataError(kg_path, "knowledge-graph triples (.kg) without item links (.link): "
                                 "a knowledge graph needs both files")
    kg, link = kg.copy(), link.copy()
    require_columns(kg, ["head_id", "relation_id", "tail_id"], kg_path)
    require_columns(link, ["item_id", "entity_id"], link_path)
    for c in ("head_id", "relation_id", "tail_id"):
        check_ids(kg, c, kg_path)
    check_ids(link, "item_id", link_path)
    check_ids(link, "entity_id", link_path)
    link = link.drop_duplicates(["item_id", "entity_id"]).reset_index(drop=True)
    dup = link.duplicated("item_id").to_numpy()
    if dup.any():
        line, pos = _line_of(link, dup)
        item = link["item_id"].iloc[pos]
        first_pos = int(np.flatnonzero((link["item_id"] == item).to_numpy())[0])
        first_line = int(link[LINE].iloc[first_pos]) if LINE in link.columns else first_pos + 1
        raise DataError(link_path, f"item {item!r} is linked to two entities: "
                                   f"{link['entity_id'].iloc[first_pos]!r} (line {first_line}) "
                                   f"and {link['entity_id'].iloc[pos]!r}", line=line)
    entities = pd.Index(pd.unique(np.concatenate([
        kg["head_id"].to_numpy(object), kg["tail_id"].to_numpy(object),
        link["entity_id"].to_numpy(object)])))
    relations = pd.Index(pd.unique(kg["relation_id"].to_numpy(object)))
    triples = np.stack([entities.get_indexer(kg["head_id"]),
                        relations.get_indexer(kg["relation_id"]),
                        entities.get_indexer(kg["tail_id"])], axis=1).astype(np.int64)
    item_entity = np.full(len(items), -1, dtype=np.int64)
    pos = items.get_indexer(link["item_id"])
    keep = pos >= 0  # links to items outside this dataset are ignored (RecBole does the same)
    item_entity[pos[keep]] = entities.get_indexer(link["entity_id"][keep])
    return KnowledgeGraph(entity_ids=np.asarray(entities, dtype=object),
                          relation_ids=np.asarray(relations, dtype=object),
                          triples=triples, item_entity=item_entity)
