"""Explanations phrased by the generative LM on ml-100k: how often does it name something
outside the evidence, before and after the check, and how long does it take?

Usage::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/generative_explain.py \
        --model-dir runs/ease [--users 20] [--k 10] [--generator smollm2] [--out runs/gen_explain]

``--users`` seeded random users, each with their top-``--k`` list explained by the model's
`Explainer` (leave-one-out evidence), then phrased by the generator in one batch per user (as
``m6rec recommend --explain --phrasing lm`` does) into a fresh cache (**cold**), then once more
from that cache (**cached**). ``--single N`` also times the first N explanations generated one
at a time (batch 1). Reported: the share of explanations whose raw text names anything outside
the evidence (by `GroundingChecker`), the same share after the check (what the user sees),
the replaced sentences, and latency per list and per explanation (wall and CPU seconds).
Writes ``results.json`` and ``samples.jsonl`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default="runs/ease")
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generator", default="smollm2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--single", type=int, default=0)
    ap.add_argument("--out", default="runs/gen_explain")
    ap.add_argument("--cache", default=None,
                    help="generation cache to use (default: a fresh one); lists whose texts are "
                         "all there already are left out of the cold latency")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from m6rec.data import load_dataset
    from m6rec.explain import Explainer
    from m6rec.explain.grounded import GroundingChecker, phrase_explanations
    from m6rec.models.io import load_model_dir
    from m6rec.text.generate import GenerationCache, load_generator

    ds = load_dataset(args.data)
    model, _ = load_model_dir(args.model_dir, ds)
    rng = np.random.default_rng(args.seed)
    users = np.sort(rng.choice(ds.n_users, size=args.users, replace=False))
    explainer = Explainer(model, ds)
    checker = GroundingChecker.for_dataset(ds)
    gen = load_generator(args.generator, threads=args.threads, batch_size=args.k)
    t0 = time.perf_counter()
    gen.generate(["Say hello."], max_tokens=2)  # load (and convert) the model once
    load_s = time.perf_counter() - t0
    lists = []
    for u in users:
        h = ds.histories(np.array([u]))
        ids, _ = model.recommend(h, k=args.k, exclude_seen=True)
        ids = ids[0][ids[0] >= 0]
        lists.append((int(u), explainer.explain(h.row(0), ids)))
    cache_dir = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="gen-cache-"))
    cache = GenerationCache(cache_dir)
    warm_before = len(cache)
    rows, timing = [], {"cold": [], "cached": []}
    for phase in ("cold", "cached"):
        for u, exps in lists:
            w, c = time.perf_counter(), time.process_time()
            before = len(cache)
            out = phrase_explanations(exps, gen, ds, checker=checker, cache=cache)
            if phase == "cached" or len(cache) > before:  # cold: only lists generated now
                timing[phase].append((time.perf_counter() - w, time.process_time() - c,
                                      len(exps)))
            if phase == "cold":
                for ex, ph in zip(exps, out, strict=True):
                    # after the check: the final text re-checked against the same evidence
                    from m6rec.explain.grounded import evidence_of, split_sentences

                    ev = evidence_of(ex, {str(i): n for n, i in enumerate(ds.item_ids)},
                                     ds.item_categories())
                    template = set(split_sentences(ph.template, 9))
                    final = [checker.check(s, ev["items"], ev["categories"], ev["roles"],
                                           ev["numbers"]) for s in split_sentences(ph.text, 9)
                             if s not in template]
                    rows.append({"user": str(ds.user_ids[u]), "item": ex.item_id,
                                 "title": ex.title, "template": ph.template, "raw": ph.raw,
                                 "text": ph.text, "replaced": ph.replaced,
                                 "violations": [v for c in ph.checks for v in c.violations],
                                 "raw_outside": not ph.grounded_raw and bool(ph.checks),
                                 "empty": not ph.checks and bool(ex.history),
                                 "final_outside": any(not f.ok for f in final),
                                 "uses_lm": ph.text != ph.template,
                                 "names_cited": any(h["title"] in ph.raw or
                                                    h["title"].split(",")[0] in ph.raw
                                                    for h in ex.history)})
        print(phase, "done", flush=True)
    single = []
    if args.single:
        from m6rec.text.generate import GenerationSettings

        exps = [ex for _, e in lists for ex in e][: args.single]
        scache = GenerationCache(Path(tempfile.mkdtemp(prefix="gen-cache1-")))
        for ex in exps:
            w, c = time.perf_counter(), time.process_time()
            phrase_explanations([ex], gen, ds, checker=checker, cache=scache,
                                settings=None or GenerationSettings(
                                    max_tokens=60, system=__import__(
                                        "m6rec.explain.grounded", fromlist=["SYSTEM"]).SYSTEM))
            single.append((time.perf_counter() - w, time.process_time() - c))
    n = len(rows)
    per = {ph: [t[0] / t[2] for t in timing[ph]] for ph in timing}
    res = {
        "args": vars(args), "generator": gen.name, "explanations": n,
        "load_seconds": load_s, "cached_before": warm_before,
        "cold_lists_timed": len(timing["cold"]),
        "raw_outside_share": sum(r["raw_outside"] for r in rows) / n,
        "empty_share": sum(r["empty"] for r in rows) / n,
        "final_outside_share": sum(r["final_outside"] for r in rows) / n,
        "replaced_sentences": sum(r["replaced"] for r in rows),
        "explanations_with_a_replacement": sum(r["replaced"] > 0 for r in rows),
        "lm_text_kept_share": sum(r["uses_lm"] for r in rows) / n,
        "raw_names_a_cited_item_share": sum(r["names_cited"] for r in rows) / n,
        "latency": {
            ph: {"list_p50_s": pct([t[0] for t in timing[ph]], 50),
                 "list_p99_s": pct([t[0] for t in timing[ph]], 99),
                 "per_explanation_p50_s": pct(per[ph], 50),
                 "per_explanation_p99_s": pct(per[ph], 99),
                 "list_cpu_p50_s": pct([t[1] for t in timing[ph]], 50)} for ph in timing},
        "single": {"n": len(single), "p50_s": pct([s[0] for s in single], 50),
                   "p99_s": pct([s[0] for s in single], 99),
                   "cpu_p50_s": pct([s[1] for s in single], 50)} if single else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    with open(out / "samples.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
