"""Size / latency / quality of compressed m6 models, in one process (ratios to the first).

    OMP_NUM_THREADS=1 python benchmarks/compress.py --data ml-100k \
        full=runs/m6 int8=runs/m6_int8 onnx=runs/m6_onnx ...

For each LABEL=DIR: parameters (stored weights; non-zero after pruning), bytes on disk
(config.json + state.npz), CPU latency per user at batch 1 and batch 256 (median of repeats,
one thread, torch and onnxruntime alike) and NDCG@10 on the model's protocol (loo). Writes
benchmarks/results/compress/<data>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def latency(model, hist, batch: int, repeats: int) -> float:
    """Median seconds per user of ``model.score`` on the first ``batch`` users."""
    part = hist.take(slice(0, batch))
    model.score(part)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.score(part)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / batch


def main() -> None:
    import torch

    from m6rec.data import load_datasets
    from m6rec.eval.evaluate import evaluate_split
    from m6rec.eval.protocols import make_split
    from m6rec.models.io import load_model_dir

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--protocol", default="loo")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compress",
                    help="folder of <data>.json and .md")
    ap.add_argument("models", nargs="+", help="LABEL=DIR, the reference first")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_datasets(args.data)[0]
    split = make_split(ds, args.protocol)
    hist = split.test.histories
    rows = []
    for spec in args.models:
        label, _, d = spec.partition("=")
        model, _ = load_model_dir(d, ds)
        if hasattr(model, "n_parameters"):
            counts = model.n_parameters()
        else:  # m6: its network (the frozen LM's 22.7M parameters not counted)
            n = sum(p.numel() for p in model.module_.parameters())
            counts = {"total": n, "nonzero": n}
        size = sum((Path(d) / f).stat().st_size for f in ("config.json", "state.npz"))
        b1 = latency(model, hist, 1, args.repeats * 5)
        b256 = latency(model, hist, 256, args.repeats)
        ndcg = evaluate_split(model, split)["metrics"]["ndcg@10"]
        rows.append({"label": label, "dir": d, "model": model.name, "params": counts["total"],
                     "nonzero": counts["nonzero"], "bytes": size, "b1_s": b1, "b256_s": b256,
                     "ndcg@10": ndcg})
        print(json.dumps(rows[-1]), flush=True)
    ref = rows[0]
    for r in rows:
        r["size_ratio"] = ref["bytes"] / r["bytes"]
        r["b1_speedup"] = ref["b1_s"] / r["b1_s"]
        r["b256_speedup"] = ref["b256_s"] / r["b256_s"]
        r["ndcg_rel"] = r["ndcg@10"] / ref["ndcg@10"] - 1
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{ds.name}.json").write_text(json.dumps(rows, indent=2))
    lines = [f"| {ds.name} ({args.protocol}) | params (non-zero) | bytes on disk | x smaller | "
             "ms/user b=1 | speed-up b=1 | ms/user b=256 | speed-up b=256 | NDCG@10 | rel. |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['params']:,} ({r['nonzero']:,}) | {r['bytes']:,} | "
                     f"{r['size_ratio']:.1f} | {1e3 * r['b1_s']:.2f} | {r['b1_speedup']:.2f} | "
                     f"{1e3 * r['b256_s']:.3f} | {r['b256_speedup']:.2f} | {r['ndcg@10']:.4f} | "
                     f"{100 * r['ndcg_rel']:+.1f}% |")
    (out / f"{ds.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
