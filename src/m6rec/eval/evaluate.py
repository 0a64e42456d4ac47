"""Score a fitted model on an `EvalSet`: one vectorised full-ranking pass over all users.

Evaluation never imports a concrete model: it talks to the `Recommender` contract only.
"""

from __future__ import annotations

import time
from typing import Any

from m6rec import metrics as M
from m6rec.data.dataset import Dataset
from m6rec.eval.protocols import EvalSet, Split
from m6rec.train.validation import ranking_pass

DEFAULT_KS = (10, 20)
DEFAULT_METRICS = ("ndcg", "recall", "mrr", "hit", "precision", "f1")


def evaluate(model: Any, evalset: EvalSet, ks: tuple[int, ...] = DEFAULT_KS,
             metrics: tuple[str, ...] = DEFAULT_METRICS, dataset: Dataset | None = None,
             beyond_accuracy: bool = True) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on ``evalset`` (mean over its users).

    Items in each user's input history are excluded from the ranking (as RecBole does). With
    ``dataset`` (the full one), adds ``coverage@K``, ``novelty@K`` and, when the catalogue has
    categories, ``diversity@K`` for the smallest K.
    """
    ids, out, seconds = ranking_pass(model, evalset, ks=ks, metrics=metrics)
    if beyond_accuracy and dataset is not None:
        k = min(ks)
        out[f"coverage@{k}"] = M.item_coverage(ids, dataset.n_items, k)
        out[f"novelty@{k}"] = M.novelty(ids, dataset.item_counts(), dataset.n_users, k)
        cats, vocab = dataset.category_matrix()
        if vocab and k >= 2:
            out[f"diversity@{k}"] = M.intra_list_diversity(ids, cats, k)
    out["users"] = float(len(evalset))
    out["eval_seconds"] = seconds
    return out


def fit(model: Any, split: Split) -> tuple[Any, float]:
    """Fit on the split's training data (validation set passed to models that early-stop).

    Returns the model and the wall-clock seconds of ``fit``."""
    t0 = time.perf_counter()
    if getattr(model, "uses_validation", False):
        model.fit(split.train, valid=split.valid)
    else:
        model.fit(split.train)
    return model, time.perf_counter() - t0


def evaluate_split(model: Any, split: Split, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, Any]:
    """Test metrics, plus one block per extra test set (e.g. ``warm`` in the cold protocol)."""
    out: dict[str, Any] = {"metrics": evaluate(model, split.test, ks, dataset=split.dataset)}
    for name, es in split.extra.items():
        out[name] = evaluate(model, es, ks, dataset=split.dataset)
    return out
