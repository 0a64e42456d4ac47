"""The service over a catalogue of 10^6 items: start-up, memory, latency and the index's recall.

    python benchmarks/serve_large.py --items 1000000 --interactions 2000000

A text-only `m6` (the ``hashing:64`` encoder: MiniLM over 10^6 texts does not fit a CPU run) is
trained for ``--epochs`` on a small seeded synthetic log (``--train`` INTERACTIONS:ITEMS) and
served zero-shot over a large one from the same generator (`m6rec.data.synthetic`): the service
reads the large catalogue's texts at start, as it would a new domain's. Three servers run one
after the other on the same model directory: ``--index auto`` (what a user gets: FAISS HNSW
from 50,000 items), whose first start builds the graph and keeps it in the cache folder
(``--fresh-cache`` removes earlier graphs first), the same again (a restart, which reads the
graph back), and ``--index exact`` (the reference, in the same run). For each:
seconds to healthy, resident memory after start-up and under load, and a paced wrk load
(``--rate`` req/s, 90% recommendations for random users of the log, 10% events) with p50 /
p99 latency. Recall@10 of the automatic index = the share of the exact server's top-10 that
the automatic server (first start and restart) also returns, over ``--recall-users`` users asked before the load (no
event has changed them yet). Writes ``benchmarks/results/serve_large.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_curve import ensure_data  # noqa: E402
from serve_common import Server, write_result  # noqa: E402
from serve_load import run_wrk  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    a, b = text.split(":")
    return int(float(a)), int(float(b))


def train_model(data_dir: Path, train: str, big: Path, epochs: int, out: Path) -> dict:
    """Fit the text-only m6 on the small log; its directory points at the large log."""
    from m6rec.data import load_files
    from m6rec.models.io import save_model_dir
    from m6rec.registry import build_model

    n, m = _size(train)
    small = ensure_data(data_dir, n, m, seed=0)
    ds = load_files(small / "interactions.parquet", items=small / "items.parquet",
                    name="synthetic-small")
    model = build_model("m6", encoder="hashing:64", text_only=True, epochs=epochs,
                        patience=epochs, device="cpu")
    t = time.perf_counter()
    model.fit(ds)
    fit_s = time.perf_counter() - t
    save_model_dir(model, out, ds, data_spec=str(big.resolve()), protocol="none",
                   fit_seconds=fit_s)
    return {"train_log": train, "train_items": ds.n_items, "fit_s": round(fit_s, 1)}


def top10(srv: Server, users: list[str]) -> dict[str, list[str]]:
    import httpx

    out = {}
    with httpx.Client(base_url=srv.url, headers={"X-API-Key": srv.api_key}, timeout=60) as c:
        for u in users:
            r = c.get(f"/users/{u}/recommendations", params={"k": 10})
            r.raise_for_status()
            out[u] = [x["item_id"] for x in r.json()["items"]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=float, default=1e6)
    ap.add_argument("--interactions", type=float, default=2e6)
    ap.add_argument("--train", default="1e5:1e4", help="INTERACTIONS:ITEMS of the training log")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=Path("runs/scale/data"))
    ap.add_argument("--model-dir", type=Path, default=Path("runs/serve_large/m6"))
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--recall-users", type=int, default=200)
    ap.add_argument("--load-users", type=int, default=5000,
                    help="users (and items) the load draws from (wrk holds them in its script)")
    ap.add_argument("--start-timeout", type=float, default=1800)
    ap.add_argument("--threads", type=int, default=2,
                    help="OpenMP / BLAS threads of the server (the index build uses them)")
    ap.add_argument("--fresh-cache", action="store_true",
                    help="remove the cached HNSW graphs first, so the first start builds one")
    args = ap.parse_args()
    import numpy as np
    import pandas as pd

    if args.fresh_cache:
        import shutil

        from m6rec.config import Settings

        shutil.rmtree(Settings().cache_dir / "indexes", ignore_errors=True)
    big = ensure_data(args.data_dir, int(args.interactions), int(args.items), seed=0)
    result: dict = {"items": int(args.items), "interactions": int(args.interactions),
                    "command": " ".join(sys.argv)}
    if not (args.model_dir / "meta.json").is_file():
        result["model"] = train_model(args.data_dir, args.train, big, args.epochs,
                                      args.model_dir)
    else:
        result["model"] = json.loads((args.model_dir / "meta.json").read_text())
    inter = pd.read_parquet(big / "interactions.parquet", columns=["user_id", "item_id"])
    rng = np.random.default_rng(0)
    users = [str(u) for u in rng.choice(inter["user_id"].unique(), args.load_users,
                                        replace=False)]
    items = [str(i) for i in rng.choice(inter["item_id"].unique(), args.load_users,
                                        replace=False)]
    ask = users[: args.recall_users]
    tops = {}
    # the first start builds the HNSW graph (and keeps it in the cache folder); the restart
    # reads it back; exact is the reference
    for run, kind in (("auto", "auto"), ("restart", "auto"), ("exact", "exact")):
        tmp = tempfile.mkdtemp(prefix="m6rec-large-")
        print(f"[{time.strftime('%H:%M:%S')}] starting the server ({run}), --index {kind} ...",
              flush=True)
        srv = Server(str(args.model_dir), f"sqlite:///{tmp}/events.db", threads=args.threads,
                     extra=["--index", kind], start_timeout=args.start_timeout)
        try:
            import httpx

            info = httpx.get(srv.url + "/health").json()
            row = {"index": info["index"], "catalogue_items": info["items"],
                   "startup_s": round(srv.startup_s, 1), "rss_after_start_mb": srv.rss_mb()}
            t = time.perf_counter()
            tops[run] = top10(srv, ask)
            row["first_requests_s"] = round(time.perf_counter() - t, 2)
            res = run_wrk(srv.url, srv.api_key, users, items, args.clients, args.duration,
                          rate=args.rate, server=srv)
            row.update({k: res[k] for k in ("req_per_s", "p50_ms", "p90_ms", "p99_ms", "errors")
                        if k in res})
            row["rss_peak_under_load_mb"] = max((r for _, r in res.get("rss_mb") or []),
                                                default=float("nan"))
            result[run] = row
            print("   ", row, flush=True)
        finally:
            srv.stop()
    for run in ("auto", "restart"):
        result[f"recall_at_10_{run}"] = float(np.mean([
            len(set(tops[run][u]) & set(tops["exact"][u])) / max(len(tops["exact"][u]), 1)
            for u in ask]))
    result["p99_ratio_auto_vs_exact"] = result["auto"]["p99_ms"] / result["exact"]["p99_ms"]
    print(json.dumps(result, indent=1, default=str))
    print("wrote", write_result("serve_large", result))


if __name__ == "__main__":
    main()
