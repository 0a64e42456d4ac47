"""GRU4Rec: a recurrent network over the behaviour sequence.

Reference: B. Hidasi, A. Karatzoglou, L. Baltrunas, D. Tikk, "Session-based Recommendations with
Recurrent Neural Networks", ICLR 2016 (https://arxiv.org/abs/1511.06939); here trained, like
RecBole's ``GRU4Rec``, with the cross-entropy over the whole catalogue at every position.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from m6rec.models.sequential import SequentialRecommender, _require


class GRU4Rec(SequentialRecommender):
    """Item embedding -> dropout -> ``layers``-layer GRU (width ``gru_hidden``) -> linear back to
    ``hidden``; the item embedding is shared between input and output.

    Parameters
    ----------
    layers : int
        Stacked GRU layers.
    gru_hidden : int
        Width of the GRU state (RecBole: 128).

    The shared training parameters are `SequentialRecommender`'s (`m6rec.train.params`).
    """

    name = "gru4rec"
    padding_side = "right"

    train_params = SequentialRecommender.train_params | {"dropout": 0.3, "lr": 3e-3}

    def __init__(self, layers: int = 1, gru_hidden: int = 128, **train: Any):
        self.layers = layers
        self.gru_hidden = gru_hidden
        super().__init__(**train)

    def _check_params(self) -> None:
        super()._check_params()
        _require(self, ints={"layers": 1, "gru_hidden": 1})

    def build_module(self) -> GRU4RecModule:
        return GRU4RecModule(self.n_items_, self.hidden, self.gru_hidden, self.layers,
                             self.dropout)


class GRU4RecModule(nn.Module):
    """The network; sequences are left-aligned (pads after the items)."""

    def __init__(self, n_items: int, hidden: int, gru_hidden: int, layers: int, dropout: float):
        super().__init__()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=n_items)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden, gru_hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.dense = nn.Linear(gru_hidden, hidden)
        nn.init.normal_(self.item_emb.weight, std=hidden ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight[: self.n_items]

    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               extras: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        out, _ = self.gru(self.drop(self.item_emb(items)))
        return self.dense(self.drop(out))
