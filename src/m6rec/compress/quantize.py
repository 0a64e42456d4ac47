"""8-bit and 16-bit storage: int8 dynamic quantisation of the user encoder's linear layers
(``torch.ao``, weights int8 per output channel, activations quantised on the fly) and int8 / fp16
item-vector and profile tables.

Weights are quantised once, here, and stored as int8 + scales; loading rebuilds the very same
quantised modules from those integers (no second rounding), so a saved model scores exactly as
the one that was compressed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TABLE_DTYPES = ("fp32", "fp16", "int8")
ENCODER_DTYPES = ("fp32", "int8")


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``w ~= q * scale[:, None]``; q int8 [n, d] in [-127, 127],
    scale float32 [n] (1 for all-zero rows)."""
    w = np.asarray(w, dtype=np.float32)
    scale = np.abs(w).max(axis=1) / 127.0 if w.size else np.ones(len(w), np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) * scale.astype(np.float32)[:, None]).astype(np.float32)


def pack_table(name: str, w: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """State entries of one table stored as ``dtype`` (fp32 | fp16 | int8)."""
    if dtype == "fp32":
        return {f"w.{name}": w.astype(np.float32)}
    if dtype == "fp16":
        return {f"h.{name}": w.astype(np.float16)}
    if dtype == "int8":
        q, s = quantize_rows(w)
        return {f"q.{name}": q, f"s.{name}": s}
    raise ValueError(f"table dtype must be one of {', '.join(TABLE_DTYPES)}, got {dtype!r}")


def linear_names(module: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` layers that dynamic quantisation replaces."""
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def quantize_linears(module: nn.Module, stored: dict[str, tuple[np.ndarray, np.ndarray]]
                     ) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` layers are ``torch.ao`` dynamic int8 linears
    with the given weights: ``stored[name] = (q int8 [out, in], scale float32 [out])``."""
    import warnings

    from torch.ao.nn.quantized import dynamic as nnqd
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch 2.13 flags its quantised tensors as deprecated
        warnings.simplefilter("ignore", UserWarning)
        qmod = quantize_dynamic(module, {nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8)
    layers = dict(qmod.named_modules())
    for name, (q, scale) in stored.items():
        layer = layers[name]
        if not isinstance(layer, nnqd.Linear):
            raise TypeError(f"{name}: expected a dynamic quantised linear, got {type(layer)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            qw = torch._make_per_channel_quantized_tensor(
                torch.from_numpy(np.ascontiguousarray(q)),
                torch.from_numpy(scale.astype(np.float64)),
                torch.zeros(len(scale), dtype=torch.int64), 0)
        layer.set_weight_bias(qw, layer.bias())
    return qmod.eval()
