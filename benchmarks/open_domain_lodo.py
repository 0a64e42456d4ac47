"""Leave-one-domain-out: zero-shot `opendomain` on each target vs `textsim` and in-domain models.

For each target domain, the open-domain model's two weights are chosen on the OTHER domains'
validation users (`m6rec.models.opendomain.choose_weights`, as `m6rec pretrain` does); then it
reads the target's catalogue text and the target's training log statistics (item counts and
co-occurrences: nothing fitted) and is scored on the target's `loo` test users. Against it, on
the same split: `textsim` (the frozen LM alone, last item), and `pop`, `itemknn`, `ease` fitted
in-domain on the target's training part.

    OMP_NUM_THREADS=1 python benchmarks/open_domain_lodo.py \\
        --data ml-100k,PATH/amazon_office,PATH/microlens_50k,PATH/lastfm_hetrec2011

Writes <out>/lodo.json, <out>/lodo.md and <out>/lodo.png (NDCG@10 per target).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from m6rec.data import load_datasets
from m6rec.eval.evaluate import evaluate, fit
from m6rec.eval.protocols import make_split
from m6rec.models.opendomain import OpenDomain, choose_weights
from m6rec.registry import build_model

IN_DOMAIN = ("pop", "itemknn", "ease")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="comma list of dataset specs")
    ap.add_argument("--targets", default="", help="names of the targets (default: every one)")
    ap.add_argument("--max-users", type=int, default=3000)
    ap.add_argument("--ease-max-items", type=int, default=5000,
                    help="in-domain EASE only on catalogues up to this size (its inverse is "
                         "cubic in the items)")
    ap.add_argument("--out", default="benchmarks/results/open_domain")
    args = ap.parse_args()
    t0 = time.perf_counter()
    datasets = load_datasets(args.data)
    splits = {d.name: make_split(d, "loo") for d in datasets}
    vectors = {n: OpenDomain(verbose=True).fit(s.train).item_text_ for n, s in splits.items()}
    targets = [t for t in args.targets.split(",") if t] or list(splits)
    rows: dict[str, dict] = {}
    for target in targets:
        sources = [(s, vectors[n]) for n, s in splits.items() if n != target]
        chosen = choose_weights(sources, max_users=args.max_users)
        split = splits[target]
        res = {"sources": chosen["sources"], "cooc_weight": chosen["cooc_weight"],
               "cooc_decay": chosen["cooc_decay"]}
        t1 = time.perf_counter()
        zs = OpenDomain(cooc_weight=chosen["cooc_weight"], cooc_decay=chosen["cooc_decay"])
        zs.fit(split.train, vectors=vectors[target])
        res["opendomain zero-shot"] = evaluate(zs, split.test, ks=(10,))["ndcg@10"]
        res["zero-shot seconds"] = time.perf_counter() - t1
        ts = build_model("textsim").fit(split.train)
        res["textsim"] = evaluate(ts, split.test, ks=(10,))["ndcg@10"]
        for name in IN_DOMAIN:
            if name == "ease" and split.dataset.n_items > args.ease_max_items:
                continue
            m, _ = fit(build_model(name), split)
            res[f"{name} in-domain"] = evaluate(m, split.test, ks=(10,))["ndcg@10"]
        rows[target] = res
        print(target, json.dumps(res), flush=True)
        _write(rows, args, time.perf_counter() - t0)  # after every target: partial runs count


def _write(rows: dict, args: argparse.Namespace, seconds: float) -> None:
    out = {"command": "benchmarks/open_domain_lodo.py --data " + args.data, "targets": rows,
           "seconds": round(seconds, 1)}
    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "lodo.json").write_text(json.dumps(out, indent=2))
    cols = ["opendomain zero-shot", "textsim", *[f"{n} in-domain" for n in IN_DOMAIN]]
    lines = ["| target (`loo`, NDCG@10) | sources | chosen weight, decay | "
             + " | ".join(cols) + " | zero-shot / textsim |",
             "|---|---|---|" + "---|" * len(cols) + "---|"]
    for t, r in rows.items():
        cells = [f"{r[c]:.4f}" if c in r else "–" for c in cols]
        lines.append(f"| {t} | {', '.join(r['sources'])} | {r['cooc_weight']:g}, "
                     f"{r['cooc_decay']:g} | " + " | ".join(cells)
                     + f" | {r['opendomain zero-shot'] / r['textsim']:.2f}x |")
    (d / "lodo.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    _plot(rows, cols, d / "lodo.png")


def _plot(rows: dict, cols: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(rows), 3.6))
    x = np.arange(len(rows))
    width = 0.8 / len(cols)
    for k, c in enumerate(cols):
        ax.bar(x + k * width, [r.get(c, 0.0) for r in rows.values()], width, label=c)
    ax.set_xticks(x + 0.4 - width / 2, list(rows))
    ax.set_ylabel("NDCG@10 (loo test)")
    ax.set_title("zero-shot (left out of training) vs in-domain")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
