"""Distributed data-parallel training of the sequential models (``sasrec``, ``m6``, ...) with Ray
Train's ``TorchTrainer`` (PyTorch DDP; gloo on CPU workers, NCCL on GPU workers).

Every worker builds the same model from the same parameters and seed, so the initial weights,
the shuffled order of the training windows and any sampled negatives agree on all workers
(DDP also broadcasts rank 0's weights at the start). Each mini-batch of ``batch_size`` windows
is split across the workers (worker ``r`` takes rows ``r, r + N, ...``), so the global batch,
the number of steps per epoch and the epochs are those of single-process training; DDP averages
the gradients. Rank 0 validates and broadcasts the score, so every worker stops at the same
epoch and restores the same best weights. Rank 0 saves the model (``config.json`` +
``state.npz``) as the Ray Train checkpoint, which the driver loads: no pickled model.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from m6rec.data.dataset import Dataset


class TorchDDP:
    """The `m6rec.train.loop.data_parallel` context of one worker of a torch process group."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def wrap(self, module, step, validate):
        import torch
        from torch.nn.parallel import DistributedDataParallel

        runner = _step_module_class()(module, step)
        ddp = DistributedDataParallel(runner, find_unused_parameters=True,
                                      broadcast_buffers=False)

        def dstep(idx: torch.Tensor) -> torch.Tensor:
            return ddp(idx)

        if validate is None:
            return dstep, None

        def dvalidate() -> float:
            score = torch.tensor([float(validate()) if self.rank == 0 else 0.0],
                                 dtype=torch.float64)
            self.dist.broadcast(score, 0)
            return float(score[0])

        return dstep, dvalidate

    def shard(self, idx):
        return idx if len(idx) < self.world else idx[self.rank::self.world]

    def mean(self, value: float) -> float:
        import torch

        t = torch.tensor([float(value)], dtype=torch.float64)
        self.dist.all_reduce(t)
        return float(t[0]) / self.world


@functools.cache
def _step_module_class():
    from torch import nn

    class StepModule(nn.Module):
        """DDP needs a ``forward``: this one runs the training step of the wrapped module."""

        def __init__(self, inner: nn.Module, step):
            super().__init__()
            self.inner = inner
            self._step = step

        def forward(self, idx):
            return self._step(idx)

    return StepModule


def _train_worker(config: dict[str, Any]) -> None:
    """The Ray Train loop of one worker."""
    import ray
    import ray.train
    import torch

    from m6rec.registry import get_model_class
    from m6rec.train.loop import data_parallel

    torch.set_num_threads(int(config["threads"]))
    train_ds = ray.get(config["train"])
    valid = ray.get(config["valid"]) if config["valid"] is not None else None
    model = get_model_class(config["name"])(**config["params"])
    t0 = time.perf_counter()
    with data_parallel(TorchDDP()):
        if valid is not None:
            model.fit(train_ds, valid=valid)
        else:
            model.fit(train_ds)
    metrics = {"seconds": time.perf_counter() - t0, "best_epoch": int(model.best_epoch_),
               "history": json.dumps(model.history_)}
    if ray.train.get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as d:
            model.save(d)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)


def fit_distributed(model: Any, dataset: Dataset, valid: Any = None, *, workers: int = 2,
                    address: str | None = None, use_gpu: bool = False,
                    threads_per_worker: int = 1, storage_path: str | None = None) -> Any:
    """Fit ``model`` (a `m6rec.models.sequential.SequentialRecommender`) on ``dataset`` with
    ``workers`` Ray Train workers; returns the fitted model (loaded from rank 0's checkpoint)
    with ``history_`` and ``best_epoch_`` set, and ``fit_seconds_`` (workers' wall time).

    ``storage_path``: where Ray Train keeps the run and its checkpoint (default: a temporary
    local directory, fine for one machine; on a multi-node cluster give a shared path or a
    cloud URI every node can write)."""
    from m6rec.distributed import ensure_ray
    from m6rec.models.base import Recommender
    from m6rec.models.sequential import SequentialRecommender

    if not isinstance(model, SequentialRecommender):
        raise ValueError(f"--ray training supports the sequential torch models (sasrec, gru4rec, "
                         f"m6, ...), not {getattr(model, 'name', type(model).__name__)!r}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if getattr(model, "lm_lora_rank", 0):
        raise ValueError("--ray training does not support m6 with lm_lora_rank > 0 yet")
    ray = ensure_ray(address)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    config = {"name": model.name, "params": model.get_params(), "threads": threads_per_worker,
              "train": ray.put(dataset), "valid": ray.put(valid) if valid is not None else None}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = TorchTrainer(
            _train_worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": threads_per_worker}),
            run_config=RunConfig(name="m6rec-train", storage_path=storage_path or tmp))
        result = trainer.fit()
        if result.error is not None:
            raise result.error
        with result.checkpoint.as_directory() as d:
            fitted = Recommender.load(Path(d))
        metrics = result.metrics
    fitted.history_ = json.loads(metrics["history"])
    fitted.best_epoch_ = int(metrics["best_epoch"])
    fitted.fit_seconds_ = float(metrics["seconds"])
    return fitted
