"""Multi-task learning with a shared bottom: next-item ranking and rating regression.

The shared bottom is `Hybrid`'s pair of towers: the user vector ``z_u`` (SVD-initialised user
embedding + pooled history + profile / history-feature MLP) and the item vector ``z_i`` (item
embedding + item-feature MLP). Two task towers read it:

- click / next-item: ``w . (z_u * z_i) + b_i`` trained with the full-softmax cross-entropy over
  the catalogue (or sampled softmax / BPR); this is what `recommend` ranks by;
- rating: ``mu + b_u + b'_i + mlp(z_u * z_i)`` trained with MSE on the observed ratings.

The loss is ``weights[0] * ranking loss + weights[1] * MSE`` on the same mini-batch of (user,
item, rating) rows. Setting one weight to 0 gives the single-task model from the same code (its
other tower is then untrained). Reference: R. Caruana, "Multitask Learning", Machine Learning 28
(1997) (hard parameter sharing); the shared-bottom baseline of Ma et al., "Modeling Task
Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from m6rec.data.histories import Histories
from m6rec.models.hybrid import Hybrid


class MultiTask(Hybrid):
    """Shared bottom + click tower + rating tower (see the module doc).

    Parameters
    ----------
    weights : str
        ``"click,rating"`` loss weights, non-negative, not both 0 (``"1,0"``: ranking only,
        ``"0,1"``: rating only).
    rating_hidden : int
        Hidden width of the rating tower.
    others :
        As in `Hybrid` (``mode`` excepted: both tasks are trained).
    """

    name = "multitask"
    mode: ClassVar[str] = "rank"  # Hybrid's switches: binary SVD init, ranking loss for clicks

    def __init__(self, weights: str = "1,1", rating_hidden: int = 64, factors: int = 64,
                 feature_dim: int = 32, mlp_hidden: int = 128, user_embedding: bool = False,
                 user_features: bool = True, item_features: bool = True,
                 vectors_file: str = "", max_levels: int = 64, svd_init: bool = True,
                 loss: str = "ce", n_negatives: int = 256, user_dropout: float = 0.2,
                 weight_decay: float = 0.0, eval_every: int = 1, **train: Any):
        self.weights = weights
        self.rating_hidden = rating_hidden
        super().__init__(mode=self.mode, factors=factors, feature_dim=feature_dim,
                         mlp_hidden=mlp_hidden, user_embedding=user_embedding,
                         user_features=user_features, item_features=item_features,
                         vectors_file=vectors_file, max_levels=max_levels, svd_init=svd_init,
                         loss=loss, n_negatives=n_negatives, user_dropout=user_dropout,
                         weight_decay=weight_decay, eval_every=eval_every, **train)
        del self.mode  # a class constant here (both tasks are trained), not a parameter

    def task_weights(self) -> tuple[float, float]:
        """The (click, rating) loss weights, checked."""
        try:
            w = tuple(float(v) for v in str(self.weights).split(","))
        except ValueError:
            w = ()
        if len(w) != 2 or min(w) < 0 or max(w) <= 0 or not np.isfinite(w).all():
            raise ValueError(f"weights must be 'click,rating': two non-negative numbers, not "
                             f"both 0, got {self.weights!r}")
        return w  # type: ignore[return-value]

    def _check_params(self) -> None:
        super()._check_params()
        self.task_weights()
        if isinstance(self.rating_hidden, bool) or int(self.rating_hidden) != self.rating_hidden \
                or self.rating_hidden < 1:
            raise ValueError(f"rating_hidden must be an integer >= 1, got {self.rating_hidden!r}")

    def _needs_ratings(self) -> bool:
        return self.task_weights()[1] > 0

    def _extra_modules(self, d: int) -> dict[str, Any]:
        bias = nn.Embedding(self.n_items_, 1)
        user_bias = nn.Embedding(self.n_users_ + 1, 1, padding_idx=self.n_users_)
        nn.init.zeros_(bias.weight)
        nn.init.zeros_(user_bias.weight)
        tower = nn.Sequential(nn.Linear(d, int(self.rating_hidden)), nn.ReLU(),
                              nn.Linear(int(self.rating_hidden), 1))
        return {"rating_tower": tower, "rating_item_bias": bias, "rating_user_bias": user_bias}

    def _batch_loss(self, module, z, users, items, ratings, gen):
        w_click, w_rating = self.task_weights()
        loss = torch.zeros((), device=z.device)
        if w_click > 0:
            loss = loss + w_click * super()._batch_loss(module, z, users, items, ratings, gen)
        if w_rating > 0:
            pred = _rating_head(module, z[:, None], users, items[:, None])[:, 0]
            loss = loss + w_rating * F.mse_loss(pred, ratings)
        return loss

    def predict_ratings(self, histories: Histories, item_idx: np.ndarray) -> np.ndarray:
        """Rating tower's predictions [n, m] for per-row items ``item_idx`` (int [n, m]),
        clipped to the training range."""
        self._check_fitted()
        self._check_histories(histories)
        idx = np.asarray(item_idx, dtype=np.int64)
        out = []
        self.module_.eval()
        with torch.inference_mode():
            for start in range(0, len(histories), self.batch_size):
                part = histories.take(slice(start, start + self.batch_size))
                z, u = self._user_vectors(part)
                items = torch.from_numpy(idx[start:start + len(part)].copy()).to(z.device)
                out.append(_rating_head(self.module_, z[:, None], u, items).float().cpu().numpy())
        lo, hi = self.rating_range_
        pred = np.concatenate(out) if out else np.zeros((0, idx.shape[-1]), np.float32)
        return np.clip(pred, lo, hi)


def _rating_head(module, z: torch.Tensor, users: torch.Tensor, items: torch.Tensor
                 ) -> torch.Tensor:
    """Ratings [B, m] from user vectors ``z`` [B, 1, d] and items [B, m]."""
    zi = module.items(items.reshape(-1)).reshape(*items.shape, -1)
    return (module.rating_tower(z * zi)[..., 0] + module.rating_item_bias(items)[..., 0]
            + module.rating_user_bias(users)[:, None, 0] + module.global_mean)
