"""The deployable form of a trained ``m6`` model: the user encoder plus precomputed tables.

At serving time an ``m6`` model only needs (M6-Rec's "late interaction"): the item vectors it
scores against (``item_table()``, which already folds the text adapter, the ID embeddings and the
gate), each known user's profile vector (the profile projection of the cached LM encoding) and
the small user tower that reads a history (the GRU or the causal Transformer, with the
long-term taste term when the model has one). `FrozenM6` holds exactly that, so every
compression method (int8, fp16 tables, pruning, distillation, ONNX) works on one small network.
The EASE teacher of training is not part of it: the trained model scores alone.

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

from m6rec.models.m6.towers import N_GAP_BUCKETS, N_HEADS, gap_buckets, gru_states, long_term
from m6rec.models.sasrec import Block


class FrozenM6(nn.Module):
    """User encoder over a fixed item table; ``forward`` gives scores [B, n_items].

    Parameters
    ----------
    arch : dict
        ``n_items, n_users, hidden, width, max_len, tower, n_layers, n_heads, inner,
        long_term, n_events, use_time, use_events, use_profile`` (see `architecture`;
        ``tower`` and ``long_term`` absent: a Transformer without the long-term term).
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
        self.tower = str(arch.get("tower", "transformer"))
        if self.tower == "gru":
            layers = int(arch["n_layers"])
            self.gru = nn.GRU(w, int(arch["inner"]), num_layers=layers, batch_first=True,
                              dropout=dropout if layers > 1 else 0.0)
            self.gru_out = nn.Linear(int(arch["inner"]), w)
            self.blocks = nn.ModuleList()
        else:
            self.blocks = nn.ModuleList(Block(w, int(arch["n_heads"]), int(arch["inner"]),
                                              dropout, attn_dropout)
                                        for _ in range(int(arch["n_layers"])))
        self.norm = nn.LayerNorm(w)
        self.out_scale = nn.Parameter(torch.tensor(1.0))
        self.long_term = int(arch.get("long_term", 0))
        self.lt_proj = nn.Linear(h, h, bias=False) if self.long_term else None

    def encode(self, items: torch.Tensor, mask: torch.Tensor, time_gaps: torch.Tensor,
               events: torch.Tensor, users: torch.Tensor,
               older: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, hidden] (in the item space) at every position; ``older``
        [B, C] the items before the window (pads -1), read by the long-term term."""
        table = torch.cat([self.table, self.table.new_zeros(1, self.hidden)])  # pad row
        L = items.shape[1]
        scale = 1.0 if self.tower == "gru" else math.sqrt(self.hidden)
        x = table[items] * scale
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
            x = x + self.gap_emb(gap_buckets(time_gaps))
        if self.event_emb is not None:
            x = x + self.event_emb(events.clamp(0, self.event_emb.num_embeddings - 1))
        x = self.drop(x) * mask[..., None]
        if self.tower == "gru":
            x = gru_states(self.gru, self.gru_out, self.drop, x, mask)
        else:
            x = self.norm(_causal_blocks(self.blocks, x, mask))
        if self.out_proj is not None:
            x = self.out_proj(x)
        x = x * self.out_scale
        if self.lt_proj is not None:
            x = x + long_term(self.lt_proj, self.drop, table, items, mask, older,
                              self.long_term)
        return x

    def forward(self, items: torch.Tensor, mask: torch.Tensor, time_gaps: torch.Tensor,
                events: torch.Tensor, users: torch.Tensor,
                older: torch.Tensor | None = None) -> torch.Tensor:
        user = self.encode(items, mask, time_gaps, events, users, older)[:, -1]
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
            "max_len": int(m6.max_len), "tower": str(m6.tower),
            "n_layers": int(n_layers or m6.n_layers), "n_heads": int(n_heads or N_HEADS),
            "inner": int(inner or m6.inner), "long_term": int(m6.long_term),
            "n_events": int(m6.n_events_), "use_time": True, "use_events": True,
            "use_profile": True}


def freeze(m6: Any) -> FrozenM6:
    """`FrozenM6` with the weights of a fitted ``m6`` model (either tower, with or without the
    long-term term); its scores equal ``m6.score``."""
    if getattr(m6, "text_match", 0):
        raise ValueError("compression does not support m6's text_match term yet (train with "
                         "text_match=0 to compress)")
    src = m6.module_
    was = src.training
    src.eval()
    try:
        with torch.no_grad():
            out = FrozenM6(architecture(m6))
            out.table.copy_(src.item_table().float().cpu())
            if len(src.profile_text):
                vecs = src.profile(src.profile_text).float().cpu()
                out.profile_vecs[: len(vecs)].copy_(vecs)
            own = src.state_dict()
            mine = out.state_dict()
            missing = [k for k in mine if k not in own and k not in ("table", "profile_vecs")]
            if missing:
                raise ValueError(f"the frozen m6 has weights the model lacks: {missing}")
            for key in mine:
                if key not in ("table", "profile_vecs"):
                    mine[key].copy_(own[key].float().cpu())
    finally:
        src.train(was)
    return out.eval()


def n_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def to_numpy_state(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
