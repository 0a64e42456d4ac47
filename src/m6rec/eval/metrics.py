"""The evaluation metrics, as ``m6rec.eval.metrics``: they live in `m6rec.metrics`, below the
models, so that a model scoring its validation users never imports the evaluation package."""

from __future__ import annotations

from m6rec.metrics import (
    RANKING_METRICS,
    auc,
    f1_at_k,
    hit_at_k,
    hits_matrix,
    intra_list_diversity,
    item_coverage,
    mae,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
)

__all__ = [
    "RANKING_METRICS",
    "auc",
    "f1_at_k",
    "hit_at_k",
    "hits_matrix",
    "intra_list_diversity",
    "item_coverage",
    "mae",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
]
