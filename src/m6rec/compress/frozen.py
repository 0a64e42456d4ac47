"""The deployable form of a trained ``m6`` model: the user encoder plus precomputed tables.

At serving time an ``m6`` model only needs (M6-Rec's "late interaction"): the item vectors it
scores against (``item_table()``, which already folds the text adapter, the ID embeddings and the
gate), each known user's profile vector (the profile projection of the cached LM encoding) and
the small causal Transformer that reads a history. `FrozenM6` holds exactly that, so every
compression method (int8, fp16 tables, pruning, distillation, ONNX) works on one small network.

A *student* (``width < hidden``) reads the same item table through ``in_proj`` and writes the
user vector back into the item space through ``out_proj``, so it scores the teacher's item
vectors directly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from m6rec.models.sasrec import Block

N_GAP_BUCKETS = 32  # as m6.N_GAP_BUCKETS


class FrozenM6(nn.Module):
    """User encoder over a fixed item table; ``forward`` gives scores [B, n_items].

    Parameters
    ----------
    arch : dict
        ``n_items, n_users, hidden, width, max_len, n_layers, n_heads, inner, n_events,
        use_time, use_events, use_profile`` (see `architecture`).
    """

    def __init__(self, arch: dict[str, Any], dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        self.arch = dict(arch)
        h, w = int(arch["hidden"]), int(arch["width"])
        self.hidden, self.width, self.max_len = h, w, int(arch["max_len"])
        self.n_users = int(arch["n_users"])
        self.use_time, self.use_events = bool(arch["use_time"]), bool(arch["use_events"])
        self.use_profile = bool(arch["use_profile"])
        self.table = nn.Parameter(torch.zeros(int(arch["n_items"]), h))
        self.profile_vecs = nn.Parameter(torch.zeros(max(int(arch["n_users"]), 1), h))
        self.in_proj = nn.Linear(h, w, bias=False) if w != h else None
        self.out_proj = nn.Linear(w, h, bias=False) if w != h else None
        self.pos_emb = nn.Embedding(self.max_len, w)
        nn.init.normal_(self.pos_emb.weight, std=w ** -0.5)
        self.gap_emb = nn.Embedding(N_GAP_BUCKETS, w) if self.use_time else None
        self.event_emb = nn.Embedding(int(arch["n_events"]), w) if self.use_events else None
        for emb in (self.gap_emb, self.event_emb):
            if emb is not None:
                nn.init.zeros_(emb.weight)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(w, int(arch["n_heads"]), int(arch["inner"]), dropout,
                                          attn_dropout) for _ in range(int(arch["n_layers"])))
        self.norm = nn.LayerNorm(w)
        self.out_scale = nn.Parameter(torch.tensor(1.0))

    def encode(self, items: torch.Tensor, mask: torch.Tensor, time_gaps: torch.Tensor,
               events: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, hidden] (in the item space) at every position."""
        table = torch.cat([self.table, self.table.new_zeros(1, self.hidden)])  # pad row
        L = items.shape[1]
        x = table[items] * math.sqrt(self.hidden)
        if self.use_profile:
            u = users[:, -1]
            known = (u >= 0) & (u < self.n_users)
            prof = self.profile_vecs[u.clamp(0, self.profile_vecs.shape[0] - 1)]
            x = x + (prof * known[:, None].to(prof.dtype))[:, None, :]
        if self.in_proj is not None:
            x = self.in_proj(x)
        pos = torch.arange(self.max_len - L, self.max_len, device=items.device)
        x = x + self.pos_emb(pos)[None]
        if self.gap_emb is not None:
            bucket = torch.log2(time_gaps.clamp(min=0) + 1).floor().long()
            x = x + self.gap_emb(bucket.clamp(max=N_GAP_BUCKETS - 1))
        if self.event_emb is not None:
            x = x + self.event_emb(events.clamp(0, self.event_emb.num_embeddings - 1))
        x = self.drop(x) * mask[..., None]
        x = self.norm(_causal_blocks(self.blocks, x, mask))
        if self.out_proj is not None:
            x = self.out_proj(x)
        return x * self.out_scale

    def forward(self, items: torch.Tensor, mask: torch.Tensor, time_gaps: torch.Tensor,
                events: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        user = self.encode(items, mask, time_gaps, events, users)[:, -1]
        return user @ self.table.T


def _causal_blocks(blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`m6rec.models.sasrec.causal_blocks` with the masks built from comparisons (no ``eye``,
    which onnxruntime lacks for booleans): same attention pattern, same result."""
    ar = torch.arange(x.shape[1], device=x.device)
    causal = ar[:, None] >= ar[None, :]
    eye = ar[:, None] == ar[None, :]
    attend = (causal[None] & (mask[:, None, :] | eye[None]))[:, None]
    for block in blocks:
        x = block(x, attend) * mask[..., None]
    return x


def architecture(m6: Any, width: int | None = None, n_layers: int | None = None,
                 n_heads: int | None = None, inner: int | None = None) -> dict[str, Any]:
    """The `FrozenM6` architecture of a fitted ``m6`` model (or of a student of it, with the
    given encoder width / depth)."""
    return {"n_items": int(m6.n_items_), "n_users": int(len(m6.profile_text_)),
            "hidden": int(m6.hidden), "width": int(width or m6.hidden),
            "max_len": int(m6.max_len), "n_layers": int(n_layers or m6.n_layers),
            "n_heads": int(n_heads or m6.n_heads), "inner": int(inner or m6.inner),
            "n_events": int(m6.n_events_), "use_time": bool(m6.use_time),
            "use_events": bool(m6.use_events), "use_profile": bool(m6.use_profile)}


def freeze(m6: Any) -> FrozenM6:
    """`FrozenM6` with the weights of a fitted ``m6`` model; its scores equal ``m6.score``.
    Only the Transformer user tower has a frozen form (ValueError for ``tower="gru"``: its
    weights have no counterpart here, and a copy would score with untrained blocks)."""
    if getattr(m6, "text_match", 0):
        raise ValueError("compression does not support m6's text_match term yet (train with "
                         "text_match=0 to compress)")
    if getattr(m6, "long_term", 0):
        raise ValueError("compression does not support m6's long_term segment yet (train with "
                         "long_term=0 to compress)")
    tower = getattr(m6, "tower", "transformer")
    if tower != "transformer":
        raise ValueError(f"compression supports m6's Transformer user tower only; this model "
                         f"has tower={tower!r} (train it with tower='transformer' to compress)")
    src = m6.module_
    was = src.training
    src.eval()
    try:
        with torch.no_grad():
            out = FrozenM6(architecture(m6))
            out.table.copy_(src.item_table().float().cpu())
            if m6.use_profile and len(src.profile_text):
                vecs = src.profile(src.profile_text).float().cpu()
                out.profile_vecs[: len(vecs)].copy_(vecs)
            own = src.state_dict()
            mine = out.state_dict()
            for key in mine:
                if key in own and key not in ("table", "profile_vecs"):
                    mine[key].copy_(own[key].float().cpu())
    finally:
        src.train(was)
    return out.eval()


def n_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def to_numpy_state(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
