"""Scale-out on Ray: batch item encoding and batch top-k with Ray Data, data-parallel training
(DDP) of the sequential models with Ray Train's TorchTrainer.

Ray is optional (``pip install "m6rec[ray]"``) and imported only inside these functions. Every
entry point takes ``address``: ``None`` starts (or joins) a local Ray instance, a cluster address
(``ray://host:10001`` or ``host:6379``) runs the same code on that cluster.
"""

from __future__ import annotations

from typing import Any

INSTALL_HINT = 'pip install "m6rec[ray]"'


class RayNotInstalled(ValueError):
    """``--ray`` was asked for but Ray is not importable."""


def require_ray() -> Any:
    """The ``ray`` module, or `RayNotInstalled` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise RayNotInstalled(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from e
    return ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to Ray once: a running instance is reused; otherwise ``ray.init(address=...)``
    (a new local instance when ``address`` is None)."""
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None and num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(address=address, **kwargs)
    return ray


from m6rec.distributed.batch import batch_recommend  # noqa: E402
from m6rec.distributed.encode import encode_catalogue  # noqa: E402
from m6rec.distributed.train import fit_distributed  # noqa: E402

__all__ = ["INSTALL_HINT", "RayNotInstalled", "batch_recommend", "encode_catalogue",
           "ensure_ray", "fit_distributed", "require_ray"]
