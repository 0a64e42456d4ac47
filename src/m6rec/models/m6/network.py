"""`M6Module`: the trained network of ``m6``, item side and user side in one ``nn.Module``.

Item side (`item_table`): ``v = t + g * e`` with ``t = adapter(LM vector) + skip(LM vector)``,
``e`` the item's ID embedding (zero for items without training interactions and for a
catalogue read as text only) and ``g = sigmoid(gate([t; e]))``; optionally plus a gated
projection of an extra item feature vector (``item_features``), and the LM vector itself
appended under ``text_match``. User side (`encode`): the item vectors of the window plus
position, time-gap, event-type and profile embeddings, read by a GRU or a causal Transformer
(`m6rec.models.m6.towers`), plus the long-term taste term and the text-match query.

Parameters are created in a fixed order (the same whatever options are on), so a seed gives
the same initial weights as in every earlier version of the model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from m6rec.models.m6.towers import (
    N_GAP_BUCKETS,
    N_HEADS,
    gap_buckets,
    gru_last_shared,
    gru_states,
    long_term,
    match_query,
)
from m6rec.models.sasrec import Block, causal_blocks

#: ``s`` of the text-match term ``s * q_u . t_i``, fixed: a learned one drifts towards the
#: learned part, which fits the training items better than it carries over to unseen ones
#: (amazon_office cold items: NDCG@10 0.0118 learned vs 0.0222 fixed at 20)
TEXT_MATCH_SCALE = 20.0


class M6Module(nn.Module):
    #: ``item_table(rows)`` computes only those rows, and ``encode(..., table=)`` reads them
    #: (`m6rec.models.sequential`: the sampled softmax's steps cost what the batch touches)
    item_rows = True
    """The ``m6`` network (see the module docstring); built by `M6.build_module`."""

    def __init__(self, item_text: np.ndarray, profile_text: np.ndarray, item_seen: np.ndarray,
                 max_len: int, hidden: int, n_layers: int, inner: int, dropout: float,
                 id_dropout: float, text_only: bool, n_events: int, tower: str = "gru",
                 text_match: int = 0, long_term: int = 0,
                 item_feats: np.ndarray | None = None, feat_mask: np.ndarray | None = None):
        super().__init__()
        self.tower = tower
        dim = item_text.shape[1]
        self.hidden, self.max_len = hidden, max_len
        self.text_only, self.id_dropout = text_only, id_dropout
        self.register_buffer("item_text", torch.as_tensor(item_text, dtype=torch.float32))
        self.register_buffer("profile_text", torch.as_tensor(profile_text, dtype=torch.float32))
        self.register_buffer("item_seen", torch.as_tensor(item_seen, dtype=torch.bool))
        self.adapter = nn.Sequential(nn.Linear(dim, 2 * hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(2 * hidden, hidden))
        self.skip = nn.Linear(dim, hidden, bias=False)
        if not text_only:
            self.id_emb = nn.Embedding(len(item_text), hidden)
            nn.init.normal_(self.id_emb.weight, std=hidden ** -0.5)
            self.gate = nn.Linear(2 * hidden, hidden)
        self.profile = nn.Linear(dim, hidden, bias=False)
        self.pos_emb = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.pos_emb.weight, std=hidden ** -0.5)
        self.gap_emb = nn.Embedding(N_GAP_BUCKETS, hidden)
        nn.init.zeros_(self.gap_emb.weight)
        self.event_emb = nn.Embedding(n_events, hidden)
        nn.init.zeros_(self.event_emb.weight)
        self.drop = nn.Dropout(dropout)
        if tower == "gru":
            self.gru = nn.GRU(hidden, inner, num_layers=n_layers, batch_first=True,
                              dropout=dropout if n_layers > 1 else 0.0)
            self.gru_out = nn.Linear(inner, hidden)
            self.blocks = nn.ModuleList()
        else:
            self.blocks = nn.ModuleList(Block(hidden, N_HEADS, inner, dropout, dropout)
                                        for _ in range(n_layers))
        self.norm = nn.LayerNorm(hidden)
        self.out_scale = nn.Parameter(torch.tensor(1.0))
        self.lm, self.lm_refresh, self._fresh = None, 64, None  # set by M6 for LM tuning
        if item_feats is None:
            item_feats = np.zeros((len(item_text), 0), np.float32)
        if feat_mask is None:
            feat_mask = np.zeros(len(item_text), bool)
        self.register_buffer("item_feats", torch.as_tensor(item_feats, dtype=torch.float32))
        self.register_buffer("feat_mask", torch.as_tensor(feat_mask, dtype=torch.bool))
        if self.item_feats.shape[1]:
            self.feat_proj = nn.Linear(self.item_feats.shape[1], hidden, bias=False)
            self.feat_gate = nn.Linear(2 * hidden, hidden)
        self.text_match = int(text_match)
        if self.text_match:
            # per recency position (newest first); the newest starts with the most weight
            self.match_w = nn.Parameter(-torch.arange(self.text_match, dtype=torch.float32) / 2)
            self.register_buffer("match_scale", torch.tensor(TEXT_MATCH_SCALE))
        self.long_term = int(long_term)
        if self.long_term:
            self.lt_proj = nn.Linear(hidden, hidden, bias=False)
            nn.init.zeros_(self.lt_proj.weight)

    # -- LM tuning (LoRA) ------------------------------------------------------------------------
    def begin_step(self, items: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Before a training step with LM adapters: write the last step's fresh encodings into
        the table, then re-encode (with gradients) up to ``lm_refresh`` of this step's items."""
        if self.lm is None:
            return
        if self._fresh is not None:
            rows, vecs = self._fresh
            self.item_text[rows] = vecs.detach()
        uniq = torch.unique(items[items < len(self.item_text)])
        if len(uniq) > self.lm_refresh:
            pick = torch.randperm(len(uniq), generator=generator)[: self.lm_refresh]
            uniq = uniq[pick.to(uniq.device)]
        self._fresh = (uniq, self.lm(uniq.cpu()).to(self.item_text.device))

    def _text(self) -> torch.Tensor:
        if self.lm is not None and self.training and self._fresh is not None:
            rows, vecs = self._fresh
            return self.item_text.index_put((rows,), vecs)
        return self.item_text

    # -- item side -------------------------------------------------------------------------------
    def set_catalogue(self, item_text: torch.Tensor, profile_text: torch.Tensor,
                      item_seen: torch.Tensor) -> None:
        """A catalogue read as text only (no ID or feature parts)."""
        self.item_text, self.profile_text, self.item_seen = item_text, profile_text, item_seen
        self.item_feats = item_text.new_zeros(len(item_text), self.item_feats.shape[1])
        self.feat_mask = torch.zeros(len(item_text), dtype=torch.bool, device=item_text.device)

    def text_vectors(self, text: torch.Tensor) -> torch.Tensor:
        """Item vectors of LM encodings ``text`` [n, D] read as text only (no ID part): the
        adapter's output, with the LM vector itself appended under ``text_match``."""
        return self._with_lm(self._adapted(text), text)

    def item_table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The vectors scored against [n_items, hidden] ([n_items, hidden + D] with
        ``text_match``: the frozen LM vector appended); ``rows`` (int64 [R]): those items' rows
        only, computed for them alone (a training step of the sampled softmax)."""
        text = self._text()
        if rows is not None:
            text = text[rows]
        return self._with_lm(self._learned_table(text, rows), text)

    def _adapted(self, text: torch.Tensor) -> torch.Tensor:
        return self.adapter(text) + self.skip(text)

    def _with_lm(self, v: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return torch.cat([v, text], dim=1) if self.text_match else v

    def _learned_table(self, text: torch.Tensor, rows: torch.Tensor | None = None
                       ) -> torch.Tensor:
        v = self._text_id_table(text, rows)
        if not self.item_feats.shape[1]:
            return v
        feats, on = ((self.item_feats, self.feat_mask) if rows is None
                     else (self.item_feats[rows], self.feat_mask[rows]))
        f = self.feat_proj(feats)
        h = torch.sigmoid(self.feat_gate(torch.cat([v, f], dim=1)))
        return v + h * f * on[:, None]

    def _text_id_table(self, text: torch.Tensor, rows: torch.Tensor | None = None
                       ) -> torch.Tensor:
        t = self._adapted(text)
        if self.text_only or len(self.item_seen) != self.id_emb.num_embeddings:
            return t  # text only, or a catalogue read as text only (`M6.bind`)
        keep = self.item_seen if rows is None else self.item_seen[rows]
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(len(keep), device=keep.device) >= self.id_dropout)
        e = (self.id_emb.weight if rows is None else self.id_emb(rows)) * keep[:, None]
        g = torch.sigmoid(self.gate(torch.cat([t, e], dim=1)))
        return t + g * e

    # -- user side -------------------------------------------------------------------------------
    def encode(self, items: torch.Tensor, mask: torch.Tensor,
               extras: dict[str, torch.Tensor] | None = None,
               table: torch.Tensor | None = None) -> torch.Tensor:
        """User states [B, L, d] at every position of right-aligned windows ``items``;
        ``table`` (default `item_table`) is the catalogue the items index into."""
        extras = extras or {}
        full, vecs, x = self._embed(items, mask, extras, table)
        if self.tower == "gru":
            h = gru_states(self.gru, self.gru_out, self.drop, x, mask) * self.out_scale
        else:
            h = self.norm(causal_blocks(self.blocks, x, mask)) * self.out_scale
        return self._finish(h, full, vecs, items, mask, extras)

    def encode_last(self, items: torch.Tensor, mask: torch.Tensor,
                    extras: dict[str, torch.Tensor] | None = None,
                    table: torch.Tensor | None = None,
                    groups: torch.Tensor | None = None) -> torch.Tensor:
        """``encode(...)[:, -1]``: the state at each row's newest item [B, d] (the user vector),
        computing the newest position only (the GRU stops at the batch's longest row).

        ``groups`` (int [B], GRU tower): rows with the same group id (one user's histories
        with one item removed each) run the GRU once over the inputs they share from the
        start of their windows, then each row on from that state: the same states, with the
        shared steps computed once instead of once per row."""
        extras = extras or {}
        if self.tower != "gru":
            return self.encode(items, mask, extras, table)[:, -1]
        full, vecs, x = self._embed(items, mask, extras, table)
        h = self.gru_out(self.drop(gru_last_shared(self.gru, x, mask, groups)))[:, None]
        return self._finish(h * self.out_scale, full, vecs, items, mask, extras, last=True)[:, 0]

    def _embed(self, items: torch.Tensor, mask: torch.Tensor, extras: dict[str, torch.Tensor],
               table: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(catalogue with its pad row, its first ``hidden`` columns, the tower's inputs)."""
        full = self.item_table() if table is None else table
        full = torch.cat([full, full.new_zeros(1, full.shape[1])])  # pad row
        vecs = full[:, :self.hidden]
        L = items.shape[1]
        pos = torch.arange(self.max_len - L, self.max_len, device=items.device)
        scale = 1.0 if self.tower == "gru" else math.sqrt(self.hidden)
        x = vecs[items] * scale + self.pos_emb(pos)[None]
        if "time_gaps" in extras:
            x = x + self.gap_emb(gap_buckets(extras["time_gaps"]))
        if "events" in extras:
            x = x + self.event_emb(extras["events"].clamp(0, self.event_emb.num_embeddings - 1))
        if "users" in extras:
            users = extras["users"][:, -1]  # the row's user (newest position is always real)
            known = (users >= 0) & (users < len(self.profile_text))
            prof = self.profile_text[users.clamp(min=0, max=max(len(self.profile_text) - 1, 0))]
            x = x + (self.profile(prof) * known[:, None])[:, None, :]
        return full, vecs, self.drop(x) * mask[..., None]

    def _finish(self, h: torch.Tensor, full: torch.Tensor, vecs: torch.Tensor,
                items: torch.Tensor, mask: torch.Tensor, extras: dict[str, torch.Tensor],
                last: bool = False) -> torch.Tensor:
        """The tower's states plus the long-term taste and the text query (``last``: ``h``
        holds the newest position only, [B, 1, d])."""
        if self.long_term:
            h = h + long_term(self.lt_proj, self.drop, vecs, items, mask, extras.get("older"),
                              self.long_term, last)
        if self.text_match:
            q = match_query(self.match_w, self.match_scale, items, mask, full[:, self.hidden:])
            h = torch.cat([h, q[:, -1:] if last else q], dim=-1)
        return h
