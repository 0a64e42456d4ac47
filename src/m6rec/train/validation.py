"""One full-ranking pass over an `EvalSet`: what early stopping reads on validation users and
what `m6rec.eval.evaluate` builds its test metrics on, so models never import `m6rec.eval`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from m6rec.metrics import ranking_metrics
from m6rec.train.evalset import EvalSet


def ranking_pass(model: Any, evalset: EvalSet, ks: Sequence[int] = (10,),
                 metrics: Sequence[str] = ("ndcg",)) -> tuple[np.ndarray, dict[str, float], float]:
    """Rank the whole catalogue for every user of ``evalset`` (their input history excluded,
    as RecBole does) and score the top ``max(ks)`` against the targets.

    Returns
    -------
    ids : int64 [n_users, max(ks)] the ranked item indices (-1 padding)
    scores : dict ``"<metric>@<k>"`` -> mean over the users with a target
    seconds : wall-clock seconds of the ranking (``model.recommend``) alone
    """
    t0 = time.perf_counter()
    ids, _ = model.recommend(evalset.histories, k=max(ks), exclude_seen=True)
    seconds = time.perf_counter() - t0
    return ids, ranking_metrics(ids, evalset.targets, ks=ks, metrics=metrics), seconds


def validation_ndcg(model: Any, evalset: EvalSet, k: int = 10) -> float:
    """NDCG@k of ``model`` on ``evalset``: the early-stopping and weight-choice criterion."""
    return ranking_pass(model, evalset, ks=(k,), metrics=("ndcg",))[1][f"ndcg@{k}"]
