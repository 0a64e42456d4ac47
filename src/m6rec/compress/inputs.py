"""Histories -> the arrays a frozen ``m6`` encoder reads (NumPy only: the onnxruntime model
imports this without torch)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from m6rec.data.histories import Histories
from m6rec.models.sequential import SequentialRecommender

#: input names of the frozen encoder, in order
FEEDS = ("items", "mask", "time_gaps", "events", "users")


class M6Inputs:
    """Mixin: the input windows of `SequentialRecommender` (newest ``max_len`` items, pads on
    the left at index ``n_items``) for a model whose architecture dict is ``arch_``."""

    padding_side: ClassVar[str] = "left"
    extras: ClassVar[tuple[str, ...]] = ("time_gaps", "events", "users")
    arch_: dict[str, Any]
    n_items_: int

    _inputs = SequentialRecommender._inputs
    _align = SequentialRecommender._align
    _flat_extras = SequentialRecommender._flat_extras
    _training_windows = SequentialRecommender._training_windows
    _window_stride = SequentialRecommender._window_stride
    _older_len = SequentialRecommender._older_len
    _older = SequentialRecommender._older

    @property
    def max_len(self) -> int:
        return int(self.arch_["max_len"])

    def feeds(self, histories: Histories) -> dict[str, np.ndarray]:
        """``{items int64, mask bool, time_gaps float32, events int64, users int64}``, each
        [n, max_len]."""
        items, mask, extras = self._inputs(histories)
        return {"items": items.astype(np.int64), "mask": mask.astype(bool),
                "time_gaps": extras["time_gaps"].astype(np.float32),
                "events": extras["events"].astype(np.int64),
                "users": extras["users"].astype(np.int64)}
