"""KG-enhanced ``kg`` model vs its no-KG twin (``use_kg=false``) on ml-100k, ``loo``, full ranking.

Per seed: TransE entity vectors are trained on ml-100k's ``.kg`` triples (saved as
``runs/kg/transe_seed{S}.npz``, reused when present), then the two twins are fitted with the same
seed and hyper-parameters on the loo training part (early stopping on validation NDCG@10) and
evaluated with `m6rec.eval.evaluate` on the test users, split by their test item:

- ``linked``: test items with a KG link (the gain the issue asks for);
- ``linked_rare``: linked test items with fewer than 20 training interactions;
- ``unlinked``: test items without a link;
- ``all``.

Reports NDCG@10 / Recall@10 of both twins and the paired difference, mean ± std over seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kg_gain.py --seeds 3 \\
        [--seed-list 1,2] [--param patience=5] [--out benchmarks/results/kg]

Each finished seed is also written at once to ``kg_gain_seed{S}.json`` in ``--out``;
``--combine F1.json F2.json ...`` reports over seeds run as separate jobs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from m6rec.data import load_dataset
from m6rec.eval.evaluate import evaluate
from m6rec.eval.protocols import EvalSet, make_split
from m6rec.kg import KGEmbeddings, train_kg_embeddings
from m6rec.registry import build_model

KS = (10,)
METRICS = ("ndcg", "recall")


def subset(es: EvalSet, rows: np.ndarray) -> EvalSet:
    idx = np.flatnonzero(rows)
    return EvalSet(users=es.users[idx], histories=es.histories.take(idx), targets=es.targets[idx])


def groups(split) -> dict[str, EvalSet]:
    ds, test = split.dataset, split.test
    t = test.targets.tocsr()
    first = t.indices[t.indptr[:-1]]  # loo: one target per user
    linked = ds.kg.item_entity[first] >= 0
    rare = split.train.item_counts()[first] < 20
    return {"linked": subset(test, linked), "linked_rare": subset(test, linked & rare),
            "unlinked": subset(test, ~linked), "all": test}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-list", default="", help="comma-separated seeds (instead of --seeds)")
    ap.add_argument("--param", action="append", default=[], help="kg model key=value")
    ap.add_argument("--kg-dir", default="runs/kg")
    ap.add_argument("--out", default="benchmarks/results/kg")
    ap.add_argument("--combine", nargs="*", default=None,
                    help="only report over these kg_gain_seed{S}.json files")
    args = ap.parse_args()
    if args.combine:
        combine(args.combine, args.out)
        return
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    ds = load_dataset("ml-100k")
    split = make_split(ds, "loo")
    sets = groups(split)
    print({k: len(v) for k, v in sets.items()}, flush=True)
    runs = []
    seeds = [int(x) for x in args.seed_list.split(",") if x] or list(range(args.seeds))
    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = Path(args.kg_dir) / f"transe_seed{seed}.npz"
        t0 = time.perf_counter()
        if not path.is_file():
            train_kg_embeddings(ds.kg, dim=64, epochs=30, random_state=seed).save(path)
        kg_s = time.perf_counter() - t0
        assert KGEmbeddings.load(path).params["random_state"] == seed
        row: dict = {"seed": seed, "transe_seconds": kg_s}
        for use_kg in (True, False):
            t0 = time.perf_counter()
            m = build_model("kg", use_kg=use_kg, kg_path=str(path), random_state=seed, **params)
            m.fit(split.train, valid=split.valid)
            name = "kg" if use_kg else "no_kg"
            row[name] = {g: evaluate(m, es, KS, METRICS, beyond_accuracy=False)
                         for g, es in sets.items()}
            row[name]["fit_seconds"] = time.perf_counter() - t0
            row[name]["best_epoch"] = m.best_epoch_
        runs.append(row)
        (d / f"kg_gain_seed{seed}.json").write_text(json.dumps({"params": params, "run": row},
                                                               indent=2))
        print(json.dumps({"seed": seed, **{n: {g: round(row[n][g]["ndcg@10"], 4) for g in sets}
                                           for n in ("kg", "no_kg")}}), flush=True)
    report(runs, {g: len(es) for g, es in sets.items()}, params, d)


def report(runs: list[dict], sizes: dict[str, int], params: dict, d: Path) -> None:
    """Write ``kg_gain.json`` / ``kg_gain.md`` (mean ± std over ``runs``) to ``d``; a metric
    missing from some runs is averaged over the runs that have it (and says how many)."""
    (d / "kg_gain.json").write_text(json.dumps({"params": params, "runs": runs}, indent=2))
    lines = ["| test items | users | metric | kg | no-KG twin | difference (kg - twin) | seeds |",
             "|---|---|---|---|---|---|---|"]
    for g, n in sizes.items():
        for metric in ("ndcg@10", "recall@10"):
            have = [r for r in runs if metric in r["kg"][g] and metric in r["no_kg"][g]]
            if not have:
                continue
            a = np.array([r["kg"][g][metric] for r in have])
            b = np.array([r["no_kg"][g][metric] for r in have])
            lines.append(f"| {g} | {n} | {metric} | {a.mean():.4f} ± {a.std():.4f} | "
                         f"{b.mean():.4f} ± {b.std():.4f} | {(a - b).mean():+.4f} ± "
                         f"{(a - b).std():.4f} | {','.join(str(r['seed']) for r in have)} |")
    fit = [r[n]["fit_seconds"] for r in runs for n in ("kg", "no_kg") if "fit_seconds" in r[n]]
    took = (f"fit seconds per model {np.mean(fit):.0f} (min {min(fit):.0f}, max {max(fit):.0f})"
            if fit else "no fit times")
    lines.append(f"\n{len(runs)} seeds (mean ± std, population std); {took}; "
                 f"params {json.dumps(params)}")
    (d / "kg_gain.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def combine(files: list[str], out: str) -> None:
    """`report` over per-seed ``kg_gain_seed{S}.json`` files written by separate runs."""
    from m6rec.data import load_dataset
    from m6rec.eval.protocols import make_split

    loaded = [json.loads(Path(f).read_text()) for f in files]
    runs = sorted((x["run"] for x in loaded), key=lambda r: r["seed"])
    sets = groups(make_split(load_dataset("ml-100k"), "loo"))
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    report(runs, {g: len(es) for g, es in sets.items()}, loaded[0]["params"], d)

if __name__ == "__main__":
    main()
