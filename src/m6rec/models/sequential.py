"""Base class of the next-item sequence models (GRU4Rec, SASRec, and the text model built on it).

Training examples come from each user's chronological training sequence: a window of
``max_len + 1`` items gives ``max_len`` inputs, and every position predicts the item after it
(causal; one forward pass per window). The last window ends at the user's last item; earlier
windows slide back by ``max_len``, so every item after a user's first is a target exactly once.
The loss is the cross-entropy over the whole catalogue (Klenitskiy & Vasilev, RecSys 2023), or a
sampled / in-batch softmax when the catalogue is larger than ``ce_max_items``.

A subclass implements `build_module`, returning a ``torch.nn.Module`` with

- ``item_table() -> Tensor [n_items, d]``: the item embeddings scored against (and usually the
  input embeddings too); it may be computed, e.g. from text features;
- ``encode(items, mask, extras) -> Tensor [B, L, d]``: the hidden state at every position.
  ``items`` [B, L] int64 holds item indices, with pads set to ``n_items`` (so
  ``nn.Embedding(n_items + 1, d, padding_idx=n_items)`` reads it directly); ``mask`` [B, L] bool
  is True at real items; ``extras`` maps each name in the class's ``extras`` to a tensor [B, L]
  aligned with ``items`` (0 at pads): ``timestamps`` (float64 unix seconds, NaN unknown),
  ``time_gaps`` (float32 seconds since the previous interaction, 0 for the first / unknown),
  ``ratings`` (float32, 0 when absent), ``events`` (int64 codes, 0 when absent), ``users``
  (int64 user index of the row, -1 for an unknown user).
- optionally ``aux_loss(items, mask, extras, hidden, generator) -> Tensor | None``: an extra
  training term for the same mini-batch (inputs as for ``encode``; ``hidden`` = the step's own
  ``encode`` output [B, L, d], so a head on it needs no second pass), added to the next-item
  loss when not None (e.g. a self-supervised contrastive term, a rating head); modules without
  it train exactly as before.

Sequences are right-aligned (pads on the left, the newest item at position L - 1) when
``padding_side = "left"``, or left-aligned when ``"right"`` (recurrent models, whose states at
real items then never see a pad); the user vector is the state at the newest item. Scoring always
pads to ``max_len``, so a row's scores never depend on the other rows of the batch.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.eval.protocols import EvalSet
from m6rec.models.base import Recommender

EXTRAS = ("timestamps", "time_gaps", "ratings", "events", "users")


class SequentialRecommender(Recommender):
    """Shared hyper-parameters, training and scoring of next-item models (see the module doc).

    Parameters
    ----------
    max_len : int
        Most recent interactions read per user (RecBole's ``MAX_ITEM_LIST_LENGTH``, 50).
    hidden : int
        Width of the item embeddings and of the user state.
    dropout : float
        Dropout rate (embeddings and hidden layers).
    epochs : int
        Most passes over the training windows.
    batch_size : int
        Training windows per step; also the users scored at once.
    lr, weight_decay : float
        Adam's learning rate and L2 penalty.
    patience : int
        Validations without improvement of NDCG@10 before stopping (best weights are restored).
    eval_every : int
        Epochs between validations.
    loss : {"auto", "ce", "sampled"}
        Full-softmax cross-entropy, sampled / in-batch softmax, or CE up to ``ce_max_items``.
    n_negatives : int
        Uniform negatives per step of the sampled loss (added to the in-batch targets).
    temperature : float
        Softmax temperature of the sampled loss.
    ce_max_items : int
        Largest catalogue trained with the full softmax under ``loss="auto"``.
    mask_history : bool
        With the full softmax, drop the items earlier in the training window (the user's known
        history at that step) from each position's softmax: recommendations never repeat seen
        items, so they should not compete with the next item in training either.
    device : {"auto", "cpu", "cuda"}
        Where to train and score; ``auto`` picks CUDA when present.
    random_state : int
        Seeds initialisation, dropout and shuffling (the caller's global RNG is left untouched).
    verbose : bool
        Progress bar and per-epoch log lines.
    """

    uses_validation = True
    #: ``"left"``: pads before the items (newest item last); ``"right"``: pads after them.
    padding_side: ClassVar[str] = "left"
    #: Names from `EXTRAS` that ``encode`` reads.
    extras: ClassVar[tuple[str, ...]] = ()

    def __init__(self, max_len: int = 50, hidden: int = 64, dropout: float = 0.2,
                 epochs: int = 200, batch_size: int = 128, lr: float = 1e-3,
                 weight_decay: float = 0.0, patience: int = 10, eval_every: int = 1,
                 loss: str = "auto", n_negatives: int = 256, temperature: float = 1.0,
                 ce_max_items: int = 20000, mask_history: bool = False, device: str = "auto",
                 random_state: int = 0, verbose: bool = False):
        self.max_len = max_len
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.eval_every = eval_every
        self.loss = loss
        self.n_negatives = n_negatives
        self.temperature = temperature
        self.ce_max_items = ce_max_items
        self.mask_history = mask_history
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- subclass hooks --------------------------------------------------------------------------
    def build_module(self) -> Any:
        """A fresh ``torch.nn.Module`` with ``item_table()`` and ``encode(items, mask, extras)``;
        it may read ``self.n_items_`` and anything `_prepare` stored."""
        raise NotImplementedError

    def _prepare(self, dataset: Dataset) -> None:
        """Called by ``fit`` before `build_module` (e.g. to compute item features); state that
        `build_module` needs after ``load`` must be saved by overriding ``_state``."""

    def _softmax_items(self) -> np.ndarray | None:
        """Item indices the training softmax runs over (None: the whole catalogue); called
        after `_prepare`. Every training target must be among them."""
        return None

    def _check_params(self) -> None:
        """Raise ValueError on invalid hyper-parameters (extend in subclasses)."""
        from m6rec.train.loop import resolve_device
        from m6rec.train.losses import LOSSES

        _require(self, ints={"max_len": 1, "hidden": 1, "epochs": 1, "batch_size": 1,
                             "patience": 1, "eval_every": 1, "n_negatives": 1,
                             "ce_max_items": 1},
                 positive=("lr", "temperature"), non_negative=("weight_decay",))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        resolve_device(self.device)

    # -- training --------------------------------------------------------------------------------
    def fit(self, dataset: Dataset, valid: EvalSet | None = None) -> SequentialRecommender:
        import torch

        from m6rec.eval.evaluate import evaluate
        from m6rec.train.loop import resolve_device, seeded, train_epochs
        from m6rec.train.losses import FullSoftmaxCE, choose_loss, sampled_softmax_ce

        self._check_params()
        device = resolve_device(self.device)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        self._prepare(dataset)
        items, targets, mask, extras = self._training_windows(dataset.histories())
        if not mask.any():
            raise ValueError("no user has two or more training interactions: nothing to learn")
        kind = choose_loss(self.loss, self.n_items_, self.ce_max_items)
        full_softmax_ce = FullSoftmaxCE()
        x = torch.as_tensor(items, device=device)
        y = torch.as_tensor(targets, device=device)
        only = self._softmax_items()
        if only is not None:  # the softmax over a subset: targets re-indexed into it
            only = torch.as_tensor(only, dtype=torch.int64, device=device)
            into = torch.full((self.n_items_ + 1,), -1, dtype=torch.int64, device=device)
            into[only] = torch.arange(len(only), device=device)
            if (into[torch.as_tensor(targets[mask & (targets >= 0)], device=device)] < 0).any():
                raise ValueError("a training target is outside the items of the softmax")
        m = torch.as_tensor(mask, device=device)
        ex = {k: torch.as_tensor(v, device=device) for k, v in extras.items()}
        validate = None
        if valid is not None and len(valid):
            def validate() -> float:
                return evaluate(self, valid, ks=(10,), metrics=("ndcg",),
                                beyond_accuracy=False)["ndcg@10"]

        with seeded(self.random_state, device) as gen:
            self.module_ = module = self.build_module().to(device)
            opt = torch.optim.Adam(module.parameters(), lr=self.lr,
                                   weight_decay=self.weight_decay)
            begin_step = getattr(module, "begin_step", None)
            aux_loss = getattr(module, "aux_loss", None)  # opt-in extra term (e.g. m6's)

            def step(idx: torch.Tensor) -> torch.Tensor:
                idx = idx.to(device)
                sel, xi = m[idx], x[idx]
                if begin_step is not None:  # e.g. re-encode this step's item texts with grads
                    begin_step(torch.cat([xi[sel], y[idx][sel]]), gen)
                exi = {k: v[idx] for k, v in ex.items()}
                hidden = module.encode(xi, sel, exi)
                yi = y[idx]
                trained = sel & (yi >= 0)  # overlapping windows: inputs-only positions out
                h = hidden[trained]
                table, target = module.item_table(), yi[trained]
                if only is not None:
                    table, target = table[only], into[target]
                if kind == "ce":
                    exclude = _history_pairs(xi, sel, trained) if self.mask_history else None
                    if exclude is not None and only is not None:
                        rows, cols = exclude[0], into[exclude[1]]
                        exclude = (rows[cols >= 0], cols[cols >= 0])
                    soft = self._soft_targets(xi, sel, exi, trained)
                    if soft is not None and only is not None:
                        soft = soft[:, only]
                    loss = full_softmax_ce(h, target, table, exclude=exclude, soft=soft)
                else:
                    loss = sampled_softmax_ce(h, target, table, self.n_negatives,
                                              self.temperature, generator=gen)
                if aux_loss is not None:
                    aux = aux_loss(xi, sel, exi, hidden, gen)
                    if aux is not None:
                        loss = loss + aux
                return loss

            res = train_epochs(module, opt, step, len(x), epochs=self.epochs,
                               batch_size=self.batch_size, generator=gen, validate=validate,
                               eval_every=self.eval_every, patience=self.patience,
                               verbose=self.verbose, desc=self.name or type(self).__name__)
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        return self

    def _soft_targets(self, items, mask, extras, rows):
        """Soft next-item targets [N, n_items] (>= 0; e.g. a teacher's distribution times its
        weight) added to the full-softmax loss at the trained positions ``rows`` [B, L] of a
        training mini-batch (inputs as for ``encode``), or None (the default)."""
        return None

    def _window_stride(self) -> int:
        """Items between the ends of a row's consecutive training windows (``max_len``: no
        overlap; a subclass may overlap them, see `_training_windows`)."""
        return int(self.max_len)

    def _training_windows(self, h: Histories, newest_only: bool = False,
                          stride: int | None = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Inputs, next-item targets, mask [W, max_len] and extras of every training window
        (``newest_only``: of each row's newest window only). Windows end every ``stride``
        items (default `_window_stride`); when they overlap (``stride < max_len``) each target
        is trained once, in the window where it has the longest context (the window's last
        ``stride`` positions): its other positions are inputs only, with target -1."""
        L = int(self.max_len)
        S = int(stride or self._window_stride())
        lengths = h.lengths
        n_win = np.where(lengths >= 2, -(-(lengths - 1) // S), 0)
        if newest_only:
            n_win = np.minimum(n_win, 1)
        row = np.repeat(np.arange(len(h)), n_win)
        k = np.arange(int(n_win.sum())) - np.repeat(np.cumsum(n_win) - n_win, n_win)
        end = lengths[row] - k * S  # exclusive local end of each window
        start = np.maximum(end - L - 1, 0)
        base = h.indptr[row]
        flat, valid = _right_aligned(base + start, base + end, L + 1)
        items = np.where(valid, h.items[flat], self.n_items_)
        mask = valid[:, :-1]
        inputs, targets = items[:, :-1], np.where(mask, items[:, 1:], 0)
        if S < L and not newest_only:  # a target's longest context is in the oldest window
            targets[:, : L - S] = np.where(mask[:, : L - S], -1, 0)
        extras = {name: np.where(mask, v[flat[:, :-1]], 0).astype(v.dtype)
                  for name, v in self._flat_extras(h).items()}
        if self._older_len():
            extras["older"] = self._older(h, row, base + start)
        return self._align(inputs, targets, mask, extras)

    def _older_len(self) -> int:
        """How many items from before each window a subclass reads (0: none); they come as
        the extra ``older`` [B, C]: the newest ``C`` items before the window's first, right-
        aligned, pads = -1 (not ``n_items``: a live catalogue may have grown past it)."""
        return 0

    def _older(self, h: Histories, rows: np.ndarray, firsts: np.ndarray) -> np.ndarray:
        """The extra ``older`` of windows of rows ``rows`` that start at flat positions
        ``firsts``."""
        C = int(self._older_len())
        starts = np.maximum(firsts - C, h.indptr[rows])
        flat, valid = _right_aligned(starts, firsts, C)
        return np.where(valid, _take(h.items, flat), -1).astype(np.int64)

    # -- scoring ---------------------------------------------------------------------------------
    def _encode_last(self, module, inputs: np.ndarray, mask: np.ndarray,
                     extras: dict[str, np.ndarray]):
        """The encoder state at each row's newest item: the user vector (a torch tensor; the
        caller sets eval / inference mode)."""
        import torch

        device = next(module.parameters()).device
        m = torch.as_tensor(mask, device=device)
        h = module.encode(torch.as_tensor(inputs, device=device), m,
                          {k: torch.as_tensor(v, device=device) for k, v in extras.items()})
        if self.padding_side == "left":
            return h[:, -1]
        last = (m.sum(1) - 1).clamp(min=0)
        return h[torch.arange(len(h), device=device), last]

    @contextmanager
    def _inference(self):
        """The module in eval and inference mode for the block (its mode restored after)."""
        import torch

        module = self.module_
        was_training = module.training
        module.eval()
        try:
            with torch.inference_mode():
                yield module
        finally:
            module.train(was_training)

    def user_vectors(self, histories: Histories) -> np.ndarray:
        """The user vectors that scores are dot products with, float32 [n, hidden]
        (``scores = user_vectors(h) @ item table.T``)."""
        self._check_fitted()
        inputs, mask, extras = self._inputs(histories)
        with self._inference() as module:
            return self._encode_last(module, inputs, mask, extras).float().cpu().numpy()

    def _score_rows(self, histories: Histories) -> np.ndarray:
        inputs, mask, extras = self._inputs(histories)
        with self._inference() as module:
            user = self._encode_last(module, inputs, mask, extras)
            scores = user @ module.item_table().T
        return scores.float().cpu().numpy()

    def _inputs(self, h: Histories) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The newest ``max_len`` items of each row, padded to ``max_len``, and their extras."""
        L = int(self.max_len)
        flat, mask = _right_aligned(h.indptr[1:] - np.minimum(h.lengths, L), h.indptr[1:], L)
        items = np.where(mask, _take(h.items, flat), self.n_items_)
        extras = {name: np.where(mask, _take(v, flat), 0).astype(v.dtype)
                  for name, v in self._flat_extras(h).items()}
        if self._older_len():
            extras["older"] = self._older(h, np.arange(len(h)),
                                          h.indptr[1:] - np.minimum(h.lengths, L))
        items, _, mask, extras = self._align(items, None, mask, extras)
        return items, mask, extras

    def _align(self, items, targets, mask, extras):
        """Move the pads of right-aligned rows to the end when ``padding_side == "right"``."""
        if self.padding_side == "left":
            return items, targets, mask, extras
        if self.padding_side != "right":
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        width = mask.shape[1]
        shift = (np.arange(width)[None, :] + (width - mask.sum(1))[:, None]) % width

        def roll(a):
            return None if a is None else np.take_along_axis(a, shift, axis=1)

        return (roll(items), roll(targets), roll(mask),
                {k: v if k == "older" else roll(v) for k, v in extras.items()})

    def _flat_extras(self, h: Histories) -> dict[str, np.ndarray]:
        """The requested extras, aligned with ``h.items``."""
        out: dict[str, np.ndarray] = {}
        n = len(h.items)
        for name in self.extras:
            if name == "timestamps":
                out[name] = (h.timestamps if h.timestamps is not None
                             else np.full(n, np.nan)).astype(np.float64)
            elif name == "time_gaps":
                ts = h.timestamps if h.timestamps is not None else np.full(n, np.nan)
                gaps = np.diff(ts, prepend=np.nan)
                gaps[h.indptr[:-1][h.lengths > 0]] = 0.0  # each row's first interaction
                out[name] = np.nan_to_num(gaps, nan=0.0).astype(np.float32)
            elif name == "ratings":
                out[name] = (h.ratings if h.ratings is not None
                             else np.zeros(n)).astype(np.float32)
            elif name == "events":
                out[name] = (h.events if h.events is not None
                             else np.zeros(n)).astype(np.int64)
            elif name == "users":  # the row's user index (-1 unknown) at every interaction
                out[name] = np.repeat(h.users, h.lengths).astype(np.int64)
            else:
                raise ValueError(f"unknown extra {name!r} (choose from {', '.join(EXTRAS)})")
        return out

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {f"module.{k}": v.detach().cpu().numpy()
                for k, v in self.module_.state_dict().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        from m6rec.train.loop import resolve_device, seeded

        device = resolve_device(self.device)
        with seeded(self.random_state, device):
            module = self.build_module()
        weights = {k[len("module."):]: torch.from_numpy(np.array(v))
                   for k, v in state.items() if k.startswith("module.")}
        module.load_state_dict(weights)
        self.module_ = module.to(device).eval()


def _history_pairs(items, mask, rows=None):
    """(rows, items) of every item at or before each position in ``rows`` (default ``mask``)
    of its window: ``rows`` number those positions in row-major order, as ``hidden[rows]``
    does."""
    import torch

    rows = mask if rows is None else rows
    L = items.shape[1]
    tri = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()  # [p, q]: q <= p
    pairs = tri[None] & rows[:, :, None] & mask[:, None, :]  # [B, p, q]
    row_id = (torch.cumsum(rows.reshape(-1).long(), 0) - 1).view(rows.shape)
    b, p, q = pairs.nonzero(as_tuple=True)
    return row_id[b, p], items[b, q]


def _right_aligned(starts: np.ndarray, ends: np.ndarray, width: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices [n, width] of each segment ``[start, end)`` (``end - start <= width``) placed
    at the right end of its row, and the mask of real entries (index 0 at pads)."""
    j = np.arange(width)[None, :]
    first = (ends - starts)[:, None]
    valid = j >= width - first
    flat = np.where(valid, starts[:, None] + j - (width - first), 0)
    return flat.astype(np.int64), valid


def _take(values: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``values[flat]``, also when ``values`` is empty (then every entry is a pad)."""
    return values[flat] if len(values) else np.zeros(flat.shape, values.dtype)


def _require(model: Any, ints: dict[str, int], positive: tuple[str, ...] = (),
             non_negative: tuple[str, ...] = ()) -> None:
    for key, low in ints.items():
        v = getattr(model, key)
        if isinstance(v, bool) or int(v) != v or v < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {v!r}")
    for key in positive:
        if not getattr(model, key) > 0:
            raise ValueError(f"{key} must be > 0, got {getattr(model, key)!r}")
    for key in non_negative:
        if not getattr(model, key) >= 0:
            raise ValueError(f"{key} must be >= 0, got {getattr(model, key)!r}")
