"""Protocol parity with RecBole 1.2.1 on ml-100k (`loo`, full ranking, seen items excluded).

Runs `m6rec`'s pop / itemknn / ease / bpr under two timestamp tie-breaks:
- ``file``: equal timestamps keep file order, as RecBole's stable sort does (same test items);
- ``hash`` and ``hash:1..4``: m6rec's default (stable hash of user and item), which picks a
  different but equally valid last item for users who rated several movies in the same second.
The spread over hash salts shows how much the test-item draw alone moves each figure.

    .venv/bin/python benchmarks/recbole_parity.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from m6rec.data import load_dataset
from m6rec.eval.benchmark import run_benchmark

RECBOLE = {  # NDCG@10, Recall@10, NDCG@20, Recall@20 (issue #2 table)
    "pop": (0.0435, 0.0838, 0.0544, 0.1273),
    "itemknn": (0.0629, 0.1145, 0.0799, 0.1824),
    "ease": (0.0706, 0.1347, 0.0912, 0.2163),
    "bpr": (0.0673, 0.1241, 0.0850, 0.1951),
}
KEYS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    models = list(RECBOLE)
    runs = {}
    t0 = time.perf_counter()
    for tie in ("file", "hash", "hash:1", "hash:2", "hash:3", "hash:4"):
        ds = load_dataset("ml-100k", tie_break=tie)
        res = run_benchmark(ds, models, "loo", seeds=args.seeds)
        runs[tie] = {m: {k: res["models"][m]["metrics"][k] for k in KEYS} for m in models}
        print(tie, {m: round(v["ndcg@10"], 4) for m, v in runs[tie].items()}, flush=True)
    total = time.perf_counter() - t0
    lines = ["| model | RecBole NDCG@10 / Recall@10 | m6rec, file order (RecBole's ties) | rel. diff | "
             "m6rec, hash ties: mean ± std over 5 salts | rel. diff |", "|---|---|---|---|---|---|"]
    for m in models:
        rb = RECBOLE[m]
        f = runs["file"][m]
        hashes = [runs[t][m] for t in runs if t.startswith("hash")]
        hn = np.array([h["ndcg@10"] for h in hashes])
        hr = np.array([h["recall@10"] for h in hashes])
        lines.append(
            f"| {m} | {rb[0]:.4f} / {rb[1]:.4f} | {f['ndcg@10']:.4f} / {f['recall@10']:.4f} | "
            f"{f['ndcg@10'] / rb[0] - 1:+.1%} / {f['recall@10'] / rb[1] - 1:+.1%} | "
            f"{hn.mean():.4f} ± {hn.std(ddof=1):.4f} / {hr.mean():.4f} ± {hr.std(ddof=1):.4f} | "
            f"{hn.mean() / rb[0] - 1:+.1%} / {hr.mean() / rb[1] - 1:+.1%} |")
    table = "\n".join(lines)
    print(table)
    print(f"total {total:.0f} s ({args.seeds} seeds for bpr)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recbole_parity.json").write_text(json.dumps(
        {"recbole": RECBOLE, "m6rec": runs, "seeds": args.seeds, "seconds": total}, indent=2))
    (out / "recbole_parity.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
