"""Prequential (test-then-train) replay: static vs fold-in vs fine-tuning, several models and data.

For every dataset: the interactions are put in global time order and cut at ``--fraction``
(50%); every model is fitted once on the first part, then each policy replays the later part
from that same fitted model (`m6rec.online.replay.run_replay`): before each interaction is
revealed the user's top-10 is asked (history at query time = every earlier event of the user,
for every policy alike), then the policy updates the weights every ``N`` events. ``static`` is
always run and is the reference of the ratios (same process, same fitted model, same queries).

Policies that do not apply to a model are skipped and listed: ``foldin`` needs a fold-in
(`m6rec.online.foldin.FOLDIN_MODELS`), ``finetune`` a sequential model (sasrec, gru4rec, m6).

    nice -n 19 .venv/bin/python benchmarks/prequential.py --data ml-100k --data amazon_office \\
        --model ease --model itemknn --model als --policy foldin:1000 --sample 10000

Datasets: built-in names, paths, or names under ``--shared`` (``../shared/data``, beside the repository; read
there, never copied). Writes ``OUT/NAME.md`` (table with ratios to static) and one
``OUT/NAME_<data>_<model>.png`` per pair; the raw dump ``RAW/NAME.json`` (every run with its
cumulative curve) goes under the ignored ``runs/`` folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

KEYS = ("ndcg@10", "recall@10")


def load(spec: str, shared: Path):
    from m6rec.data import BUILTIN, load_dataset

    if spec in BUILTIN or Path(spec).exists():
        return load_dataset(spec)
    return load_dataset(shared / spec)


def applies(model, policy) -> bool:
    from m6rec.models.sequential import SequentialRecommender
    from m6rec.online.foldin import FOLDIN_MODELS

    if policy.kind == "foldin":
        return model.name in FOLDIN_MODELS
    if policy.kind == "finetune":
        return isinstance(model, SequentialRecommender)
    return True


def table(runs: list[dict]) -> str:
    lines = ["| data | model | policy | queries | NDCG@10 | x static | Recall@10 | x static | "
             "updates | mean update s | fit s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m = r["metrics"]
        lines.append(
            f"| {r['dataset']} | {r['model_spec']} | {r['policy']} | {r['queries']} | "
            f"{m['ndcg@10']:.4f} | {r['ratio']['ndcg@10']:.2f}x | {m['recall@10']:.4f} | "
            f"{r['ratio']['recall@10']:.2f}x | {r['updates']} | "
            f"{r['update_seconds_mean']:.3f} | {r['fit_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", action="append", required=True,
                    help="dataset (repeat): ml-100k, a path, or a name under --shared")
    ap.add_argument("--model", action="append", required=True,
                    help="model spec (repeat), e.g. ease, 'sasrec(epochs=20)'")
    ap.add_argument("--policy", action="append", default=[],
                    help="policy besides static (repeat): foldin[:N], finetune[:N]")
    ap.add_argument("--sample", type=int, default=0,
                    help="query a seeded random sample of this many later events (0 = all); "
                         "every event is still revealed and learned from")
    ap.add_argument("--seed", type=int, default=0, help="seeds the sample and fine-tuning")
    ap.add_argument("--fraction", type=float, default=0.5, help="fit on this first share")
    ap.add_argument("--steps", type=int, default=10, help="finetune: optimiser steps per update")
    ap.add_argument("--replay-share", type=float, default=0.5,
                    help="finetune: share of each batch replayed from older data")
    ap.add_argument("--lr-scale", type=float, default=1.0, help="finetune: learning rate x this")
    ap.add_argument("--half-life", action="append", type=float, default=[],
                    help="ease fold-in: also run recency-weighted fold-in with this half-life "
                         "in days (repeat); adds the control 'static, weighted at the cut' "
                         "(the same weighting, never updated)")
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/prequential"))
    ap.add_argument("--raw", type=Path, default=Path("runs/benchmarks/prequential"),
                    help="folder of the raw JSON dump (every run and its curve)")
    ap.add_argument("--name", default="prequential", help="file stem of the outputs")
    args = ap.parse_args(argv)

    import numpy as np  # noqa: F401  (heavy imports after argument parsing)
    import torch

    from m6rec.online.policy import parse_policy
    from m6rec.online.replay import fit_first_part, make_stream, plot_curves, run_replay
    from m6rec.registry import build_model, parse_model_spec

    torch.set_num_threads(1)
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable),
                                                "benchmarks/prequential.py",
                                                *(argv if argv is not None else sys.argv[1:])])
    print(command, flush=True)
    policies = [parse_policy("static")] + [parse_policy(p) for p in args.policy
                                           if parse_policy(p).kind != "static"]
    args.out.mkdir(parents=True, exist_ok=True)
    out = {"command": command, "sample": args.sample, "seed": args.seed,
           "fraction": args.fraction, "threads": {"torch": torch.get_num_threads(),
                                                  "OMP_NUM_THREADS": os.environ.get(
                                                      "OMP_NUM_THREADS")},
           "finetune": {"steps": args.steps, "replay": args.replay_share,
                        "lr_scale": args.lr_scale},
           "runs": [], "skipped": []}
    t_all = time.perf_counter()
    for spec in args.data:
        ds = load(spec, args.shared)
        stream = make_stream(ds, args.fraction)
        for mspec in args.model:
            name, params = parse_model_spec(mspec)
            model, fit_s = fit_first_part(build_model(name, **params), stream)
            print(f"{ds.name} {mspec}: fitted in {fit_s:.1f} s", flush=True)
            pair: dict[str, dict] = {}
            static = None
            runs = [(pol, 0.0) for pol in policies]
            if name == "ease":
                for days in args.half_life:
                    runs += [(policies[0], days)] + [(p, days) for p in policies
                                                     if p.kind == "foldin"]
            for pol, days in runs:
                if not applies(model, pol):
                    out["skipped"].append(f"{ds.name} {mspec} {pol}: policy does not apply")
                    continue
                t0 = time.perf_counter()
                start = model
                if days and pol.kind == "static":  # control: weighted at the cut, never updated
                    from m6rec.online.foldin import EaseFoldIn

                    start = EaseFoldIn(model, stream.train, half_life=days * 86400.0).solve(
                        model, stream.train.n_users)
                res = run_replay(start, stream, pol, sample=args.sample, seed=args.seed,
                                 steps=args.steps, replay_share=args.replay_share,
                                 lr_scale=args.lr_scale, half_life=days * 86400.0)
                res.update(model_spec=mspec, fit_seconds=fit_s, half_life_days=days,
                           replay_seconds=time.perf_counter() - t0)
                if days:
                    res["policy"] = f"{pol} half-life {days:g} d"
                static = static or res
                res["ratio"] = {k: (res["metrics"][k] / static["metrics"][k]
                                    if static["metrics"][k] else float("nan")) for k in KEYS}
                out["runs"].append(res)
                pair[res["policy"]] = res
                print(json.dumps({"data": ds.name, "model": mspec, "policy": res["policy"],
                                  "queries": res["queries"], **res["metrics"],
                                  "x_static": round(res["ratio"]["ndcg@10"], 3),
                                  "updates": res["updates"],
                                  "update_s_mean": round(res["update_seconds_mean"], 3),
                                  "replay_s": round(res["replay_seconds"], 1)}), flush=True)
                _write(out, args, t_all)
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in mspec)
            plot_curves(pair, args.out / f"{args.name}_{ds.name}_{safe}.png",
                        title=f"{mspec} on {ds.name}: prequential (cumulative)")
    md = _write(out, args, t_all)
    print(md)


def _write(out: dict, args, t_all: float) -> str:
    out["seconds"] = time.perf_counter() - t_all
    args.raw.mkdir(parents=True, exist_ok=True)
    (args.raw / f"{args.name}.json").write_text(json.dumps(out, indent=1, default=_jsonable))
    md = (f"`{out['command']}`\n\n{table(out['runs'])}\n"
          + "".join(f"\nskipped: {s}" for s in out["skipped"]) + "\n")
    (args.out / f"{args.name}.md").write_text(md)
    return md


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    main()
