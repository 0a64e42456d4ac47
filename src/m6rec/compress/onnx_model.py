"""``m6-onnx``: an ``m6`` model (or a compressed one) run by onnxruntime, with no torch at
inference. ``fit`` / `export` need torch (to build and export the network); ``load`` and scoring
import only NumPy and onnxruntime. The ONNX graph is stored inside ``state.npz`` (as bytes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from m6rec.compress.inputs import M6Inputs, feed_names
from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender


class OnnxM6(M6Inputs, Recommender):
    """An exported ``m6`` / ``m6-compact`` (fp32 encoder) scored by onnxruntime.

    Parameters
    ----------
    teacher : str
        A saved ``m6`` or ``m6-compact`` directory, or an ``m6`` spec to train, to export.
    threads : int
        onnxruntime intra-op threads (0: its default, one per core).
    """

    name = "m6-onnx"
    uses_validation = True

    def __init__(self, teacher: str = "m6", threads: int = 1):
        self.teacher = teacher
        self.threads = threads

    def fit(self, dataset: Dataset, valid=None) -> OnnxM6:
        from m6rec.registry import build_model, parse_model_spec

        if (Path(self.teacher) / "config.json").is_file():
            source = Recommender.load(self.teacher)
            if source.n_items_ != dataset.n_items:
                raise ValueError(f"teacher {self.teacher!r} knows {source.n_items_} items, the "
                                 f"data {dataset.name!r} has {dataset.n_items}")
        else:
            name, params = parse_model_spec(self.teacher)
            if name != "m6":
                raise ValueError(f"teacher must be a saved m6 / m6-compact directory or an m6 "
                                 f"spec, got {self.teacher!r}")
            source = build_model(name, **params).fit(dataset, valid)
        return self.export(source)

    def export(self, source: Any) -> OnnxM6:
        """Export a fitted ``m6``, or an ``m6-compact`` with an fp32 encoder."""
        from m6rec.compress.onnx_export import export_onnx

        if getattr(source, "name", "") == "m6":
            from m6rec.compress.frozen import freeze

            module = freeze(source)
        elif getattr(source, "name", "") == "m6-compact" and source.encoder_dtype == "fp32":
            module = source.module_
        else:
            raise ValueError(f"cannot export {source!r} to ONNX: give an m6 model or an "
                             "m6-compact one with encoder_dtype='fp32'")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be an integer >= 0, got {self.threads!r}")
        self.n_items_, self.n_users_ = int(source.n_items_), int(source.n_users_)
        arch = dict(module.arch)
        graph = export_onnx(module, int(arch["max_len"]), self.n_items_)
        self._set_state({"onnx": np.frombuffer(graph, dtype=np.uint8),
                         "arch": np.array(json.dumps(arch))})
        return self

    def _state(self) -> dict[str, np.ndarray]:
        return {"onnx": self.onnx_, "arch": np.array(json.dumps(self.arch_))}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        import onnxruntime as ort

        self.onnx_ = np.asarray(state["onnx"], dtype=np.uint8)
        self.arch_ = json.loads(str(np.asarray(state["arch"]).reshape(-1)[0]))
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
            opts.inter_op_num_threads = 1
        self.session_ = ort.InferenceSession(self.onnx_.tobytes(), opts,
                                             providers=["CPUExecutionProvider"])

    def _score_rows(self, histories: Histories) -> np.ndarray:
        f = self.feeds(histories)
        out = self.session_.run(["scores"], {k: f[k] for k in feed_names(self.arch_)})[0]
        return np.asarray(out, dtype=np.float32)

    def n_parameters(self) -> dict[str, int]:
        """Weights held by the graph's initialisers."""
        import onnx

        graph = onnx.load_from_string(self.onnx_.tobytes()).graph
        total = sum(int(np.prod(t.dims)) for t in graph.initializer)
        return {"total": total, "nonzero": total}
