"""``kg``: a next-item model whose item vectors add a projected knowledge-graph entity embedding.

Item ``i``'s vector is ``e_i + m_i W f_i``: a learned ID embedding ``e_i`` plus a learned linear
projection ``W`` of the (frozen) TransE / RotatE vector ``f_i`` of the entity the item is linked
to (``m_i = 0`` for items without a link; see `m6rec.kg`). The same vectors are the input of a
SASRec encoder (causal self-attention over the behaviour sequence) and the output table scored
by dot product, trained with the shared loop and full-softmax cross-entropy, as ``sasrec``.
The projection is created after the SASRec layers and initialised to zero, so the model starts
exactly where its no-KG twin (``use_kg=false``) starts, with the same seed. References: the CKE idea of adding a
TransE/TransR entity vector to the item's CF vector (F. Zhang et al., "Collaborative Knowledge
Base Embedding for Recommender Systems", KDD 2016) on the SASRec encoder (Kang & McAuley 2018).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from m6rec.data.dataset import Dataset
from m6rec.models.sasrec import SASRec, SASRecModule, causal_blocks
from m6rec.models.sequential import _require


class KG(SASRec):
    """SASRec with KG-enhanced item vectors (see the module doc).

    Parameters
    ----------
    use_kg : bool
        False gives the no-KG twin (plain SASRec item vectors, same everything else).
    kg_path : str
        A saved `m6rec.kg.KGEmbeddings` ``.npz`` to read entity vectors from; empty: train
        TransE / RotatE on the dataset's own triples inside ``fit``.
    kg_method : {"transe", "rotate"}
    kg_dim, kg_epochs : int
        Width and training epochs of the entity vectors trained inside ``fit``.

    The remaining parameters are `SASRec`'s. A dataset without a knowledge graph gives all-zero
    entity features (the model is then the twin).
    """

    name = "kg"

    def __init__(self, use_kg: bool = True, kg_path: str = "", kg_method: str = "transe",
                 kg_dim: int = 64, kg_epochs: int = 30, n_layers: int = 2, n_heads: int = 1,
                 inner: int = 64, attn_dropout: float = 0.3, **train: Any):
        self.use_kg = use_kg
        self.kg_path = kg_path
        self.kg_method = kg_method
        self.kg_dim = kg_dim
        self.kg_epochs = kg_epochs
        super().__init__(n_layers=n_layers, n_heads=n_heads, inner=inner,
                         attn_dropout=attn_dropout, **train)

    def _check_params(self) -> None:
        from m6rec.kg import METHODS

        super()._check_params()
        _require(self, ints={"kg_dim": 1, "kg_epochs": 1})
        if self.kg_method not in METHODS:
            raise ValueError(f"kg_method must be one of {', '.join(METHODS)}, "
                             f"got {self.kg_method!r}")

    def _prepare(self, dataset: Dataset) -> None:
        from m6rec.kg import item_kg_features

        if not self.use_kg:
            feats, mask = np.zeros((dataset.n_items, 1), np.float32), np.zeros(dataset.n_items, bool)
        else:
            feats, mask = item_kg_features(dataset, path=self.kg_path, dim=int(self.kg_dim),
                                           seed=self.random_state, method=self.kg_method,
                                           epochs=int(self.kg_epochs), device=self.device)
        self.kg_features_ = np.asarray(feats, np.float32)
        self.kg_mask_ = np.asarray(mask, bool)

    def build_module(self) -> KGModule:
        return KGModule(self.n_items_, self.max_len, self.hidden, self.n_layers, self.n_heads,
                        self.inner, self.dropout, self.attn_dropout, self.kg_features_,
                        self.kg_mask_, bool(self.use_kg))

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), "kg_features": self.kg_features_, "kg_mask": self.kg_mask_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.kg_features_ = np.asarray(state["kg_features"], np.float32)
        self.kg_mask_ = np.asarray(state["kg_mask"], bool)
        super()._set_state(state)


class KGModule(SASRecModule):
    """SASRec's network with item vectors ``e_i + m_i W f_i`` (inputs and output table)."""

    def __init__(self, n_items: int, max_len: int, hidden: int, n_layers: int, n_heads: int,
                 inner: int, dropout: float, attn_dropout: float, features: np.ndarray,
                 mask: np.ndarray, use_kg: bool):
        super().__init__(n_items, max_len, hidden, n_layers, n_heads, inner, dropout,
                         attn_dropout)
        self.use_kg = use_kg
        f = torch.as_tensor(features, dtype=torch.float32) * torch.as_tensor(mask)[:, None]
        self.register_buffer("features", f, persistent=False)
        self.proj = nn.Linear(f.shape[1], hidden, bias=False) if use_kg else None
        if self.proj is not None:  # start exactly at the twin; training learns how much KG helps
            nn.init.zeros_(self.proj.weight)

    def item_table(self) -> torch.Tensor:
        table = self.item_emb.weight[: self.n_items]
        if self.proj is not None:
            table = table + self.proj(self.features)
        return table

    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               extras: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        L = items.shape[1]
        pos = torch.arange(self.max_len - L, self.max_len, device=items.device)
        table = self.item_table()
        table = torch.cat([table, table.new_zeros(1, table.shape[1])])  # the pad row
        x = table[items] * math.sqrt(self.hidden) + self.pos_emb(pos)[None]
        x = self.drop(x) * mask[..., None]
        return self.norm(causal_blocks(self.blocks, x, mask))
