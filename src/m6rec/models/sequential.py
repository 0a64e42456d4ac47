"""Base class of the next-item sequence models (GRU4Rec, SASRec, and the text model built on it).

Training examples come from each user's chronological training sequence: a window of
``max_len + 1`` items gives ``max_len`` inputs, and every position predicts the item after it
(causal; one forward pass per window). The last window ends at the user's last item; earlier
windows slide back by ``max_len``, so every item after a user's first is a target exactly once.
The loss is the cross-entropy over the whole catalogue (Klenitskiy & Vasilev, RecSys 2023), or a
sampled / in-batch softmax when the catalogue is larger than 20,000 items
(`m6rec.train.losses.CE_MAX_ITEMS`).

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
  (int64 user index of the row, -1 for an unknown user);
- optionally ``begin_step(items, generator)``, called before each training step with the
  step's item indices (e.g. to re-encode their texts with gradients), and a ``table=`` keyword
  of ``encode`` that reads items from that table instead of ``item_table()`` (text models: see
  `SequentialRecommender.user_vectors`).

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
from m6rec.models.base import Recommender
from m6rec.train.evalset import EvalSet
from m6rec.train.params import SEQUENTIAL, WEIGHT_AVERAGE, set_train_params

EXTRAS = ("timestamps", "time_gaps", "ratings", "events", "users")


class SequentialRecommender(Recommender):
    """Shared training and scoring of next-item models (see the module doc).

    Its parameters are the shared training ones of `m6rec.train.params` (``train_params``:
    ``max_len, hidden, dropout, epochs, batch_size, lr, patience, loss, device, random_state,
    verbose``); a subclass adds its own as keyword arguments and passes ``**train`` on.
    """

    uses_validation = True
    train_params: ClassVar[dict[str, Any]] = SEQUENTIAL
    retired_params: ClassVar[dict[str, Any]] = {
        "weight_decay": 0.0, "eval_every": 1, "n_negatives": 256, "temperature": 1.0,
        "ce_max_items": 20000, "mask_history": False}
    #: ``"left"``: pads before the items (newest item last); ``"right"``: pads after them.
    padding_side: ClassVar[str] = "left"
    #: Decay per step of the moving average of the weights that validation, early stopping
    #: and the fitted model use (`m6rec.train.loop.train_epochs` ``ema``); None: the raw
    #: weights.
    weight_average: ClassVar[float | None] = WEIGHT_AVERAGE
    #: Names from `EXTRAS` that ``encode`` reads.
    extras: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **train: Any):
        set_train_params(self, train)

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
                             "patience": 1}, positive=("lr",))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        resolve_device(self.device)

    # -- training --------------------------------------------------------------------------------
    def fit(self, dataset: Dataset, valid: EvalSet | None = None) -> SequentialRecommender:
        import torch

        from m6rec.train.loop import resolve_device, seeded, train_epochs
        from m6rec.train.losses import N_NEGATIVES, FullSoftmaxCE, choose_loss, sampled_softmax_ce
        from m6rec.train.validation import validation_ndcg

        self._check_params()
        device = resolve_device(self.device)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        self._prepare(dataset)
        items, targets, mask, extras = self.training_windows(dataset.histories())
        if not mask.any():
            raise ValueError("no user has two or more training interactions: nothing to learn")
        kind = choose_loss(self.loss, self.n_items_)
        full_softmax_ce = FullSoftmaxCE()
        x = torch.as_tensor(items, device=device)
        y = torch.as_tensor(targets, device=device)
        only = self._softmax_items()
        if only is not None:  # the softmax over a subset: targets re-indexed into it
            only = torch.as_tensor(only, dtype=torch.int64, device=device)
            into = torch.full((self.n_items_ + 1,), -1, dtype=torch.int64, device=device)
            into[only] = torch.arange(len(only), device=device)
            if (into[torch.as_tensor(targets[mask], device=device)] < 0).any():
                raise ValueError("a training target is outside the items of the softmax")
        m = torch.as_tensor(mask, device=device)
        ex = {k: torch.as_tensor(v, device=device) for k, v in extras.items()}
        validate = None
        if valid is not None and len(valid):
            def validate() -> float:
                return validation_ndcg(self, valid)

        with seeded(self.random_state, device) as gen:
            self.module_ = module = self.build_module().to(device)
            rows_only = getattr(module, "item_rows", False)
            opt = torch.optim.Adam(module.parameters(), lr=self.lr)
            begin_step = getattr(module, "begin_step", None)

            def step(idx: torch.Tensor) -> torch.Tensor:
                idx = idx.to(device)
                sel, xi = m[idx], x[idx]
                if begin_step is not None:  # e.g. re-encode this step's item texts with grads
                    begin_step(torch.cat([xi[sel], y[idx][sel]]), gen)
                exi = {k: v[idx] for k, v in ex.items()}
                if kind != "ce" and rows_only:
                    return sampled_step(module, self.n_items_, xi, sel, exi, y[idx][sel], only,
                                        gen)
                h = module.encode(xi, sel, exi)[sel]
                table, target = module.item_table(), y[idx][sel]
                if only is not None:
                    table, target = table[only], into[target]
                if kind == "ce":
                    soft = self._soft_targets(xi, sel, exi, sel)
                    if soft is not None and only is not None:
                        soft = soft[:, only]
                    loss = full_softmax_ce(h, target, table, soft=soft)
                else:
                    loss = sampled_softmax_ce(h, target, table, N_NEGATIVES, generator=gen)
                return loss

            res = train_epochs(module, opt, step, len(x), epochs=self.epochs,
                               batch_size=self.batch_size, generator=gen, validate=validate,
                               patience=self.patience, ema=self.weight_average,
                               verbose=self.verbose, desc=self.name or type(self).__name__)
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        return self

    def _soft_targets(self, items, mask, extras, rows):
        """Soft next-item targets [N, n_items] (>= 0; e.g. a teacher's distribution times its
        weight) added to the full-softmax loss at the trained positions ``rows`` [B, L] of a
        training mini-batch (inputs as for ``encode``), or None (the default)."""
        return None

    def training_windows(self, h: Histories, newest_only: bool = False
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Inputs, next-item targets, mask [W, max_len] and extras of every training window of
        ``h`` (``newest_only``: of each row's newest window only): the last window of a row
        ends at its newest item, earlier ones slide back by ``max_len``."""
        L = int(self.max_len)
        lengths = h.lengths
        n_win = np.where(lengths >= 2, -(-(lengths - 1) // L), 0)
        if newest_only:
            n_win = np.minimum(n_win, 1)
        row = np.repeat(np.arange(len(h)), n_win)
        k = np.arange(int(n_win.sum())) - np.repeat(np.cumsum(n_win) - n_win, n_win)
        end = lengths[row] - k * L  # exclusive local end of each window
        start = np.maximum(end - L - 1, 0)
        base = h.indptr[row]
        flat, valid = _right_aligned(base + start, base + end, L + 1)
        items = np.where(valid, h.items[flat], self.n_items_)
        mask = valid[:, :-1]
        inputs, targets = items[:, :-1], np.where(mask, items[:, 1:], 0)
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
                     extras: dict[str, np.ndarray], item_table=None, groups=None):
        """The encoder state at each row's newest item: the user vector (a torch tensor; the
        caller sets eval / inference mode). ``item_table``, ``groups``: see `user_vectors`."""
        import torch

        device = next(module.parameters()).device
        m = torch.as_tensor(mask, device=device)
        ex = {k: torch.as_tensor(v, device=device) for k, v in extras.items()}
        x = torch.as_tensor(inputs, device=device)
        if self.padding_side == "left" and hasattr(module, "encode_last"):
            table = None if item_table is None else torch.as_tensor(item_table, device=device)
            g = None if groups is None else torch.as_tensor(np.asarray(groups), device=device)
            if table is not None and getattr(module, "item_rows", False):
                # only the rows the histories read: a request costs its history, not the
                # catalogue (the service's table has every item, posted ones too)
                x, ex, rows = _rows_read(x, ex, len(table))
                table = table[rows]
            return module.encode_last(x, m, ex, table, g)
        if item_table is None:
            h = module.encode(x, m, ex)
        else:
            h = module.encode(x, m, ex, table=torch.as_tensor(item_table, device=device))
        if self.padding_side == "left":
            return h[:, -1]
        last = (m.sum(1) - 1).clamp(min=0)
        return h[torch.arange(len(h), device=device), last]

    @contextmanager
    def _inference(self):
        """The module in eval and inference mode for the block (its mode restored after).

        A module already in eval mode (a loaded model, the service's) is left alone: no
        per-call walk over its submodules, and threads scoring at once never see another
        one's mode switch."""
        import torch

        module = self.module_
        if not module.training:
            with torch.inference_mode():
                yield module
            return
        module.eval()
        try:
            with torch.inference_mode():
                yield module
        finally:
            module.train()

    def user_vectors(self, histories: Histories, item_table=None, groups=None) -> np.ndarray:
        """The user vectors that scores are dot products with, float32 [n, d]
        (``scores = user_vectors(h) @ item table.T``).

        ``item_table`` (float [m, d], m >= n_items; text models only): score against an
        extended catalogue, e.g. the service's with items posted since training (rows past
        ``n_items`` are new items, which ``histories`` may hold); inputs are read from it and
        padded at index ``m``. ``groups`` (int [n], optional): rows with one id are variants
        of one history (leave-one-out explanations); a network with ``encode_last`` computes
        what they share once (same vectors)."""
        self._check_fitted()
        inputs, mask, extras = self.model_inputs(histories)
        if item_table is not None:
            inputs = np.where(mask, inputs, len(item_table))
        with self._inference() as module:
            return self._encode_last(module, inputs, mask, extras, item_table,
                                     groups).float().cpu().numpy()

    def _score_rows(self, histories: Histories) -> np.ndarray:
        inputs, mask, extras = self.model_inputs(histories)
        with self._inference() as module:
            user = self._encode_last(module, inputs, mask, extras)
            scores = user @ module.item_table().T
        return scores.float().cpu().numpy()

    def model_inputs(self, h: Histories
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """What the network reads for each row of ``h``: its newest ``max_len`` items (int64
        [n, max_len], pads = ``n_items``), the mask of real items and the extras."""
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


def _into(rows: Any, t: Any, n: int, pad: int) -> Any:
    """Indices ``t`` into the catalogue (real: 0 <= t < n) as positions in the sorted ``rows``;
    anything else becomes ``pad``."""
    import torch

    real = (t >= 0) & (t < n)
    return torch.where(real, torch.searchsorted(rows, t.clamp(0, n - 1)), torch.full_like(t, pad))


def _rows_read(items: Any, extras: dict, n: int) -> tuple[Any, dict, Any]:
    """Windows ``items`` into a catalogue of ``n`` rows (pads = ``n``) and their ``older``
    extras re-indexed into the rows they read, and those rows (sorted): the same inputs for an
    encoder given the table of those rows."""
    import torch

    older = extras.get("older")
    seen = [items[items < n]] + ([older[older >= 0]] if older is not None else [])
    rows = torch.unique(torch.cat(seen))
    ex = dict(extras)
    if older is not None:
        ex["older"] = _into(rows, older, n, -1)
    return _into(rows, items, n, len(rows)), ex, rows


def sampled_step(module: Any, n: int, items: Any, sel: Any, extras: dict, target: Any,
                 only: Any, generator: Any) -> Any:
    """One sampled-softmax step of a module whose ``item_table(rows)`` computes only those
    rows: the inputs' table holds the items of the windows (and their ``older`` items), the
    output table the batch's targets and the negatives (drawn uniformly from ``only``, or from
    the catalogue), so a step costs what its batch touches, not the catalogue's size. The same
    loss as `m6rec.train.losses.sampled_softmax_ce` over the full table (the input and output
    tables are computed apart, as two ``item_table()`` calls are)."""
    import torch

    from m6rec.train.losses import N_NEGATIVES, sampled_softmax_ce

    pool = len(only) if only is not None else n
    neg = torch.randint(0, pool, (N_NEGATIVES,), generator=generator).to(target.device)
    if only is not None:
        neg = only[neg]
    x, ex, rows_in = _rows_read(items, extras, n)
    h = module.encode(x, sel, ex, table=module.item_table(rows_in))[sel]
    rows_out, inv = torch.unique(torch.cat([target, neg]), return_inverse=True)
    return sampled_softmax_ce(h, inv[:len(target)], module.item_table(rows_out),
                              negatives=inv[len(target):])
