"""Fuzz `m6rec serve` with schemathesis over its OpenAPI spec, auth on: no 5xx allowed, and
every data read without a key answered 401.

Starts a server with an API key and a read-only key, then runs ``schemathesis run`` twice
(the ``not_a_server_error`` check, HAR reports):

1. every operation with the API key in ``X-API-Key`` (at least 1,000 requests, 0 5xx);
2. every read operation (GET, except the public ``/health`` and ``/metrics``) with no key: each
   response must be 401, whatever the parameters.

    .venv/bin/python benchmarks/serve_fuzz.py --model-dir runs/serve/m6 --max-examples 60
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, write_result  # noqa: E402

PUBLIC = ("/health", "/metrics")


def schemathesis(url: str, report_dir: Path, max_examples: int, seed: int,
                 extra: list[str]) -> tuple[int, str, list[dict]]:
    st = Path(sys.executable).parent / "schemathesis"
    report_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [str(st), "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", str(max_examples), "--seed", str(seed), "--report", "har",
         "--report-dir", str(report_dir), "--exclude-path", "/admin/reload", "--no-color",
         *extra], capture_output=True, text=True, timeout=3000)
    entries = []
    for har in list(report_dir.glob("*.har")) + list(report_dir.glob("har-*.json")):
        entries += json.loads(har.read_text())["log"]["entries"]
    return proc.returncode, proc.stdout, entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--max-examples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="m6rec-fuzz-"))
    srv = Server(args.model_dir, f"sqlite:///{tmp}/events.db",
                 extra=["--read-key", "fuzz-read-key"])
    t0 = time.monotonic()
    try:
        rc, out, keyed = schemathesis(srv.url, tmp / "keyed", args.max_examples, args.seed,
                                      ["-H", f"X-API-Key: {srv.api_key}"])
        rc2, out2, anon = schemathesis(
            srv.url, tmp / "anonymous", max(10, args.max_examples // 3), args.seed,
            ["--include-method", "GET", "--exclude-path-regex", "^/(health|metrics)$"])
    finally:
        srv.stop()
    wall = time.monotonic() - t0
    statuses: collections.Counter = collections.Counter()
    by_op: collections.Counter = collections.Counter()
    for entry in keyed:
        statuses[entry["response"]["status"]] += 1
        path = entry["request"]["url"].split(srv.url, 1)[-1].split("?")[0]
        by_op[f"{entry['request']['method']} {path.split('/')[1] if '/' in path else path}"] += 1
    anon_statuses: collections.Counter = collections.Counter()
    anon_reads = 0
    for entry in anon:
        path = entry["request"]["url"].split(srv.url, 1)[-1].split("?")[0]
        if entry["request"]["method"] != "GET" or path in PUBLIC or not (
                path.startswith("/users") or path.startswith("/items")):
            continue
        anon_reads += 1
        anon_statuses[entry["response"]["status"]] += 1
    server_errors = sum(n for s, n in statuses.items() if s >= 500) + sum(
        n for s, n in anon_statuses.items() if s >= 500)
    not_401 = sum(n for s, n in anon_statuses.items() if s != 401)
    res = {"requests": sum(statuses.values()), "server_errors_5xx": server_errors,
           "statuses": {str(k): v for k, v in sorted(statuses.items())},
           "by_resource": dict(by_op), "schemathesis_rc": rc,
           "reads_without_key": anon_reads, "reads_without_key_not_401": not_401,
           "reads_without_key_statuses": {str(k): v for k, v in sorted(anon_statuses.items())},
           "schemathesis_rc_without_key": rc2,
           "wall_s": round(wall, 1), "max_examples": args.max_examples,
           "note": "/admin/reload excluded (it reloads the model: slow, and tested separately)",
           "command": " ".join(sys.argv)}
    path = write_result("serve_fuzz", res)
    print(out[-2000:])
    print(out2[-1500:])
    print(res)
    print(f"written {path}")
    if server_errors or not_401 or res["requests"] < 1000 or anon_reads == 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
