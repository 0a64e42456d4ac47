"""Durability of `m6rec serve`: SIGKILL mid-load loses no acknowledged event.

Starts the server on a fresh SQLite (or ``--db``) store; ``--clients`` concurrent client
processes post single events, each with a unique user id, and record which were acknowledged
(201). The server is killed with SIGKILL after ``--kill-after`` acknowledgements, restarted on the
same store, and the clients go on until ``--events`` acknowledgements in all. Then every
acknowledged event is looked up in the store: lost = acknowledged but not stored.

    .venv/bin/python benchmarks/serve_durability.py --model-dir runs/demo/model --events 10000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, write_result  # noqa: E402


def _client(url_file: str, key: str, worker: int, stop, acked_q, attempts_q) -> None:
    import httpx

    acked, attempted, seq = [], 0, 0
    client, url = None, None
    while not stop.is_set():
        current = Path(url_file).read_text().strip()
        if current != url:
            url = current
            client = httpx.Client(base_url=url, timeout=10)
        uid = f"w{worker}-{seq}"
        seq += 1
        attempted += 1
        try:
            r = client.post("/events", json={"user_id": uid, "item_id": "1"},
                            headers={"X-API-Key": key})
            if r.status_code == 201:
                acked.append(uid)
        except httpx.HTTPError:
            time.sleep(0.05)  # server down: retry with the next id (the old one may or may not
            # be stored, but it was never acknowledged)
    acked_q.put(acked)
    attempts_q.put(attempted)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--db", default=None)
    ap.add_argument("--events", type=int, default=10_000, help="acknowledged events in all")
    ap.add_argument("--kill-after", type=int, default=None, help="default: events / 2")
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    import httpx

    from m6rec.storage import open_store

    tmp = Path(tempfile.mkdtemp(prefix="m6rec-durability-"))
    db = args.db or f"sqlite:///{tmp}/events.db"
    kill_after = args.kill_after or args.events // 2
    url_file = tmp / "url"
    srv = Server(args.model_dir, db)
    url_file.write_text(srv.url)
    port = srv.port
    ctx = mp.get_context("spawn")
    stop, acked_q, att_q = ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(str(url_file), srv.api_key, w, stop, acked_q,
                                               att_q)) for w in range(args.clients)]
    t0 = time.monotonic()
    for p in procs:
        p.start()

    def stored() -> int:
        with open_store(db) as s:
            return s.count_events()

    while stored() < kill_after:
        time.sleep(0.2)
    srv.kill()
    killed_at = stored()
    t_kill = time.monotonic() - t0
    srv = Server(args.model_dir, db, port=port)  # same port: clients reconnect
    restart_s = srv.startup_s
    while stored() < args.events + args.clients * 5:
        time.sleep(0.2)
    stop.set()
    acked = [u for _ in procs for u in acked_q.get()]
    attempts = sum(att_q.get() for _ in procs)
    for p in procs:
        p.join()
    wall = time.monotonic() - t0
    health = httpx.get(srv.url + "/health").json()
    srv.stop()
    with open_store(db) as s:
        in_store = {e.user_id for e in s.iter_events()}
    lost = [u for u in acked if u not in in_store]
    res = {"acknowledged": len(acked), "attempted": attempts, "stored": len(in_store),
           "lost": len(lost), "lost_examples": lost[:10], "killed_after_stored": killed_at,
           "kill_at_s": round(t_kill, 1), "restart_s": round(restart_s, 1),
           "wall_s": round(wall, 1), "clients": args.clients, "db": db.split("://")[0],
           "model": health["model"], "command": " ".join(sys.argv)}
    path = write_result("serve_durability", res)
    print({k: v for k, v in res.items() if k != "lost_examples"})
    print(f"written {path}")
    if lost or len(acked) < args.events:
        sys.exit(1)


if __name__ == "__main__":
    main()
