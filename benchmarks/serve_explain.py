"""What ``explain=true`` adds to a recommendation request of `m6rec serve`, one request at a
time (no queueing): per user, the same request without explanations, then with them the first
time (leave-one-out vectors encoded in one batch), then with them again (cached per user and
model version), then with them after a new event of that user (history changed: recomputed).
Checks that every explained response has exactly the ranking scores of the plain one.

    .venv/bin/python benchmarks/serve_explain.py --model-dir runs/serve/m6 --users 200
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, percentile, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="serve_explain")
    args = ap.parse_args()
    import httpx

    from m6rec.data import load_dataset

    tmp = tempfile.mkdtemp(prefix="m6rec-explain-")
    srv = Server(args.model_dir, f"sqlite:///{tmp}/events.db")
    lat: dict[str, list[float]] = {"plain": [], "explain_first": [], "explain_cached": [],
                                   "plain_after_event": [], "explain_after_event": []}
    added_first, added_cached, added_after = [], [], []
    mismatches = 0
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": srv.api_key},
                          timeout=60) as c:
            info = c.get("/health").json()
            ds = load_dataset(info["dataset"])
            rng = random.Random(args.seed)
            users = rng.sample([str(u) for u in ds.user_ids], min(args.users, ds.n_users))
            items = [str(i) for i in ds.item_ids]

            def get(user: str, explain: bool) -> tuple[float, list]:
                params = {"k": args.k, **({"explain": "true"} if explain else {})}
                t0 = time.perf_counter()
                r = c.get(f"/users/{user}/recommendations", params=params)
                dt = 1000 * (time.perf_counter() - t0)
                r.raise_for_status()
                return dt, [(it["item_id"], it["score"]) for it in r.json()["items"]]

            for u in users[:10]:  # warm-up: code paths, not these users' caches
                get(u + "-warm", True)
            for u in users:
                get(u, False)  # the user vector is cached from here on, as under load
                p, plain = get(u, False)
                f, first = get(u, True)
                w, cached = get(u, True)
                c.post("/events", json={"user_id": u, "item_id": rng.choice(items)}
                       ).raise_for_status()
                pa, plain_after = get(u, False)
                fa, after = get(u, True)
                mismatches += (first != plain) + (cached != plain) + (after != plain_after)
                for key, v in zip(lat, (p, f, w, pa, fa), strict=True):
                    lat[key].append(v)
                added_first.append(f - p)
                added_cached.append(w - p)
                added_after.append(fa - pa)
    finally:
        srv.stop()

    def summary(xs: list[float]) -> dict:
        return {"p50_ms": round(percentile(xs, 50), 2), "p99_ms": round(percentile(xs, 99), 2)}

    res = {name: summary(v) for name, v in lat.items()}
    res.update({"added_first_p99_ms": round(percentile(added_first, 99), 2),
                "added_first_p50_ms": round(percentile(added_first, 50), 2),
                "added_cached_p99_ms": round(percentile(added_cached, 99), 2),
                "added_after_event_p99_ms": round(percentile(added_after, 99), 2),
                "score_list_mismatches": mismatches, "users": len(users), "k": args.k,
                "model": info["model"], "dataset": info["dataset"],
                "command": " ".join(sys.argv)})
    path = write_result(args.name, res)
    print(res)
    print(f"written {path}")
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
