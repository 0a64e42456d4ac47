"""Does the DIN ranker improve the retriever it re-ranks? (ml-100k, ``loo``, full ranking.)

For each retriever spec: fits ``ranker(retriever=SPEC)`` on the loo training part (the
retriever is fitted inside, with the validation set for early stopping where it uses one),
then reports on the test users, all through `m6rec.eval`:

- NDCG@10 / Recall@10 / MRR@10 over the full catalogue (seen items excluded) of the retriever
  alone, of the ranker's final order (retriever weight chosen on validation), and of the ranker
  alone on the candidates (retriever weight 0);
- AUC among the top-``n_candidates`` candidates (`metrics.auc`, users whose test item is among
  them; 1 positive vs the other candidates), retriever scores vs ranker scores;
- Hit@100: the share of test items inside the candidate list (the ceiling of any re-ranker).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ranker.py --retrievers ease,sasrec \\
        [--seeds 1] [--out benchmarks/results/ranker]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from m6rec.data import load_dataset
from m6rec.eval import metrics as M
from m6rec.eval.evaluate import evaluate
from m6rec.eval.protocols import make_split
from m6rec.registry import build_model, split_models

KS = (10,)
METRICS = ("ndcg", "recall", "mrr")


class _Fixed:
    """A view of a fitted ranker with another retriever weight (for the 'ranker only' row)."""

    def __init__(self, ranker, weight: float):
        self.ranker, self.weight = ranker, weight

    def recommend(self, histories, k, exclude_seen=True):
        saved = self.ranker.retriever_weight_
        self.ranker.retriever_weight_ = self.weight
        try:
            return self.ranker.recommend(histories, k=k, exclude_seen=exclude_seen)
        finally:
            self.ranker.retriever_weight_ = saved


def candidate_auc(ranker, split) -> dict[str, float]:
    """AUC of the retriever's and the ranker's scores among the candidates."""
    test = split.test
    _, ids, retr, final = ranker.rerank(test.histories)
    logits = ranker.ranker_logits(test.histories, ids)
    target = np.asarray(test.targets[np.arange(len(test))[:, None], np.maximum(ids, 0)]
                        .todense()).astype(bool) & (ids >= 0)
    rows = target.any(1) & (ids >= 0).all(1)
    return {"hit@100": float(target.any(1).mean()),
            "auc_retriever": M.auc(retr[rows], target[rows]),
            "auc_ranker": M.auc(logits[rows], target[rows]),
            "auc_final": M.auc(final[rows], target[rows]),
            "auc_users": int(rows.sum())}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--retrievers", default="ease")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--param", action="append", default=[], help="ranker key=value")
    ap.add_argument("--out", default="benchmarks/results/ranker")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    params = {k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
              for k, v in (p.split("=", 1) for p in args.param)}
    ds = load_dataset("ml-100k")
    split = make_split(ds, "loo")
    out: dict[str, list] = {}
    for spec in split_models(args.retrievers):
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            r = build_model("ranker", retriever=spec, random_state=seed, **params)
            r.fit(split.train, valid=split.valid)
            fit_s = time.perf_counter() - t0
            row = {"retriever": spec, "seed": seed, "fit_seconds": fit_s,
                   "best_epoch": r.best_epoch_, "retriever_weight": r.retriever_weight_,
                   "retriever_alone": evaluate(r.retriever_, split.test, KS, METRICS,
                                               beyond_accuracy=False),
                   "reranked": evaluate(r, split.test, KS, METRICS, beyond_accuracy=False),
                   "ranker_only": evaluate(_Fixed(r, 0.0), split.test, KS, METRICS,
                                           beyond_accuracy=False),
                   **candidate_auc(r, split)}
            out.setdefault(spec, []).append(row)
            print(json.dumps({k: (round(v["ndcg@10"], 4) if isinstance(v, dict) else v)
                              for k, v in row.items()}), flush=True)
    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "ranker.json").write_text(json.dumps(out, indent=2))
    lines = ["| retriever | retriever NDCG@10 | re-ranked NDCG@10 | ranker-only NDCG@10 | "
             "gain | AUC retriever / ranker / final (top-100) | Hit@100 | w | fit s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for spec, rows in out.items():
        def ms(key: str, sub: str = "ndcg@10", rows=rows) -> str:
            v = np.array([x[key][sub] if sub else x[key] for x in rows], float)
            return f"{v.mean():.4f}" + (f" ± {v.std():.4f}" if len(v) > 1 else "")
        base = np.mean([x["retriever_alone"]["ndcg@10"] for x in rows])
        gain = np.mean([x["reranked"]["ndcg@10"] for x in rows]) / base - 1
        lines.append(f"| {spec} | {ms('retriever_alone')} | {ms('reranked')} | "
                     f"{ms('ranker_only')} | {gain:+.1%} | {ms('auc_retriever', '')} / "
                     f"{ms('auc_ranker', '')} / {ms('auc_final', '')} | {ms('hit@100', '')} | "
                     f"{ms('retriever_weight', '')} | {ms('fit_seconds', '')[:6]} |")
    (d / "ranker.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
