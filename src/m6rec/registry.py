"""Model name -> class. Modules are imported lazily, so listing models stays cheap."""

from __future__ import annotations

import importlib
from typing import Any

# name -> "module:Class" (relative to m6rec.models)
_MODELS: dict[str, str] = {
    "pop": "pop:Pop",
    "itemknn": "knn:ItemKNN",
    "userknn": "knn:UserKNN",
    "ease": "ease:EASE",
    "puresvd": "mf:PureSVD",
    "als": "mf:ALS",
    "bpr": "mf:BPR",
}


def all_models() -> list[str]:
    """Registered model names."""
    return sorted(_MODELS)


def register(name: str, target: str) -> None:
    """Register ``name`` -> ``"package.module:Class"`` (or ``"module:Class"`` in m6rec.models)."""
    _MODELS[name] = target


def get_model_class(name: str) -> type:
    try:
        target = _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(all_models())})") from None
    module, cls = target.split(":")
    if "." not in module:
        module = f"m6rec.models.{module}"
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, **params: Any):
    """An unfitted model from its name and keyword hyper-parameters (unknown keys are an error)."""
    klass = get_model_class(name)
    allowed = set(klass.param_names())
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TypeError(f"model {name!r} has no parameter(s) {', '.join(unknown)} "
                        f"(parameters: {', '.join(sorted(allowed)) or 'none'})")
    return klass(**params)
