"""Cold-start items with ``m6``: NDCG@10 on items never seen in training, ranked in the full
catalogue, against the same model's NDCG@10 on warm items (the ``cold`` protocol: a seeded 10%
of the items removed from training; every interaction with them is a test target, and each
user's last warm interaction forms the warm test set).

    HF_HUB_OFFLINE=1 python benchmarks/m6_cold.py '{"text_only": true, "seen_negatives": true}'
    HF_HUB_OFFLINE=1 python benchmarks/m6_cold.py '{"text_only": true, "seen_negatives": true,
        "epochs": 25, "patience": 4}' PATH/amazon_office

Prints one JSON line: parameters, fit seconds, best epoch, cold and warm NDCG@10, their ratio.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from m6rec.data import load_dataset
from m6rec.eval.evaluate import evaluate
from m6rec.eval.protocols import make_split
from m6rec.registry import build_model


def main() -> None:
    params = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"text_only": True,
                                                                  "seen_negatives": True}
    data = sys.argv[2] if len(sys.argv) > 2 else "ml-100k"
    torch.set_num_threads(2)
    ds = load_dataset(data)
    split = make_split(ds, "cold")
    t0 = time.time()
    model = build_model("m6", **params).fit(split.train, split.valid)
    cold = evaluate(model, split.test, dataset=ds)
    warm = evaluate(model, split.extra["warm"], dataset=ds)
    print(json.dumps({"data": data, "params": params, "fit_s": round(time.time() - t0),
                      "best_epoch": model.best_epoch_, "cold_ndcg@10": cold["ndcg@10"],
                      "cold_recall@10": cold["recall@10"], "warm_ndcg@10": warm["ndcg@10"],
                      "ratio": cold["ndcg@10"] / warm["ndcg@10"]}), flush=True)


if __name__ == "__main__":
    main()
