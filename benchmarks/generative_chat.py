"""Conversational recommendation on ml-100k: the genre requests of ``text_query.py`` asked as
first turns, then one follow-up turn each, through the generative LM's request rewriting.

Usage::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/generative_chat.py \
        --model-dir runs/m6 [--users 50] [--steer categories,turns,lm,both] [--replies] \
        [--out runs/gen_chat]

Each of the 36 requests (genre A) is a first turn; the follow-up asks for genre B, the genre that
most often comes with A in the catalogue ("Now make it romantic too."). For each ``--steer``
mode (`m6rec.conversation`: ``categories`` = each message and the category the LM reads in it,
``turns`` = the raw messages, ``lm`` = the LM's rewrite of the conversation, ``both``) the texts
that steer the ranking are built as ``m6rec chat`` builds them and scored by the model
(`query_scores`; weight, decay and category share default to `Conversation`'s), alone and
personalised for ``--users`` seeded users. Reported: precision@10 of genre A after turn 1; after
turn 2 the share of items holding both A and B (the combined request), B, and A; and how alike
the personalised lists of different users are after turn 1 (mean pairwise Jaccard overlap).
``--replies N`` also phrases the request-only replies of N conversations (spread over the
genres) with the LM and counts the replies with a replaced sentence.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

#: how the follow-up asks for a second genre
FOLLOW = {"Action": "Now with more action, please.", "Adventure": "Make it more of an adventure.",
          "Animation": "Animated, please.", "Children's": "Something the kids can watch too.",
          "Comedy": "Something funnier, please.", "Crime": "With some crime in it.",
          "Documentary": "Make it a documentary.", "Drama": "Something more serious.",
          "Fantasy": "With some magic and fantasy.", "Film-Noir": "Darker, more noir.",
          "Horror": "Something scarier.", "Musical": "With songs, please.",
          "Mystery": "With a mystery to solve.", "Romance": "Now make it romantic too.",
          "Sci-Fi": "Add some science fiction.", "Thriller": "More suspense, please.",
          "War": "Set in a war.", "Western": "Set in the wild west."}


def load_requests() -> list[tuple[str, str]]:
    path = Path(__file__).with_name("text_query.py")
    spec = importlib.util.spec_from_file_location("text_query", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.REQUESTS


def share(ids: np.ndarray, cats: list[list[str]], *genres: str) -> float:
    ids = ids[ids >= 0]
    return float(np.mean([all(g in cats[i] for g in genres) for i in ids])) if len(ids) else 0.0


def overlap(lists: np.ndarray) -> float:
    """Mean pairwise Jaccard overlap of several users' lists (1: all the same)."""
    sets = [set(r[r >= 0].tolist()) for r in lists]
    pairs = [(a, b) for n, a in enumerate(sets) for b in sets[n + 1:]]
    return float(np.mean([len(a & b) / max(len(a | b), 1) for a, b in pairs])) if pairs else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default="runs/m6")
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--steer", default="categories,turns,lm,both")
    ap.add_argument("--weight", type=float, default=None, help="default: Conversation's")
    ap.add_argument("--decay", type=float, default=None, help="default: Conversation's")
    ap.add_argument("--attributes", type=float, default=None, help="default: Conversation's")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generator", default="smollm2")
    ap.add_argument("--replies", type=int, default=0,
                    help="phrase the replies of the first N conversations (both turns)")
    ap.add_argument("--out", default="runs/gen_chat")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from dataclasses import fields

    from m6rec.conversation import (
        REWRITE_SYSTEM,
        Conversation,
        category_text,
        clean_request,
        pick_categories,
        rewrite_prompt,
    )
    from m6rec.data import load_dataset
    from m6rec.models.base import topk
    from m6rec.models.io import load_model_dir
    from m6rec.recommend import query_scores, steer
    from m6rec.text.generate import GenerationSettings, generate_cached, load_generator

    defaults = {f.name: f.default for f in fields(Conversation)}
    for arg, name in (("weight", "query_weight"), ("decay", "query_decay"),
                      ("attributes", "query_attributes")):
        if getattr(args, arg) is None:
            setattr(args, arg, defaults[name])
    ds = load_dataset(args.data)
    model, _ = load_model_dir(args.model_dir, ds)
    cats = ds.item_categories()
    co = Counter((a, b) for cs in cats for a in cs for b in cs if a != b and "unknown" not in (a, b))
    requests = load_requests()
    convs = []
    for q, a in requests:
        b = max((g for g in FOLLOW if g != a), key=lambda g: (co[(a, g)], g))
        convs.append({"first": q, "a": a, "b": b, "follow": FOLLOW[b]})
    gen = load_generator(args.generator, threads=1, batch_size=16)
    t0 = time.perf_counter()
    settings = GenerationSettings(max_tokens=24, system=REWRITE_SYSTEM)
    p1 = [rewrite_prompt([c["first"]]) for c in convs]
    p2 = [rewrite_prompt([c["first"], c["follow"]]) for c in convs]
    texts, _ = generate_cached(gen, p1 + p2, settings)
    for n, c in enumerate(convs):
        c["lm1"] = clean_request(texts[n], c["first"])
        c["lm2"] = clean_request(texts[len(convs) + n], c["follow"])
    lm_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    names = sorted({x for cs in cats for x in cs if x != "unknown"})
    said = [m for c in convs for m in (c["first"], c["follow"])]
    picked = pick_categories(said, names, gen, lambda t: model.encode_texts(t, space="lm"))
    for n, c in enumerate(convs):
        c["cat1"], c["cat2"] = picked[2 * n], picked[2 * n + 1]
    pick_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    users = np.sort(rng.choice(ds.n_users, size=min(args.users, ds.n_users), replace=False))
    h = ds.histories(users)
    user_scores = model.score(h)
    seen = np.repeat(np.arange(len(users)), h.lengths), h.items

    def lists(queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        m = query_scores(model, queries, decay=args.decay, dataset=ds,
                         attributes=args.attributes)
        alone = topk(m[None], args.k)[0][0]
        s = steer(user_scores, m, args.weight)
        s[seen] = -np.inf
        return alone, topk(s, args.k)[0]

    rows = []
    for mode in args.steer.split(","):
        acc: dict[str, list[float]] = {}
        for c in convs:
            g1, g2 = category_text(c["cat1"]), category_text(c["cat2"])
            t1 = {"turns": [c["first"]], "lm": [c["lm1"]], "both": [c["first"], c["lm1"]],
                  "categories": [c["first"], g1]}[mode]
            t2 = {"turns": [c["first"], c["follow"]], "lm": [c["lm1"], c["lm2"]],
                  "both": [c["first"], c["follow"], c["lm2"]],
                  "categories": [c["first"], g1, c["follow"], g2]}[mode]
            a1, p1_ = lists(t1)
            a2, p2_ = lists(t2)
            vals = {"turn1_alone_A": share(a1, cats, c["a"]),
                    "turn1_personal_A": float(np.mean([share(r, cats, c["a"]) for r in p1_])),
                    "turn2_alone_AB": share(a2, cats, c["a"], c["b"]),
                    "turn2_personal_AB": float(np.mean([share(r, cats, c["a"], c["b"])
                                                        for r in p2_])),
                    "turn2_alone_B": share(a2, cats, c["b"]),
                    "turn2_personal_B": float(np.mean([share(r, cats, c["b"]) for r in p2_])),
                    "turn2_alone_A": share(a2, cats, c["a"]),
                    "turn2_personal_A": float(np.mean([share(r, cats, c["a"]) for r in p2_])),
                    "turn1_personal_overlap": overlap(p1_)}
            for key, v in vals.items():
                acc.setdefault(key, []).append(v)
        rows.append({"steer": mode, **{key: float(np.mean(v)) for key, v in acc.items()}})
        print(json.dumps(rows[-1]), flush=True)
    replies = None
    if args.replies:
        replied, replaced, n = [], 0, 0
        for c in convs[:: max(len(convs) // args.replies, 1)][: args.replies]:
            conv = Conversation(model, ds, None, gen, k=args.k, query_weight=args.weight,
                                query_decay=args.decay, query_attributes=args.attributes)
            for msg in (c["first"], c["follow"]):
                turn = conv.ask(msg)
                n += 1
                replaced += turn["replaced"] > 0
                replied.append({"message": msg, "request": turn["request"],
                                "reply_raw": turn["reply_raw"], "reply": turn["reply"],
                                "violations": turn["violations"]})
        replies = {"turns": n, "turns_with_a_replaced_sentence": replaced, "samples": replied}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"args": vars(args), "generator": gen.name, "users": len(users),
           "conversations": len(convs), "rewrite_seconds": lm_seconds,
           "category_pick_seconds": pick_seconds,
           "category_picks_right": {
               "turn1_A": float(np.mean([c["cat1"] == c["a"] for c in convs])),
               "follow_up_B": float(np.mean([c["cat2"] == c["b"] for c in convs]))},
           "rows": rows,
           "conversations_detail": convs, "replies": replies}
    (out / "results.json").write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k not in ("conversations_detail",
                                                                "replies")}, indent=2))
    if replies:
        print("replies:", replies["turns"], "turns,", replies["turns_with_a_replaced_sentence"],
              "with a replaced sentence")


if __name__ == "__main__":
    main()
