"""Large-catalogue index benchmark: FAISS HNSW / IVF-Flat / IVF-PQ against exact search.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/large_index.py --n 100000 1000000 --dim 64 384 \
        --methods hnsw ivf ivfpq [--build-threads 2] [--queries 1000] \
        [--out benchmarks/results/scale]

Two kinds of item vectors (``--vectors``):

- ``random``: random unit vectors (Gaussian, normalised; seeded), queried with further random
  unit vectors. No structure at all: the hard case for an ANN index, a lower bound on recall.
- ``text``: synthetic but varied item texts (titles of 2-6 words from a 6,000-word pseudo-word
  vocabulary, a number, a year and 1-3 of 16 genres) encoded with m6rec's dependency-free
  ``hashing:DIM`` text encoder (signed feature hashing of words and character n-grams; not the
  MiniLM language model, which would take hours for 1M texts on a 2-core CPU). Queries are
  user-like: the normalised mean of 5 random catalogue vectors (a history of 5 items).

Each (n, dim, method) runs in its own child process, so resident memory is measured cleanly:
``rss_mb`` is the child's RSS after the index is built and the input vectors are freed, minus
its RSS before the vectors were made (Python, numpy, FAISS loaded): the index + its vectors.
``peak_rss_mb`` is the child's peak RSS (vectors, ground truth and index together).

For each built index the search knob (HNSW ``ef_search``, IVF ``nprobe``) is swept from cheap to
expensive; each setting records top-10 query latency at batch 1 (one query per call through
`m6rec.index.FaissIndex.search`, the path the service uses, one FAISS thread: p50 / p99 over
``--queries`` queries after a warm-up) and recall@10 against exact inner-product search. The
chosen setting is the cheapest with recall@10 >= ``--target-recall``.
Writes ``large_index.json`` and ``large_index.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SWEEPS = {
    "hnsw": ("ef_search", [64, 128, 256, 384, 512, 768, 1024]),
    "ivf": ("nprobe", [16, 32, 64, 128, 256, 512]),
    "ivfpq": ("nprobe", [16, 32, 64, 128, 256, 512]),
}


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit_vectors(n: int, dim: int, seed: int, chunk: int = 100_000):
    """float32 [n, dim] random unit vectors, made in chunks (no float64 copy of the whole)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        v = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
        out[s:s + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def exact_top10(vectors, queries, chunk: int = 200_000):
    import numpy as np

    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for s in range(0, len(vectors), chunk):
        sc = queries @ vectors[s:s + chunk].T
        part = np.argpartition(-sc, 10, axis=1)[:, :10]
        best_s = np.concatenate([best_s, np.take_along_axis(sc, part, 1)], 1)
        best_i = np.concatenate([best_i, part + s], 1)
        keep = np.argsort(-best_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def pseudo_words(n: int, seed: int) -> list[str]:
    import numpy as np

    syl = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["ch", "sh", "th", "qu"]
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(syl[j] for j in rng.integers(0, len(syl), int(rng.integers(1, 4)))))
    return sorted(words)


GENRES = ("Action Adventure Animation Comedy Crime Documentary Drama Fantasy Horror Musical "
          "Mystery Romance Sci-Fi Thriller War Western").split()


def item_texts(n: int, seed: int = 0) -> list[str]:
    import numpy as np

    vocab = pseudo_words(6000, 0)  # one vocabulary for the whole catalogue
    rng = np.random.default_rng(seed + 1)
    n_words = rng.integers(2, 7, n)
    words = rng.integers(0, len(vocab), (n, 6))
    years = rng.integers(1930, 2025, n)
    out = []
    for i in range(n):
        genres = ", ".join(GENRES[j] for j in rng.choice(16, int(rng.integers(1, 4)),
                                                         replace=False))
        title = " ".join(vocab[j] for j in words[i, : n_words[i]]).title()
        out.append(f"{title} {i % 97} ({years[i]}; {genres})")
    return out


def text_vectors(n: int, dim: int, n_queries: int) -> tuple:
    """(item vectors [n, dim] of synthetic texts, user-like queries, encode seconds)."""
    import numpy as np

    from m6rec.text import get_encoder

    enc = get_encoder(f"hashing:{dim}")
    t0 = time.perf_counter()
    vecs = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        texts = item_texts(min(100_000, n - s), seed=s)
        vecs[s:s + len(texts)] = enc.encode(texts)
    seconds = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    q = vecs[rng.integers(0, n, (n_queries, 5))].mean(1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return vecs, q.astype(np.float32), seconds


def run_one(n: int, dim: int, method: str, n_queries: int, build_threads: int,
            target: float, params: dict, vectors: str = "random") -> dict:
    """Build one index in this process and measure it (called in a child process)."""
    import gc

    import faiss
    import numpy as np

    from m6rec.index import build_index

    base = _rss_mb()
    encode_s = None
    if vectors == "text":
        vecs, queries, encode_s = text_vectors(n, dim, n_queries + 100)
        base = _rss_mb() - vecs.nbytes / 2**20  # the encoder's own memory is not the index's
    else:
        vecs = unit_vectors(n, dim, seed=0)
        queries = unit_vectors(n_queries + 100, dim, seed=1)
    truth = exact_top10(vecs, queries[100:])
    faiss.omp_set_num_threads(build_threads)
    t0 = time.perf_counter()
    index = build_index(vecs, kind=method, **params)
    build_s = time.perf_counter() - t0
    del vecs
    gc.collect()
    rss = _rss_mb() - base
    faiss.omp_set_num_threads(1)
    knob, values = SWEEPS[method]
    sweep = []
    for value in values:
        index.tune(**{knob: value})
        for q in queries[:100]:  # warm-up
            index.search(q[None], 10)
        lat, found = [], []
        for q in queries[100:]:
            t = time.perf_counter()
            ids, _ = index.search(q[None], 10)
            lat.append(time.perf_counter() - t)
            found.append(ids[0])
        found = np.asarray(found)
        recall = float(np.mean([len(set(a) & set(b)) / 10
                                for a, b in zip(found, truth, strict=True)]))
        lat_ms = np.asarray(lat) * 1e3
        sweep.append({knob: value, "recall@10": round(recall, 4),
                      "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
                      "p99_ms": round(float(np.percentile(lat_ms, 99)), 3)})
        if recall >= target:
            break  # more breadth only costs time
    ok = [s for s in sweep if s["recall@10"] >= target]
    return {"n": n, "dim": dim, "method": method, "vectors": vectors, "encode_s": encode_s,
            "params": params,
            "build_s": round(build_s, 1), "build_threads": build_threads,
            "rss_mb": round(rss, 1), "peak_rss_mb": round(_peak_mb(), 1),
            "sweep": sweep, "chosen": ok[0] if ok else None}


def default_params(method: str, n: int, dim: int) -> dict:
    if method == "hnsw":
        return {"m": 32, "ef_construction": 80}
    nlist = 4096 if n >= 500_000 else 1024
    if method == "ivf":
        return {"nlist": nlist}
    return {"nlist": nlist, "pq_m": min(64, dim // 2) if dim <= 128 else dim // 8, "refine": 10}


def table(results: list[dict]) -> str:
    lines = ["| vectors | items | dim | method | build s | index+vectors RSS MB | search knob | "
             "recall@10 | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.get("chosen") or (r["sweep"][-1] if r.get("sweep") else None)
        if c is None:
            lines.append(f"| {r.get('vectors', 'random')} | {r['n']:,} | {r['dim']} | "
                         f"{r['method']} | failed: {r.get('error', '?')} | | | | | |")
            continue
        knob = next(k for k in c if k not in ("recall@10", "p50_ms", "p99_ms"))
        mark = "" if r.get("chosen") else " (target not reached)"
        lines.append(f"| {r.get('vectors', 'random')} | {r['n']:,} | {r['dim']} | "
                     f"{r['method']} | {r['build_s']} | "
                     f"{r['rss_mb']:.0f} | {knob}={c[knob]}{mark} | {c['recall@10']:.3f} | "
                     f"{c['p50_ms']:.3f} | {c['p99_ms']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, nargs="+", default=[64, 384])
    ap.add_argument("--methods", nargs="+", default=["hnsw", "ivf", "ivfpq"],
                    choices=sorted(SWEEPS))
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--vectors", choices=["random", "text"], default="random")
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--param", action="append", default=[],
                    help="method.key=value override of an index parameter (repeat)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/scale"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(run_one(**spec)))
        return
    overrides: dict[str, dict] = {}
    for p in args.param:
        key, value = p.split("=", 1)
        method, name = key.split(".", 1)
        overrides.setdefault(method, {})[name] = int(value)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "large_index.json"
    results = json.loads(path.read_text())["results"] if path.exists() else []
    for n in args.n:
        for dim in args.dim:
            for method in args.methods:
                params = {**default_params(method, n, dim), **overrides.get(method, {})}
                spec = {"n": n, "dim": dim, "method": method, "n_queries": args.queries,
                        "vectors": args.vectors,
                        "build_threads": args.build_threads,
                        "target": args.target_recall, "params": params}
                print(f"== {args.vectors} n={n} dim={dim} {method} {params}", flush=True)
                proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                      capture_output=True, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": str(args.build_threads)})
                if proc.returncode != 0:
                    res = {**spec, "error": proc.stderr.strip().splitlines()[-1:] or
                           [f"exit {proc.returncode}"]}
                    res["error"] = res["error"][0]
                else:
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                print(json.dumps(res), flush=True)
                key = (n, dim, method, args.vectors)
                results = [r for r in results if (r["n"], r["dim"], r["method"],
                                                  r.get("vectors", "random")) != key] + [res]
                path.write_text(json.dumps({"command": " ".join(sys.argv),
                                            "results": results}, indent=1))
    results.sort(key=lambda r: (r.get("vectors", "random"), r["n"], r["dim"], r["method"]))
    md = ("# Large-catalogue index benchmark\n\n`random`: random unit vectors and random unit "
          "queries (no structure: the hard case for ANN). `text`: synthetic item texts encoded "
          "with `hashing:DIM`, queries = normalised mean of 5 catalogue vectors. 1000 queries, "
          "top-10 at batch 1 through `FaissIndex.search` (1 FAISS thread); recall@10 vs exact "
          "inner-product search; RSS = index + vectors after the build; the search knob is the "
          "cheapest swept value reaching recall@10 >= 0.95.\n\n" + table(results) + "\n")
    (args.out / "large_index.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
