"""An on-disk cache of text encodings, so a catalogue is encoded once per encoder.

This is M6-Rec's "late interaction" (Cui et al., 2022, arXiv 2205.08084): item segments are
encoded independently of any user, so their vectors are computed once and reused.

Layout of a cache directory::

    index.sqlite                     key -> (shard, row); shard -> (encoder, rows, dim, sha256)
    shards/<encoder digest>/<uuid>.npy   float32 [rows, dim], plain .npy (never pickled)

A key is ``sha256(encoder.name + "\\0" + text)``. Each write is a new shard file, written to a
temporary name and renamed into place before its index rows are committed, so readers (any number
of processes) only ever see complete shards; SQLite runs in WAL mode so reads do not block writes.

Corruption: every shard's sha256 is checked the first time a cache object reads it. A shard that
is missing, unreadable, of the wrong shape or whose checksum differs is dropped from the index
(with a warning) and its texts count as misses, so :func:`encode_cached` re-encodes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from m6rec.text.encoders import Encoder, progress

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
    shard TEXT PRIMARY KEY, encoder TEXT NOT NULL, n INTEGER NOT NULL, dim INTEGER NOT NULL,
    sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    key BLOB PRIMARY KEY, shard TEXT NOT NULL, row INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_shard ON vectors (shard);
"""
_CHUNK = 900  # keys per SQL query (under SQLite's bound-parameter limit everywhere)
_TIMEOUT_S = 60.0  # how long a connection waits on another writer


def text_key(encoder_name: str, text: str) -> bytes:
    """The 32-byte cache key of one text under one encoder."""
    return hashlib.sha256(f"{encoder_name}\0{text}".encode()).digest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``Settings().cache_dir / "encodings"`` (``M6REC_CACHE_DIR``)."""
    from m6rec.config import Settings

    return Settings().cache_dir / "encodings"


class EncodingCache:
    """Vectors of texts, keyed by (encoder name, text).

    Parameters
    ----------
    directory : str or Path, optional
        Where the cache lives (created when missing); default :func:`default_cache_dir`.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._verified: dict[str, tuple[int, int]] = {}  # shard -> (size, mtime_ns) checked
        self._create()

    def _create(self) -> None:
        """The index in WAL mode with its tables.

        WAL is a property of the file, so it is set once here. SQLite answers "database is
        locked" at once, without waiting on the busy timeout, when two connections switch the
        journal mode at the same moment; that case is retried until the timeout.
        """
        deadline = time.monotonic() + _TIMEOUT_S
        while True:
            try:
                db = self._connect()
                try:
                    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        db.execute("PRAGMA journal_mode=WAL")
                    with db:
                        db.executescript(_SCHEMA)
                finally:
                    db.close()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.directory / "index.sqlite", timeout=_TIMEOUT_S)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _shard_path(self, shard: str) -> Path:
        return self.directory / "shards" / shard

    # -- reads -----------------------------------------------------------------------------------
    def get(self, encoder_name: str, texts: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """Cached vectors of ``texts``.

        Returns
        -------
        vectors : float32 [n, d] or None
            Rows of misses are zero; None when nothing is cached.
        found : bool [n]
        """
        keys = [text_key(encoder_name, t) for t in texts]
        found = np.zeros(len(keys), dtype=bool)
        if not keys:
            return None, found
        pos: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            pos.setdefault(k, []).append(i)
        unique = list(pos)
        rows: list[tuple[bytes, str, int]] = []
        shards: dict[str, tuple[int, int, str]] = {}
        db = self._connect()
        try:
            for s in range(0, len(unique), _CHUNK):
                chunk = unique[s : s + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows += db.execute(f"SELECT key, shard, row FROM vectors WHERE key IN ({marks})",
                                   chunk).fetchall()
            names = sorted({r[1] for r in rows})
            for s in range(0, len(names), _CHUNK):
                chunk = names[s : s + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for shard, n, dim, digest in db.execute(
                        f"SELECT shard, n, dim, sha256 FROM shards WHERE shard IN ({marks}) "
                        "AND encoder = ?", [*chunk, encoder_name]):
                    shards[shard] = (n, dim, digest)
        finally:
            db.close()
        if not rows:
            return None, found
        out: np.ndarray | None = None
        by_shard: dict[str, list[tuple[bytes, int]]] = {}
        for key, shard, row in rows:
            by_shard.setdefault(shard, []).append((bytes(key), row))
        for shard, members in by_shard.items():
            data = self._load_shard(shard, shards.get(shard))
            if data is None:
                continue
            if out is None:
                out = np.zeros((len(keys), data.shape[1]), dtype=np.float32)
            elif data.shape[1] != out.shape[1]:
                self._drop(shard, f"dimension {data.shape[1]} != {out.shape[1]}")
                continue
            src = np.array([r for _, r in members], dtype=np.int64)
            vecs = np.asarray(data[src], dtype=np.float32)
            for (key, _), v in zip(members, vecs, strict=True):
                for i in pos[key]:
                    out[i] = v
                    found[i] = True
        return out, found

    def _load_shard(self, shard: str, meta: tuple[int, int, str] | None) -> np.ndarray | None:
        """The shard's array, or None (and the shard dropped) when it is missing or corrupt."""
        path = self._shard_path(shard)
        if meta is None:
            self._drop(shard, "not in the index for this encoder")
            return None
        n, dim, digest = meta
        try:
            st = path.stat()
            stamp = (st.st_size, st.st_mtime_ns)
            if self._verified.get(shard) != stamp:
                if _file_sha256(path) != digest:
                    raise ValueError("checksum mismatch")
                self._verified[shard] = stamp
            data = np.load(path, mmap_mode="r", allow_pickle=False)
            if data.dtype != np.float32 or data.shape != (n, dim):
                raise ValueError(f"shape {data.shape} {data.dtype}, expected ({n}, {dim}) float32")
        except (OSError, ValueError) as e:
            self._drop(shard, str(e))
            return None
        return data

    def _drop(self, shard: str, why: str) -> None:
        warnings.warn(f"encoding cache {self.directory}: shard {shard} is unusable ({why}); "
                      "its texts will be encoded again", RuntimeWarning, stacklevel=4)
        self._verified.pop(shard, None)
        db = self._connect()
        try:
            with db:
                db.execute("DELETE FROM vectors WHERE shard = ?", (shard,))
                db.execute("DELETE FROM shards WHERE shard = ?", (shard,))
        finally:
            db.close()
        self._shard_path(shard).unlink(missing_ok=True)

    # -- writes ----------------------------------------------------------------------------------
    def put(self, encoder_name: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (float32 [n, d]) of ``texts`` as one new shard."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"expected vectors of shape ({len(texts)}, d), got {vectors.shape}")
        if len(texts) == 0:
            return
        group = hashlib.sha256(encoder_name.encode()).hexdigest()[:16]
        shard = f"{group}/{uuid.uuid4().hex}.npy"
        path = self._shard_path(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, vectors, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        digest = _file_sha256(path)
        keys = [(text_key(encoder_name, t), shard, i) for i, t in enumerate(texts)]
        db = self._connect()
        try:
            with db:
                db.execute("INSERT INTO shards VALUES (?, ?, ?, ?, ?)",
                           (shard, encoder_name, len(texts), vectors.shape[1], digest))
                db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", keys)
        finally:
            db.close()

    # -- housekeeping ----------------------------------------------------------------------------
    def __len__(self) -> int:
        db = self._connect()
        try:
            return int(db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
        finally:
            db.close()

    def encoders(self) -> dict[str, int]:
        """Encoder name -> number of cached vectors."""
        db = self._connect()
        try:
            return dict(db.execute(
                "SELECT s.encoder, COUNT(*) FROM vectors v JOIN shards s ON v.shard = s.shard "
                "GROUP BY s.encoder").fetchall())
        finally:
            db.close()

    def __repr__(self) -> str:
        return f"EncodingCache({str(self.directory)!r})"


def encode_cached(encoder: Encoder, texts: Sequence[str], cache: EncodingCache | None = None,
                  batch_size: int = 64, show_progress: bool = False,
                  chunk_size: int = 16384) -> tuple[np.ndarray, int, int]:
    """Encode ``texts``, taking what the cache has and encoding (then caching) only the rest.

    Parameters
    ----------
    encoder : Encoder
    texts : sequence of str
    cache : EncodingCache, optional
        Default: the cache in :func:`default_cache_dir`.
    batch_size : int
        Passed to ``encoder.encode``.
    show_progress : bool
        Report progress over all the misses (`m6rec.text.encoders.progress`: a bar on a
        terminal, plain periodic lines with texts done / total / rate otherwise).
    chunk_size : int
        Misses are encoded and written in chunks of this many distinct texts, so an interrupted
        run keeps what it finished.

    Returns
    -------
    vectors : float32 [n, d], in input order
    n_hits, n_misses : int
        Counted over the input texts (a repeated text counts each time).
    """
    cache = cache if cache is not None else EncodingCache()
    texts = list(texts)
    name = encoder.name
    cached, found = cache.get(name, texts)
    n_hits = int(found.sum())
    n_misses = len(texts) - n_hits
    if n_misses == 0:
        if cached is None:  # no texts at all
            return np.zeros((0, encoder.dim), dtype=np.float32), 0, 0
        return cached, n_hits, 0
    todo: dict[str, list[int]] = {}
    for i in np.flatnonzero(~found):
        todo.setdefault(texts[i], []).append(int(i))
    pending = list(todo)
    out = cached
    with contextlib.ExitStack() as stack:
        advance = (stack.enter_context(progress(len(pending), f"encoding {name}"))
                   if show_progress else None)
        for s in range(0, len(pending), chunk_size):
            chunk = pending[s : s + chunk_size]
            vecs = _encode_chunk(encoder, chunk, batch_size, advance)
            if out is None:
                out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            elif vecs.shape[1] != out.shape[1]:
                raise ValueError(f"encoder {name!r} gives {vecs.shape[1]}-d vectors but the "
                                 f"cache holds {out.shape[1]}-d ones under the same name")
            cache.put(name, chunk, vecs)
            for t, v in zip(chunk, vecs, strict=True):
                out[todo[t]] = v
    assert out is not None
    return out, n_hits, n_misses


def _encode_chunk(encoder: Encoder, texts: list[str], batch_size: int,
                  advance: Callable[[int], None] | None) -> np.ndarray:
    """``encoder.encode(texts)``; with ``advance``, in pieces of a few batches, each reported
    (one progress line over every miss, not one per chunk)."""
    if advance is None:
        return np.asarray(encoder.encode(texts, batch_size=batch_size), dtype=np.float32)
    # the longest texts first, as the encoder itself would sort them: pieces pad as little
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    step = max(1, 4 * batch_size)
    out: np.ndarray | None = None
    for s in range(0, len(texts), step):
        rows = order[s : s + step]
        vecs = np.asarray(encoder.encode([texts[i] for i in rows], batch_size=batch_size),
                          dtype=np.float32)
        if out is None:
            out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        out[rows] = vecs
        advance(len(rows))
    assert out is not None
    return out
