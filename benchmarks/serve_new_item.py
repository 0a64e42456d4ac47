"""New-item latency of `m6rec serve`: from sending ``POST /items`` to the item being
recommendable. The item is encoded and indexed before the response, so the time is the POST
round trip; each new item is then checked to be recommendable at once: it must be in the top 50
for a cold user whose free-text request is its own title (``GET
/users/{id}/recommendations?query=...``; the titles come in 5 families of near-duplicates, so
top 10 would be crowded by its siblings).

    .venv/bin/python benchmarks/serve_new_item.py --model-dir runs/serve/m6 --n 50
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, percentile, write_result  # noqa: E402

TITLES = ["Starship Odyssey: Return to the Nebula (2024)", "A Quiet Kitchen in Lyon (2023)",
          "The Haunted Lighthouse Mystery (2022)", "Cowboys of the Silver Canyon (2021)",
          "Love Letters from Lisbon (2024)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="m6rec-newitem-"))
    srv = Server(args.model_dir, f"sqlite:///{tmp}/events.db")
    post_ms, ready_ms, found = [], [], 0
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": srv.api_key}, timeout=300) as c:
            c.post("/items", json={"item_id": "warmup", "title": "warm up"})  # loads the LM
            for n in range(args.n):
                title = f"{TITLES[n % len(TITLES)]} part {n}"
                t0 = time.perf_counter()
                r = c.post("/items", json={"item_id": f"new-{n}", "title": title,
                                           "categories": ["Drama"]})
                t1 = time.perf_counter()
                r.raise_for_status()
                got = c.get(f"/users/cold-{n}/recommendations", params={"k": 50, "query": title})
                t2 = time.perf_counter()
                items = [it["item_id"] for it in got.json()["items"]]
                found += f"new-{n}" in items
                post_ms.append((t1 - t0) * 1000)
                ready_ms.append((t2 - t0) * 1000)
    finally:
        srv.stop()
    res = {"items": args.n, "recommendable_at_once": found,
           "post_p50_ms": round(percentile(post_ms, 50), 2),
           "post_p99_ms": round(percentile(post_ms, 99), 2),
           "post_plus_first_recommendation_p50_ms": round(percentile(ready_ms, 50), 2),
           "post_plus_first_recommendation_p99_ms": round(percentile(ready_ms, 99), 2),
           "command": " ".join(sys.argv)}
    path = write_result("serve_new_item", res)
    print(res)
    print(f"written {path}")


if __name__ == "__main__":
    main()
