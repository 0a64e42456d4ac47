"""Any model without an item index (EASE, KNN, MF, ...): scores from ``model.score`` over the
dataset's catalogue; similar items by co-interaction. Such a model cannot score an item it was
not trained on: posted items are stored, never recommended."""

from __future__ import annotations

from typing import Any

import numpy as np

from m6rec.data.histories import Histories
from m6rec.ranking import topk


class DenseScorer:
    """``model.score`` over the catalogue of ``dataset`` (``n_base`` items)."""

    def __init__(self, model: Any, dataset: Any) -> None:
        self.model = model
        self.n_base = dataset.n_items
        self._dataset = dataset
        self._item_users_m = None

    @property
    def _item_users(self):
        if self._item_users_m is None:  # built on the first similar-items request
            self._item_users_m = self._dataset.csr().T.tocsr()
        return self._item_users_m

    def derive(self, model: Any) -> DenseScorer:
        new = DenseScorer.__new__(DenseScorer)
        new.__dict__.update(self.__dict__)
        new.model = model
        return new

    def search(self, h: Histories, k: int, excludes: list[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (ids, scores) [len(h), k] of histories of catalogue items."""
        s = self.model.score(h)
        s = np.nan_to_num(s, nan=np.finfo(np.float32).min, posinf=np.finfo(np.float32).max)
        for x, ex in enumerate(excludes):
            s[x, ex[ex < s.shape[1]]] = -np.inf
        return topk(s, k)

    def score_items(self, h: Histories, idx: np.ndarray) -> np.ndarray:
        return self.model.score(h, idx)

    def similar(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Items closest to catalogue item ``i``: cosine over the users who interacted."""
        iu = self._item_users
        co = np.asarray((iu @ iu[i].T).todense()).ravel().astype(np.float32)
        norms = np.sqrt(np.maximum(iu.getnnz(axis=1), 1)).astype(np.float32)
        s = co / (norms * norms[i])
        s[i] = -np.inf
        s[co == 0] = -np.inf
        return topk(s[None], k)
