"""Load test of `m6rec serve`: a load generator in other processes on loopback.

16 concurrent clients, 90% ``GET /users/{id}/recommendations?k=10`` for random ml-100k users
(``--explain-share`` of them with ``explain=true``), 10% ``POST /events``; every request carries
the API key (reads need it too). Prints and writes p50 / p99 latency, requests/s, and the server's CPU time
per request (robust to a noisy machine). Two load generators:

- ``--generator wrk`` (default when ``wrk`` is installed, ``apt-get install wrk``): one C
  process driving 16 keep-alive connections, so the 2 cores are left to the server;
- ``--generator httpx``: asyncio + httpx clients spread over ``--procs`` Python processes, with
  per-endpoint latencies.

Without ``--rate`` the clients run closed loop (each sends its next request as soon as the
last is answered): that measures the maximum throughput, and the latency there is mostly
queueing (16 clients / throughput). ``--rate R`` paces the clients (wrk: exponential think
time between requests; httpx: open loop) to measure latency at a given load; the server's
resident memory is sampled during the run (soak: ``--rate HALF_MAX --duration 600``).

    .venv/bin/python benchmarks/serve_load.py --model-dir runs/serve/m6 --duration 60
    .venv/bin/python benchmarks/serve_load.py --model-dir runs/serve/m6 --duration 60 --rate 420
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, percentile, write_result  # noqa: E402


def _client_proc(url: str, key: str, users: list[str], items: list[str], n_workers: int,
                 duration: float, rate: float | None, write_share: float, seed: int, out,
                 explain_share: float = 0.0) -> None:
    import httpx

    async def main() -> list[tuple[str, float, int]]:
        rng = random.Random(seed)
        records: list[tuple[str, float, int]] = []
        stop_at = time.monotonic() + duration
        interval = n_workers / rate if rate else 0.0

        async def worker(client: httpx.AsyncClient) -> None:
            next_t = time.monotonic()
            while time.monotonic() < stop_at:
                if interval:
                    next_t += interval * rng.uniform(0.5, 1.5)
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                user = rng.choice(users)
                t0 = time.perf_counter()
                try:
                    if rng.random() < write_share:
                        kind = "event"
                        r = await client.post("/events", json={"user_id": user,
                                                               "item_id": rng.choice(items)},
                                              headers={"X-API-Key": key})
                    else:
                        explain = rng.random() < explain_share
                        kind = "rec_explain" if explain else "rec"
                        params = {"k": 10, "explain": "true"} if explain else {"k": 10}
                        r = await client.get(f"/users/{user}/recommendations", params=params,
                                             headers={"X-API-Key": key})
                    status = r.status_code
                except httpx.HTTPError:
                    status = -1
                records.append((kind, time.perf_counter() - t0, status))

        limits = httpx.Limits(max_connections=n_workers, max_keepalive_connections=n_workers)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            await asyncio.gather(*(worker(client) for _ in range(n_workers)))
        return records

    out.put(asyncio.run(main()))


def run_load(url: str, key: str, users: list[str], items: list[str], clients: int, procs: int,
             duration: float, rate: float | None = None, write_share: float = 0.1,
             server: Server | None = None, explain_share: float = 0.0) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    per = [clients // procs + (1 if p < clients % procs else 0) for p in range(procs)]
    ps = [ctx.Process(target=_client_proc, args=(url, key, users, items, n, duration,
                                                 rate * n / clients if rate else None,
                                                 write_share, 1000 + p, q, explain_share))
          for p, n in enumerate(per)]
    rss = []
    t0 = time.monotonic()
    for p in ps:
        p.start()
    if server is not None:
        while any(p.is_alive() for p in ps) and time.monotonic() - t0 < duration + 5:
            rss.append((round(time.monotonic() - t0, 1), server.rss_mb()))
            time.sleep(min(10.0, max(1.0, duration / 60)))
    records = [r for _ in ps for r in q.get()]
    for p in ps:
        p.join()
    wall = time.monotonic() - t0
    lat = [d * 1000 for _, d, s in records if 200 <= s < 300]
    rec_lat = [d * 1000 for k, d, s in records if k == "rec" and s == 200]
    exp_lat = [d * 1000 for k, d, s in records if k == "rec_explain" and s == 200]
    ev_lat = [d * 1000 for k, d, s in records if k == "event" and s == 201]
    errors = sum(1 for _, _, s in records if not 200 <= s < 300)
    return {"requests": len(records), "errors": errors, "seconds": round(duration, 1),
            "wall_seconds": round(wall, 1), "req_per_s": round(len(lat) / duration, 1),
            "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2),
            "rec_p50_ms": round(percentile(rec_lat, 50), 2),
            "rec_p99_ms": round(percentile(rec_lat, 99), 2),
            "rec_explain_p50_ms": round(percentile(exp_lat, 50), 2) if exp_lat else None,
            "rec_explain_p99_ms": round(percentile(exp_lat, 99), 2) if exp_lat else None,
            "explain_share": explain_share,
            "event_p50_ms": round(percentile(ev_lat, 50), 2),
            "event_p99_ms": round(percentile(ev_lat, 99), 2),
            "clients": clients, "client_processes": procs, "offered_rate": rate,
            "rss_mb": rss}


WRK_SCRIPT = """
local users = {%s}
local items = {%s}
local key = "%s"
local write_share = %f
local explain_share = %f
math.randomseed(%d)
request = function()
  local u = users[math.random(#users)]
  if math.random() < write_share then
    local body = '{"user_id":"' .. u .. '","item_id":"' .. items[math.random(#items)] .. '"}'
    return wrk.format("POST", "/events",
                      {["Content-Type"] = "application/json", ["X-API-Key"] = key}, body)
  end
  local path = "/users/" .. u .. "/recommendations?k=10"
  if math.random() < explain_share then
    path = path .. "&explain=true"
  end
  return wrk.format("GET", path, {["X-API-Key"] = key})
end
"""

#: paced clients: after each response a client waits an exponential think time (mean ms)
WRK_PACING = """
local think = %f
delay = function()
  return -think * math.log(1 - math.random())
end
"""


def run_wrk(url: str, key: str, users: list[str], items: list[str], clients: int,
            duration: float, write_share: float = 0.1, seed: int = 1, rate: float | None = None,
            server: Server | None = None, explain_share: float = 0.0) -> dict:
    """One wrk run (C load generator; ``--latency`` percentiles of all requests).

    ``rate``: paced clients (each waits an exponential think time of mean ``clients / rate``
    between a response and its next request, so the achieved rate is a little below ``rate``;
    latencies are from send to response, as wrk measures them); None: closed loop, no think
    time. With ``server`` its resident memory is sampled during the run."""
    import re
    import subprocess
    import threading

    def lua_list(xs: list[str]) -> str:
        return ",".join('"' + x.replace("\\", "").replace('"', "") + '"' for x in xs)

    script = Path(tempfile.mkdtemp(prefix="m6rec-wrk-")) / "mix.lua"
    lua = WRK_SCRIPT % (lua_list(users), lua_list(items), key, write_share, explain_share,
                        seed)
    if rate:
        lua += WRK_PACING % (1000.0 * clients / rate)
    script.write_text(lua)
    rss: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not done.wait(min(10.0, max(1.0, duration / 60))):
            rss.append((round(time.monotonic() - t0, 1), server.rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    if server is not None:
        rss.append((0.0, server.rss_mb()))
        sampler.start()
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{int(duration)}s", "--latency",
                              "--timeout", "10s", "-s", str(script), url], capture_output=True,
                             text=True, check=True).stdout
    finally:
        done.set()
        if server is not None:
            sampler.join()
            rss.append((round(duration, 1), server.rss_mb()))

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk output has no {label}% line:\n{out}")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"requests": total, "errors": errors, "seconds": round(duration, 1),
            "req_per_s": round((total - errors) / duration, 1),
            "p50_ms": round(ms(50), 2), "p90_ms": round(ms(90), 2), "p99_ms": round(ms(99), 2),
            "clients": clients, "generator": "wrk", "offered_rate": rate, "rss_mb": rss,
            "explain_share": explain_share,
            "wrk_output": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--db", default=None, help="default: a fresh SQLite file in a temp dir")
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--rate", type=float, default=None,
                    help="paced load, req/s (wrk: clients with think time; httpx: open loop); "
                         "default: closed loop")
    ap.add_argument("--generator", choices=["auto", "wrk", "httpx"], default="auto",
                    help="auto: wrk when installed, else httpx")
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--explain-share", type=float, default=0.0,
                    help="share of the recommendation requests with explain=true")
    ap.add_argument("--name", default="serve_load")
    args = ap.parse_args()
    import httpx

    from m6rec.data import load_dataset

    tmp = tempfile.mkdtemp(prefix="m6rec-load-")
    db = args.db or f"sqlite:///{tmp}/events.db"
    srv = Server(args.model_dir, db)
    try:
        info = httpx.get(srv.url + "/health").json()
        ds = load_dataset(info["dataset"]) if info["dataset"] in ("ml-100k",) else None
        users = ([str(u) for u in ds.user_ids] if ds is not None else [f"u{k}" for k in range(100)])
        items = [str(i) for i in ds.item_ids] if ds is not None else []
        gen = args.generator
        if gen == "auto":
            import shutil

            gen = "wrk" if shutil.which("wrk") else "httpx"
        if args.warmup:
            run_load(srv.url, srv.api_key, users, items, args.clients, args.procs, args.warmup,
                     explain_share=args.explain_share)
        cpu0 = srv.cpu_seconds()
        if gen == "wrk":
            res = run_wrk(srv.url, srv.api_key, users, items, args.clients, args.duration,
                          rate=args.rate, server=srv, explain_share=args.explain_share)
        else:
            res = run_load(srv.url, srv.api_key, users, items, args.clients, args.procs,
                           args.duration, rate=args.rate, server=srv,
                           explain_share=args.explain_share)
            res["generator"] = "httpx"
        res["server_cpu_ms_per_request"] = round(
            1000 * (srv.cpu_seconds() - cpu0) / max(res["requests"], 1), 3)
        res.update({"model": info["model"], "dataset": info["dataset"], "index": info["index"],
                    "items": info["items"], "server_startup_s": round(srv.startup_s, 1),
                    "command": " ".join(sys.argv)})
        if res.get("rss_mb"):
            first, last = res["rss_mb"][0][1], res["rss_mb"][-1][1]
            res["rss_growth_pct"] = round(100 * (last - first) / first, 2)
    finally:
        srv.stop()
    path = write_result(args.name, res)
    summary = {k: v for k, v in res.items() if k not in ("rss_mb", "wrk_output")}
    print(summary)
    print(f"written {path}")


if __name__ == "__main__":
    main()
