"""SASRec: a causal self-attention encoder over the behaviour sequence.

Reference: W.-C. Kang, J. McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018
(https://arxiv.org/abs/1808.09781), trained with the full-softmax cross-entropy of Klenitskiy &
Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?", RecSys 2023.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from m6rec.models.sequential import SequentialRecommender, _require


class SASRec(SequentialRecommender):
    """Item + learned position embeddings -> ``n_layers`` pre-LN causal Transformer blocks; the
    item embedding is shared between input and output (scores are dot products).

    Parameters
    ----------
    n_layers : int
        Transformer blocks.
    n_heads : int
        Attention heads (must divide ``hidden``).
    inner : int
        Width of each block's feed-forward layer.
    attn_dropout : float
        Dropout on the attention weights.

    The shared training parameters are `SequentialRecommender`'s (`m6rec.train.params`).
    """

    name = "sasrec"
    padding_side = "left"

    train_params = SequentialRecommender.train_params | {"dropout": 0.3, "batch_size": 64,
                                                         "lr": 2e-3}

    def __init__(self, n_layers: int = 2, n_heads: int = 1, inner: int = 64,
                 attn_dropout: float = 0.3, **train: Any):
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.inner = inner
        self.attn_dropout = attn_dropout
        super().__init__(**train)

    def _check_params(self) -> None:
        super()._check_params()
        _require(self, ints={"n_layers": 1, "n_heads": 1, "inner": 1})
        if self.hidden % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide hidden ({self.hidden})")
        if not 0.0 <= self.attn_dropout < 1.0:
            raise ValueError(f"attn_dropout must be in [0, 1), got {self.attn_dropout!r}")

    def build_module(self) -> SASRecModule:
        return SASRecModule(self.n_items_, self.max_len, self.hidden, self.n_layers,
                            self.n_heads, self.inner, self.dropout, self.attn_dropout)


class SASRecModule(nn.Module):
    """The network; sequences are right-aligned (pads first, newest item at position L - 1)."""

    def __init__(self, n_items: int, max_len: int, hidden: int, n_layers: int, n_heads: int,
                 inner: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.n_items, self.max_len, self.hidden = n_items, max_len, hidden
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=n_items)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, n_heads, inner, dropout, attn_dropout)
                                    for _ in range(n_layers))
        self.norm = nn.LayerNorm(hidden)
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=hidden ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight[: self.n_items]

    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               extras: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        L = items.shape[1]
        pos = torch.arange(self.max_len - L, self.max_len, device=items.device)
        x = self.item_emb(items) * math.sqrt(self.hidden) + self.pos_emb(pos)[None]
        x = self.drop(x) * mask[..., None]
        return self.norm(causal_blocks(self.blocks, x, mask))


def causal_blocks(blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run Transformer ``blocks`` causally over ``x`` [B, L, d]: a query never attends to pads
    (except a pad to itself, so no row is empty); pads are zeroed after every block."""
    L = x.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
    eye = torch.eye(L, dtype=torch.bool, device=x.device)
    attend = (causal[None] & (mask[:, None, :] | eye[None]))[:, None]
    for block in blocks:
        x = block(x, attend) * mask[..., None]
    return x


class Block(nn.Module):
    """Pre-LN Transformer block: x + attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, hidden: int, n_heads: int, inner: int, dropout: float,
                 attn_dropout: float):
        super().__init__()
        self.n_heads, self.attn_dropout = n_heads, attn_dropout
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(inner, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = (self.qkv(self.norm1(x)).view(B, L, 3, self.n_heads, d // self.n_heads)
                   .permute(2, 0, 3, 1, 4))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend,
                                           dropout_p=self.attn_dropout if self.training else 0.0)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(B, L, d)))
        return x + self.drop(self.ffn(self.norm2(x)))
