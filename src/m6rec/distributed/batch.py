"""Top-k for every user of a dataset, in one process or with Ray Data, with identical output.

Users are cut into fixed chunks of ``chunk`` consecutive user indices; both paths score exactly
these chunks with `recommend_chunk` (so every scoring batch, and therefore every float, is the
same), the Ray path on a pool of actors that rebuild the model from its parameters and learned
arrays (as ``Recommender.load`` does, no pickled model). Rows: ``user_id, rank, item_id, score``
ordered by user index then rank; users with fewer than ``k`` eligible items get fewer rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from m6rec.data.dataset import Dataset

COLUMNS = ("user_id", "rank", "item_id", "score")


def recommend_chunk(model: Any, dataset: Dataset, start: int, stop: int, k: int) -> pd.DataFrame:
    """Top-``k`` (seen items excluded) for users ``start..stop-1`` as rows of `COLUMNS`."""
    users = np.arange(start, stop, dtype=np.int64)
    ids, scores = model.recommend(dataset.histories(users), k=k, exclude_seen=True)
    keep = ids >= 0
    rows = np.repeat(users, keep.sum(1))
    return _frame(dataset.user_ids[rows], np.cumsum(keep, axis=1)[keep],
                  dataset.item_ids[ids[keep]], scores[keep])


def _frame(user_id, rank, item_id, score) -> pd.DataFrame:
    """The output frame with its fixed column types."""
    return pd.DataFrame({"user_id": np.asarray(user_id).astype(str),
                         "rank": np.asarray(rank).astype(np.int32),
                         "item_id": np.asarray(item_id).astype(str),
                         "score": np.asarray(score).astype(np.float32)})


def model_payload(model: Any) -> dict[str, Any]:
    """What rebuilds ``model`` elsewhere: its class name, parameters and learned arrays."""
    return {"name": model.name, "params": model.get_params(), "n_items": int(model.n_items_),
            "n_users": int(model.n_users_), "state": model.get_state()}


def rebuild_model(payload: dict[str, Any]) -> Any:
    from m6rec.registry import get_model_class

    model = get_model_class(payload["name"])(**payload["params"])
    model.n_items_, model.n_users_ = payload["n_items"], payload["n_users"]
    model.set_state(payload["state"])
    return model


class _RecommendChunks:
    """A Ray Data actor: rebuilds the model once, then answers chunks of user ranges."""

    def __init__(self, payload_ref: Any, dataset_ref: Any, k: int, chunk: int):
        import ray

        payload = ray.get(payload_ref) if isinstance(payload_ref, ray.ObjectRef) else payload_ref
        self.model = rebuild_model(payload)
        self.dataset = ray.get(dataset_ref) if isinstance(dataset_ref, ray.ObjectRef) \
            else dataset_ref
        self.k, self.chunk = k, chunk

    def __call__(self, batch: dict[str, np.ndarray]) -> pd.DataFrame:
        n = self.dataset.n_users
        parts = [recommend_chunk(self.model, self.dataset, int(s), min(n, int(s) + self.chunk),
                                 self.k) for s in batch["start"]]
        return pd.concat(parts, ignore_index=True)


def batch_recommend(model: Any, dataset: Dataset, k: int = 10, *, ray: bool = False,
                    address: str | None = None, workers: int = 2,
                    chunk: int = 1024) -> pd.DataFrame:
    """Top-``k`` for every user of ``dataset`` (their whole history is the input and is
    excluded), as a DataFrame of `COLUMNS`; ``ray=True`` spreads the user chunks over
    ``workers`` Ray actors and returns the same frame."""
    if k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be >= 1, got k={k}, chunk={chunk}")
    starts = list(range(0, dataset.n_users, chunk))
    if not ray:
        parts = [recommend_chunk(model, dataset, s, min(dataset.n_users, s + chunk), k)
                 for s in starts]
    else:
        from m6rec.distributed import ensure_ray

        r = ensure_ray(address)
        payload_ref, dataset_ref = r.put(model_payload(model)), r.put(dataset)
        frame = r.data.from_items([{"start": s} for s in starts])
        mapped = frame.map_batches(_RecommendChunks,
                                   fn_constructor_args=(payload_ref, dataset_ref, k, chunk),
                                   batch_size=1, batch_format="numpy", num_cpus=1,
                                   compute=r.data.ActorPoolStrategy(size=workers))
        parts = [_frame(*(b[c] for c in COLUMNS))
                 for b in mapped.iter_batches(batch_format="numpy", batch_size=None)]
    if not parts:
        return _frame([], [], [], [])
    out = pd.concat(parts, ignore_index=True)
    if ray:  # actors finish chunks in any order: restore user-index then rank order
        pos = pd.Series(np.arange(dataset.n_users), index=dataset.user_ids.astype(str))
        out = out.assign(_u=pos.loc[out["user_id"]].to_numpy()).sort_values(
            ["_u", "rank"], kind="stable").drop(columns="_u").reset_index(drop=True)
    return out
