"""TextSim settings on a dataset's `loo` split: chosen on the validation users, reported on test.

Nothing is trained: each setting re-scores the same cached LM vectors (all-MiniLM-L6-v2,
item text budget 200). The popularity prior counts the training part's interactions only.

    OMP_NUM_THREADS=1 python benchmarks/textsim_sweep.py --data ml-100k
    OMP_NUM_THREADS=1 python benchmarks/textsim_sweep.py --data PATH/amazon_office

Writes benchmarks/results/textsim/<dataset>.json (every setting, valid and test NDCG@10).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from m6rec.data import load_dataset
from m6rec.eval.evaluate import evaluate
from m6rec.eval.protocols import make_split
from m6rec.registry import build_model

GRID = {"n_recent": (1, 3, 5, 10), "decay": (0.5, 0.8), "agg": ("sum", "max"),
        "pop_weight": (0.0, 0.05, 0.1, 0.2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--protocol", default="loo")
    ap.add_argument("--out", default="benchmarks/results/textsim")
    args = ap.parse_args()
    ds = load_dataset(args.data)
    split = make_split(ds, args.protocol)
    t0 = time.perf_counter()
    base = build_model("textsim").fit(split.train)
    fit_seconds = time.perf_counter() - t0
    rows = []
    for n, d, agg, pw in itertools.product(*GRID.values()):
        if n == 1 and (d != GRID["decay"][0] or agg != "sum"):
            continue  # one recent item: decay and aggregate make no difference
        m = build_model("textsim", n_recent=n, decay=d, agg=agg, pop_weight=pw)
        m.item_text_, m.counts_ = base.item_text_, base.counts_
        m.n_items_, m.n_users_ = base.n_items_, base.n_users_
        v = evaluate(m, split.valid, ks=(10,))["ndcg@10"]
        t = evaluate(m, split.test, ks=(10,))["ndcg@10"]
        rows.append({"n_recent": n, "decay": d, "agg": agg, "pop_weight": pw,
                     "valid_ndcg@10": round(v, 4), "test_ndcg@10": round(t, 4)})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: r["valid_ndcg@10"])
    out = {"dataset": ds.name, "protocol": args.protocol, "fit_seconds": round(fit_seconds, 2),
           "encode": base.encode_stats_, "best_on_valid": best, "rows": rows}
    print("best on valid:", json.dumps(best))
    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{ds.name}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
