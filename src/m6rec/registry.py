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
    "m6": "m6:M6",
    "textsim": "textsim:TextSim",
    "opendomain": "opendomain:OpenDomain",
    "m6-compact": "m6rec.compress.compact:CompactM6",
    "m6-onnx": "m6rec.compress.onnx_model:OnnxM6",
    "sasrec": "sasrec:SASRec",
    "gru4rec": "gru4rec:GRU4Rec",
    "multvae": "multvae:MultVAE",
    "fusion": "fusion:Fusion",
    "hybrid": "hybrid:Hybrid",
    "multitask": "multitask:MultiTask",
    "kg": "kg:KG",
    "ranker": "ranker:Ranker",
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


def split_models(text: str) -> list[str]:
    """Split a comma-separated list of model specs at top-level commas only.

    ``"ease,fusion(ease,itemknn),pop"`` -> ``["ease", "fusion(ease,itemknn)", "pop"]``. Commas
    inside brackets (``()``, ``[]``, ``{}``) or quotes do not split; blanks are dropped;
    unbalanced brackets or quotes are a ValueError."""
    closing = {")": "(", "]": "[", "}": "{"}
    out, stack, quote, start = [], [], "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in closing:
            if not stack or stack.pop() != closing[ch]:
                raise ValueError(f"unbalanced {ch!r} at position {i} of {text!r}")
        elif ch == "," and not stack:
            out.append(text[start:i])
            start = i + 1
    if stack or quote:
        raise ValueError(f"unclosed {(stack[-1:] or [quote])[0]!r} in {text!r}")
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """A model spec -> ``(name, params)``.

    ``"ease"`` -> ``("ease", {})``; ``"ease(reg=500)"`` -> ``("ease", {"reg": 500})``;
    ``"fusion(ease,itemknn)"`` -> ``("fusion", {"members": "ease,itemknn"})``: inside the
    parentheses, top-level ``key=value`` items are parameters (values read as JSON when they
    parse, else kept as strings; quote a value holding commas: ``weights="0.3,0.7"``) and the
    other items, joined by commas, are the ``members`` (so
    ``"fusion(ease(reg=500),itemknn,method=rrf)"`` nests)."""
    spec = spec.strip()
    if "(" not in spec:
        if ")" in spec or not spec:
            raise ValueError(f"bad model spec {spec!r}")
        return spec, {}
    name, rest = spec.split("(", 1)
    name = name.strip()
    if not name or not rest.endswith(")"):
        raise ValueError(f"bad model spec {spec!r}: expected name(arg, ...)")
    params: dict[str, Any] = {}
    members = []
    for item in split_models(rest[:-1]):
        key, eq, value = item.partition("=")
        if eq and "(" not in key:
            params[key.strip()] = _spec_value(value.strip())
        else:
            members.append(item)
    if members:
        if "members" in params:
            raise ValueError(f"bad model spec {spec!r}: members given twice")
        params["members"] = ",".join(members)
    return name, params


def _spec_value(text: str) -> Any:
    import json

    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
