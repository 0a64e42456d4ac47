"""Tune ``m6`` on ml-100k ``loo``: fit each parameter set for each seed, one at a time, exactly as
``m6rec benchmark --data ml-100k --models m6 --protocol loo`` does (``make_split(ds, "loo")``,
``fit(model, split)`` with the validation set for early stopping, ``evaluate_split``), and append
one JSON line per finished fit to ``runs/benchmarks/m6_tune/results.jsonl`` (an ignored folder;
nothing is lost when a long sweep is stopped).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 \
        .venv/bin/python benchmarks/m6_tune.py --seeds 0 '{}' '{"id_dropout": 0.0}'
    .venv/bin/python benchmarks/m6_tune.py --summary      # mean +- std per parameter set
    .venv/bin/python benchmarks/m6_tune.py --model fusion --seeds 0,1,2 '{"members": "ease,sasrec"}'

Each line: model, params (the ones given; the rest are the model's defaults), seed, test
ndcg@10 / recall@10 / mrr@10 / hit@10 / ndcg@20, best epoch, epochs run, best validation
NDCG@10, fit seconds, the wall-clock time it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "runs" / "benchmarks" / "m6_tune" / "results.jsonl"
KEYS = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "ndcg@20")


def run_one(split, model_name: str, params: dict, seed: int) -> dict:
    from m6rec.eval.evaluate import evaluate_split, fit

    model, seconds = fit(seeded_model(model_name, params, seed), split)
    metrics = evaluate_split(model, split)["metrics"]
    history = getattr(model, "history_", None) or []
    valid = [r.get("valid_ndcg@10") for r in history if "valid_ndcg@10" in r]
    return {"model": model_name, "params": params, "seed": seed,
            **{k: float(metrics[k]) for k in KEYS},
            "best_epoch": getattr(model, "best_epoch_", None), "epochs_run": len(history),
            "best_valid_ndcg@10": max(valid) if valid else None,
            "fit_seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def seeded_model(model_name: str, params: dict, seed: int):
    """The model with ``random_state=seed``; for ``fusion``, every member that has a
    ``random_state`` gets the seed (through ``member_params``)."""
    from m6rec.registry import build_model, parse_model_spec, split_models

    model = build_model(model_name, **params)
    if "random_state" in model.get_params():
        return build_model(model_name, **{**params, "random_state": seed})
    if model_name == "fusion":
        extra = json.loads(params.get("member_params", "{}"))
        for name, _ in (parse_model_spec(m) for m in split_models(model.members)):
            if "random_state" in build_model(name).get_params():
                extra[name] = {**extra.get(name, {}), "random_state": seed}
        return build_model(model_name, **{**params, "member_params": json.dumps(extra)})
    return model


def summary(path: Path) -> list[dict]:
    """Mean and sample std of test NDCG@10 per (model, params), over the seeds run."""
    import numpy as np

    groups: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            key = r["model"] + " " + json.dumps(r["params"], sort_keys=True)
            if r.get("variant"):  # runs of an earlier version of the code, kept apart
                key += f" [{r['variant']}]"
            groups.setdefault(key, []).append(r)
    out = []
    for key, runs in groups.items():
        v = np.array([r["ndcg@10"] for r in runs])
        out.append({"run": key, "seeds": sorted(r["seed"] for r in runs),
                    "ndcg@10": round(float(v.mean()), 4),
                    "std": round(float(v.std(ddof=1)), 4) if len(v) > 1 else None,
                    "per_seed": [round(float(x), 4) for x in v],
                    "best_epochs": [r["best_epoch"] for r in runs],
                    "fit_seconds": [r["fit_seconds"] for r in runs]})
    return sorted(out, key=lambda r: -r["ndcg@10"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("params", nargs="*", help="JSON dicts of hyper-parameters, one per run")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    ap.add_argument("--model", default="m6", help="registered model name (default m6)")
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--summary", action="store_true", help="print the table of --out and exit")
    ap.add_argument("--markdown", action="store_true", help="with --summary: a Markdown table")
    args = ap.parse_args(argv)
    if args.summary:
        rows = summary(args.out)
        if args.markdown:
            print("| run | seeds | NDCG@10 | per seed | best epochs | fit s |")
            print("|---|---|---|---|---|---|")
        for row in rows:
            if not args.markdown:
                print(json.dumps(row))
                continue
            std = f" +- {row['std']:.4f}" if row["std"] is not None else ""
            print(f"| `{row['run']}` | {','.join(map(str, row['seeds']))} | "
                  f"{row['ndcg@10']:.4f}{std} | {', '.join(f'{v:.4f}' for v in row['per_seed'])}"
                  f" | {', '.join(map(str, row['best_epochs']))} | "
                  f"{', '.join(f'{v:.0f}' for v in row['fit_seconds'])} |")
        return
    sets = []
    for i, text in enumerate(args.params or ["{}"]):
        try:
            p = json.loads(text)
        except json.JSONDecodeError as e:
            sys.exit(f"params #{i + 1} is not JSON: {e}: {text!r}")
        if not isinstance(p, dict):
            sys.exit(f"params #{i + 1} must be a JSON object, got {text!r}")
        sets.append(p)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from m6rec.data import load_dataset
    from m6rec.eval.protocols import make_split

    torch.set_num_threads(args.threads)
    split = make_split(load_dataset(args.data), "loo")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for p in sets:
        for seed in seeds:
            row = {"data": args.data, **run_one(split, args.model, p, seed)}
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
