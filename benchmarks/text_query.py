"""Text-query recommendation on ml-100k: do the lists follow the request, and the user?

Usage::

    OMP_NUM_THREADS=1 python benchmarks/text_query.py \
        [--model-dir runs/m6] [--users 50] [--weights 0.5,1,2,4] \
        [--spaces lm,item] [--attributes 0.5] [--out benchmarks/results/explain]
        [--raw runs/benchmarks/explain]

Writes the summary ``OUT/text_query.md`` and the raw per-request dump ``RAW/text_query.json``
(under the ignored ``runs/`` folder).

The request match is `m6rec.recommend.query_scores`: the request read by the model's LM against
each item's text and (weight ``--attributes``) against its categories one by one.

36 requests written from ml-100k's genres (two per genre, ``REQUESTS``). For each request:

- **not personalised**: the top-10 of the whole catalogue for the request alone;
- **personalised**: for ``--users`` seeded random users (whole history as input, seen items
  excluded), the top-10 of ``z(model scores) + w * z(request match)`` for each weight ``w``.

Reported per setting: precision@10 of the asked genre (share of the 10 items whose genres hold
it), averaged over requests (and users), its minimum over requests, and how much the lists of
different users differ for the same request (mean pairwise Jaccard overlap of their top-10;
1 - overlap = difference; and distinct items / all listed). ``w = 0`` (history only) is the
reference for how often the genre comes up anyway. A two-turn check asks genre A then genre B
(``--decay``) and reports the precision of B (the latest) and of A. Writes ``text_query.json``
and ``text_query.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from m6rec.data import load_dataset
from m6rec.ranking import topk
from m6rec.recommend import query_scores, steer

#: (request, genre as in ml-100k's ``class`` column), two per genre
REQUESTS = [
    ("an action movie full of explosions", "Action"),
    ("a high-octane action thriller with fights and car chases", "Action"),
    ("an adventure film about a quest in faraway lands", "Adventure"),
    ("a swashbuckling adventure story", "Adventure"),
    ("an animated cartoon movie", "Animation"),
    ("an animated film for the whole family", "Animation"),
    ("a movie for children", "Children's"),
    ("a kids film that children will love", "Children's"),
    ("a funny comedy that makes me laugh", "Comedy"),
    ("a light-hearted comedy", "Comedy"),
    ("a crime film about gangsters and the mob", "Crime"),
    ("a heist or crime story with criminals", "Crime"),
    ("a documentary about real events", "Documentary"),
    ("a non-fiction documentary film", "Documentary"),
    ("a serious, moving drama", "Drama"),
    ("an emotional character drama", "Drama"),
    ("a fantasy movie with magic and dragons", "Fantasy"),
    ("a fairy-tale fantasy", "Fantasy"),
    ("a classic film noir with a detective", "Film-Noir"),
    ("a dark black-and-white noir crime film", "Film-Noir"),
    ("a scary horror film", "Horror"),
    ("a horror movie with monsters and blood", "Horror"),
    ("a musical with songs and dancing", "Musical"),
    ("a Broadway-style movie musical", "Musical"),
    ("a mystery where you have to guess who did it", "Mystery"),
    ("a puzzling mystery film", "Mystery"),
    ("a romantic love story", "Romance"),
    ("a romance about falling in love", "Romance"),
    ("a science fiction film set in space", "Sci-Fi"),
    ("a sci-fi movie about aliens and the future", "Sci-Fi"),
    ("a suspenseful thriller", "Thriller"),
    ("a tense psychological thriller", "Thriller"),
    ("a war movie about soldiers in battle", "War"),
    ("a film about World War II", "War"),
    ("a western with cowboys and gunfights", "Western"),
    ("a classic western set in the wild west", "Western"),
]


def precision(ids: np.ndarray, genre: str, cats: list[list[str]]) -> float:
    ids = ids[ids >= 0]
    return float(np.mean([genre in cats[i] for i in ids])) if len(ids) else 0.0


def overlap(lists: list[np.ndarray]) -> float:
    sets = [set(x[x >= 0].tolist()) for x in lists]
    pairs = [len(a & b) / max(len(a | b), 1) for a, b in combinations(sets, 2)]
    return float(np.mean(pairs)) if pairs else 1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default="runs/m6")
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--weights", default="0,0.5,1,2,4")
    ap.add_argument("--spaces", default="lm,item")
    ap.add_argument("--decay", type=float, default=0.5)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--attributes", type=float, default=0.5,
                    help="weight of the category match in the request match (0: text only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/explain")
    ap.add_argument("--raw", default="runs/benchmarks/explain",
                    help="folder of the raw per-request JSON dump")
    ap.add_argument("--service", action="store_true",
                    help="also ask the service engine (m6rec serve's code path, in process, "
                         "empty event store) the same requests, personalised and not")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from m6rec.models.io import load_model_dir

    ds = load_dataset(args.data)
    model, meta = load_model_dir(args.model_dir, ds)
    cats = ds.item_categories()
    rng = np.random.default_rng(args.seed)
    users = np.sort(rng.choice(ds.n_users, size=min(args.users, ds.n_users), replace=False))
    h = ds.histories(users)
    user_scores = model.score(h)  # [n_users, n_items], computed once
    seen = np.repeat(np.arange(len(users)), h.lengths), h.items
    weights = [float(w) for w in args.weights.split(",")]
    k = args.k
    rows, per_request = [], {}
    t0 = time.perf_counter()
    for space in args.spaces.split(","):
        matches = {q: query_scores(model, [q], space=space, dataset=ds, attributes=args.attributes)
                   for q, _ in REQUESTS}
        # not personalised: the request alone over the whole catalogue
        p = [precision(topk(matches[q][None], k)[0][0], g, cats) for q, g in REQUESTS]
        rows.append({"space": space, "setting": "request only", "weight": None,
                     "precision": float(np.mean(p)), "min_precision": float(np.min(p)),
                     "overlap": 1.0, "distinct": None})
        per_request[f"{space}/request only"] = dict(zip([q for q, _ in REQUESTS], p, strict=True))
        for w in weights:
            precs, overlaps, distinct, by_req = [], [], [], {}
            for q, g in REQUESTS:
                s = steer(user_scores, matches[q], w)
                s[seen] = -np.inf
                ids, _ = topk(s, k)
                pr = [precision(r, g, cats) for r in ids]
                precs.append(float(np.mean(pr)))
                by_req[q] = precs[-1]
                overlaps.append(overlap(list(ids)))
                distinct.append(len(np.unique(ids[ids >= 0])) / max(int((ids >= 0).sum()), 1))
            rows.append({"space": space, "setting": "personalised", "weight": w,
                         "precision": float(np.mean(precs)), "min_precision": float(np.min(precs)),
                         "overlap": float(np.mean(overlaps)), "distinct": float(np.mean(distinct))})
            per_request[f"{space}/personalised w={w}"] = by_req
            print(json.dumps(rows[-1]), flush=True)
    # two turns: genre A, then genre B (the latest should lead)
    space = args.spaces.split(",")[0]
    turns = []
    for a in range(0, len(REQUESTS), 2):
        b = (a + 6) % len(REQUESTS)
        (qa, ga), (qb, gb) = REQUESTS[a], REQUESTS[b]
        match = query_scores(model, [qa, qb], decay=args.decay, space=space, dataset=ds,
                             attributes=args.attributes)
        ids, _ = topk(match[None], k)
        s = steer(user_scores, match, 2.0)
        s[seen] = -np.inf
        pids, _ = topk(s, k)
        turns.append({"first": qa, "latest": qb,
                      "precision_latest": precision(ids[0], gb, cats),
                      "precision_first": precision(ids[0], ga, cats),
                      "personalised_precision_latest": float(np.mean([precision(r, gb, cats)
                                                                      for r in pids])),
                      "personalised_precision_first": float(np.mean([precision(r, ga, cats)
                                                                     for r in pids]))})
    summary_turns = {key: float(np.mean([t[key] for t in turns])) for key in turns[0]
                     if key.startswith(("precision", "personalised"))}
    if args.service:
        rows += service_rows(args, ds, users, cats)
        for r in rows[-2:]:
            print(json.dumps(r), flush=True)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = Path(args.raw)
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "text_query.json").write_text(json.dumps(
        {"args": vars(args), "model": meta.get("model", model.name), "users": len(users),
         "requests": len(REQUESTS), "rows": rows, "per_request": per_request,
         "two_turns": {"decay": args.decay, "space": space, "weight": 2.0,
                       "mean": summary_turns, "pairs": turns}, "seconds": seconds}, indent=2))
    lines = [f"{len(REQUESTS)} genre requests, {len(users)} users, top-{k}",
             "", "| space | setting | weight | precision@10 of the genre | worst request | "
             "overlap between users (Jaccard) | distinct items |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['space']} | {r['setting']} | {'' if r['weight'] is None else r['weight']}"
                     f" | {r['precision']:.3f} | {r['min_precision']:.2f} | "
                     f"{'' if r['setting'] == 'request only' else format(r['overlap'], '.3f')} | "
                     f"{'' if r['distinct'] is None else format(r['distinct'], '.3f')} |")
    lines += ["", f"Two turns (space {space}, decay {args.decay}, weight 2): " + ", ".join(
        f"{key} {v:.3f}" for key, v in summary_turns.items())]
    (out / "text_query.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def service_rows(args, ds, users: np.ndarray, cats: list[list[str]]) -> list[dict]:
    """The same requests through `m6rec.serve.engine.Engine` (what ``GET
    /users/{id}/recommendations?query=...`` runs): a user unknown to the store (request
    only) and the sampled users (history + request, the engine's ``query_weight``)."""
    import tempfile

    from m6rec.serve.engine import Engine, RecRequest
    from m6rec.storage import open_store

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/events.db")
        engine = Engine(args.model_dir, store, data=args.data)
        try:
            alone, personal, overlaps = [], [], []
            for q, g in REQUESTS:
                got = engine.recommend_many([RecRequest("__nobody__", args.k, (), q)] + [
                    RecRequest(str(ds.user_ids[u]), args.k, (), q) for u in users])
                lists = [np.array([engine.item_pos[it["item_id"]] for it in r["items"]])
                         for r in got]
                alone.append(precision(lists[0], g, cats))
                personal.append(float(np.mean([precision(x, g, cats) for x in lists[1:]])))
                overlaps.append(overlap(lists[1:]))
        finally:
            engine.close()
            store.close()
    return [{"space": "service", "setting": "request only", "weight": None,
             "precision": float(np.mean(alone)), "min_precision": float(np.min(alone)),
             "overlap": 1.0, "distinct": None},
            {"space": "service", "setting": "personalised", "weight": engine.query_weight,
             "precision": float(np.mean(personal)), "min_precision": float(np.min(personal)),
             "overlap": float(np.mean(overlaps)), "distinct": None}]


if __name__ == "__main__":
    main()
