"""How every cost grows with the data: load, fit and full-ranking evaluation seconds and peak
memory per model, from 10^5 to 10^7 interactions, on seeded synthetic logs.

    python benchmarks/scale_curve.py --sizes 1e5:1e4,1e6:1e5 --out benchmarks/results/scale
    python benchmarks/scale_curve.py --sizes 1e7:1e6 --models load        # the data path only

Each size ``INTERACTIONS:ITEMS`` is a log from `m6rec.data.synthetic.generate` (Zipf items,
heavy-tailed users, sessions with repeats and successors, item texts; users = interactions / 10),
written once as CSV + Parquet under ``--data-dir``. Every measurement runs in its own
subprocess (so peak RSS is that model's own), watched by this process: a child above
``--mem-gb`` resident memory is killed and recorded as such, as is one past ``--timeout``;
a model that refuses (`m6rec.memory.MemoryBudgetError`) is recorded with its message.

Per model: load seconds (Parquet -> Dataset), split seconds (leave-one-out), fit seconds
(torch models: ``epochs=1``, so fit = one epoch plus one validation pass), evaluation seconds of
a full-ranking evaluation (every item ranked, seen items excluded) of ``--eval-users`` sampled
test users, and the child's peak RSS. Per size, in the same run: our ALS / BPR against
``implicit`` called directly (same matrix, factors, iterations; time ratio; each four times in
the order ours, implicit, implicit, ours, wall and CPU seconds, ``--references`` picks which),
our evaluation of every test user (ALS), and our evaluation against a naive per-user loop
(time ratio, same metrics). Writes ``scale_curve.json``, ``scale_curve.md`` and log-log PNGs with the fitted
growth exponent (least squares slope of log cost on log interactions) of every curve.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

MODELS = {  # label -> (registry name, params)
    "pop": ("pop", {}),
    "itemknn": ("itemknn", {}),
    "ease": ("ease", {}),
    "ease-pruned": ("ease", {"max_items": 5000}),
    "als": ("als", {}),
    "bpr": ("bpr", {}),
    "sasrec": ("sasrec", {"epochs": 1, "patience": 1, "batch_size": 256, "device": "cpu"}),
    "m6-text": ("m6", {"encoder": "hashing:64", "text_only": True, "epochs": 1, "patience": 1,
                       "batch_size": 256,
                       "device": "cpu"}),
    "m6-ids": ("m6", {"encoder": "hashing:64", "text_only": False, "epochs": 1, "patience": 1,
                      "batch_size": 256,
                      "device": "cpu"}),
}
GB = 1024**3


def _size(text: str) -> tuple[int, int]:
    a, b = text.split(":")
    return int(float(a)), int(float(b))


def _label(n: int) -> str:
    return f"1e{int(round(np.log10(n)))}" if n == 10 ** int(round(np.log10(n))) else str(n)


def _peak_rss() -> int:
    """This process's own peak RSS (``VmHWM``: reset by exec, unlike ``ru_maxrss``, which a
    child inherits from the parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- data -----------------------------------------------------------------------------------------
def ensure_data(data_dir: Path, n: int, m: int, seed: int) -> Path:
    d = data_dir / f"{_label(n)}_{_label(m)}_s{seed}"
    if (d / "done").is_file():
        return d
    from m6rec.data.synthetic import generate

    d.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    inter, items = generate(n, m, seed=seed)
    inter.to_parquet(d / "interactions.parquet", index=False)
    inter.to_csv(d / "interactions.csv", index=False)
    items.to_parquet(d / "items.parquet", index=False)
    items.to_csv(d / "items.csv", index=False)
    (d / "done").write_text(f"{time.perf_counter() - t:.1f}\n")
    return d


# -- workers (run in a child process) ---------------------------------------------------------------
def _sample(evalset, n_users: int, seed: int):
    from m6rec.eval.protocols import EvalSet

    if n_users <= 0 or len(evalset) <= n_users:
        return evalset
    sel = np.sort(np.random.default_rng(seed).choice(len(evalset), n_users, replace=False))
    return EvalSet(evalset.users[sel], evalset.histories.take(sel), evalset.targets[sel])


def _load(d: Path, fmt: str):
    from m6rec.data import load_files

    t = time.perf_counter()
    ds = load_files(d / f"interactions.{fmt}", items=d / f"items.{fmt}", name="synthetic")
    return ds, time.perf_counter() - t


def worker_load(d: Path, fmt: str) -> dict:
    ds, secs = _load(d, fmt)
    return {"load_s": secs, "rows": ds.n_interactions, "users": ds.n_users, "items": ds.n_items}


def worker_model(d: Path, label: str, eval_users: int, seed: int) -> dict:
    from m6rec.eval.evaluate import evaluate, fit
    from m6rec.eval.protocols import split_loo
    from m6rec.memory import MemoryBudgetError
    from m6rec.registry import build_model

    ds, load_s = _load(d, "parquet")
    t = time.perf_counter()
    split = split_loo(ds)
    split_s = time.perf_counter() - t
    split.test = _sample(split.test, eval_users, seed)
    if split.valid is not None:
        split.valid = _sample(split.valid, eval_users, seed + 1)
    name, params = MODELS[label]
    out = {"load_s": load_s, "split_s": split_s, "params": params}
    model = build_model(name, **params)
    cpu = time.process_time()
    try:
        model, fit_s = fit(model, split)
    except MemoryBudgetError as e:
        out.update(status="refused", message=str(e), rss_before_refusal=_peak_rss())
        return out
    out["fit_s"], out["fit_cpu_s"] = fit_s, time.process_time() - cpu
    history = getattr(model, "history_", None)
    if history:  # torch models: the first epoch's pass over the mini-batches, validation apart
        out["epoch_s"] = history[0].get("train_seconds", history[0]["seconds"])
        out["epochs_run"] = len(history)
    print(json.dumps({"fit_s": fit_s, "fit_cpu_s": out["fit_cpu_s"]}), file=sys.stderr,
          flush=True)
    cpu = time.process_time()
    res = evaluate(model, split.test, dataset=None, beyond_accuracy=False)
    out.update(eval_s=res["eval_seconds"], eval_cpu_s=time.process_time() - cpu,
               eval_users=int(res["users"]), ndcg10=res["ndcg@10"], recall10=res["recall@10"],
               status="ok")
    return out


def _naive_eval(model, evalset, k: int = 10) -> tuple[float, float]:
    """The textbook loop: one user at a time, score every item, mask the history, sort."""
    t = time.perf_counter()
    ndcg = []
    for r in range(len(evalset)):
        h = evalset.histories.take(slice(r, r + 1))
        s = model.score(h)[0].astype(np.float64)
        s[h.items] = -np.inf
        top = np.argsort(-s, kind="stable")[:k]
        tgt = set(evalset.targets[r].indices.tolist())
        if not tgt:
            continue
        dcg = sum(1.0 / np.log2(i + 2) for i, it in enumerate(top) if it in tgt)
        idcg = sum(1.0 / np.log2(i + 2) for i in range(min(len(tgt), k)))
        ndcg.append(dcg / idcg)
    return time.perf_counter() - t, float(np.mean(ndcg))


def _timed(fn) -> tuple[float, float]:
    """(wall s, CPU s of every thread of this process) of ``fn()``."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _interleaved(out: dict, name: str, ours, implicit) -> None:
    """Time ``ours`` and ``implicit`` in the order ours, implicit, implicit, ours (so a load
    that drifts weighs on both alike) and record the runs, means and ratios under ``name``."""
    runs: dict[str, list] = {"ours": [], "implicit": []}
    for who in ("ours", "implicit", "implicit", "ours"):
        runs[who].append(_timed(ours if who == "ours" else implicit))
    for who in ("ours", "implicit"):
        out[f"{name}_{who}_runs"] = runs[who]
        out[f"{name}_{who}_s"] = float(np.mean([w for w, _ in runs[who]]))
        out[f"{name}_{who}_cpu_s"] = float(np.mean([c for _, c in runs[who]]))
    out[f"{name}_ratio"] = out[f"{name}_ours_s"] / out[f"{name}_implicit_s"]
    out[f"{name}_cpu_ratio"] = out[f"{name}_ours_cpu_s"] / out[f"{name}_implicit_cpu_s"]
    # the fastest of each pair: the run least slowed by other jobs (as timeit reports)
    out[f"{name}_min_ratio"] = (min(w for w, _ in runs["ours"])
                                / min(w for w, _ in runs["implicit"]))


def worker_reference(d: Path, naive_users: int, seed: int, all_users: int = 0,
                     which: str = "als,bpr") -> dict:
    """Ours against ``implicit`` called directly, then our evaluation of every test user and
    against the naive loop. ALS runs four times in the order ours, implicit, implicit, ours
    (so a load that drifts during the job weighs on both alike); the ratio is of the sums."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    from m6rec.eval.evaluate import evaluate
    from m6rec.eval.protocols import split_loo
    from m6rec.registry import build_model

    ds, _ = _load(d, "parquet")
    split = split_loo(ds)
    train = split.train
    out: dict = {}
    als = build_model("als")
    if "als" in which:
        x = train.csr() * np.float32(1.0 + als.alpha)  # handed ready-made to implicit
        refs: list = []

        def direct() -> None:
            with threadpool_limits(1, "blas"):
                ref = AlternatingLeastSquares(factors=als.factors, regularization=als.regularization,
                                              alpha=1.0, iterations=als.iterations,
                                              random_state=als.random_state)
                ref.fit(x, show_progress=False)
            refs.append(ref)

        _interleaved(out, "als", lambda: als.fit(train), direct)
        out["als_max_factor_diff"] = float(np.abs(als.item_factors_ - refs[-1].item_factors).max())
    else:
        als.fit(train)
    if "bpr" in which:
        bpr = build_model("bpr")
        y = train.csr()

        def direct_bpr() -> None:
            ref = BayesianPersonalizedRanking(
                factors=bpr.factors, learning_rate=bpr.learning_rate,
                regularization=bpr.regularization, iterations=bpr.iterations,
                random_state=bpr.random_state)
            ref.fit(y, show_progress=False)

        _interleaved(out, "bpr", lambda: bpr.fit(train), direct_bpr)

    every = _sample(split.test, all_users, seed + 2)  # every test user unless capped
    res = evaluate(als, every, dataset=None, beyond_accuracy=False)
    out.update(eval_all_users=int(res["users"]), eval_all_s=res["eval_seconds"],
               eval_all_ndcg10=res["ndcg@10"], rss_after_eval_all=_peak_rss())
    sub = _sample(split.test, naive_users, seed)
    res = evaluate(als, sub, ks=(10,), metrics=("ndcg",), dataset=None, beyond_accuracy=False)
    naive_s, naive_ndcg = _naive_eval(als, sub)
    out.update(naive_users=len(sub), ours_s=res["eval_seconds"], ours_ndcg10=res["ndcg@10"],
               naive_s=naive_s, naive_ndcg10=naive_ndcg, naive_ratio=naive_s / res["eval_seconds"])
    return out


# -- the parent: one child per measurement ------------------------------------------------------------
def _rss_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_child(args: list[str], mem_gb: float, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", *args]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: dict = {}

    def watch() -> None:
        while proc.poll() is None:
            rss = _rss_of(proc.pid)
            killed["peak"] = max(killed.get("peak", 0), rss)
            if rss > mem_gb * GB:
                killed["why"] = f"killed by the benchmark at {rss / GB:.1f} GB RSS (cap {mem_gb} GB)"
                proc.kill()
                return
            if time.perf_counter() - t > timeout:
                killed["why"] = f"stopped after the {timeout:.0f} s time limit"
                proc.kill()
                return
            time.sleep(0.2)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    th.join()
    wall = time.perf_counter() - t
    if "why" in killed:  # with what the child reported before (e.g. its fit seconds)
        done = [json.loads(ln) for ln in stderr.splitlines() if ln.startswith("{")]
        return {**(done[-1] if done else {}), "status": "killed", "message": killed["why"],
                "peak_rss": killed.get("peak", 0), "wall_s": wall}
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"status": "error", "message": stderr.strip().splitlines()[-1:] or ["?"],
                "wall_s": wall}
    out = json.loads(lines[-1])
    out["wall_s"] = wall
    return out


def exponent(xs: list[float], ys: list[float]) -> float | None:
    pts = [(np.log(x), np.log(y)) for x, y in zip(xs, ys, strict=True) if y and y > 0]
    if len(pts) < 2:
        return None
    a = np.array(pts)
    return float(np.polyfit(a[:, 0], a[:, 1], 1)[0])


def report(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    md = ["# Scale curve", "", results["note"], "",
          "| interactions | items | users | model | status | load s | fit s | epoch s "
          "| eval s (users) | peak RSS GB | NDCG@10 | load avg |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["model"].startswith("load-"):
            continue
        ok = r.get("status") == "ok"
        md.append(f"| {r['n']:,} | {r['m']:,} | {r.get('users', '')} | {r['model']} | "
                  f"{r.get('status')} | "
                  + (f"{r['load_s']:.1f} | " if "load_s" in r else "- | ")
                  + (f"{r['fit_s']:.1f} | {r['epoch_s']:.1f} | " if ok and "epoch_s" in r else
                     f"{r['fit_s']:.1f} | - | " if ok else "- | - | ")
                  + (f"{r['eval_s']:.1f} ({r['eval_users']:,}) | "
                     f"{r['peak_rss'] / GB:.2f} | {r['ndcg10']:.4f} |" if ok else
                     f"- | {r.get('peak_rss', 0) / GB:.2f} | - |")
                  + (f" {r['loadavg']:.1f} |" if "loadavg" in r else " - |"))
    refusals = [r for r in rows if r.get("status") in ("refused", "killed", "error")]
    if refusals:
        md += ["", "Refusals and failures:", ""]
        md += [f"- {r['n']:,} interactions / {r['m']:,} items, {r['model']}: {r['status']}: "
               f"`{r['message']}`" for r in refusals]
    md += ["", "## Data path (load into a validated Dataset, one process each)", "",
           "| interactions | items | format | load s | peak RSS GB |", "|---|---|---|---|---|"]
    for r in rows:
        if r["model"].startswith("load-") and r.get("status") == "ok":
            md.append(f"| {r['n']:,} | {r['m']:,} | {r['model'][5:]} | {r['load_s']:.1f} | "
                      f"{r['peak_rss'] / GB:.2f} |")
    md += ["", "## Against the references (same data, same run)", "",
           "ALS and BPR: mean wall s of two runs each (ours, implicit, implicit, ours); the "
           "ratios of the CPU seconds and of the fastest runs are in the JSON "
           "(`als_cpu_ratio`, `als_min_ratio`, `bpr_cpu_ratio`, `bpr_min_ratio`).", "",
           "| interactions | ALS ours s | ALS implicit s | ratio | BPR ours s | BPR implicit s | "
           "ratio | eval all users: users, s, peak GB | ours vs naive loop: users, ours s, "
           "naive s, ratio, NDCG ours / naive |", "|---|---|---|---|---|---|---|---|---|"]
    for n, ref in results["references"].items():
        if ref.get("status") != "ok":
            md.append(f"| {n} | {ref.get('status')}: {ref.get('message')} |")
            continue
        def cell(key: str, fmt: str = ".1f", ref=ref) -> str:
            return format(ref[key], fmt) if key in ref else "-"

        md.append(f"| {int(n):,} | {cell('als_ours_s')} | {cell('als_implicit_s')} | "
                  f"{cell('als_ratio', '.2f')} | {cell('bpr_ours_s')} | {cell('bpr_implicit_s')}"
                  f" | {cell('bpr_ratio', '.2f')} | {ref['eval_all_users']:,}, "
                  f"{ref['eval_all_s']:.1f}, {ref['peak_rss'] / GB:.2f} | {ref['naive_users']:,}, "
                  f"{ref['ours_s']:.2f}, {ref['naive_s']:.2f}, {ref['naive_ratio']:.1f}x, "
                  f"{ref['ours_ndcg10']:.4f} / {ref['naive_ndcg10']:.4f} |")
    md += ["", "## Growth exponents (slope of log cost on log interactions)", "",
           "Fit is one epoch's pass over the mini-batches for the torch models (`epoch s`), the "
           "whole fit for the others.", "",
           "| model | fit | eval per user | peak RSS | points |", "|---|---|---|---|---|"]
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    exps = {}
    colours = plt.get_cmap("tab20").colors
    for i, mdl in enumerate(models):
        pts = sorted((r["n"], r) for r in rows if r["model"] == mdl and r.get("status") == "ok")
        if not pts:
            continue
        xs = [p[0] for p in pts]
        curves = {"fit": [p[1].get("epoch_s", p[1].get("fit_s", p[1].get("load_s")))
                          for p in pts],
                  "eval per user": [p[1]["eval_s"] / p[1]["eval_users"]
                                    if "eval_s" in p[1] else None for p in pts],
                  "peak RSS": [p[1]["peak_rss"] / GB for p in pts]}
        e = {k: exponent(xs, [v or 0 for v in ys]) for k, ys in curves.items()}
        exps[mdl] = e
        md.append(f"| {mdl} | " + " | ".join("-" if e[k] is None else f"{e[k]:.2f}"
                                              for k in curves) + f" | {len(xs)} |")
        for ax, (k, ys) in zip(axes, curves.items(), strict=True):
            good = [(x, y) for x, y in zip(xs, ys, strict=True) if y]
            if good:
                lab = f"{mdl} ({e[k]:.2f})" if e[k] is not None else mdl
                ax.loglog(*zip(*good, strict=True), marker="osD^v<>"[i % 7], label=lab,
                          color=colours[(2 * i) % 20 + (2 * i) // 20 % 2])
    for ax, (k, unit) in zip(axes, [("fit", "s"), ("eval per user", "s"), ("peak RSS", "GB")],
                             strict=True):
        ax.set_xlabel("interactions")
        ax.set_ylabel(f"{k} ({unit})")
        ax.set_title(f"{k} vs size (legend: growth exponent)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scale_curve.png", dpi=110)
    plt.close(fig)
    results["exponents"] = exps
    (out / "scale_curve.md").write_text("\n".join(md) + "\n")
    (out / "scale_curve.json").write_text(json.dumps(results, indent=1, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1e5:1e4,1e6:1e5,1e7:1e6",
                    help="comma-separated INTERACTIONS:ITEMS")
    ap.add_argument("--models", default="load," + ",".join(MODELS),
                    help="'load' (CSV + Parquet load), 'reference' and/or model labels")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/scale"))
    ap.add_argument("--data-dir", type=Path, default=Path("runs/scale/data"))
    ap.add_argument("--eval-users", type=int, default=10000)
    ap.add_argument("--naive-users", type=int, default=1000)
    ap.add_argument("--all-users", type=int, default=0,
                    help="cap on the reference job's evaluation of every test user (0 = none)")
    ap.add_argument("--references", default="als,bpr",
                    help="which fits the reference job times against implicit (als, bpr)")
    ap.add_argument("--mem-gb", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=1200.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--merge", action="store_true", help="add to an existing scale_curve.json")
    ap.add_argument("--combine", nargs="+", type=Path,
                    help="only merge these scale_curve.json files (separate runs) into --out")
    ap.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.combine:
        merged: dict = {"rows": [], "references": {}, "note": ""}
        for f in a.combine:
            part = json.loads(f.read_text())
            keys = {(r["n"], r["m"], r["model"]) for r in part["rows"]}
            merged["rows"] = [r for r in merged["rows"]
                              if (r["n"], r["m"], r["model"]) not in keys] + part["rows"]
            merged["references"].update(part["references"])
            merged["note"] = part["note"]
        merged["rows"].sort(key=lambda r: (r["model"], r["n"]))
        merged["note"] += (f" Merged from {len(a.combine)} runs ({', '.join(map(str, a.combine))}); "
                           "the `load avg` column says how busy the machine was.")
        a.out.mkdir(parents=True, exist_ok=True)
        report(merged, a.out)
        return

    if a.worker is not None:
        kind, d, *rest = a.worker
        d = Path(d)
        if kind == "load":
            res = worker_load(d, rest[0])
        elif kind == "reference":
            res = worker_reference(d, int(rest[0]), int(rest[1]),
                                   int(rest[2]) if len(rest) > 2 else 0,
                                   rest[3] if len(rest) > 3 else "als,bpr")
        else:
            res = worker_model(d, rest[0], int(rest[1]), int(rest[2]))
        res.setdefault("status", "ok")
        res["peak_rss"] = _peak_rss()
        print(json.dumps(res, default=float), flush=True)
        return

    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "scale_curve.json"
    results = (json.loads(path.read_text()) if a.merge and path.is_file()
               else {"rows": [], "references": {}})
    results["note"] = (f"Synthetic logs (`m6rec.data.synthetic`, seed {a.seed}); {os.cpu_count()} "
                       "CPU cores (`load avg`: the machine's 1-minute load average as the "
                       "measurement started; above the core count, other jobs shared them and "
                       "the seconds are inflated); evaluation = "
                       f"full ranking of every item for {a.eval_users:,} sampled test users "
                       "(leave-one-out), seen items excluded; torch models 1 epoch; m6 with the "
                       "`hashing:64` text encoder.")
    wanted = [s.strip() for s in a.models.split(",") if s.strip()]
    for n, m in (_size(s) for s in a.sizes.split(",")):
        d = ensure_data(a.data_dir, n, m, a.seed)
        for label in wanted:
            if label == "load":
                jobs = [(f"load-{fmt}", ["load", str(d), fmt]) for fmt in ("csv", "parquet")]
            elif label == "reference":
                jobs = [("reference", ["reference", str(d), str(a.naive_users), str(a.seed),
                                       str(a.all_users), a.references])]
            else:
                jobs = [(label, ["model", str(d), label, str(a.eval_users), str(a.seed)])]
            for name, args in jobs:
                print(f"[{time.strftime('%H:%M:%S')}] {n:,} / {m:,}: {name} ...", flush=True)
                load_avg = os.getloadavg()[0]
                res = run_child(args, a.mem_gb, a.timeout)
                res["loadavg"] = load_avg
                print("   ", {k: v for k, v in res.items() if k != "params"}, flush=True)
                if name == "reference":
                    results["references"][str(n)] = res
                    continue
                results["rows"] = [r for r in results["rows"]
                                   if not (r["n"] == n and r["m"] == m and r["model"] == name)]
                results["rows"].append({"n": n, "m": m, "model": name, "users": n // 10, **res})
                results["rows"].sort(key=lambda r: (r["model"], r["n"]))
                report(results, a.out)
        report(results, a.out)


if __name__ == "__main__":
    main()
