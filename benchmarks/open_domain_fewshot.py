"""Few-shot on a target domain: its training data cut to the first 1% / 10% / 100% of its
users (a seeded random draw) before anything reads it.

`opendomain` (weights chosen on the source domains, passed in: no target data chooses them)
reads only the cut's statistics; in-domain `ease` and `itemknn` are fitted on the same cut;
`sasrec` is trained on 100% once (`--sasrec`). Every row is scored on the target's full `loo`
test users (their histories are the input, as in serving).

    OMP_NUM_THREADS=1 python benchmarks/open_domain_fewshot.py --data PATH/amazon_office \\
        --cooc-weight 3 --cooc-decay 0.5 [--sasrec]

Writes <out>/fewshot_<dataset>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from m6rec.data import load_dataset
from m6rec.eval.evaluate import evaluate, fit
from m6rec.eval.protocols import make_split
from m6rec.registry import build_model

FRACTIONS = (0.01, 0.1, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--cooc-weight", type=float, required=True)
    ap.add_argument("--cooc-decay", type=float, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sasrec", action="store_true", help="also sasrec on 100%% (slow on CPU)")
    ap.add_argument("--out", default="benchmarks/results/open_domain")
    args = ap.parse_args()
    ds = load_dataset(args.data)
    split = make_split(ds, "loo")
    users = np.random.default_rng(args.seed).permutation(ds.n_users)
    rows = []
    for frac in FRACTIONS:
        keep = users[: max(1, int(round(frac * ds.n_users)))]
        inter = split.train.inter
        cut = split.train.with_interactions(inter[inter["user_idx"].isin(keep)])
        row = {"fraction": frac, "users": len(keep), "interactions": cut.n_interactions}
        specs = [("opendomain", {"cooc_weight": args.cooc_weight,
                                 "cooc_decay": args.cooc_decay}), ("textsim", {}),
                 ("itemknn", {}), ("ease", {})]
        if args.sasrec and frac == 1.0:
            specs.append(("sasrec", {}))
        for name, params in specs:
            t0 = time.perf_counter()
            m = build_model(name, **params)
            m = (fit(m, split)[0] if frac == 1.0 else m.fit(cut))
            row[name] = round(evaluate(m, split.test, ks=(10,))["ndcg@10"], 4)
            row[f"{name} seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"fewshot_{ds.name}.json").write_text(json.dumps({"rows": rows, "seed": args.seed},
                                                         indent=2))
    names = ["opendomain", "textsim", "itemknn", "ease", "sasrec"]
    lines = [f"| {ds.name}: users in the training cut | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(f"| {r['fraction']:.0%} ({r['users']:,}) | "
                     + " | ".join(f"{r[n]:.4f}" if n in r else "–" for n in names) + " |")
    (d / f"fewshot_{ds.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
