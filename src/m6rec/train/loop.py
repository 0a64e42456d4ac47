"""The generic training loop of the torch models: device, seeding, shuffled mini-batches,
validation every few epochs, early stopping with the best weights kept in memory, progress.

Library code never seeds the caller's global RNGs (scikit-learn's rule): `seeded` forks torch's
global RNG state (module initialisation and dropout draw from it), seeds the fork and restores
the caller's state on exit; shuffling draws from a local `torch.Generator`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger("m6rec.train")

DEVICES = ("auto", "cpu", "cuda")

#: The data-parallel context of the training run in progress (None: one process). Set by
#: `m6rec.distributed.train` inside each Ray Train worker; it shards every mini-batch across the
#: workers, wraps the step in DDP and shares the validation score (see `data_parallel`).
_PARALLEL: contextvars.ContextVar[Any] = contextvars.ContextVar("m6rec_parallel", default=None)


#: Autocast dtype of the training steps run in progress (None: full precision), see
#: `mixed_precision`.
_AUTOCAST: contextvars.ContextVar[Any] = contextvars.ContextVar("m6rec_autocast", default=None)


@contextlib.contextmanager
def mixed_precision(dtype: str | None = "bf16") -> Iterator[None]:
    """Run the forward of every `train_epochs` step in this block under ``torch.autocast`` with
    ``dtype`` (``"bf16"``; None: off) on the module's device: the GPU fast path (parameters,
    optimizer and the ops autocast keeps in float32 stay float32). fp16 is not offered: it
    would need loss scaling."""
    import torch

    kinds = {None: None, "bf16": torch.bfloat16}
    if dtype not in kinds:
        raise ValueError(f"mixed precision must be bf16 or None, got {dtype!r}")
    token = _AUTOCAST.set(kinds[dtype])
    try:
        yield
    finally:
        _AUTOCAST.reset(token)


@contextlib.contextmanager
def data_parallel(context: Any) -> Iterator[None]:
    """Run `train_epochs` calls in this block data-parallel under ``context``, an object with
    ``wrap(module, step, validate) -> (step, validate)``, ``shard(idx) -> idx`` and
    ``mean(value) -> value``."""
    token = _PARALLEL.set(context)
    try:
        yield
    finally:
        _PARALLEL.reset(token)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cpu"``; ``"cuda"`` / ``"cuda:N"``."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine")
        return torch.device(name)
    raise ValueError(f"device must be one of {', '.join(DEVICES)} (or 'cuda:N'), got {device!r}")


@contextlib.contextmanager
def seeded(random_state: int, device: torch.device | None = None) -> Iterator[torch.Generator]:
    """Run a block with torch's global RNG seeded by ``random_state``, restored on exit.

    Yields a CPU `torch.Generator` seeded from ``random_state`` for shuffling."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(random_state))
        gen = torch.Generator()
        gen.manual_seed(int(random_state) + 1)
        yield gen


class EarlyStopping:
    """Stop after ``patience`` evaluations without a strict improvement of a higher-is-better
    score (RecBole's ``stopping_step``); the best weights are copied and kept in memory."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def step(self, score: float, epoch: int, module: nn.Module) -> bool:
        """Record an evaluation; True when training should stop."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self.bad = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self, module: nn.Module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


@dataclass
class TrainResult:
    """What `train_epochs` did: per-epoch records and the kept epoch (the last one when there
    was no validation)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float | None = None
    stopped_early: bool = False


def train_epochs(module: nn.Module, optimizer: torch.optim.Optimizer,
                 step: Callable[[torch.Tensor], torch.Tensor], n_examples: int, *,
                 epochs: int, batch_size: int, generator: torch.Generator,
                 validate: Callable[[], float] | None = None, eval_every: int = 1,
                 patience: int = 10, metric: str = "ndcg@10", clip_grad: float | None = None,
                 ema: float | None = None,
                 verbose: bool = False, desc: str = "training") -> TrainResult:
    """Train ``module`` for up to ``epochs`` passes over ``n_examples`` shuffled examples.

    Parameters
    ----------
    step : callable
        ``step(idx)`` gets a CPU int64 tensor of example indices and returns the mean loss of that
        mini-batch (a scalar tensor); the loop does ``zero_grad``, ``backward`` and ``step``.
    validate : callable, optional
        Returns the validation score (higher is better) of the current weights; called every
        ``eval_every`` epochs and after the last one. With it, training stops after ``patience``
        evaluations without improvement and the best weights are restored.
    clip_grad : float, optional
        Clip the gradients' global norm.
    ema : float, optional
        Keep an exponential moving average of the parameters (decay ``ema`` per step, warmed
        up as ``min(ema, (1 + n) / (10 + n))``); validation, early stopping and the returned
        weights use the average, training continues from the raw weights.
    verbose : bool
        Show a progress bar (only on a terminal) and log each epoch at INFO level.

    Returns
    -------
    TrainResult; ``history`` has one dict per epoch with ``epoch`` (1-based), ``loss`` (mean over
    mini-batches), ``train_seconds`` (the pass over the mini-batches), ``seconds`` (the epoch with
    its validation) and, when validated, ``valid_<metric>``.
    """
    result = TrainResult()
    parallel = _PARALLEL.get()
    if parallel is not None:
        step, validate = parallel.wrap(module, step, validate)
    amp = _AUTOCAST.get()
    if amp is not None:
        amp_step, dev_type = step, next(module.parameters()).device.type

        def step(idx: torch.Tensor) -> torch.Tensor:
            with torch.autocast(dev_type, dtype=amp):
                return amp_step(idx).float()

    stopper = EarlyStopping(patience) if validate is not None else None
    params = [p for p in module.parameters() if p.requires_grad]
    averaged = [p.detach().clone() for p in params] if ema else None
    n_updates = 0
    n_batches = max(1, math.ceil(n_examples / batch_size))
    with _progress(verbose, desc, epochs) as advance:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            module.train()
            order = torch.randperm(n_examples, generator=generator)
            total = 0.0
            for b in range(n_batches):
                idx = order[b * batch_size:(b + 1) * batch_size]
                if parallel is not None:
                    idx = parallel.shard(idx)
                optimizer.zero_grad(set_to_none=True)
                loss = step(idx)
                loss.backward()
                if clip_grad is not None:
                    nn.utils.clip_grad_norm_(module.parameters(), clip_grad)
                optimizer.step()
                if averaged is not None:
                    n_updates += 1
                    _ema_update(averaged, params,
                                min(float(ema), (1 + n_updates) / (10 + n_updates)))
                total += float(loss.detach())
            if parallel is not None:
                total = parallel.mean(total)
            record: dict[str, Any] = {"epoch": epoch, "loss": total / n_batches,
                                      "train_seconds": time.perf_counter() - t0}
            stop = False
            if stopper is not None and (epoch % eval_every == 0 or epoch == epochs):
                module.eval()
                with _swapped(params, averaged):
                    score = float(validate())
                    record[f"valid_{metric}"] = score
                    stop = stopper.step(score, epoch, module)
            record["seconds"] = time.perf_counter() - t0
            result.history.append(record)
            if verbose:
                log.info("%s epoch %d: %s", desc, epoch,
                         ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"))
            advance(record)
            if stop:
                result.stopped_early = True
                break
    module.eval()
    if stopper is not None:
        stopper.restore(module)
        result.best_epoch, result.best_score = stopper.best_epoch, stopper.best_score
    else:
        if averaged is not None:
            _copy(params, averaged)
        result.best_epoch = len(result.history)
    return result


def _ema_update(averaged: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    with torch.no_grad():
        for a, p in zip(averaged, params, strict=True):
            a.lerp_(p.detach(), 1.0 - decay)


@contextlib.contextmanager
def _swapped(params: list[torch.Tensor], averaged: list[torch.Tensor] | None) -> Iterator[None]:
    """Run a block with the averaged weights in ``params`` (no-op without an average), the raw
    ones put back on exit."""
    if averaged is None:
        yield
        return
    raw = [p.detach().clone() for p in params]
    _copy(params, averaged)
    try:
        yield
    finally:
        _copy(params, raw)


def _copy(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for d, s in zip(dst, src, strict=True):
            d.copy_(s)


@contextlib.contextmanager
def _progress(verbose: bool, desc: str, epochs: int) -> Iterator[Callable[[dict], None]]:
    """A Rich progress bar over epochs when ``verbose`` and stderr is a terminal, else a no-op."""
    if not (verbose and sys.stderr.isatty()):
        yield lambda record: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(desc, total=epochs, info="")

        def advance(record: dict) -> None:
            info = ", ".join(f"{k} {v:.4f}" for k, v in record.items()
                             if k in ("loss",) or k.startswith("valid_"))
            bar.update(task, advance=1, info=info)

        yield advance
