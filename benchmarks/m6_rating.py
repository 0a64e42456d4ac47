"""m6 with the rating head (multi-task) on ml-100k ``loo``: ranking and the held-out ratings.

One fit gives both figures: NDCG@10 / Recall@10 of the next item (full ranking, seen items
excluded) and RMSE / MAE of the rating of that held-out item, predicted by the rating head from
the same user vector. References in the same run: the global-mean rating and the user + item
bias predictor on the same targets (`hybrid_multitask.bias_baseline`).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/m6_rating.py --weight 0.5 [--seed 0]

Writes benchmarks/results/m6_rating/results.json (one entry per weight and seed, appended).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from hybrid_multitask import bias_baseline, loo_rating_frame  # noqa: E402

from m6rec.data import load_dataset  # noqa: E402
from m6rec.eval.evaluate import evaluate, fit  # noqa: E402
from m6rec.eval.metrics import mae, rmse  # noqa: E402
from m6rec.eval.protocols import make_split  # noqa: E402
from m6rec.registry import build_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weight", type=float, action="append", default=[],
                    help="rating_weight (repeat); default 0.5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/m6_rating/results.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset("ml-100k")
    loo = make_split(ds, "loo")
    frame, rows = loo_rating_frame(ds, loo.test)
    true = frame["rating"].to_numpy(np.float64)
    mean = float(loo.train.inter["rating"].mean())
    refs = {"global mean": {"rmse": rmse(np.full_like(true, mean), true),
                            "mae": mae(np.full_like(true, mean), true)}}
    bias = bias_baseline(loo.train, frame)
    refs["user + item bias"] = {"rmse": rmse(bias, true), "mae": mae(bias, true)}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out_path.read_text()) if out_path.exists() else {"runs": []}
    results["references (loo test targets)"] = refs
    print(json.dumps(refs), flush=True)
    for w in args.weight or [0.5]:
        model, seconds = fit(build_model("m6", rating_weight=w, random_state=args.seed), loo)
        r = evaluate(model, loo.test, ks=(10,), beyond_accuracy=False)
        pred = model.predict_ratings(loo.test.histories.take(rows),
                                     frame["item_idx"].to_numpy()[:, None])[:, 0]
        run = {"rating_weight": w, "seed": args.seed, "ndcg@10": round(r["ndcg@10"], 4),
               "recall@10": round(r["recall@10"], 4), "loo_rmse": round(rmse(pred, true), 4),
               "loo_mae": round(mae(pred, true), 4), "best_epoch": model.best_epoch_,
               "fit_seconds": round(seconds, 1),
               "command": "python benchmarks/m6_rating.py " + " ".join(sys.argv[1:])}
        print(json.dumps(run), flush=True)
        results["runs"].append(run)
        out_path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
