"""Recall of the service's HNSW index for real user queries over a 10^6-item learned table.

    python benchmarks/large_index_users.py --model-dir runs/serve_large/m6 \
        --data runs/scale/data/2000000_1e6_s0 --users 200

Reads the model directory and the large synthetic log of ``benchmarks/serve_large.py``: the
item table the service scores (the text-only m6 bound to the 10^6-item catalogue) and the
user vectors of ``--users`` seeded users of the log. Exact top-10 by inner product against
what `m6rec.index.build_index` returns (``auto``: FAISS HNSW over the rows lifted onto the unit
sphere) at several ``ef_search``; build seconds, recall@10 and ms per query (one thread).
Writes ``benchmarks/results/scale/large_index_users.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "scale" / "large_index_users.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default="runs/serve_large/m6")
    ap.add_argument("--data", default="runs/scale/data/2000000_1e6_s0")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--ef", default="256,384,1000")
    a = ap.parse_args()
    import faiss
    import torch

    from m6rec.data import load_dataset
    from m6rec.index import build_index
    from m6rec.models.io import load_model_dir

    ds = load_dataset(a.data)
    model, _ = load_model_dir(a.model_dir, ds)
    module = model.module_
    module.eval()
    with torch.inference_mode():
        table = module.item_table().float().numpy()
    users = np.random.default_rng(0).choice(ds.n_users, a.users, replace=False)
    q = model.user_vectors(ds.histories(users), item_table=table)
    exact = np.argsort(-(q @ table.T), axis=1)[:, :10]
    t = time.perf_counter()
    index = build_index(table, kind="auto")
    res: dict = {"items": len(table), "dim": int(table.shape[1]), "users": len(q),
                 "index": index.kind, "build_s": round(time.perf_counter() - t, 1),
                 "faiss_threads": faiss.omp_get_max_threads(), "cores": os.cpu_count(),
                 "runs": []}
    faiss.omp_set_num_threads(1)
    for ef in (int(e) for e in a.ef.split(",")):
        index.tune(ef_search=ef)
        t = time.perf_counter()
        ids = np.concatenate([index.search(q[i:i + 1], 10)[0] for i in range(len(q))])
        ms = 1000 * (time.perf_counter() - t) / len(q)
        recall = float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ids, exact,
                                                                           strict=True)]))
        res["runs"].append({"ef_search": ef, "recall_at_10": round(recall, 4),
                            "ms_per_query": round(ms, 3)})
        print(res["runs"][-1], flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
