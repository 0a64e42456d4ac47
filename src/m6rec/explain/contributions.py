"""Model-agnostic, faithful explanations by leave-one-out rescoring.

For a user's history h and a recommended item i, the contribution of history item j is
``score(h, i) - score(h without j, i)``: exactly how much the model's score for i falls when j is
removed. All leave-one-out histories go through the model in one batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories


def history_contributions(model: Any, history: np.ndarray, items: np.ndarray,
                          max_history: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Score drop of each recommended item when each (recent) history item is removed.

    Parameters
    ----------
    model : a fitted Recommender
    history : int [L] the user's item indices, oldest first
    items : int [k] recommended items
    max_history : only the most recent ``max_history`` items are tested (and kept as input)

    Returns
    -------
    positions : int [m] the tested history items (item indices)
    contrib : float32 [m, k] score(full) - score(without that item)
    """
    hist = np.asarray(history, dtype=np.int64)[-max_history:]
    items = np.asarray(items, dtype=np.int64)
    m = len(hist)
    rows = [hist] + [np.delete(hist, j) for j in range(m)]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    batch = Histories(indptr, np.concatenate(rows) if rows else np.zeros(0, np.int64),
                      np.full(len(rows), -1, dtype=np.int64))
    s = model.score(batch, items)
    return hist, (s[0][None, :] - s[1:]).astype(np.float32)


def explain_items(model: Any, dataset: Dataset, history: np.ndarray, items: np.ndarray,
                  top: int = 2) -> list[dict[str, Any]]:
    """One explanation dict per recommended item (see `m6rec.explain.Explanation.to_dict`):
    the history items that raised its score most with their share, shared categories, KG
    relations and a sentence (``because``)."""
    from m6rec.explain.explanation import Explainer

    return [e.to_dict() for e in Explainer(model, dataset, top=top).explain(history, items)]
