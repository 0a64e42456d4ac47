"""``m6rec compress``: one saved ``m6`` directory in, one compressed model directory out.

Methods: ``int8`` (int8 tables + torch.ao int8 encoder), ``fp16-index`` (fp16 tables, fp32
encoder), ``prune:SPARSITY`` (e.g. ``prune:0.8``), ``distill:PARAMS`` (student overrides, e.g.
``distill:width=32,n_layers=1,inner=64``; ``distill`` alone uses `DEFAULT_STUDENT`), ``onnx``
(also of an ``m6-compact`` directory with an fp32 encoder, e.g. a distilled student). Pruning
and distillation train on the training part of the protocol the model was trained with (read
from its ``meta.json``), with early stopping on that protocol's validation set."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from m6rec.models.base import Recommender

METHODS = ("int8", "fp16-index", "prune:SPARSITY", "distill[:PARAMS]", "onnx")
#: the student ``distill`` alone trains: half the teacher's width, its depth, a quarter of its
#: feed-forward size (24k encoder parameters for a 64-d m6 + the item / profile tables it
#: fine-tunes; on ml-100k it beat a width-64 student, inner 128)
DEFAULT_STUDENT = "width=32,n_layers=2,inner=64,n_heads=2"
#: training of ``distill`` (``--param`` overrides): up to 100 epochs with early stopping on the
#: validation NDCG@10 (patience 8)
DISTILL_TRAINING = {"epochs": 100, "patience": 8, "dropout": 0.2}


def parse_method(method: str) -> tuple[str, dict[str, Any]]:
    """``method`` -> (registered model name, its parameters)."""
    kind, _, arg = method.strip().partition(":")
    if kind == "int8" and not arg:
        return "m6-compact", {"table_dtype": "int8", "encoder_dtype": "int8"}
    if kind == "fp16-index" and not arg:
        return "m6-compact", {"table_dtype": "fp16"}
    if kind == "onnx" and not arg:
        return "m6-onnx", {}
    if kind == "prune":
        try:
            sparsity = float(arg)
        except ValueError:
            raise ValueError(f"--method {method!r}: prune needs a sparsity in [0, 1), e.g. "
                             "prune:0.8") from None
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"--method {method!r}: sparsity must be in (0, 1)")
        return "m6-compact", {"sparsity": sparsity}
    if kind == "distill":
        return "m6-compact", {"student": arg or DEFAULT_STUDENT, **DISTILL_TRAINING}
    raise ValueError(f"--method {method!r}: choose from {', '.join(METHODS)}")


def compress_dir(model_dir: str | Path, method: str, out: str | Path,
                 params: dict[str, Any] | None = None, data=None) -> tuple[Recommender, dict]:
    """Compress the model in ``model_dir`` with ``method`` into ``out`` (``config.json``,
    ``state.npz``, and the source's ``ids.npz`` / ``meta.json`` with the method added).
    ``params`` override the compressed model's parameters; ``data`` is the dataset the model
    was trained on (default: the ``data_spec`` of its ``meta.json``), needed by prune / distill.
    Returns the model and its ``meta``."""
    from m6rec.registry import build_model

    src = Path(model_dir)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src}: not a model directory (no config.json)")
    name, kw = parse_method(method)
    kw.update(params or {})
    model = build_model(name, teacher=str(src.resolve()), **kw)
    source = Recommender.load(src)
    meta = json.loads((src / "meta.json").read_text()) if (src / "meta.json").is_file() else {}
    t0 = time.perf_counter()
    if name == "m6-onnx":
        model.export(source)
    elif model.sparsity or model.student:
        split = _training_split(meta, data, src)
        model.compress(source, split.train, split.valid)
    else:
        model.compress(source, None)
    seconds = time.perf_counter() - t0
    dst = Path(out)
    model.save(dst)
    if (src / "ids.npz").is_file():
        shutil.copyfile(src / "ids.npz", dst / "ids.npz")
    meta = {**meta, "model": model.name, "compressed_from": str(src), "method": method,
            "compress_seconds": seconds}
    (dst / "meta.json").write_text(json.dumps(meta, indent=2))
    return model, meta


def _training_split(meta: dict, data, src: Path):
    from m6rec.config import Settings
    from m6rec.data import load_datasets
    from m6rec.eval.protocols import PROTOCOLS, make_split

    protocol = meta.get("protocol") or "loo"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{src}: meta.json protocol {protocol!r} is not a split "
                         f"({', '.join(PROTOCOLS)}); pruning and distillation need one")
    if data is None:
        spec = meta.get("data_spec")
        if not spec:
            raise ValueError(f"{src}: meta.json names no dataset; pass the data explicitly")
        data = load_datasets(spec, tie_break=Settings().tie_break)[0]
    return make_split(data, protocol)
