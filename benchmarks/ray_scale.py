"""Batch scoring and batch encoding at scale: one process against Ray with local workers.

    python benchmarks/ray_scale.py --size 1e6:1e5 --workers 2 --encode-texts 20000

On a seeded synthetic log (`m6rec.data.synthetic`, written by ``scale_curve.py``'s generator
under ``--data-dir``):

- **batch scoring**: `m6rec.distributed.batch_recommend` (the ``m6rec batch-recommend``
  library call) of the top-10 for every user with an ALS model, in one process and through Ray
  (``--workers`` actors of 1 CPU each); Ray is timed twice, the first call with the start of a
  local Ray instance, the second on the running one; the frames must be equal;
- **batch encoding**: the first ``--encode-texts`` item texts of the catalogue through the
  default text encoder (MiniLM), in one process (``encoder.encode``) and through Ray
  (`m6rec.distributed.encode.encode_texts_ray`); the largest difference between the vectors.

Speed-up = one-process seconds / Ray seconds. Writes
``benchmarks/results/scale/ray_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_curve import _size, ensure_data  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "scale" / "ray_scale.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1e6:1e5", help="INTERACTIONS:ITEMS")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--encode-texts", type=int, default=20000)
    ap.add_argument("--data-dir", type=Path, default=Path("runs/scale/data"))
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    import numpy as np

    from m6rec.data import load_files
    from m6rec.distributed import batch_recommend, ensure_ray
    from m6rec.distributed.encode import catalogue_texts, encode_texts_ray
    from m6rec.registry import build_model
    from m6rec.text import get_encoder

    n, m = _size(a.size)
    d = ensure_data(a.data_dir, n, m, seed=0)
    ds = load_files(d / "interactions.parquet", items=d / "items.parquet", name="synthetic")
    res: dict = {"interactions": ds.n_interactions, "users": ds.n_users, "items": ds.n_items,
                 "workers": a.workers, "cores": os.cpu_count(), "loadavg_start": os.getloadavg()[0],
                 "command": " ".join(sys.argv)}
    model = build_model("als").fit(ds)

    t = time.perf_counter()
    one = batch_recommend(model, ds, 10)
    res["score_one_process_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ensure_ray(num_cpus=a.workers)
    res["ray_start_s"] = time.perf_counter() - t
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        by_ray = batch_recommend(model, ds, 10, ray=True, workers=a.workers)
        runs.append(time.perf_counter() - t)
    res["score_ray_s"] = runs
    res["score_rows"] = len(one)
    res["score_frames_equal"] = bool(one.equals(by_ray))
    res["score_speedup"] = res["score_one_process_s"] / min(runs)

    texts = catalogue_texts(ds, profiles=False)[: a.encode_texts]
    enc = get_encoder("default")
    enc.encode(texts[:64])  # load the weights before timing
    t = time.perf_counter()
    v1 = np.asarray(enc.encode(texts, batch_size=64), np.float32)
    res["encode_one_process_s"] = time.perf_counter() - t
    t = time.perf_counter()
    v2 = encode_texts_ray("default", texts, workers=a.workers)
    res["encode_ray_s"] = time.perf_counter() - t
    res["encode_texts"] = len(texts)
    res["encode_max_diff"] = float(np.abs(v1 - v2).max())
    res["encode_speedup"] = res["encode_one_process_s"] / res["encode_ray_s"]
    res["loadavg_end"] = os.getloadavg()[0]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
