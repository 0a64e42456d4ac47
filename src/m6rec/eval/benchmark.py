"""Train and evaluate several models on one protocol, in one process (``m6rec benchmark``).

An experiment only loops and tabulates (Cornac): models come from the registry by name, the split
from `protocols`, the numbers from `evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.eval.evaluate import DEFAULT_KS, evaluate_split, fit
from m6rec.eval.protocols import make_split
from m6rec.registry import build_model, get_model_class

HEADLINE = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "ndcg@20", "recall@20")


def run_benchmark(dataset: Dataset, models: list[str], protocol: str = "loo",
                  params: dict[str, dict[str, Any]] | None = None, seeds: int = 1,
                  ks: tuple[int, ...] = DEFAULT_KS,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit and evaluate each model on the same split.

    ``params`` maps model name -> hyper-parameters. With ``seeds > 1``, models that take a
    ``random_state`` run once per seed (0 .. seeds-1) and the metrics are means, with the
    standard deviations under ``"std"``; deterministic models run once. An ensemble
    (``fusion``) is run once per seed too, each seed given to its stochastic members.

    Returns ``{"dataset", "protocol", "split", "models": {name: {"metrics", "std",
    "fit_seconds", "params", "curves", "seeds", ...extra sets}}}``.
    """
    params = params or {}
    split = make_split(dataset, protocol)
    out: dict[str, Any] = {"dataset": dataset.name, "protocol": protocol,
                           "split": {k: (v if not isinstance(v, np.ndarray) else len(v))
                                     for k, v in split.info.items()},
                           "models": {}}
    for name in models:
        p = dict(params.get(name, {}))
        stochastic = _seeded(name, p, 0) is not None
        runs = []
        for seed in range(seeds if stochastic else 1):
            if progress:
                progress(f"{name}" + (f" (seed {seed})" if stochastic and seeds > 1 else ""))
            model, seconds = fit(build_model(name, **(_seeded(name, p, seed) or p)), split)
            res = evaluate_split(model, split, ks)
            res["fit_seconds"] = seconds
            res["curves"] = getattr(model, "history_", None)
            res["params"] = model.get_params()
            if seed == 0 and hasattr(model, "item_vectors"):
                res["item_map"] = item_map(model.item_vectors(), dataset)
            runs.append(res)
        out["models"][name] = _aggregate(runs)
    return out


def _seeded(name: str, params: dict[str, Any], seed: int) -> dict[str, Any] | None:
    """``params`` with ``random_state=seed``, or None when the model is deterministic (or its
    seed is fixed by ``params``). An ensemble (a ``member_params`` model such as ``fusion``)
    passes the seed to each member that takes one and whose seed is not given."""
    import json

    from m6rec.registry import parse_model_spec, split_models

    names = get_model_class(name).param_names()
    if "random_state" in names:
        return None if "random_state" in params else {**params, "random_state": seed}
    if "member_params" not in names:
        return None
    defaults = get_model_class(name)().get_params()
    extra = params.get("member_params", defaults["member_params"])
    extra = json.loads(extra) if isinstance(extra, str) else dict(extra)
    members = [n for n, p in (parse_model_spec(m) for m in
                              split_models(params.get("members", defaults["members"])))
               if "random_state" in get_model_class(n).param_names()
               and "random_state" not in p and "random_state" not in extra.get(n, {})]
    if not members:
        return None
    for n in members:
        extra[n] = {**extra.get(n, {}), "random_state": seed}
    return {**params, "member_params": json.dumps(extra)}


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    agg: dict[str, Any] = {"seeds": len(runs), "params": first["params"],
                           "curves": first["curves"]}
    if "item_map" in first:
        agg["item_map"] = first["item_map"]
    for block in [k for k, v in first.items()
                  if isinstance(v, dict) and k not in ("params", "item_map")]:
        keys = first[block].keys()
        agg[block] = {k: float(np.mean([r[block][k] for r in runs])) for k in keys}
        if len(runs) > 1:
            agg.setdefault("std", {})[block] = {
                k: float(np.std([r[block][k] for r in runs], ddof=1)) for k in keys}
    agg["fit_seconds"] = float(np.mean([r["fit_seconds"] for r in runs]))
    return agg


def summary_json(result: dict[str, Any]) -> dict[str, Any]:
    """The stable ``--json`` shape: dataset, protocol and per-model headline metrics."""
    models = {}
    for name, r in result["models"].items():
        entry = {"metrics": {k: _num(r["metrics"].get(k)) for k in HEADLINE},
                 "fit_seconds": r["fit_seconds"]}
        if "std" in r:
            entry["std"] = {k: _num(r["std"]["metrics"].get(k)) for k in HEADLINE}
        for extra in ("warm",):
            if extra in r:
                entry[extra] = {k: _num(r[extra].get(k)) for k in HEADLINE}
        models[name] = entry
    return {"dataset": result["dataset"], "protocol": result["protocol"], "models": models}


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def item_map(vectors: np.ndarray, dataset: Dataset, max_points: int = 5000) -> dict[str, Any]:
    """2-D PCA of item vectors with each item's first category, for the report's item map."""
    v = np.asarray(vectors, dtype=np.float64)
    idx = np.arange(len(v))
    if len(v) > max_points:
        idx = np.sort(np.random.default_rng(0).choice(len(v), max_points, replace=False))
    x = v[idx] - v[idx].mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    cats = dataset.item_categories()
    return {"xy": xy.astype(np.float32), "labels": [cats[i][0] if cats[i] else "" for i in idx]}
