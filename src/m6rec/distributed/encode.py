"""Batch encoding of a catalogue's texts into the encoding cache, in one process or with Ray Data.

Both paths render the same texts (item texts as the ``m6`` model renders them, plus the user
profile texts), look them up in the same `m6rec.text.EncodingCache` and encode only the misses, so
a later ``m6rec train --model m6`` (or a second run) finds every text cached. With Ray, the
distinct missing texts become a Ray Dataset mapped by a pool of encoder actors (each loads the
encoder once); the driver gathers the vectors in order and writes them to the cache, so the cache
needs no shared disk on a cluster.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset


def catalogue_texts(dataset: Dataset, budget: int = 200, profiles: bool = True) -> list[str]:
    """Item texts (``budget`` characters, `m6rec.models.m6.M6`'s ``text_budget``) then, when
    ``profiles`` and the dataset has users, one profile text per user."""
    from m6rec.text import item_texts, user_profile_text

    texts = list(item_texts(dataset, budget=budget))
    if profiles and dataset.users is not None and dataset.n_users:
        texts += [user_profile_text(dataset, u) for u in range(dataset.n_users)]
    return texts


class _EncodeBatch:
    """A Ray Data actor: loads the encoder once, encodes batches of ``{"row", "text"}``."""

    def __init__(self, spec: str, device: str, batch_size: int):
        from m6rec.text import get_encoder

        self.encoder = get_encoder(spec, device=device)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = self.encoder.encode([str(t) for t in batch["text"]], batch_size=self.batch_size)
        return {"row": batch["row"], "vector": np.asarray(vecs, dtype=np.float32)}


def encode_texts_ray(spec: str, texts: list[str], *, workers: int = 2, device: str = "cpu",
                     batch_size: int = 64, rows_per_task: int = 256,
                     address: str | None = None) -> np.ndarray:
    """float32 [len(texts), d] encoded by ``workers`` Ray actors, in input order."""
    from m6rec.distributed import ensure_ray

    ray = ensure_ray(address)
    if not texts:
        from m6rec.text import get_encoder

        return np.zeros((0, get_encoder(spec).dim), np.float32)
    items = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
    gpus = 1 if device.startswith("cuda") else 0
    mapped = items.map_batches(
        _EncodeBatch, fn_constructor_args=(spec, device, batch_size),
        batch_size=rows_per_task, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=0 if gpus else 1,
        num_gpus=gpus)
    out: np.ndarray | None = None
    for batch in mapped.iter_batches(batch_format="numpy", batch_size=None):
        vec = np.asarray(batch["vector"], dtype=np.float32)
        if out is None:
            out = np.zeros((len(texts), vec.shape[1]), np.float32)
        out[np.asarray(batch["row"], dtype=np.int64)] = vec
    assert out is not None
    return out


def encode_catalogue(dataset: Dataset, encoder: str = "default", *, budget: int = 200,
                     profiles: bool = True, ray: bool = False, address: str | None = None,
                     workers: int = 2, device: str = "cpu", batch_size: int = 64,
                     cache: Any = None, show_progress: bool = False) -> dict[str, Any]:
    """Encode ``dataset``'s item (and profile) texts into the cache (``show_progress``: a bar
    on a terminal, plain periodic lines otherwise; in one process only).

    Returns ``{"texts", "hits", "misses", "encoded", "dim", "seconds", "ray"}``: ``misses``
    counts input texts not cached before, ``encoded`` the distinct texts encoded now.
    """
    from m6rec.text import EncodingCache, encode_cached, get_encoder

    t0 = time.perf_counter()
    cache = cache if cache is not None else EncodingCache()
    texts = catalogue_texts(dataset, budget, profiles)
    enc = get_encoder(encoder, device=device)
    cached, found = cache.get(enc.name, texts)
    hits = int(found.sum())
    todo = list(dict.fromkeys(t for t, f in zip(texts, found, strict=True) if not f))
    dim = int(cached.shape[1]) if cached is not None else None
    if todo and not ray:
        vecs, _, _ = encode_cached(enc, texts, cache, batch_size=batch_size,
                                   show_progress=show_progress)
        dim = int(vecs.shape[1])
    elif todo:
        vecs = encode_texts_ray(encoder, todo, workers=workers, device=device,
                                batch_size=batch_size, address=address)
        for s in range(0, len(todo), 16384):  # written in chunks, like encode_cached
            cache.put(enc.name, todo[s:s + 16384], vecs[s:s + 16384])
        dim = int(vecs.shape[1])
    return {"texts": len(texts), "hits": hits, "misses": len(texts) - hits,
            "encoded": len(todo), "dim": dim, "seconds": round(time.perf_counter() - t0, 3),
            "ray": ray, "encoder": enc.name}
