"""Dense feature matrices of users and items for the feature-aware models (``hybrid``,
``multitask``).

- Profiles (users) and catalogue columns (items): a column whose non-empty values parse as
  numbers (at least 98% of them: real catalogues hold the odd ``"unknown"``) is standardised
  (missing or unparsable -> 0); any other column with at most ``max_levels`` distinct
  values becomes one-hot columns; columns with more levels (zip codes, titles) are left out.
- Item categories / genres / tags: multi-hot (`Dataset.category_matrix`).
- Precomputed item vectors (image, text, KG embeddings ...) from a file keyed by item id, see
  `load_item_vectors`.

Every function returns ``(matrix float32 [n, d], column names)``; ``d`` may be 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from m6rec.data.dataset import Dataset
from m6rec.data.errors import DataError

NUMERIC_SHARE = 0.98
ID_LIKE = ("id", "zip", "code")
VECTOR_SUFFIXES = (".npy", ".npz", ".parquet")
_ID_KEYS = ("item_id", "item_ids", "ids")
_VEC_KEYS = ("vectors", "vector", "embeddings", "embedding")


def frame_features(frame: pd.DataFrame | None, skip: tuple[str, ...] = (),
                   max_levels: int = 64) -> tuple[np.ndarray, list[str]]:
    """Numeric columns standardised, low-cardinality columns one-hot (see the module doc)."""
    if frame is None or not len(frame.columns):
        return np.zeros((0 if frame is None else len(frame), 0), np.float32), []
    blocks, names = [], []
    for col in frame.columns:
        if col in skip or str(col).lower().endswith(ID_LIKE):
            continue
        raw = frame[col]
        text = raw.astype(str).str.strip()
        empty = raw.isna().to_numpy() | (text == "").to_numpy() | (text == "nan").to_numpy()
        values = pd.to_numeric(text.where(~empty), errors="coerce").to_numpy(np.float64)
        parsed = ~np.isnan(values)
        if (~empty).any() and parsed.sum() >= NUMERIC_SHARE * (~empty).sum():  # numeric column
            known = values[parsed]
            std = known.std()
            if std == 0:
                continue
            blocks.append(np.where(parsed, (values - known.mean()) / std, 0.0)[:, None])
            names.append(col)
            continue
        levels = sorted(set(text[~empty]))
        if not 1 < len(levels) <= max_levels:
            continue
        pos = {v: j for j, v in enumerate(levels)}
        onehot = np.zeros((len(frame), len(levels)))
        rows = np.flatnonzero(~empty)
        onehot[rows, [pos[v] for v in text.to_numpy()[rows]]] = 1.0
        blocks.append(onehot)
        names += [f"{col}={v}" for v in levels]
    if not blocks:
        return np.zeros((len(frame), 0), np.float32), []
    return np.hstack(blocks).astype(np.float32), names


def user_feature_matrix(ds: Dataset, max_levels: int = 64) -> tuple[np.ndarray, list[str]]:
    """Profile features [n_users, d] (d = 0 when the dataset has no profiles)."""
    if ds.users is None:
        return np.zeros((ds.n_users, 0), np.float32), []
    return frame_features(ds.users, max_levels=max_levels)


def item_feature_matrix(ds: Dataset, max_levels: int = 64, vectors: str | Path | None = None
                        ) -> tuple[np.ndarray, list[str]]:
    """Item features [n_items, d]: categories multi-hot, catalogue columns (title and category
    columns excepted) and, with ``vectors``, the file's vectors (see `load_item_vectors`)."""
    cats, vocab = ds.category_matrix()
    skip = tuple(c for c in (ds.title_column, ds.category_column) if c)
    cols, col_names = frame_features(ds.items, skip=skip, max_levels=max_levels)
    blocks = [cats.toarray().astype(np.float32), cols]
    names = [f"category={c}" for c in vocab] + col_names
    if vectors:
        vec = load_item_vectors(vectors, ds)
        blocks.append(vec)
        names += [f"vector[{j}]" for j in range(vec.shape[1])]
    return np.hstack(blocks).astype(np.float32), names


def load_item_vectors(path: str | Path, ds: Dataset) -> np.ndarray:
    """Precomputed item vectors aligned with ``ds``'s catalogue: float32 [n_items, d].

    Formats
    -------
    ``.npz``: an ``item_id`` (or ``item_ids``) array of n ids and a ``vectors`` (or
    ``embeddings``) array [n, d]. ``.parquet``: an ``item_id`` column and either one list column
    ``vector`` / ``embedding`` or numeric columns (one per dimension). ``.npy``: a plain [n_items,
    d] array in the catalogue's order (no ids; the row count must match).

    Ids the catalogue does not know are ignored; items the file does not cover get zeros. Vectors
    are scaled so that the mean norm of the covered items is 1. Bad input (unknown format, wrong
    shape, duplicate id, non-finite value, no id in the catalogue) raises `DataError` naming the
    file and, for one bad row, its 1-based row number as the line.
    """
    p = Path(path)
    if p.suffix not in VECTOR_SUFFIXES:
        raise DataError(p, f"unsupported item-vector format {p.suffix!r} "
                           f"(use {', '.join(VECTOR_SUFFIXES)})")
    if not p.is_file():
        raise DataError(p, "item-vector file not found")
    ids, vec = _read_vectors(p)
    if vec.ndim != 2 or vec.shape[1] == 0:
        raise DataError(p, f"item vectors must be a 2-D array [n, d] with d >= 1, got shape "
                           f"{vec.shape}")
    if not np.issubdtype(vec.dtype, np.number):
        raise DataError(p, f"item vectors must be numbers, got dtype {vec.dtype}")
    bad = np.flatnonzero(~np.isfinite(vec).all(axis=1))
    if len(bad):
        raise DataError(p, "non-finite value (NaN or inf) in an item vector", line=int(bad[0]) + 1)
    out = np.zeros((ds.n_items, vec.shape[1]), np.float32)
    if ids is None:
        if len(vec) != ds.n_items:
            raise DataError(p, f".npy item vectors carry no ids, so they need one row per "
                               f"catalogue item ({ds.n_items}), got {len(vec)} rows")
        out[:] = vec
        covered = np.ones(ds.n_items, bool)
    else:
        if len(ids) != len(vec):
            raise DataError(p, f"{len(ids)} item ids for {len(vec)} vectors")
        seen: dict[str, int] = {}
        covered = np.zeros(ds.n_items, bool)
        for row, item_id in enumerate(ids):
            key = str(item_id)
            if key in seen:
                raise DataError(p, f"duplicate item id {key!r} (first on line {seen[key]})",
                                line=row + 1)
            seen[key] = row + 1
            idx = ds.item_index(key)
            if idx is not None:
                out[idx] = vec[row]
                covered[idx] = True
        if not covered.any():
            raise DataError(p, f"none of the {len(ids)} item ids is in the catalogue of "
                               f"{ds.name!r} (e.g. {str(ids[0])!r})")
    norm = float(np.linalg.norm(out[covered], axis=1).mean())
    return out / norm if norm > 0 else out


def _read_vectors(p: Path) -> tuple[np.ndarray | None, np.ndarray]:
    try:
        if p.suffix == ".npy":
            return None, np.load(p, allow_pickle=False)
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                id_key = next((k for k in _ID_KEYS if k in z.files), None)
                vec_key = next((k for k in _VEC_KEYS if k in z.files), None)
                if id_key is None or vec_key is None:
                    raise DataError(p, f"needs arrays {_ID_KEYS[0]!r} and {_VEC_KEYS[0]!r}, has "
                                       f"{', '.join(z.files) or 'none'}")
                return z[id_key].astype(str), z[vec_key]
        frame = pd.read_parquet(p)
    except DataError:
        raise
    except Exception as e:  # corrupt file, object arrays (pickle refused), unreadable parquet
        raise DataError(p, f"cannot read item vectors: {e}") from None
    if "item_id" not in frame.columns:
        raise DataError(p, f"needs an 'item_id' column, has {', '.join(map(str, frame.columns))}")
    ids = frame["item_id"].astype(str).to_numpy()
    list_col = next((k for k in _VEC_KEYS if k in frame.columns), None)
    if list_col is not None:
        lengths = frame[list_col].map(lambda v: -1 if v is None else len(v)).to_numpy()
        bad = np.flatnonzero(lengths != lengths[0]) if len(lengths) else []
        if len(bad) or (len(lengths) and lengths[0] < 1):
            row = int(bad[0]) if len(bad) else 0
            raise DataError(p, f"column {list_col!r}: vectors of different lengths or missing "
                               f"({lengths[row]} values)", line=row + 1)
        return ids, np.stack([np.asarray(v, dtype=np.float64) for v in frame[list_col]])
    rest = frame.drop(columns=["item_id"])
    for col in rest.columns:
        if not pd.api.types.is_numeric_dtype(rest[col]):
            raise DataError(p, f"column {col!r} is not numeric (dtype {rest[col].dtype})")
    return ids, rest.to_numpy(np.float64)
