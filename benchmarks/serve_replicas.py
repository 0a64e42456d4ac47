"""Two replicas of `m6rec serve` on one PostgreSQL database: how soon a write to one is used by
the other, and what a SIGKILL of one replica under writes loses.

1. **Visibility.** ``--writes`` paced writes to replica A (one every ``--pace`` s), each an
   event of a new user on a catalogue item, every ``--item-every``-th an item with text
   instead. After each write, replica B is polled every 2 ms until it has applied it: an event
   once B's ``/health`` says its event feed offset has reached the event's id (B's popularity
   counts it), an item once B answers ``/items/{id}/similar`` (encoded and indexed on B).
   Reported: p50 / p99 / max of post-acknowledged-by-A -> visible-through-B.
2. **SIGKILL under writes.** ``--clients`` writer threads per replica post events (a unique
   user each); after ``--kill-after`` acknowledgements by A, A gets SIGKILL; the writers to B
   go on for 2 s. Then every acknowledged event is looked up in the database (lost =
   acknowledged but not stored; it must be 0), next to what A committed and how many
   changes B applied from the feed (A's, plus those of its own the feed reached before the
   writing request applied them; each change is applied once either way).

PostgreSQL: ``--db URL``, else a throwaway server on 127.0.0.1 (``initdb`` + ``pg_ctl``, the
same finder as the store tests). The model: ``--model-dir``, else ``--model`` (default
``ease``, seconds to fit) trained on ml-100k into ``--work`` (reused when it is there). With a
text model (``m6``) a posted item counts as visible through B once B answers
``/items/{id}/similar`` (encoded with the model's language model and indexed on B); with an ID
model (which cannot score an item it was not trained on) once B's ``/health`` item feed offset
has reached A's.

    HF_HUB_OFFLINE=1 python benchmarks/serve_replicas.py --writes 500

Writes ``benchmarks/results/serve_replicas.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, percentile, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
HEAD = {"X-API-Key": KEY}


def start_postgres():
    """(url, stop) of a throwaway local server (the store tests' finder, loaded by path)."""
    spec = importlib.util.spec_from_file_location("m6rec_bench_postgres",
                                                  ROOT / "tests" / "storage" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tmp = Path(tempfile.mkdtemp(prefix="m6rec-pg-"))
    url, stop = mod.start_postgres(tmp)

    def stop_all() -> None:
        stop()
        shutil.rmtree(tmp, ignore_errors=True)

    return url, stop_all


def empty(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS events, items, users")


def model_dir(args) -> str:
    if args.model_dir:
        return args.model_dir
    out = Path(args.work) / args.model
    if not (out / "meta.json").is_file():
        print(f"training {args.model} on ml-100k into {out} ...", flush=True)
        subprocess.run([sys.executable, "-m", "m6rec.cli", "train", "--data", "ml-100k",
                        "--model", args.model, "--protocol", "all", "--out", str(out)],
                       check=True)
    return str(out)


def wait_for(check, timeout: float = 10.0, every: float = 0.002) -> float:
    """Seconds until ``check()`` is true (inf after ``timeout``)."""
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > timeout:
            return float("inf")
        time.sleep(every)
    return time.perf_counter() - t0


def visibility(a: Server, b: Server, items: list[str], args) -> dict:
    ca = httpx.Client(base_url=a.url, timeout=30, headers=HEAD)
    cb = httpx.Client(base_url=b.url, timeout=30, headers=HEAD)
    lat: dict[str, list[float]] = {"event": [], "item": []}
    post: dict[str, list[float]] = {"event": [], "item": []}
    for k in range(args.writes):
        t0 = time.perf_counter()
        if args.item_every and k % args.item_every == args.item_every - 1:
            item_id = f"bench-item-{k}"
            r = ca.post("/items", json={"item_id": item_id, "title": f"Space voyage {k}",
                                        "description": "a rocket crew crosses the galaxy",
                                        "categories": ["Sci-Fi"]})
            r.raise_for_status()
            t1 = time.perf_counter()
            if r.json()["indexed"]:
                seen = wait_for(lambda i=item_id: cb.get(f"/items/{i}/similar?k=1")
                                .status_code == 200)
            else:
                seq = ca.get("/health").json()["log"]["items"]  # A wrote it: A's offset
                seen = wait_for(lambda q=seq: cb.get("/health").json()["log"]["items"] >= q)
            kind = "item"
        else:
            r = ca.post("/events", json={"user_id": f"bench-u{k}", "item_id": items[k % 50]})
            r.raise_for_status()
            event_id = r.json()["ids"][0]
            t1 = time.perf_counter()
            seen = wait_for(lambda e=event_id: cb.get("/health").json()["log"]["events"] >= e)
            kind = "event"
        post[kind].append(t1 - t0)
        lat[kind].append(seen)
        time.sleep(max(0.0, args.pace - (time.perf_counter() - t0)))
    out = {}
    for kind, xs in lat.items():
        ok = [x for x in xs if x != float("inf")]
        out[kind] = {"writes": len(xs), "never_visible_in_10s": len(xs) - len(ok),
                     "visible_p50_ms": 1000 * percentile(ok, 50),
                     "visible_p99_ms": 1000 * percentile(ok, 99),
                     "visible_max_ms": 1000 * max(ok, default=float("nan")),
                     "within_1s": sum(x <= 1.0 for x in ok) / max(len(xs), 1),
                     "post_p50_ms": 1000 * percentile(post[kind], 50)}
    return out


def kill_under_load(a: Server, b: Server, url: str, item: str, args,
                    applied_before: float) -> dict:
    from m6rec.storage import open_store

    acked: dict[str, list[str]] = {"a": [], "b": []}
    stop_b = threading.Event()

    def write(name: str, w: int, server: Server, stop: threading.Event) -> None:
        client = httpx.Client(base_url=server.url, timeout=10, headers=HEAD)
        k = 0
        while not stop.is_set():
            user = f"kill-{name}{w}-{k}"
            k += 1
            try:
                r = client.post("/events", json={"user_id": user, "item_id": item})
            except httpx.HTTPError:  # never acknowledged
                if server.proc.poll() is not None:
                    return
                continue
            if r.status_code == 201:
                acked[name].append(user)

    threads = [threading.Thread(target=write, args=(n, w, s, stop_b))
               for n, s in (("a", a), ("b", b)) for w in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    while len(acked["a"]) < args.kill_after and time.perf_counter() - t0 < 120:
        time.sleep(0.01)
    a.kill()
    killed_at = len(acked["a"])
    time.sleep(2.0)
    stop_b.set()
    for t in threads:
        t.join(30)
    seconds = time.perf_counter() - t0
    with open_store(url) as store:
        stored = {e.user_id for e in store.iter_events() if e.user_id.startswith("kill-")}
    lost = [u for u in acked["a"] + acked["b"] if u not in stored]
    from_a = sum(u.startswith("kill-a") for u in stored)
    applied = 0.0
    deadline = time.perf_counter() + 5
    while time.perf_counter() < deadline:  # until B has read the whole feed
        applied = (metric(b, "m6rec_replication_applied") or 0.0) - applied_before
        if applied >= from_a:
            break
        time.sleep(0.05)
    return {"acked_a": len(acked["a"]), "acked_a_when_killed": killed_at,
            "acked_b": len(acked["b"]), "stored": len(stored), "lost_acknowledged": len(lost),
            "committed_by_a": from_a, "applied_by_b_from_feed": applied,
            "writes_per_s": (len(acked["a"]) + len(acked["b"])) / seconds}


def metric(s: Server, name: str) -> float | None:
    for line in httpx.get(s.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--work", default="runs/serve_replicas")
    ap.add_argument("--model", default="ease", help="trained when --model-dir is not given")
    ap.add_argument("--db", default=None, help="postgresql://... (default: a throwaway server)")
    ap.add_argument("--writes", type=int, default=500)
    ap.add_argument("--pace", type=float, default=0.05, help="seconds between writes to A")
    ap.add_argument("--item-every", type=int, default=10)
    ap.add_argument("--clients", type=int, default=2, help="writers per replica (kill phase)")
    ap.add_argument("--kill-after", type=int, default=300)
    args = ap.parse_args()

    model = model_dir(args)
    stop_pg = None
    url = args.db
    if url is None:
        url, stop_pg = start_postgres()
    try:
        empty(url)
        a = Server(model, url, api_key=KEY)
        b = Server(model, url, api_key=KEY)
        try:
            items = [i["item_id"] for i in httpx.get(
                a.url + "/users/nobody/recommendations?k=50", headers=HEAD).json()["items"]]
            # warm both (text encoder loaded, first requests answered)
            httpx.post(a.url + "/items", headers=HEAD, timeout=60,
                       json={"item_id": "warm", "title": "warm up"}).raise_for_status()
            wait_for(lambda: httpx.get(b.url + "/items/warm/similar", headers=HEAD)
                     .status_code == 200, 60)
            t0 = time.perf_counter()
            vis = visibility(a, b, items, args)
            vis_s = time.perf_counter() - t0
            before = metric(b, "m6rec_replication_applied") or 0.0
            kill = kill_under_load(a, b, url, items[0], args, before)
        finally:
            a.stop()
            b.stop()
    finally:
        if stop_pg is not None:
            stop_pg()
    result = {"model_dir": model, "writes": args.writes, "pace_s": args.pace,
              "visibility": vis, "visibility_seconds": vis_s, "kill": kill}
    path = write_result("serve_replicas", result)
    for kind, r in vis.items():
        print(f"{kind}s: {r['writes']} written to A, visible through B p50 "
              f"{r['visible_p50_ms']:.1f} ms, p99 {r['visible_p99_ms']:.1f} ms, max "
              f"{r['visible_max_ms']:.1f} ms; within 1 s: {100 * r['within_1s']:.1f}% "
              f"(A's acknowledgement p50 {r['post_p50_ms']:.1f} ms)")
    print(f"SIGKILL of A after {kill['acked_a_when_killed']} acknowledgements: "
          f"{kill['acked_a'] + kill['acked_b']} acknowledged, {kill['stored']} stored, "
          f"lost {kill['lost_acknowledged']}; A committed {kill['committed_by_a']}; B applied "
          f"{kill['applied_by_b_from_feed']:.0f} changes from the feed (A's, and its own that "
          "the feed reached before the writing request did)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
