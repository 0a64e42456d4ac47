"""Are the explainer's knowledge-graph sentences true according to the graph itself?

Usage::

    OMP_NUM_THREADS=1 python benchmarks/explain_kg_truth.py [--model ease] [--model-dir DIR]
        [--sentences 100] [--k 10] [--seed 0] [--out benchmarks/results/explain]

Fits ``--model`` on the whole of ml-100k (or loads ``--model-dir``), then walks seeded random
users (``numpy.random.default_rng(seed).permutation``), recommends their top-``k`` (seen items
excluded), explains each recommendation with `Explainer` and keeps the first ``--per-user``
sentences of each user that carry a KG relation, until ``--sentences`` are collected. Every relation is checked by `m6rec.explain.kg_check.KGChecker` against
the raw triples (supported / contradicted / unsupported). Prints the counts and writes
``kg_truth.json`` and ``kg_truth.md`` (every sentence with its verdict) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--model", default="ease", help="model fitted here on the whole data set")
    ap.add_argument("--model-dir", default="", help="a saved model directory instead")
    ap.add_argument("--sentences", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-user", type=int, default=2, help="most sentences kept per user")
    ap.add_argument("--out", default="benchmarks/results/explain")
    args = ap.parse_args()

    from m6rec.data import load_dataset
    from m6rec.explain.kg_check import sample_kg_sentences
    from m6rec.registry import build_model

    ds = load_dataset(args.data)
    t0 = time.perf_counter()
    if args.model_dir:
        from m6rec.models.io import load_model_dir

        model, meta = load_model_dir(args.model_dir, ds)
        name = str(meta.get("model", args.model_dir))
    else:
        model, name = build_model(args.model).fit(ds), args.model
    rows, read = sample_kg_sentences(model, ds, args.sentences, args.k, args.seed, args.per_user)
    verdicts = Counter(c["verdict"] for r in rows for c in r["claims"])
    roles = Counter(c["relation"] for r in rows for c in r["claims"])
    summary = {"data": args.data, "model": name, "k": args.k, "seed": args.seed,
               "per_user": args.per_user,
               "users_read": read, "sentences": len(rows),
               "sentences_contradicted": sum(any(c["verdict"] == "contradicted"
                                                 for c in r["claims"]) for r in rows),
               "sentences_not_supported": sum(any(c["verdict"] != "supported"
                                                  for c in r["claims"]) for r in rows),
               "phrase_missing_from_sentence": sum(not r["in_sentence"] for r in rows),
               "claims": dict(verdicts), "relations": dict(roles),
               "seconds": round(time.perf_counter() - t0, 1)}
    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "kg_truth.json").write_text(json.dumps({"summary": summary, "sentences": rows},
                                                indent=1) + "\n")
    lines = [f"# KG sentences checked against the graph ({args.data}, {name}, top-{args.k}, "
             f"seed {args.seed})", "",
             f"`python benchmarks/explain_kg_truth.py --model {name} --sentences "
             f"{args.sentences} --k {args.k} --seed {args.seed} --per-user {args.per_user}`", "",
             f"{len(rows)} sentences with a KG relation over {read} seeded random users: "
             f"**{summary['sentences_contradicted']} contradicted by the graph**, "
             f"{summary['sentences_not_supported']} not supported; claims by verdict "
             f"{dict(verdicts)}; by relation {dict(roles)}.", "",
             "| # | user | recommended | sentence | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {n + 1} | {r['user_id']} | {r['title']} | {r['sentence']} | "
              f"{', '.join(c['verdict'] for c in r['claims'])} |" for n, r in enumerate(rows)]
    (d / "kg_truth.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
