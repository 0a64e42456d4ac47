"""Global magnitude pruning (Han et al., "Learning both Weights and Connections for Efficient
Neural Networks", NeurIPS 2015): the smallest-magnitude entries of all weight matrices together
are set to zero until ``sparsity`` of them are; a short fine-tuning then recovers accuracy with
the zeros held fixed. Pruned matrices are stored sparse (CSR: values, int16/int32 column
indices, row pointers)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def prunable(module: nn.Module) -> list[str]:
    """Names of the weight matrices pruning considers: every 2-D parameter (item and profile
    tables, embeddings, linear weights); biases, norms and scales stay dense."""
    return [n for n, p in module.named_parameters() if p.dim() == 2 and p.requires_grad]


def global_magnitude_masks(module: nn.Module, sparsity: float,
                           names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Zero the ``sparsity`` share of smallest |w| over ``names`` (default `prunable`) in place;
    return the keep masks (bool, same shapes)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    params = dict(module.named_parameters())
    names = prunable(module) if names is None else names
    if not names:
        return {}
    flat = torch.cat([params[n].detach().abs().flatten() for n in names])
    k = int(round(sparsity * flat.numel()))
    masks: dict[str, torch.Tensor] = {}
    if k == 0:
        return {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
    # rank entries so that exactly k are pruned, ties broken by position
    order = torch.argsort(flat, stable=True)
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[order[:k]] = False
    start = 0
    with torch.no_grad():
        for n in names:
            p = params[n]
            m = keep[start:start + p.numel()].view_as(p)
            start += p.numel()
            p.mul_(m.to(p.dtype))
            masks[n] = m
    return masks


def hold_zeros(module: nn.Module, masks: dict[str, torch.Tensor]) -> list:
    """Gradient hooks that keep pruned entries at zero under Adam (their gradient, and so
    their moments and updates, stay zero). Returns the hook handles."""
    params = dict(module.named_parameters())
    return [params[n].register_hook(lambda g, m=m: g * m.to(g.dtype)) for n, m in masks.items()]


def pack_csr(name: str, w: np.ndarray, values_dtype=np.float32) -> dict[str, np.ndarray]:
    """CSR state entries of a 2-D array (its zeros dropped)."""
    w = np.asarray(w)
    rows, cols = np.nonzero(w)
    idx_dtype = np.int16 if w.shape[1] <= np.iinfo(np.int16).max else np.int32
    indptr = np.zeros(w.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
    return {f"c.{name}.data": w[rows, cols].astype(values_dtype),
            f"c.{name}.indices": cols.astype(idx_dtype), f"c.{name}.indptr": indptr,
            f"c.{name}.shape": np.array(w.shape, dtype=np.int64)}


def unpack_csr(state: dict[str, np.ndarray], name: str) -> np.ndarray:
    shape = tuple(int(s) for s in state[f"c.{name}.shape"])
    out = np.zeros(shape, dtype=np.float32)
    indptr = state[f"c.{name}.indptr"].astype(np.int64)
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    out[rows, state[f"c.{name}.indices"].astype(np.int64)] = state[f"c.{name}.data"]
    return out


def sparsity_of(module: nn.Module, names: list[str] | None = None) -> float:
    params = dict(module.named_parameters())
    names = prunable(module) if names is None else names
    total = sum(params[n].numel() for n in names)
    zeros = sum(int((params[n] == 0).sum()) for n in names)
    return zeros / max(total, 1)
