"""GPU benchmark: item encoding end to end vs the raw forward of the same encoder, and training
samples/s of ``m6`` and ``sasrec``, in one run.

Usage (on a machine with CUDA):
    python benchmarks/gpu.py [--n-texts 200000] [--batch 4096] [--threads 15] \
        [--out benchmarks/results/scale/gpu.json]
On a machine without CUDA it prints that it skips and exits 0; ``--allow-cpu`` runs the same code
on the CPU with small sizes (a smoke test of the script, not a measurement).

(a) end to end: Python strings -> unit vectors in host memory, through
    `m6rec.distributed.fast_encode.encode_fast` (length-sorted batches tokenised by a thread pool
    ahead of the GPU, pinned non-blocking copies, bf16 autocast, mean pooling + normalisation on
    the GPU), items/s; for reference sentence-transformers' own ``encode`` (bf16 weights) on a
    subset;
(b) raw forward: the same model on pre-tokenised input already on the GPU, same batch size and
    autocast, sequences/s: the same texts padded to ``--seq-len`` tokens, and the very batches
    (a) runs (length-sorted, padded per batch); the figure that matters is (a) divided by the
    larger of the two (the aim: >= 0.5);
(c) training on ml-100k (loo training part, no validation, ``--epochs`` epochs, bf16 autocast,
    ``--train-batch`` windows per step): training windows/s and target positions/s of ``sasrec``
    and ``m6``; with ``--quality``, also ``sasrec`` trained to convergence with early stopping
    (wall time to the end and to its best epoch, test NDCG@10).
The texts are synthetic item titles (varied words, years, genres; ~18 tokens).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

WORDS = ("love night city dark star river king queen war house blue red summer winter last "
         "first secret lost road dream story man woman girl boy world time day life heart "
         "fire water stone iron golden silent wild little big new old return escape game "
         "shadow light ghost island mountain ocean garden letter song dance machine").split()
GENRES = ("Action Adventure Animation Comedy Crime Documentary Drama Fantasy Horror Musical "
          "Mystery Romance Sci-Fi Thriller War Western").split()


def synthetic_titles(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(2, 7))
        title = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), k)).title()
        genres = ", ".join(GENRES[j] for j in rng.choice(len(GENRES), int(rng.integers(1, 4)),
                                                         replace=False))
        out.append(f"{title} {i % 997} ({1930 + int(rng.integers(0, 95))}; {genres})")
    return out


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_encoding(args, device) -> dict:
    import torch

    from m6rec.distributed.fast_encode import encode_fast, forward_pool, load_parts

    texts = synthetic_titles(args.n_texts)
    parts = load_parts(args.encoder, str(device))
    model, tokenizer, max_len = parts
    if device.type == "cuda" and args.bf16_weights:
        model.to(torch.bfloat16)
    tok = tokenizer(texts[: min(len(texts), 5000)], padding=False, truncation=True,
                    max_length=max_len)
    mean_tokens = float(np.mean([len(x) for x in tok["input_ids"]]))
    # (b) raw forward on pre-tokenised input, padded to seq_len, already on the device
    pre = tokenizer(texts, padding="max_length", truncation=True, max_length=args.seq_len,
                    return_tensors="pt")
    ids, mask = pre["input_ids"].to(device), pre["attention_mask"].to(device)
    for s in range(0, min(len(texts), 4 * args.batch), args.batch):  # warm-up
        forward_pool(model, ids[s:s + args.batch], mask[s:s + args.batch])
    sync(device)
    t0 = time.perf_counter()
    for s in range(0, len(texts), args.batch):
        forward_pool(model, ids[s:s + args.batch], mask[s:s + args.batch])
    sync(device)
    raw = len(texts) / (time.perf_counter() - t0)
    del ids, mask, pre
    # (b') raw forward on exactly the batches (length-sorted, padded per batch) that (a) runs,
    # tokenised beforehand and already on the device: the strict reference for (a)
    from m6rec.distributed.fast_encode import tokenize_batches

    batches = [(i.to(device), m.to(device)) for _, i, m in
               tokenize_batches(tokenizer, texts, args.batch, max_len, args.threads)]
    sync(device)
    t0 = time.perf_counter()
    for i, m in batches:
        forward_pool(model, i, m)
    sync(device)
    raw_same = len(texts) / (time.perf_counter() - t0)
    del batches
    # (a) end to end, strings -> unit vectors on the host
    encode_fast(texts[: 4 * args.batch], batch_size=args.batch, threads=args.threads, parts=parts)
    t0 = time.perf_counter()
    vecs = encode_fast(texts, batch_size=args.batch, threads=args.threads, parts=parts)
    e2e = len(texts) / (time.perf_counter() - t0)
    assert vecs.shape[0] == len(texts) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-3)
    # reference: sentence-transformers' own encode on a subset
    from m6rec.text import get_encoder

    st = get_encoder(args.encoder, device=str(device))._load()  # noqa: SLF001
    if device.type == "cuda" and args.bf16_weights:
        st.to(torch.bfloat16)
    sub = texts[: min(len(texts), args.st_subset)]
    st.encode(sub[:1024], batch_size=args.batch, normalize_embeddings=True)
    t0 = time.perf_counter()
    ref = st.encode(sub, batch_size=args.batch, normalize_embeddings=True, convert_to_numpy=True)
    st_rate = len(sub) / (time.perf_counter() - t0)
    cos = float(np.mean(np.sum(ref.astype(np.float32) * vecs[: len(sub)], axis=1)))
    return {"texts": len(texts), "mean_tokens": round(mean_tokens, 1), "batch": args.batch,
            "seq_len_raw": args.seq_len, "bf16_weights": bool(args.bf16_weights),
            "raw_forward_seq_per_s": round(raw),
            "raw_forward_same_batches_seq_per_s": round(raw_same),
            "end_to_end_items_per_s": round(e2e),
            "ratio_e2e_to_raw": round(e2e / max(raw, raw_same), 3),
            "sentence_transformers_encode_items_per_s": round(st_rate),
            "mean_cosine_fast_vs_sentence_transformers": round(cos, 4)}


def bench_training(args, device) -> dict:
    import torch

    from m6rec.data import load_dataset
    from m6rec.eval.evaluate import evaluate
    from m6rec.eval.protocols import make_split
    from m6rec.registry import build_model
    from m6rec.train.loop import mixed_precision

    split = make_split(load_dataset("ml-100k"), "loo")
    out = {}
    for name in args.models:
        params = {"epochs": args.epochs, "batch_size": args.train_batch, "device": str(device)}
        if name == "m6":
            params["encoder"] = args.encoder
        model = build_model(name, **params)
        if name == "m6":
            model._prepare(split.train)  # encode the catalogue outside the timed part (cached)
        with mixed_precision(args.amp):
            sync(device)
            t0 = time.perf_counter()
            model.fit(split.train)
            sync(device)
            seconds = time.perf_counter() - t0
        items, _, mask, _ = model.training_windows(split.train.histories())
        epoch_s = [h["seconds"] for h in model.history_]
        steady = float(np.median(epoch_s[1:])) if len(epoch_s) > 1 else epoch_s[0]
        out[name] = {"epochs": args.epochs, "batch": args.train_batch, "fit_s": round(seconds, 2),
                     "windows": int(len(items)), "targets": int(mask.sum()),
                     "epoch_s_median": round(steady, 3),
                     "windows_per_s": round(len(items) / steady),
                     "targets_per_s": round(int(mask.sum()) / steady)}
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.quality:
        model = build_model("sasrec", device=str(device), batch_size=args.train_batch)
        with mixed_precision(args.amp):
            t0 = time.perf_counter()
            model.fit(split.train, valid=split.valid)
            seconds = time.perf_counter() - t0
        to_best = sum(h["seconds"] for h in model.history_[: model.best_epoch_])
        test = evaluate(model, split.test, ks=(10,), metrics=("ndcg", "recall"),
                        beyond_accuracy=False)
        out["sasrec_converged"] = {"fit_s": round(seconds, 1), "best_epoch": model.best_epoch_,
                                   "seconds_to_best_epoch": round(to_best, 1),
                                   "test_ndcg@10": round(test["ndcg@10"], 4),
                                   "test_recall@10": round(test["recall@10"], 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    ap.add_argument("--allow-cpu", action="store_true", help="smoke-run on the CPU")
    ap.add_argument("--encoder", default="default")
    ap.add_argument("--n-texts", type=int, default=200_000)
    ap.add_argument("--st-subset", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="tokeniser threads")
    ap.add_argument("--bf16-weights", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--models", nargs="+", default=["sasrec", "m6"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train-batch", type=int, default=1024)
    ap.add_argument("--amp", default="bf16", help="bf16 | none")
    ap.add_argument("--quality", action="store_true", help="also train sasrec to convergence")
    ap.add_argument("--skip", nargs="*", default=[], choices=["encoding", "training"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/scale/gpu.json"))
    args = ap.parse_args()
    args.amp = None if args.amp == "none" else args.amp
    import torch

    from m6rec.train.loop import resolve_device

    device = resolve_device(args.device)
    if device.type != "cuda" and not args.allow_cpu:
        print("benchmarks/gpu.py: no CUDA device here; skipping (--allow-cpu smoke-runs it on "
              "the CPU with small sizes)")
        return
    if device.type != "cuda":
        args.n_texts, args.st_subset, args.batch = min(args.n_texts, 2000), 500, 256
        args.epochs, args.train_batch = min(args.epochs, 2), min(args.train_batch, 256)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
              else platform.processor() or "cpu", "torch": torch.__version__,
              "command": "python benchmarks/gpu.py " + " ".join(
                  a for a in __import__("sys").argv[1:])}
    if "encoding" not in args.skip:
        result["encoding"] = bench_encoding(args, device)
        print(json.dumps(result["encoding"]), flush=True)
    if "training" not in args.skip:
        result["training"] = bench_training(args, device)
        print(json.dumps(result["training"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
