"""Restart-to-healthy time of `m6rec serve` with 10^4, 10^5, 10^6 events in the log.

For each size: a fresh SQLite store is filled with that many events (random ml-100k users and
items, through the store's own ``add_events``), then the server is started and timed from the
process start to its first ``200`` on ``/health``; then ``POST /admin/reload`` is timed (the old engine writes its snapshot first, so the new one
replays only the tail), then the server is stopped (it writes its snapshot) and started again.
The first start has no snapshot and replays the whole log (one aggregate query,
``Store.item_counts``); the second replays only what follows the snapshot's offset.

Reference measured in the same run, just before each start: ``imports_s``, a fresh
interpreter that only imports what the server imports (the CLI, FastAPI, torch) and exits:
on a shared machine it moves with the load, and ``start - imports`` is the service's own part.

    .venv/bin/python benchmarks/serve_restart.py --model-dir runs/serve/m6
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, write_result  # noqa: E402


def fill(url: str, n: int, users: list[str], items: list[str], seed: int = 0) -> float:
    from m6rec.storage import Event, open_store

    rng = random.Random(seed)
    t0 = time.perf_counter()
    with open_store(url) as store:
        done = 0
        while done < n:
            m = min(50_000, n - done)
            store.add_events([Event(rng.choice(users), rng.choice(items), None,
                                    1_000_000_000.0 + done + k) for k in range(m)])
            done += m
    return time.perf_counter() - t0


def imports_s() -> float:
    """Seconds for a fresh interpreter to import what `m6rec serve` imports, and exit."""
    import subprocess

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import m6rec.cli, m6rec.serve.app, torch, uvicorn"],
                   check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--name", default="serve_restart")
    ap.add_argument("--store", help="measure on this existing SQLite store (a folder holding "
                                    "events.db, e.g. one a previous run filled) instead of "
                                    "filling new ones; its snapshot is removed first")
    args = ap.parse_args()
    import httpx

    from m6rec.data import load_dataset

    ds = load_dataset("ml-100k")
    users, items = [str(u) for u in ds.user_ids], [str(i) for i in ds.item_ids]
    rows = []
    sizes = [0] if args.store else [int(x) for x in args.sizes.split(",")]
    for n in sizes:
        tmp = args.store or tempfile.mkdtemp(prefix="m6rec-restart-")
        url = f"sqlite:///{tmp}/events.db"
        if args.store:
            Path(f"{tmp}/events.db.snapshot.json").unlink(missing_ok=True)
            from m6rec.storage import open_store

            with open_store(url) as store:
                n, fill_s = store.item_counts(0)[1], 0.0
        else:
            fill_s = fill(url, n, users, items)
        ref = imports_s()
        srv = Server(args.model_dir, url)
        try:
            t0 = time.perf_counter()
            r = httpx.post(srv.url + "/admin/reload", headers={"X-API-Key": srv.api_key},
                           timeout=300)
            reload_s = time.perf_counter() - t0
            r.raise_for_status()
            health = httpx.get(srv.url + "/health").json()
        finally:
            srv.stop()
        ref_again = imports_s()
        again = Server(args.model_dir, url)
        again.stop()
        rows.append({"events": n, "restart_to_healthy_s": round(srv.startup_s, 2),
                     "restart_with_snapshot_s": round(again.startup_s, 2),
                     "imports_s": round(ref, 2), "imports_before_snapshot_start_s":
                     round(ref_again, 2),
                     "reload_s": round(reload_s, 2), "fill_s": round(fill_s, 1),
                     "items": health["items"]})
        print(rows[-1], flush=True)
    res = {"runs": rows, "command": " ".join(sys.argv)}
    path = write_result(args.name, res)
    print(res)
    print(f"written {path}")


if __name__ == "__main__":
    main()
