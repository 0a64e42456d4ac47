"""Most-popular items: the reference every model must beat."""

from __future__ import annotations

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender


class Pop(Recommender):
    """Score = number of training interactions of the item (the same for every user).

    Parameters
    ----------
    normalize : bool
        Divide counts by the largest count (scores in [0, 1]).
    """

    name = "pop"

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def fit(self, dataset: Dataset, valid: Histories | None = None) -> Pop:
        counts = dataset.item_counts().astype(np.float32)
        if self.normalize and counts.max() > 0:
            counts /= counts.max()
        self.counts_ = counts
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        return self

    def _score_rows(self, histories: Histories) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(histories), self.n_items_))

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.counts_ = state["counts"]
