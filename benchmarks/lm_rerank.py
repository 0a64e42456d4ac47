"""LM-likelihood reranking (M6-Rec's zero-shot ranker) on a ``loo`` split: a retriever's top-50
reordered by how likely the generative LM finds "A user watched A, B, C. Next they watch X."

Usage::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/lm_rerank.py [--data ml-100k] \
        [--retriever ease|textsim] [--users 200] [--candidates 50] [--history 10] \
        [--generator smollm2] [--out runs/lm_rerank]

The retriever is EASE fitted on the split's training part (``ease``), or the training-free
``textsim`` (the frozen text encoder's similarity to the user's newest items: nothing is
fitted on the data, so with it the whole pipeline is zero-shot). The verb ("watched",
"bought", ...) is the dataset's (`m6rec.text.templates`). For ``--users`` seeded test users,
each candidate X of the retriever's top ``--candidates`` (seen items excluded) is scored by the
length-normalised log-likelihood (mean log-probability per token) of " X." after the plain text
"A user watched <the newest ``--history`` titles, oldest first>. Next they watch" (one context
per user, run once; the candidates reuse its key-value cache, batched). Reported: NDCG@10 and
Recall@10 of the retriever's order, of the LM's order, and of the two z-scored and added; Recall
at ``--candidates`` (what any reordering can reach); the LM's cost (CPU and wall seconds per
user, tokens scored). Writes ``results.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--history", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retriever", choices=["ease", "textsim"], default="ease")
    ap.add_argument("--generator", default="smollm2")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--out", default="runs/lm_rerank")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from m6rec.data import load_dataset
    from m6rec.eval.metrics import ndcg_at_k, recall_at_k
    from m6rec.eval.protocols import split_loo
    from m6rec.explain.grounded import natural_title
    from m6rec.registry import build_model
    from m6rec.text.generate import load_generator

    ds = load_dataset(args.data)
    split = split_loo(ds)
    test = split.test
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(test.users), size=min(args.users, len(test.users)),
                              replace=False))
    h = test.histories.take(pick)
    targets = test.targets[pick]
    t0 = time.perf_counter()
    retriever = build_model(args.retriever).fit(split.train)
    cand, cand_scores = retriever.recommend(h, k=args.candidates, exclude_seen=True)
    fit_seconds = time.perf_counter() - t0
    from m6rec.text.templates import Templates

    verb = Templates().verb_for(ds.name).lower()
    titles = [natural_title(t) for t in ds.titles()]
    gen = load_generator(args.generator, threads=1, batch_size=args.batch_size)
    gen.loglikelihood(["warm up"], [" up"], chat=False)  # loads the weights, not timed
    lm = np.full(cand.shape, -np.inf)
    tokens = 0
    c0, w0 = time.process_time(), time.perf_counter()
    for r in range(len(pick)):
        recent = h.row(r)[-args.history:]
        context = (f"A user {verb} " + ", ".join(titles[i] for i in recent)
                   + ". Next they " + _present(verb))
        ok = cand[r] >= 0
        conts = [f" {titles[i]}." for i in cand[r][ok]]
        got = gen.loglikelihood([context] * len(conts), conts, chat=False)
        lm[r, ok] = [s / n for s, n in got]
        tokens += sum(n for _, n in got)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0

    def z(a: np.ndarray) -> np.ndarray:
        a = np.where(np.isfinite(a), a, np.nan)
        return (a - np.nanmean(a, 1, keepdims=True)) / np.maximum(
            np.nanstd(a, 1, keepdims=True), 1e-12)

    orders = {"retriever": np.arange(cand.shape[1])[None].repeat(len(pick), 0),
              "lm": np.argsort(-np.nan_to_num(lm, nan=-np.inf, neginf=-1e9), 1, kind="stable"),
              "retriever+lm": np.argsort(-np.nan_to_num(z(cand_scores) + z(lm), nan=-1e9), 1,
                                         kind="stable")}
    n_t = np.asarray(targets.sum(1)).ravel().astype(np.int64)
    dense = targets.toarray() > 0
    rows = {}
    for name, order in orders.items():
        ranked = np.take_along_axis(cand, order, 1)
        hits = np.take_along_axis(dense, np.maximum(ranked, 0), 1) & (ranked >= 0)
        rows[name] = {"ndcg@10": float(ndcg_at_k(hits, n_t, 10).mean()),
                      "recall@10": float(recall_at_k(hits, n_t, 10).mean())}
    hits_all = np.take_along_axis(dense, np.maximum(cand, 0), 1) & (cand >= 0)
    res = {"args": vars(args), "generator": gen.name, "users": int(len(pick)),
           "recall_at_candidates": float(recall_at_k(hits_all, n_t, args.candidates).mean()),
           "orders": rows, "retriever_fit_seconds": fit_seconds, "verb": verb,
           "lm_cpu_seconds": cpu, "lm_wall_seconds": wall,
           "lm_cpu_seconds_per_user": cpu / len(pick), "lm_wall_seconds_per_user": wall / len(pick),
           "tokens_scored": int(tokens)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


def _present(verb: str) -> str:
    """"watched" -> "watch", "bought" -> "buy", "listened to" -> "listen to"."""
    irregular = {"bought": "buy", "read": "read", "saw": "see", "chose": "choose"}
    first, _, rest = verb.partition(" ")
    base = irregular.get(first) or (first[:-2] if first.endswith("ed") else first)
    return f"{base} {rest}".strip()


if __name__ == "__main__":
    main()
