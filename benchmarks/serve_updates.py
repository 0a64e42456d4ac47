"""Recommendation latency while the service learns online, against the same service without
updates, in one run (the aim: p99 within 10%).

Each round starts two fresh servers one after the other on the same model, each with an empty
SQLite store: ``static`` (no ``--update``) and ``--update SPEC``, and drives the same paced
load at both with wrk: recommendation clients (``--rate`` x 90%) and event clients (x 10%)
in two wrk processes, so the recommendation latency is measured apart from the events. Rounds
alternate the order (static first, then updates first, ...) to cancel drift on a shared
machine. At the end of each ``--update`` run the model version reached is read from /metrics.

    .venv/bin/python benchmarks/serve_updates.py --model-dir runs/demo/model \
        --update "foldin every=500" --rate 400 --duration 30 --rounds 2
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, write_result  # noqa: E402
from serve_load import run_wrk  # noqa: E402


def one_run(model_dir: str, update: str | None, users: list[str], items: list[str],
            clients: int, rate: float, duration: float, warmup: float) -> dict:
    tmp = tempfile.mkdtemp(prefix="m6rec-upd-")
    extra = ["--update", update] if update else []
    srv = Server(model_dir, f"sqlite:///{tmp}/events.db", extra=extra)
    try:
        run_wrk(srv.url, srv.api_key, users, items, clients, warmup)
        n_ev = max(1, round(clients * 0.1))
        with ThreadPoolExecutor(2) as pool:
            recs = pool.submit(run_wrk, srv.url, srv.api_key, users, items, clients - n_ev,
                               duration, 0.0, 1, rate * 0.9)
            evs = pool.submit(run_wrk, srv.url, srv.api_key, users, items, n_ev, duration,
                              1.0, 2, rate * 0.1)
            recs, evs = recs.result(), evs.result()
        text = httpx.get(srv.url + "/metrics").text
        version = re.search(r"^m6rec_model_version (\S+)$", text, re.M)
        return {"update": update or "static", "rec_p50_ms": recs["p50_ms"],
                "rec_p90_ms": recs["p90_ms"], "rec_p99_ms": recs["p99_ms"],
                "rec_per_s": recs["req_per_s"], "event_p50_ms": evs["p50_ms"],
                "event_p99_ms": evs["p99_ms"], "events_per_s": evs["req_per_s"],
                "errors": recs["errors"] + evs["errors"],
                "model_version": float(version.group(1)) if version else None}
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--update", default="foldin every=500")
    ap.add_argument("--rate", type=float, default=400)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--name", default="serve_updates")
    args = ap.parse_args()
    from m6rec.data import load_dataset

    ds = load_dataset("ml-100k")
    users, items = [str(u) for u in ds.user_ids], [str(i) for i in ds.item_ids]
    runs = []
    for r in range(args.rounds):
        order = [None, args.update] if r % 2 == 0 else [args.update, None]
        for update in order:
            runs.append(one_run(args.model_dir, update, users, items, args.clients, args.rate,
                                args.duration, args.warmup))
            print(runs[-1], flush=True)
    static = [x for x in runs if x["update"] == "static"]
    online = [x for x in runs if x["update"] != "static"]
    summary = {key: {"static": statistics.mean(x[key] for x in static),
                     "updates": statistics.mean(x[key] for x in online)}
               for key in ("rec_p50_ms", "rec_p99_ms", "rec_per_s", "event_p99_ms")}
    summary["rec_p99_ratio"] = summary["rec_p99_ms"]["updates"] / summary["rec_p99_ms"]["static"]
    summary["updates_applied"] = [x["model_version"] for x in online]
    res = {"runs": runs, "summary": summary, "command": " ".join(sys.argv)}
    path = write_result(args.name, res)
    print(summary)
    print(f"written {path}")


if __name__ == "__main__":
    main()
