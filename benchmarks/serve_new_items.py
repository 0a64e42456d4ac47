"""New items reach the users they fit: items posted to `m6rec serve` with text and no
interactions, each checked in the top 10 of a user whose newest events are its nearest films.

Setup: a seeded 100 ml-100k items are held out of the dataset (catalogue and interactions),
and each user's newest remaining interaction is held out too (the quality check below); the
default ``m6`` is trained on the rest (``m6rec train --protocol all``). Then for every
new-item scoring mode (``M6REC_NEW_ITEMS``: ``raw``, ``calibrated``), the service is started
on a fresh store and

1. the 100 items are posted (``POST /items`` with title, year and genres);
2. per posted item, a new user posts 3 events: its 3 nearest catalogue items by the language
   model's text similarity (cosine of the LM encodings), farthest first; the item's rank in
   that user's recommendations (``k=100``) is read: **share in the top 10** (also top 1, 50);
3. the same for a training user (their history, then the 3 events);
4. quality of ordinary recommendations with the 100 items in the catalogue: the top 10 of
   every training user but those of step 3 against their held-out newest interaction (Hit@10,
   NDCG@10), and the share of top-10 slots taken by posted items; the same users without any
   posted item are the reference (first run).

    HF_HUB_OFFLINE=1 python benchmarks/serve_new_items.py --epochs 5

Writes ``benchmarks/results/serve_new_items.json``; the data and the model go under ``--work``
(default ``runs/serve_new_items``; the model is reused when it is there).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, write_result  # noqa: E402

BUILTIN = "ml-100k"


def _read(path: Path) -> tuple[str, list[list[str]]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    return lines[0], [line.split("\t") for line in lines[1:] if line]


def _write(path: Path, header: str, rows: list[list[str]]) -> None:
    path.write_text(header + "\n" + "".join("\t".join(r) + "\n" for r in rows))


def prepare(work: Path, n_new: int, seed: int) -> dict:
    """The dataset folder without the held-out items and each user's newest interaction;
    returns what was held out (the items' fields, the users' targets)."""
    from m6rec.data.loaders import builtin_path

    src = builtin_path(BUILTIN)
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    ih, items = _read(src / f"{BUILTIN}.item.gz")
    rng = np.random.default_rng(seed)
    held = {items[i][0] for i in rng.choice(len(items), n_new, replace=False)}
    nh, inter = _read(src / f"{BUILTIN}.inter.gz")
    inter = [r for r in inter if r[1] not in held]
    # each user's newest remaining interaction (ties: the higher row wins) is a quality target
    newest: dict[str, tuple[float, int]] = {}
    for k, r in enumerate(inter):
        t = (float(r[3]), k)
        if r[0] not in newest or t > newest[r[0]]:
            newest[r[0]] = t
    drop = {k for _, k in newest.values()}
    targets = {inter[k][0]: inter[k][1] for k in drop}
    _write(out / "new.inter", nh, [r for k, r in enumerate(inter) if k not in drop])
    _write(out / "new.item", ih, [r for r in items if r[0] not in held])
    uh, users = _read(src / f"{BUILTIN}.user.gz")
    _write(out / "new.user", uh, users)
    posted = [{"item_id": r[0], "title": r[1], "fields": {"release_year": r[2]},
               "categories": r[3].split()} for r in items if r[0] in held]
    info = {"held_out_items": posted, "targets": targets, "seed": seed}
    (work / "held_out.json").write_text(json.dumps(info))
    return info


def train(work: Path, epochs: int) -> tuple[Path, float]:
    model = work / "m6"
    if (model / "meta.json").is_file():
        return model, float("nan")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "m6rec.cli", "train", "--data", str(work / "data"),
                    "--model", "m6", "--out", str(model), "--protocol", "all",
                    "--param", f"epochs={epochs}"], check=True)
    return model, time.perf_counter() - t0


def neighbours(model_dir: Path, posted: list[dict], k: int = 3) -> list[list[str]]:
    """Per posted item: its ``k`` nearest catalogue items by the LM's text similarity (cosine
    of the encodings the model reads), nearest first. The posted item's text is rendered and
    encoded exactly as the service does it."""
    from m6rec.data import load_dataset
    from m6rec.models.io import load_model_dir
    from m6rec.text import get_encoder, item_texts

    ds = load_dataset(str(model_dir.parent / "data"))
    full = load_dataset(BUILTIN)
    model, _ = load_model_dir(model_dir, ds)
    lm = np.asarray(model.item_text_, np.float32)
    lm = lm / np.maximum(np.linalg.norm(lm, axis=1, keepdims=True), 1e-12)
    pos = [int(full.item_index(p["item_id"])) for p in posted]
    texts = item_texts(full, budget=getattr(model, "text_budget", 400), items=pos)
    q = np.asarray(get_encoder(model.encoder).encode(texts), np.float32)
    sims = q @ lm.T
    order = np.argsort(-sims, axis=1)[:, :k]
    return [[str(ds.item_ids[j]) for j in row] for row in order]


def rank_of(items: list[dict], item_id: str) -> int | None:
    ids = [it["item_id"] for it in items]
    return ids.index(item_id) + 1 if item_id in ids else None


def one_mode(model_dir: Path, mode: str, info: dict, near: list[list[str]],
             train_users: list[str], post: bool = True) -> dict:
    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="m6rec-newitems-"))
    os.environ["M6REC_NEW_ITEMS"] = mode
    srv = Server(str(model_dir), f"sqlite:///{tmp}/events.db")
    res: dict = {"mode": mode, "posted": post, "startup_s": round(srv.startup_s, 1)}
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": srv.api_key},
                          timeout=300) as c:
            posted = info["held_out_items"]
            if post:
                for p in posted:
                    c.post("/items", json=p).raise_for_status()
                for who, users in (("new_user", [f"probe-{n}" for n in range(len(posted))]),
                                   ("training_user", train_users)):
                    ranks = []
                    for p, nn, user in zip(posted, near, users, strict=True):
                        ts = 2_000_000_000.0
                        events = [{"user_id": user, "item_id": i, "timestamp": ts + k}
                                  for k, i in enumerate(reversed(nn))]  # nearest is newest
                        c.post("/events", json=events).raise_for_status()
                        got = c.get(f"/users/{user}/recommendations", params={"k": 100})
                        got.raise_for_status()
                        ranks.append(rank_of(got.json()["items"], p["item_id"]))
                    r = np.array([x if x is not None else 10**6 for x in ranks])
                    res[who] = {"top1": float(np.mean(r <= 1)), "top10": float(np.mean(r <= 10)),
                                "top50": float(np.mean(r <= 50)),
                                "median_rank": float(np.median(r)) if np.median(r) < 10**6
                                else None}
            held = {p["item_id"] for p in posted}
            probes = set(train_users)  # their histories hold the probe events: left out
            users = [u for u in info["targets"] if u not in probes]
            hits, ndcg, new_slots, slots = 0, 0.0, 0, 0
            for user in users:
                target = info["targets"][user]
                got = c.get(f"/users/{user}/recommendations", params={"k": 10}).json()["items"]
                ids = [it["item_id"] for it in got]
                slots += len(ids)
                new_slots += sum(i in held for i in ids)
                if target in ids:
                    hits += 1
                    ndcg += 1 / np.log2(ids.index(target) + 2)
            res["quality"] = {"users": len(users), "hit@10": round(hits / len(users), 4),
                              "ndcg@10": round(ndcg / len(users), 4),
                              "posted_share_of_top10_slots": round(new_slots / max(slots, 1), 4)}
    finally:
        srv.stop()
        os.environ.pop("M6REC_NEW_ITEMS", None)
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/serve_new_items")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--modes", default="raw,calibrated")
    ap.add_argument("--train-only", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    info = prepare(work, args.n, args.seed)
    model_dir, fit_s = train(work, args.epochs)
    if args.train_only:
        print(f"model in {model_dir} (fit {fit_s:.0f} s)")
        return
    near = neighbours(model_dir, info["held_out_items"])
    rng = np.random.default_rng(args.seed + 1)
    users = sorted(info["targets"])
    train_users = [str(u) for u in rng.choice(users, len(near), replace=False)]
    runs = [one_mode(model_dir, "raw", info, near, train_users, post=False)]
    runs += [one_mode(model_dir, m, info, near, train_users) for m in args.modes.split(",")]
    res = {"items": args.n, "epochs": args.epochs, "fit_s": round(fit_s, 1), "runs": runs,
           "command": " ".join(sys.argv)}
    path = write_result("serve_new_items", res)
    print(json.dumps(res, indent=1))
    print(f"written {path}")


if __name__ == "__main__":
    main()
