"""hybrid and multitask on ml-100k: ranking (loo, full ranking) and rating prediction.

Usage: OMP_NUM_THREADS=1 python benchmarks/hybrid_multitask.py [--out DIR] [--lr 3e-3]
Writes results.json and prints one line per model. Ranking: NDCG@10 / Recall@10 on the ``loo``
test set (seen items excluded). Ratings: RMSE / MAE on a seeded random per-user 10% of ratings
(``split_ratings``; 10% more for early stopping), plus RMSE on the ``loo`` test targets' ratings
for the multi-task models (one fit gives both of its figures there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from m6rec.data import load_dataset
from m6rec.eval.evaluate import evaluate
from m6rec.eval.metrics import mae, rmse
from m6rec.eval.protocols import make_split
from m6rec.models.hybrid import split_ratings
from m6rec.registry import build_model


def bias_baseline(train, test, reg: float = 10.0, iters: int = 10):
    """mu + b_u + b_i by alternating regularised means (Koren's baseline predictor)."""
    u, i = train.inter["user_idx"].to_numpy(), train.inter["item_idx"].to_numpy()
    r = train.inter["rating"].to_numpy(np.float64)
    mu, bu, bi = r.mean(), np.zeros(train.n_users), np.zeros(train.n_items)
    for _ in range(iters):
        bi = np.bincount(i, r - mu - bu[u], train.n_items) / (np.bincount(i, None, train.n_items) + reg)
        bu = np.bincount(u, r - mu - bi[i], train.n_users) / (np.bincount(u, None, train.n_users) + reg)
    pred = np.clip(mu + bu[test["user_idx"]] + bi[test["item_idx"]], 1, 5)
    return pred


def loo_rating_frame(ds, evalset):
    """(user_idx, item_idx, rating) of an EvalSet's targets."""
    t = evalset.targets.tocoo()
    users = evalset.users[t.row]
    lookup = ds.inter.set_index(["user_idx", "item_idx"])["rating"]
    lookup = lookup[~lookup.index.duplicated(keep="last")]
    import pandas as pd

    frame = pd.DataFrame({"user_idx": users, "item_idx": t.col})
    frame["rating"] = lookup.reindex(pd.MultiIndex.from_arrays([users, t.col])).to_numpy()
    return frame, t.row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/hybrid_multitask")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma list of sections: rank,rating,multitask")
    args = ap.parse_args()
    torch.set_num_threads(1)
    only = set(filter(None, args.only.split(",")))
    ds = load_dataset("ml-100k")
    common = {"lr": args.lr, "random_state": args.seed}
    results: dict = {"command": "python benchmarks/hybrid_multitask.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items() if v)}

    def log(key, value):
        results[key] = value
        print(key, json.dumps(value), flush=True)

    loo = make_split(ds, "loo")
    if not only or "rank" in only or "multitask" in only:
        runs = {}
        if not only or "rank" in only:
            runs["hybrid"] = ("hybrid", {})
            runs["hybrid(no features)"] = ("hybrid", {"user_features": False,
                                                      "item_features": False})
        if not only or "multitask" in only:
            for w in ("1,1", "1,0", "0,1"):
                runs[f"multitask(weights={w})"] = ("multitask", {"weights": w})
        valid_frame, _ = loo_rating_frame(ds, loo.valid)
        test_frame, rows = loo_rating_frame(ds, loo.test)
        for key, (name, params) in runs.items():
            t0 = time.perf_counter()
            m = build_model(name, **common, **params)
            click = params.get("weights", "1,0").split(",")[0] != "0"
            m.fit(loo.train, loo.valid if click else valid_frame)
            out = {"fit_seconds": round(time.perf_counter() - t0, 1), "best_epoch": m.best_epoch_}
            if click:
                r = evaluate(m, loo.test, ks=(10, 20), beyond_accuracy=False)
                out.update({k: round(r[k], 4) for k in ("ndcg@10", "recall@10", "ndcg@20")})
            if name == "multitask" and params["weights"].split(",")[1] != "0":
                pred = m.predict_ratings(loo.test.histories.take(rows),
                                         test_frame["item_idx"].to_numpy()[:, None])[:, 0]
                out["loo_rmse"] = round(rmse(pred, test_frame["rating"].to_numpy()), 4)
                out["loo_mae"] = round(mae(pred, test_frame["rating"].to_numpy()), 4)
            log(f"loo {key}", out)
    if not only or "rating" in only:
        train, valid, test = split_ratings(ds, seed=args.seed)
        true = test["rating"].to_numpy()
        mean = np.full(len(test), train.inter["rating"].mean())
        log("ratings global mean", {"rmse": round(rmse(mean, true), 4),
                                    "mae": round(mae(mean, true), 4)})
        b = bias_baseline(train, test)
        log("ratings user+item bias", {"rmse": round(rmse(b, true), 4),
                                       "mae": round(mae(b, true), 4)})
        for key, name, params in [
            ("hybrid(mode=rating)", "hybrid", {"mode": "rating"}),
            ("hybrid(mode=rating, no features) = MF", "hybrid",
             {"mode": "rating", "user_features": False, "item_features": False}),
            ("multitask(weights=1,1)", "multitask", {"weights": "1,1"}),
            ("multitask(weights=0,1)", "multitask", {"weights": "0,1"})]:
            t0 = time.perf_counter()
            m = build_model(name, **common, **params).fit(train, valid)
            e = m.rating_errors(test, train)
            log(f"ratings {key}", {"rmse": round(e["rmse"], 4), "mae": round(e["mae"], 4),
                                   "fit_seconds": round(time.perf_counter() - t0, 1),
                                   "best_epoch": m.best_epoch_})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
