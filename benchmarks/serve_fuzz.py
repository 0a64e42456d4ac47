"""Fuzz `m6rec serve` with schemathesis over its OpenAPI spec: no 5xx allowed.

Starts a server, runs ``schemathesis run`` (all operations, the API key as a header, the
``not_a_server_error`` check), reads every request and response from its HAR report and counts
them by status.

    .venv/bin/python benchmarks/serve_fuzz.py --model-dir runs/demo/model --max-examples 200
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--max-examples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="m6rec-fuzz-"))
    srv = Server(args.model_dir, f"sqlite:///{tmp}/events.db")
    st = Path(sys.executable).parent / "schemathesis"
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [str(st), "run", f"{srv.url}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", str(args.max_examples), "--seed", str(args.seed),
             "-H", f"X-API-Key: {srv.api_key}", "--report", "har", "--report-dir", str(tmp),
             "--exclude-path", "/admin/reload", "--no-color"],
            capture_output=True, text=True, timeout=3000)
    finally:
        srv.stop()
    wall = time.monotonic() - t0
    statuses: collections.Counter = collections.Counter()
    by_op: collections.Counter = collections.Counter()
    for har in list(tmp.glob("*.har")) + list(tmp.glob("har-*.json")):
        for entry in json.loads(har.read_text())["log"]["entries"]:
            s = entry["response"]["status"]
            statuses[s] += 1
            path = entry["request"]["url"].split(srv.url, 1)[-1].split("?")[0]
            by_op[f"{entry['request']['method']} {path.split('/')[1] if '/' in path else path}"] += 1
    server_errors = sum(n for s, n in statuses.items() if s >= 500)
    res = {"requests": sum(statuses.values()), "server_errors_5xx": server_errors,
           "statuses": {str(k): v for k, v in sorted(statuses.items())},
           "by_resource": dict(by_op), "schemathesis_rc": proc.returncode,
           "wall_s": round(wall, 1), "max_examples": args.max_examples,
           "note": "/admin/reload excluded (it reloads the model: slow, and tested separately)",
           "command": " ".join(sys.argv)}
    path = write_result("serve_fuzz", res)
    print(proc.stdout[-3000:])
    print(res)
    print(f"written {path}")
    if server_errors or res["requests"] < 1000:
        sys.exit(1)


if __name__ == "__main__":
    main()
