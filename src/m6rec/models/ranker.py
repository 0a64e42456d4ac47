"""``ranker``: a DIN-style target-attention re-ranker of a retriever's top candidates.

Reference: G. Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018.
For a (history, candidate) pair, an activation unit weighs each history item by
``MLP([h, c, h - c, h * c])`` (no softmax, as in DIN), the weighted sum is the user's interest in
that candidate, and an MLP over ``[interest, c, interest * c, mean(history)]`` plus an item bias
gives the logit. Item vectors are an ID embedding plus the mean of the item's category
embeddings (genres, tags) when the catalogue has them; history items also get a recency
(position) embedding.

Two stages: ``fit`` fits (or loads) the retriever, then trains the ranker on each user's last
``per_user`` training interactions: the positive is the item, the history is what came before
it, negatives are ``n_hard`` items drawn from the retriever's top ``n_candidates`` for that
history (never one of the user's own training items) and ``n_random`` uniform items, redrawn
every epoch; the loss is the softmax cross-entropy of the positive against its negatives.
Early stopping watches the validation NDCG@10 of the re-ranked list.

At score time the retriever's top ``n_candidates`` (seen items excluded) are re-ranked by
``(1 - w) z(ranker) + w z(retriever)`` (per-row z-scores over the candidates; ``w`` chosen on
validation over 0, 0.1, ..., 1 when ``retriever_weight="auto"``, 0 without a validation set) and
placed above every other item; the others keep the retriever's order below them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from m6rec import metrics as M
from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.models.sequential import _require, _right_aligned, _take
from m6rec.ranking import topk
from m6rec.train.evalset import EvalSet
from m6rec.train.params import set_train_params, shared

_META = "retriever_json"


class Ranker(Recommender):
    """DIN re-ranker over a retriever (see the module doc).

    Parameters
    ----------
    retriever : str
        A model spec (``"ease"``, ``"sasrec(epochs=50)"``), fitted inside ``fit`` on the same
        data, or a saved model directory (``m6rec train --out DIR``), loaded.
    n_candidates : int
        Retriever items re-ranked per user (100).
    hidden, att_hidden, mlp_hidden : int
        Item-vector width, activation-unit width, output-MLP width.
    max_len : int
        Most recent history items attended to.
    use_categories : bool
        Add category / genre embeddings to the item vectors.
    n_hard, n_random : int
        Negatives per positive from the retriever's candidates and uniformly from the catalogue.
    per_user : int
        Training positives per user (the newest training interactions).
    epochs, batch_size, lr, weight_decay, dropout, patience : training (Adam; early stopping
        after ``patience`` validations without improvement, best weights kept).
    retriever_weight : "auto" or float in [0, 1]
        Weight of the retriever's score in the final order of the candidates.
    device : {"auto", "cpu", "cuda"}
    random_state : int
    verbose : bool
    """

    name = "ranker"
    uses_validation = True

    train_params = shared(dropout=0.1, epochs=30, batch_size=256, lr=1e-3, patience=3,
                          device="auto", random_state=0, verbose=False)

    def __init__(self, retriever: str = "ease", n_candidates: int = 100, hidden: int = 32,
                 att_hidden: int = 16, mlp_hidden: int = 64, max_len: int = 50,
                 use_categories: bool = True, n_hard: int = 10, n_random: int = 10,
                 per_user: int = 20, weight_decay: float = 0.0, retriever_weight: Any = "auto",
                 **train: Any):
        self.retriever = retriever
        self.n_candidates = n_candidates
        self.hidden = hidden
        self.att_hidden = att_hidden
        self.mlp_hidden = mlp_hidden
        self.max_len = max_len
        self.use_categories = use_categories
        self.n_hard = n_hard
        self.n_random = n_random
        self.per_user = per_user
        self.weight_decay = weight_decay
        self.retriever_weight = retriever_weight
        set_train_params(self, train)

    # -- parameters ------------------------------------------------------------------------------
    def _check_params(self) -> float | None:
        from m6rec.train.loop import resolve_device

        _require(self, ints={"n_candidates": 1, "hidden": 1, "att_hidden": 1, "mlp_hidden": 1,
                             "max_len": 1, "n_hard": 0, "n_random": 0, "per_user": 1,
                             "epochs": 1, "batch_size": 1, "patience": 1},
                 positive=("lr",), non_negative=("weight_decay",))
        if self.n_hard + self.n_random < 1:
            raise ValueError("n_hard + n_random must be >= 1 (the ranker needs negatives)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        resolve_device(self.device)
        if self.retriever_weight == "auto":
            return None
        try:
            w = float(self.retriever_weight)
        except (TypeError, ValueError):
            w = -1.0
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"retriever_weight must be 'auto' or a number in [0, 1], "
                             f"got {self.retriever_weight!r}")
        return w

    def _fit_retriever(self, dataset: Dataset, valid: EvalSet | None) -> Recommender:
        from m6rec.models.io import load_model_dir
        from m6rec.registry import build_model, parse_model_spec

        spec = str(self.retriever).strip()
        if not spec:
            raise ValueError("retriever must name a model spec or a saved model directory")
        if Path(spec).is_dir():
            model, _ = load_model_dir(spec, dataset)
            return model
        name, params = parse_model_spec(spec)
        if name == self.name:
            raise ValueError("a ranker cannot be its own retriever")
        model = build_model(name, **params)
        return model.fit(dataset, valid=valid) if model.uses_validation else model.fit(dataset)

    # -- training --------------------------------------------------------------------------------
    def fit(self, dataset: Dataset, valid: EvalSet | None = None) -> Ranker:
        import torch

        from m6rec.train.loop import resolve_device, seeded, train_epochs

        fixed_w = self._check_params()
        device = resolve_device(self.device)
        self.retriever_ = self._fit_retriever(dataset, valid)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        self.categories_ = self._category_features(dataset)
        hist, pos, hard = self._training_examples(dataset)
        if not len(pos):
            raise ValueError("no user has two or more training interactions: nothing to learn")
        x = torch.as_tensor(hist, device=device)
        y = torch.as_tensor(pos, device=device)
        hard_t = torch.as_tensor(hard, device=device)
        n_hard_avail = (hard_t >= 0).sum(1)
        val = self._candidates(valid.histories) if valid is not None and len(valid) else None
        self.retriever_weight_ = 0.0
        with seeded(self.random_state, device) as gen:
            self.module_ = module = self._build_module().to(device)
            opt = torch.optim.Adam(module.parameters(), lr=self.lr,
                                   weight_decay=self.weight_decay)
            n_items = self.n_items_

            def step(idx: torch.Tensor) -> torch.Tensor:
                idx = idx.to(device)
                negs = []
                if self.n_hard:
                    avail = n_hard_avail[idx].clamp(min=1)
                    pick = (torch.rand(len(idx), self.n_hard, generator=gen).to(device)
                            * avail[:, None]).long()
                    h = hard_t[idx].gather(1, pick)
                    rnd = torch.randint(0, n_items, h.shape, generator=gen).to(device)
                    negs.append(torch.where(h >= 0, h, rnd))
                if self.n_random:
                    negs.append(torch.randint(0, n_items, (len(idx), self.n_random),
                                              generator=gen).to(device))
                cand = torch.cat([y[idx, None], *negs], dim=1)
                logits = module(x[idx], cand)
                clash = cand[:, 1:] == cand[:, :1]  # a negative that is the positive itself
                logits[:, 1:] = logits[:, 1:].masked_fill(clash, float("-inf"))
                target = torch.zeros(len(idx), dtype=torch.long, device=device)
                return torch.nn.functional.cross_entropy(logits, target)

            validate = None
            if val is not None:
                def validate() -> float:
                    return self._valid_ndcg(valid, *val, weight=0.0)

            res = train_epochs(module, opt, step, len(x), epochs=int(self.epochs),
                               batch_size=int(self.batch_size), generator=gen,
                               validate=validate, patience=int(self.patience),
                               verbose=self.verbose, desc=self.name)
        self.history_, self.best_epoch_ = res.history, res.best_epoch
        self.grid_: list[dict[str, float]] | None = None
        if fixed_w is not None:
            self.retriever_weight_ = fixed_w
        elif val is not None:
            self.grid_ = [{"retriever_weight": w, "valid_ndcg@10": self._valid_ndcg(valid, *val, w)}
                          for w in np.round(np.linspace(0, 1, 11), 2).tolist()]
            self.retriever_weight_ = max(self.grid_, key=lambda g: g["valid_ndcg@10"]
                                         )["retriever_weight"]
        return self

    def _category_features(self, dataset: Dataset) -> np.ndarray:
        """Row-normalised multi-hot categories [n_items, n_categories] (width 0 when none)."""
        if not self.use_categories:
            return np.zeros((dataset.n_items, 0), np.float32)
        cats, vocab = dataset.category_matrix()
        if not vocab:
            return np.zeros((dataset.n_items, 0), np.float32)
        dense = np.asarray(cats.todense(), np.float32)
        return dense / np.maximum(dense.sum(1, keepdims=True), 1.0)

    def _training_examples(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded histories [E, max_len], positives [E] and the retriever's candidates for each
        example's history with the user's own training items removed (-1 padded) [E, K]."""
        h = dataset.histories()
        lengths = h.lengths
        n_pos = np.clip(lengths - 1, 0, int(self.per_user))
        row = np.repeat(np.arange(len(h)), n_pos)
        k = np.arange(int(n_pos.sum())) - np.repeat(np.cumsum(n_pos) - n_pos, n_pos)
        t = lengths[row] - n_pos[row] + k  # local position of each positive (>= 1)
        start = h.indptr[row]
        pos = h.items[start + t]
        prefixes = Histories(indptr=np.concatenate([[0], np.cumsum(t)]).astype(np.int64),
                             items=h.items[_ranges(start, t)],
                             users=np.full(len(row), -1, np.int64))
        cand, _ = self.retriever_.recommend(prefixes, k=int(self.n_candidates), exclude_seen=True)
        own = dataset.csr().tocoo()  # the user's own items are never negatives
        keys = np.sort(own.row.astype(np.int64) * self.n_items_ + own.col)
        query = h.users[row][:, None] * self.n_items_ + np.maximum(cand, 0)
        at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        is_own = keys[at] == query
        cand = np.where((cand >= 0) & ~is_own, cand, -1)
        order = np.argsort(cand < 0, axis=1, kind="stable")  # usable candidates first
        cand = np.take_along_axis(cand, order, axis=1)
        return self._pad(prefixes), pos.astype(np.int64), cand.astype(np.int64)

    def _pad(self, h: Histories) -> np.ndarray:
        """The newest ``max_len`` items of each row, right-aligned, pads = n_items."""
        L = int(self.max_len)
        flat, mask = _right_aligned(h.indptr[1:] - np.minimum(h.lengths, L), h.indptr[1:], L)
        return np.where(mask, _take(h.items, flat), self.n_items_).astype(np.int64)

    def _build_module(self) -> DIN:
        return DIN(self.n_items_, self.categories_, int(self.max_len), int(self.hidden),
                   int(self.att_hidden), int(self.mlp_hidden), float(self.dropout))

    # -- scoring ---------------------------------------------------------------------------------
    def _candidates(self, histories: Histories) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The retriever's dense scores [n, n_items], its top candidates [n, K] (seen items
        excluded, -1 padded) and their scores [n, K]."""
        full = np.nan_to_num(self.retriever_.score(histories).astype(np.float32),
                             nan=np.finfo(np.float32).min)
        s = full.copy()
        rows = np.repeat(np.arange(len(histories)), histories.lengths)
        s[rows, histories.items] = -np.inf
        ids, vals = topk(s, int(self.n_candidates))
        return full, ids, vals

    def ranker_logits(self, histories: Histories, candidates: np.ndarray) -> np.ndarray:
        """The ranker's logits [n, K] for per-row candidate items [n, K] (-1 entries get -inf)."""
        import torch

        module = self.module_
        device = next(module.parameters()).device
        was = module.training
        module.eval()
        try:
            with torch.inference_mode():
                x = torch.as_tensor(self._pad(histories), device=device)
                c = torch.as_tensor(np.maximum(candidates, 0), device=device)
                step = max(1, 4096 // max(1, c.shape[1]))  # bounds the [B, K, a, L] tensors
                out = (torch.cat([module(x[i:i + step], c[i:i + step])
                                  for i in range(0, len(x), step)]) if len(x)
                       else torch.zeros(c.shape)).float().cpu().numpy()
        finally:
            module.train(was)
        return np.where(candidates >= 0, out, -np.inf).astype(np.float32)

    def _blend(self, logits: np.ndarray, retr: np.ndarray, valid: np.ndarray,
               weight: float) -> np.ndarray:
        """``(1 - w) z(logits) + w z(retr)`` over each row's valid candidates (others -inf)."""
        def z(a: np.ndarray) -> np.ndarray:
            a = np.where(valid, a, 0.0).astype(np.float64)
            n = np.maximum(valid.sum(1, keepdims=True), 1)
            mean = a.sum(1, keepdims=True) / n
            sd = np.sqrt((np.where(valid, a - mean, 0.0) ** 2).sum(1, keepdims=True) / n)
            return np.where(sd > 0, (a - mean) / np.where(sd > 0, sd, 1), 0.0)

        out = (1.0 - weight) * z(logits) + weight * z(retr)
        return np.where(valid, out, -np.inf)

    def rerank(self, histories: Histories, weight: float | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Re-rank the retriever's candidates: returns ``(full_retriever_scores [n, n_items],
        candidates [n, K], retriever_scores [n, K], final_scores [n, K])``."""
        w = self.retriever_weight_ if weight is None else weight
        full, ids, vals = self._candidates(histories)
        valid = ids >= 0
        final = self._blend(self.ranker_logits(histories, ids), vals, valid, w)
        return full, ids, vals, final

    def _valid_ndcg(self, valid: EvalSet, full: np.ndarray, ids: np.ndarray, vals: np.ndarray,
                    weight: float) -> float:
        final = self._blend(self.ranker_logits(valid.histories, ids), vals, ids >= 0, weight)
        order = np.argsort(-final, axis=1, kind="stable")[:, :10]
        ranked = np.take_along_axis(ids, order, axis=1)
        ranked = np.where(np.take_along_axis(final, order, axis=1) > -np.inf, ranked, -1)
        return M.ranking_metrics(ranked, valid.targets, ks=(10,), metrics=("ndcg",))["ndcg@10"]

    def _score_rows(self, histories: Histories) -> np.ndarray:
        full, ids, _, final = self.rerank(histories)
        finite = np.isfinite(full)
        lo = np.where(finite, full, np.inf).min(1, keepdims=True)
        hi = np.where(finite, full, -np.inf).max(1, keepdims=True)
        span = np.where(hi > lo, hi - lo, 1.0)
        out = np.where(finite, (full - lo) / span, 0.0) - 3.0  # others: in [-3, -2]
        valid = ids >= 0
        f_lo = np.where(valid, final, np.inf).min(1, keepdims=True)
        f_hi = np.where(valid, final, -np.inf).max(1, keepdims=True)
        f01 = (final - f_lo) / np.where(f_hi > f_lo, f_hi - f_lo, 1.0)  # candidates: in [0, 1]
        r, c = np.nonzero(valid)
        out[r, ids[r, c]] = f01[r, c]
        return out.astype(np.float32)

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        r = self.retriever_
        meta = {"name": r.name, "params": r.get_params(), "n_items": int(r.n_items_),
                "n_users": int(r.n_users_)}
        state = {_META: np.frombuffer(json.dumps(meta, default=_jsonable).encode(), np.uint8),
                 "categories": self.categories_,
                 "retriever_weight": np.asarray([self.retriever_weight_], np.float64)}
        state.update({f"module.{k}": v.detach().cpu().numpy()
                      for k, v in self.module_.state_dict().items()})
        state.update({f"r.{k}": v for k, v in r.get_state().items()})
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        from m6rec.registry import build_model
        from m6rec.train.loop import resolve_device

        meta = json.loads(np.asarray(state[_META], np.uint8).tobytes().decode())
        r = build_model(meta["name"], **meta["params"])
        r.n_items_, r.n_users_ = int(meta["n_items"]), int(meta["n_users"])
        r.set_state({k[2:]: v for k, v in state.items() if k.startswith("r.")})
        self.retriever_ = r
        self.categories_ = np.asarray(state["categories"], np.float32)
        self.retriever_weight_ = float(np.asarray(state["retriever_weight"]).ravel()[0])
        module = self._build_module()
        module.load_state_dict({k[len("module."):]: torch.from_numpy(np.array(v))
                                for k, v in state.items() if k.startswith("module.")})
        self.module_ = module.to(resolve_device(self.device)).eval()


class DIN(nn.Module):
    """The scoring network: ``forward(history [B, L], candidates [B, K]) -> logits [B, K]``;
    history pads are ``n_items`` (right-aligned, newest item at position L - 1)."""

    def __init__(self, n_items: int, categories: np.ndarray, max_len: int, hidden: int,
                 att_hidden: int, mlp_hidden: int, dropout: float):
        super().__init__()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=n_items)
        nn.init.normal_(self.item_emb.weight, std=hidden ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()
        cats = torch.as_tensor(np.asarray(categories, np.float32))
        cats = torch.cat([cats, cats.new_zeros(1, cats.shape[1])])  # the pad row
        self.register_buffer("categories", cats, persistent=False)
        self.cat_proj = nn.Linear(cats.shape[1], hidden, bias=False) if cats.shape[1] else None
        self.pos_emb = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.pos_emb.weight, std=0.01)
        self.item_bias = nn.Embedding(n_items + 1, 1)
        nn.init.zeros_(self.item_bias.weight)
        # DIN's activation unit on [h, c, h - c, h * c], its first layer split by input part
        self.att_h = nn.Linear(hidden, att_hidden)
        self.att_c = nn.Linear(hidden, att_hidden, bias=False)
        self.att_hc = nn.Linear(hidden, att_hidden, bias=False)
        self.att_out = nn.Sequential(nn.ReLU(), nn.Linear(att_hidden, 1))
        self.mlp = nn.Sequential(nn.Linear(4 * hidden, mlp_hidden), nn.PReLU(),
                                 nn.Dropout(dropout), nn.Linear(mlp_hidden, 1))

    def items(self, idx: torch.Tensor) -> torch.Tensor:
        v = self.item_emb(idx)
        if self.cat_proj is not None:
            v = v + self.cat_proj(self.categories[idx])
        return v

    def forward(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        mask = history != self.n_items  # [B, L]
        L = history.shape[1]
        h = self.items(history) + self.pos_emb.weight[-L:][None] * mask[..., None]  # [B, L, d]
        c = self.items(candidates)  # [B, K, d]
        # [h, c, h - c, h * c] @ W == h @ (W_h + W_d) + c @ (W_c - W_d) + (h * c) @ W_p:
        # the first two parts are computed once per history item / candidate
        # ((h * c) @ W_p)[k, l, a] = h_l . (c_k * W_p[a]): one batched matmul, layout [B, K, a, L]
        B, K, d = c.shape
        wp = self.att_hc.weight  # [a, d]
        prod = torch.bmm((c[:, :, None, :] * wp).reshape(B, -1, d), h.transpose(1, 2))
        pre = (prod.view(B, K, wp.shape[0], L) + self.att_h(h).transpose(1, 2)[:, None]
               + self.att_c(c)[..., None])  # [B, K, a, L]
        out = self.att_out[1]
        weight = torch.einsum("bkal,a->bkl", self.att_out[0](pre), out.weight[0]) + out.bias
        weight = weight * mask[:, None]  # [B, K, L], no softmax (DIN)
        interest = weight @ h  # [B, K, d]
        n = mask.sum(1, keepdim=True).clamp(min=1)
        mean = ((h * mask[..., None]).sum(1) / n)[:, None].expand_as(c)
        x = torch.cat([interest, c, interest * c, mean], dim=-1)
        return self.mlp(x)[..., 0] + self.item_bias(candidates)[..., 0]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each (start, length)."""
    total = int(lengths.sum())
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return (np.arange(total) + offsets).astype(np.int64)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in the retriever's parameters")
