"""ONNX export of a frozen ``m6`` encoder + scorer: inputs ``items, mask, time_gaps, events,
users`` (each [batch, max_len]) and, with the long-term term, ``older`` [batch, long_term];
output ``scores`` [batch, n_items]; the batch axis is dynamic."""

from __future__ import annotations

import io

import numpy as np

from m6rec.compress.inputs import feed_names

OPSET = 17


def export_onnx(module, max_len: int, n_items: int, opset: int = OPSET) -> bytes:
    """The serialised ONNX model of a float `FrozenM6` (TorchScript-based exporter)."""
    import warnings

    import torch

    module = module.eval()
    rng = np.random.default_rng(0)
    B = 2
    example = (torch.as_tensor(rng.integers(0, n_items, (B, max_len))),
               torch.ones(B, max_len, dtype=torch.bool),
               torch.zeros(B, max_len, dtype=torch.float32),
               torch.zeros(B, max_len, dtype=torch.int64),
               torch.zeros(B, max_len, dtype=torch.int64))
    names = feed_names(module.arch)
    if "older" in names:  # a few real older items and pads (-1)
        older = torch.as_tensor(rng.integers(0, n_items, (B, int(module.arch["long_term"]))))
        older[:, : older.shape[1] // 2] = -1
        example = (*example, older)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buf, input_names=list(names),
                          output_names=["scores"], opset_version=opset, dynamo=False,
                          dynamic_axes={k: {0: "batch"} for k in (*names, "scores")})
    return buf.getvalue()
