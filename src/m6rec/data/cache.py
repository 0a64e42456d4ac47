"""A loaded `Dataset` kept on disk, so a process that loads the same dataset again (a service
start or reload) reads arrays instead of parsing and validating the source files.

The cache is one folder per (spec, tie-break, source files, m6rec version): ``meta.json``
(names, dtypes, the frames' ``attrs``) and ``arrays.npz`` (numeric columns; read with pickle
disabled); text columns are JSON lists. The key covers the name, size and modification time of
every file in the source's folder, so an edited or replaced file loads afresh. A dataset is
written only when it reads back equal to what was loaded (frames, dtypes, ids, graph);
anything the cache cannot hold exactly (other column types) is simply not cached, and a
missing, corrupt or foreign entry is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from m6rec.data.dataset import Dataset, KnowledgeGraph

log = logging.getLogger("m6rec.data")
FORMAT = 1
FRAMES = ("inter", "items", "users")


def default_dir() -> Path:
    """``Settings().cache_dir / "datasets"`` (``M6REC_CACHE_DIR``)."""
    from m6rec.config import Settings

    return Settings().cache_dir / "datasets"


def source_key(spec: str, tie_break: str) -> str | None:
    """The cache key of a dataset spec: None when it names no files on disk."""
    from m6rec import __version__
    from m6rec.data.loaders import BUILTIN, builtin_path

    spec = str(spec).strip()
    path = builtin_path(spec) if spec in BUILTIN else Path(spec).expanduser()
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        return None
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([FORMAT, __version__, spec, str(path.resolve()), tie_break]).encode())
    for f in sorted(folder.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_cached(spec: str, tie_break: str = "hash", directory: str | Path | None = None
                ) -> Dataset:
    """`m6rec.data.load_dataset` through the cache (read when present, written when not)."""
    from m6rec.data import load_dataset

    key = source_key(spec, tie_break)
    folder = Path(directory) if directory is not None else default_dir()
    entry = folder / key if key else None
    if entry is not None and (entry / "meta.json").is_file():
        try:
            return read(entry)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
            log.warning("dataset cache %s ignored (%s): loading %s", entry, e, spec)
    ds = load_dataset(spec, tie_break=tie_break)
    if entry is not None:
        try:
            write(ds, entry)
        except (OSError, ValueError, TypeError) as e:
            log.info("dataset %s not cached: %s", spec, e)
    return ds


# -- writing -----------------------------------------------------------------------------------
def _frame(df: pd.DataFrame, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if not isinstance(df.index, pd.RangeIndex) or df.index.start != 0 or df.index.step != 1:
        raise ValueError(f"{prefix}: only a default index is cached")
    cols = []
    for k, c in enumerate(df.columns):
        if not isinstance(c, str):
            raise ValueError(f"{prefix}: column names must be text")
        s = df[c]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "biuf":
            arrays[f"{prefix}.{k}"] = s.to_numpy()
            cols.append({"name": c, "dtype": s.dtype.str})
        else:
            values = [None if v is None or (isinstance(v, float) and np.isnan(v)) else v
                      for v in s.tolist()]
            if not all(v is None or isinstance(v, str) for v in values):
                raise ValueError(f"{prefix}.{c}: only numbers and text are cached")
            cols.append({"name": c, "dtype": str(s.dtype), "values": values})
    return {"columns": cols, "attrs": dict(df.attrs), "rows": len(df)}


def write(ds: Dataset, entry: Path) -> None:
    """Write ``ds`` into ``entry`` (atomically: a temporary folder renamed), then check that
    it reads back equal; otherwise remove it and raise ValueError."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": FORMAT, "name": ds.name, "source": ds.source,
                            "event_types": list(ds.event_types),
                            "user_ids": [str(u) for u in ds.user_ids],
                            "item_ids": [str(i) for i in ds.item_ids], "frames": {}}
    for name in FRAMES:
        df = getattr(ds, name)
        if df is not None:
            meta["frames"][name] = _frame(df, name, arrays)
    if ds.kg is not None:
        meta["kg"] = {"entity_ids": [str(e) for e in ds.kg.entity_ids],
                      "relation_ids": [str(r) for r in ds.kg.relation_ids]}
        arrays["kg.triples"], arrays["kg.item_entity"] = ds.kg.triples, ds.kg.item_entity
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
    try:
        np.savez(tmp / "arrays.npz", **arrays)
        (tmp / "meta.json").write_text(json.dumps(meta))
        same(ds, read(tmp))
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def same(a: Dataset, b: Dataset) -> None:
    """Raise ValueError unless ``b`` holds exactly what ``a`` holds."""
    try:
        assert a.name == b.name and a.source == b.source and a.event_types == b.event_types
        for name in ("user_ids", "item_ids"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and list(x) == list(y)
        for name in FRAMES:
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None)
            if x is not None:
                pd.testing.assert_frame_equal(x, y, check_exact=True)
                assert x.attrs == y.attrs
        assert (a.kg is None) == (b.kg is None)
        if a.kg is not None:
            for f in ("entity_ids", "relation_ids", "triples", "item_entity"):
                x, y = getattr(a.kg, f), getattr(b.kg, f)
                assert x.dtype == y.dtype and np.array_equal(x, y)
    except AssertionError as e:
        raise ValueError(f"the cached dataset does not read back equal: {e}") from e


# -- reading -----------------------------------------------------------------------------------
def read(entry: Path) -> Dataset:
    meta = json.loads((entry / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
    with np.load(entry / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    frames: dict[str, pd.DataFrame | None] = {name: None for name in FRAMES}
    for name, f in meta["frames"].items():
        data = {}
        for k, c in enumerate(f["columns"]):
            if "values" in c:
                data[c["name"]] = pd.Series(c["values"], dtype=pd.api.types.pandas_dtype(
                    c["dtype"]) if c["dtype"] != "object" else object)
            else:
                data[c["name"]] = arrays[f"{name}.{k}"]
        df = pd.DataFrame(data, index=pd.RangeIndex(f["rows"]))
        if not f["columns"]:
            df = pd.DataFrame(index=pd.RangeIndex(f["rows"]))
        df.attrs.update(f["attrs"])
        frames[name] = df
    kg = None
    if "kg" in meta:
        kg = KnowledgeGraph(np.array(meta["kg"]["entity_ids"], dtype=object),
                            np.array(meta["kg"]["relation_ids"], dtype=object),
                            arrays["kg.triples"], arrays["kg.item_entity"])
    return Dataset(meta["name"], frames["inter"], np.array(meta["user_ids"], dtype=object),
                   np.array(meta["item_ids"], dtype=object), frames["items"], frames["users"],
                   kg, list(meta["event_types"]), meta["source"])
