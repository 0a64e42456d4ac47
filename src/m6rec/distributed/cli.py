"""The library side of ``m6rec encode``, ``m6rec batch-recommend`` and ``m6rec train --ray``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from m6rec.data.dataset import Dataset


def train_on_ray(model: Any, dataset: Dataset, protocol: str, *, workers: int,
                 address: str | None) -> tuple[Any, float]:
    """Fit on ``protocol``'s training part (``all``: every interaction) with Ray Train DDP;
    returns the fitted model and the wall-clock seconds of the whole fit."""
    from m6rec.distributed import require_ray
    from m6rec.distributed.train import fit_distributed

    require_ray()
    t0 = time.perf_counter()
    if protocol == "all":
        fitted = fit_distributed(model, dataset, workers=workers, address=address,
                                 use_gpu=_use_gpu(model))
    else:
        from m6rec.eval.protocols import make_split

        split = make_split(dataset, protocol)
        fitted = fit_distributed(model, split.train, split.valid, workers=workers,
                                 address=address, use_gpu=_use_gpu(model))
    return fitted, time.perf_counter() - t0


def _use_gpu(model: Any) -> bool:
    """GPU workers when the model asks for CUDA (or ``auto`` finds it on the driver)."""
    device = str(getattr(model, "device", "cpu"))
    if device.startswith("cuda"):
        return True
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def encode_command(dataset: Dataset, encoder: str, budget: int, ray: bool, address: str | None,
                   workers: int, device: str, batch_size: int) -> dict[str, Any]:
    from m6rec.distributed.encode import encode_catalogue

    if ray:
        from m6rec.distributed import require_ray

        require_ray()
    if device == "auto":
        from m6rec.train.loop import resolve_device

        device = resolve_device("auto").type
    return {"dataset": dataset.name, **encode_catalogue(
        dataset, encoder, budget=budget, ray=ray, address=address, workers=workers,
        device=device, batch_size=batch_size, show_progress=True)}


def batch_recommend_command(model_dir: Path, dataset: Dataset, out: Path, k: int, ray: bool,
                            address: str | None, workers: int) -> dict[str, Any]:
    from m6rec.distributed.batch import batch_recommend
    from m6rec.models.io import load_model_dir

    if ray:
        from m6rec.distributed import require_ray

        require_ray()
    if out.suffix != ".parquet":
        raise ValueError(f"--out {out}: expected a .parquet file name")
    model, _ = load_model_dir(model_dir, dataset)
    t0 = time.perf_counter()
    frame = batch_recommend(model, dataset, k, ray=ray, address=address, workers=workers)
    seconds = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return {"out": str(out), "users": int(frame["user_id"].nunique()), "rows": len(frame),
            "seconds": round(seconds, 3), "ray": ray}
