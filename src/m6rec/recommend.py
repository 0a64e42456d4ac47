"""Raw-id front door for one user: history lookup, top-k, titles, optional explanations."""

from __future__ import annotations

from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset


def recommend_for_user(model: Any, dataset: Dataset, user_id: str, k: int = 10,
                       explain: bool = False) -> dict[str, Any]:
    """``{"user_id", "items": [{"item_id", "score", "title"[, "because", "history"]}]}``.

    The user's whole history in ``dataset`` is the input and is excluded from the result."""
    u = dataset.user_index(user_id)
    if u is None:
        raise ValueError(f"unknown user id {user_id!r} in dataset {dataset.name!r}")
    h = dataset.histories(np.array([u]))
    ids, scores = model.recommend(h, k=k, exclude_seen=True)
    keep = ids[0] >= 0
    ids, scores = ids[0][keep], scores[0][keep]
    titles = dataset.titles()
    items = [{"item_id": str(dataset.item_ids[i]), "score": float(s), "title": str(titles[i])}
             for i, s in zip(ids, scores, strict=True)]
    if explain and len(ids):
        from m6rec.explain import explain_items

        for it, ex in zip(items, explain_items(model, dataset, h.row(0), ids), strict=True):
            it.update(ex)
    return {"user_id": str(user_id), "items": items}
