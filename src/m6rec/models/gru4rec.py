"""GRU4Rec: a recurrent network over the behaviour sequence.

Reference: B. Hidasi, A. Karatzoglou, L. Baltrunas, D. Tikk, "Session-based Recommendations with
Recurrent Neural Networks", ICLR 2016 (https://arxiv.org/abs/1511.06939); here trained, like
RecBole's ``GRU4Rec``, with the cross-entropy over the whole catalogue at every position.
"""

from __future__ import annotations

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

    The remaining parameters are `SequentialRecommender`'s.
    """

    name = "gru4rec"
    padding_side = "right"

    def __init__(self, layers: int = 1, gru_hidden: int = 128, max_len: int = 50,
                 hidden: int = 64, dropout: float = 0.3, epochs: int = 200, batch_size: int = 128,
                 lr: float = 3e-3, weight_decay: float = 0.0, patience: int = 10,
                 eval_every: int = 1, loss: str = "auto", n_negatives: int = 256,
                 temperature: float = 1.0, ce_max_items: int = 20000, mask_history: bool = False,
                 device: str = "auto",
                 random_state: int = 0, verbose: bool = False):
        self.layers = layers
        self.gru_hidden = gru_hidden
        super().__init__(max_len=max_len, hidden=hidden, dropout=dropout, epochs=epochs,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         patience=patience, eval_every=eval_every, loss=loss,
                         n_negatives=n_negatives, temperature=temperature,
                         ce_max_items=ce_max_items, mask_history=mask_history,
                         device=device, random_state=random_state,
                         verbose=verbose)

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
