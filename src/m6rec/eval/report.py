"""Benchmark reports: ``report.md``, ``results.json`` and PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from m6rec.eval.benchmark import HEADLINE, summary_json


def write_report(result: dict[str, Any], out: str | Path, command: str = "") -> Path:
    """Write the report files into ``out``; returns the path of ``report.md``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps(
        {**summary_json(result), "full": _strip(result)}, indent=2))
    plots = [plot_metrics(result, d / f"metrics_{result['protocol']}.png")]
    curves = plot_curves(result, d / "training_curves.png")
    if curves:
        plots.append(curves)
    for name, r in result["models"].items():
        if "item_map" in r:
            plots.append(plot_item_map(r["item_map"], name, d / f"item_map_{name}.png"))
    lines = [f"# m6rec benchmark: {result['dataset']}, protocol `{result['protocol']}`", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += ["Split: " + ", ".join(f"{k} {v}" for k, v in result["split"].items()), ""]
    lines += [metrics_table(result), ""]
    extra = [n for n, r in result["models"].items() if "warm" in r]
    if extra:
        lines += ["Warm-item test set (same models):", "", metrics_table(result, block="warm"), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    path = d / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def metrics_table(result: dict[str, Any], block: str = "metrics") -> str:
    """Markdown table: one row per model, headline metrics (mean ± std over seeds)."""
    head = "| model | " + " | ".join(HEADLINE) + " | fit s | seeds |"
    rows = [head, "|" + "---|" * (len(HEADLINE) + 3)]
    for name, r in result["models"].items():
        if block not in r:
            continue
        std = r.get("std", {}).get(block, {})
        cells = []
        for k in HEADLINE:
            v = r[block].get(k)
            cell = "n/a" if v is None else f"{v:.4f}"
            if k in std:
                cell += f" ± {std[k]:.4f}"
            cells.append(cell)
        rows.append(f"| {name} | " + " | ".join(cells) +
                    f" | {r['fit_seconds']:.1f} | {r.get('seeds', 1)} |")
    return "\n".join(rows)


def plot_metrics(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(result["models"])
    keys = ["ndcg@10", "recall@10", "ndcg@20", "recall@20"]
    x = np.arange(len(names))
    w = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) + 2), 4))
    for j, k in enumerate(keys):
        vals = [result["models"][n]["metrics"].get(k, 0.0) for n in names]
        errs = [result["models"][n].get("std", {}).get("metrics", {}).get(k, 0.0) for n in names]
        ax.bar(x + (j - (len(keys) - 1) / 2) * w, vals, w, yerr=errs if any(errs) else None,
               label=k, capsize=2)
    ax.set_xticks(x, names)
    ax.set_ylabel("test metric")
    ax.set_title(f"{result['dataset']} · {result['protocol']} (full ranking)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(result: dict[str, Any], path: Path) -> Path | None:
    """Loss and validation NDCG@10 per epoch, for models that record ``history_``."""
    curves = {n: r["curves"] for n, r in result["models"].items() if r.get("curves")}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, hist in curves.items():
        ep = [h["epoch"] for h in hist]
        if any("loss" in h for h in hist):
            a1.plot(ep, [h.get("loss") for h in hist], label=name)
        if any("valid_ndcg@10" in h for h in hist):
            a2.plot(ep, [h.get("valid_ndcg@10") for h in hist], label=name)
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss")
    a2.set_xlabel("epoch")
    a2.set_ylabel("valid NDCG@10")
    a1.legend(fontsize=8)
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_item_map(imap: dict[str, Any], name: str, path: Path) -> Path:
    """Item vectors in 2-D (PCA), coloured by each item's first category (top 10 + other)."""
    import matplotlib

    matplotlib.use("Agg")
    from collections import Counter

    import matplotlib.pyplot as plt
    import numpy as np

    xy, labels = np.asarray(imap["xy"]), list(imap["labels"])
    top = [c for c, _ in Counter(lb for lb in labels if lb).most_common(10)]
    fig, ax = plt.subplots(figsize=(7, 6))
    other = np.array([lb not in top for lb in labels])
    ax.scatter(xy[other, 0], xy[other, 1], s=4, c="lightgrey", label="other")
    for c in top:
        sel = np.array([lb == c for lb in labels])
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, label=c)
    ax.set_title(f"{name}: item vectors (PCA), coloured by first category")
    ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy without the item maps (they are plotted, not stored)."""
    result = {**result, "models": {n: {k: v for k, v in r.items() if k != "item_map"}
                                   for n, r in result["models"].items()}}
    return json.loads(json.dumps(result, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                 else str(o)))
