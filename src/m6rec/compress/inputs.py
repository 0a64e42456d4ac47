"""Histories -> the arrays a frozen ``m6`` encoder reads (NumPy only: the onnxruntime model
imports this without torch)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from m6rec.data.histories import Histories
from m6rec.models.sequential import SequentialRecommender

#: input names of the frozen encoder, in order (``older`` only with the long-term term)
FEEDS = ("items", "mask", "time_gaps", "events", "users", "older")


def feed_names(arch: dict[str, Any]) -> tuple[str, ...]:
    """The inputs of a frozen encoder of architecture ``arch``, in order."""
    return FEEDS if int(arch.get("long_term", 0)) else FEEDS[:-1]


class M6Inputs:
    """Mixin: the input windows of `SequentialRecommender` (newest ``max_len`` items, pads on
    the left at index ``n_items``) for a model whose architecture dict is ``arch_``."""

    padding_side: ClassVar[str] = "left"
    extras: ClassVar[tuple[str, ...]] = ("time_gaps", "events", "users")
    arch_: dict[str, Any]
    n_items_: int

    model_inputs = SequentialRecommender.model_inputs
    training_windows = SequentialRecommender.training_windows
    _align = SequentialRecommender._align
    _flat_extras = SequentialRecommender._flat_extras
    _older = SequentialRecommender._older

    @property
    def max_len(self) -> int:
        return int(self.arch_["max_len"])

    def _older_len(self) -> int:
        return int(self.arch_.get("long_term", 0))

    def feeds(self, histories: Histories) -> dict[str, np.ndarray]:
        """``{items int64, mask bool, time_gaps float32, events int64, users int64}``, each
        [n, max_len], and ``older`` int64 [n, long_term] (pads -1) with the long-term term."""
        items, mask, extras = self.model_inputs(histories)
        out = {"items": items.astype(np.int64), "mask": mask.astype(bool),
               "time_gaps": extras["time_gaps"].astype(np.float32),
               "events": extras["events"].astype(np.int64),
               "users": extras["users"].astype(np.int64)}
        if "older" in extras:
            out["older"] = extras["older"].astype(np.int64)
        return out
