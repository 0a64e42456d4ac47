"""Latency of the service's generative endpoints with the offline LM (SmolLM2 by default):
``explain=true&phrasing=lm`` and ``POST /users/{id}/conversation``, one request at a time.

A fresh `m6rec serve` with an empty generation cache (a temporary ``M6REC_CACHE_DIR``; the
LM's converted weights are linked from the usual one) gets,
for ``--users`` seeded ml-100k users: the explained list phrased by the LM (cold: every text
generated), the same request again (cached), then a one-message conversation and a
two-message one (each generates the request rewrite and the reply). The first request that
loads the LM is timed apart. Also counts the generated sentences replaced by the template
because they named something outside the evidence.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/serve_generative.py \
        --model-dir runs/serve/m6 --users 10 --k 3
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, percentile, write_result  # noqa: E402

MESSAGES = ["something funny for tonight", "a gripping crime story", "a classic western",
            "an animated film for kids", "a scary horror movie", "a romantic comedy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generator", default="smollm2")
    ap.add_argument("--name", default="serve_generative")
    args = ap.parse_args()
    import httpx

    from m6rec.config import Settings
    from m6rec.data import load_dataset

    cache = Path(tempfile.mkdtemp(prefix="m6rec-gen-cache-"))
    converted = Settings().cache_dir / "generators"  # the LM's converted weights: reused
    if converted.is_dir():
        (cache / "generators").symlink_to(converted, target_is_directory=True)
    os.environ["M6REC_CACHE_DIR"] = str(cache)  # an empty generation cache
    os.environ["M6REC_GENERATOR"] = args.generator  # the server's generator (its settings)
    tmp = tempfile.mkdtemp(prefix="m6rec-gen-")
    srv = Server(args.model_dir, f"sqlite:///{tmp}/events.db")
    lat: dict[str, list[float]] = {"phrased_cold": [], "phrased_cached": [],
                                   "conversation_1": [], "conversation_2": []}
    replaced = generated = 0
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": srv.api_key},
                          timeout=600) as c:
            info = c.get("/health").json()
            ds = load_dataset(info["dataset"])
            rng = random.Random(args.seed)
            users = rng.sample([str(u) for u in ds.user_ids], args.users + 1)
            params = {"k": args.k, "explain": "true", "phrasing": "lm"}

            def timed(method: str, path: str, **kw) -> tuple[float, dict]:
                t0 = time.perf_counter()
                r = c.request(method, path, **kw)
                dt = 1000 * (time.perf_counter() - t0)
                r.raise_for_status()
                return dt, r.json()

            first_ms, _ = timed("GET", f"/users/{users[0]}/recommendations", params=params)
            for n, u in enumerate(users[1:]):
                dt, body = timed("GET", f"/users/{u}/recommendations", params=params)
                lat["phrased_cold"].append(dt)
                p = body.get("phrasing") or {}
                generated += int(p.get("phrased", 0))
                replaced += int(p.get("replaced", 0))
                lat["phrased_cached"].append(
                    timed("GET", f"/users/{u}/recommendations", params=params)[0])
                m1 = MESSAGES[n % len(MESSAGES)]
                m2 = MESSAGES[(n + 1) % len(MESSAGES)]
                lat["conversation_1"].append(timed(
                    "POST", f"/users/{u}/conversation", json={"messages": [m1], "k": 5})[0])
                lat["conversation_2"].append(timed(
                    "POST", f"/users/{u}/conversation",
                    json={"messages": [m1, f"more like {m2}"], "k": 5})[0])
    finally:
        srv.stop()

    res = {name: {"p50_ms": round(percentile(v, 50), 1), "p99_ms": round(percentile(v, 99), 1),
                  "n": len(v)} for name, v in lat.items()}
    res.update({"first_request_with_lm_load_ms": round(first_ms, 1), "k": args.k,
                "users": args.users, "generator": args.generator,
                "explanations_phrased": generated, "sentences_replaced_by_template": replaced,
                "model": info["model"], "dataset": info["dataset"],
                "command": " ".join(sys.argv)})
    path = write_result(args.name, res)
    print(res)
    print(f"written {path}")


if __name__ == "__main__":
    main()
