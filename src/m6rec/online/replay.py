"""Prequential ("test-then-train") evaluation: replay a dataset's interactions in time order.

1. All interactions are put in global time order (timestamp, then user, then the user's own
   order). The model is fitted on the first ``fraction`` of them (50% by default: the first
   half of the interactions in time order). Models that early-stop get each user's last
   interaction of that part as validation target (and are fitted on the rest).
2. The later interactions are replayed in chunks of ``every`` events (the policy's update
   period; 1000 for ``static``). For each interaction of a chunk (or of a seeded random sample
   of them, ``sample``), *before* it is revealed, the model ranks the full catalogue for that
   user (items already in the user's history excluded) and the rank of the true item gives
   Recall@k / NDCG@k. Then the chunk is revealed and the policy updates the model.

**What the model sees at query time, for every policy alike**: the user's whole history up
to (not including) the queried interaction — every earlier event, also those revealed in the
same chunk — as a service that reads the user's events from its store does. The policies only
differ in the *weights*: ``static`` keeps the weights fitted on the first part; ``foldin`` /
``finetune`` update them after every chunk (`m6rec.online.Updater`). Interactions whose item is
already in the user's history (repeats) are not queried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.online.policy import DEFAULT_EVERY, Policy, parse_policy
from m6rec.train.evalset import EvalSet


@dataclass(eq=False)
class Stream:
    """A dataset cut for replay.

    Attributes
    ----------
    train : Dataset
        The first part (what the model is fitted on).
    later : DataFrame
        The later interactions in global time order (``ds.inter`` rows, index space).
    full : Histories
        Every user's whole chronological history (query histories are its prefixes).
    """

    dataset: Dataset
    train: Dataset
    later: pd.DataFrame
    full: Histories
    info: dict[str, Any] = field(default_factory=dict)


def time_order(ds: Dataset) -> pd.DataFrame:
    """``ds.inter`` in global time order (timestamp, user, the user's own order)."""
    if not ds.has_timestamps or ds.inter["timestamp"].isna().any():
        raise ValueError(f"{ds.name}: replay needs a timestamp on every interaction")
    return ds.inter.sort_values(["timestamp", "user_idx", "seq"], kind="stable")


def make_stream(ds: Dataset, fraction: float = 0.5) -> Stream:
    """Cut ``ds`` after the first ``fraction`` of its interactions in time order."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    ordered = time_order(ds)
    cut = int(round(fraction * len(ordered)))
    if cut == 0 or cut == len(ordered):
        raise ValueError(f"{ds.name}: too few interactions ({len(ordered)}) to replay")
    train = ds.with_interactions(ordered.iloc[:cut].copy())
    later = ordered.iloc[cut:].reset_index(drop=True)
    info = {"fraction": fraction, "train_events": cut, "later_events": len(later),
            "cut_timestamp": float(ordered["timestamp"].iloc[cut])}
    return Stream(ds, train, later, ds.histories(), info)


def fit_first_part(model: Recommender, stream: Stream) -> tuple[Recommender, float]:
    """Fit ``model`` on the stream's first part; returns the model and the fit seconds."""
    t0 = time.perf_counter()
    if getattr(model, "uses_validation", False):
        inter = stream.train.inter
        n = inter.groupby("user_idx")["seq"].transform("size").to_numpy()
        last = (inter["seq"].to_numpy() == n - 1) & (n >= 3)
        fit_ds = stream.train.with_interactions(inter[~last].copy())
        held = inter[last]
        users = held["user_idx"].to_numpy(np.int64)
        targets = sp.csr_matrix((np.ones(len(held), np.float32),
                                 (np.arange(len(held)), held["item_idx"].to_numpy())),
                                shape=(len(held), stream.train.n_items))
        valid = EvalSet(users, fit_ds.histories(users), targets) if len(held) else None
        model.fit(fit_ds, valid=valid)
    else:
        model.fit(stream.train)
    return model, time.perf_counter() - t0


def prefix_histories(full: Histories, users: np.ndarray, lengths: np.ndarray) -> Histories:
    """Each user's first ``lengths`` interactions (their history before the queried one)."""
    users = np.asarray(users, np.int64)
    lengths = np.asarray(lengths, np.int64)
    starts = full.indptr[users]
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = np.arange(int(indptr[-1]), dtype=np.int64) + np.repeat(starts - indptr[:-1], lengths)

    def pick(a):
        return None if a is None else a[flat]

    return Histories(indptr, full.items[flat], users, pick(full.timestamps), pick(full.ratings),
                     pick(full.events))


def run_replay(model: Recommender, stream: Stream, policy: str | Policy = "static", *,
               k: int = 10, sample: int = 0, seed: int = 0, steps: int = 10,
               replay_share: float = 0.5, lr_scale: float = 1.0, half_life: float = 0.0,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Prequential evaluation of a model fitted on ``stream.train`` (see the module doc).

    Parameters
    ----------
    model : Recommender
        Fitted on ``stream.train``; never modified (updates make copies).
    policy : str or Policy
        ``static`` | ``foldin[:N]`` | ``finetune[:N]``.
    k : int
        Cut-off of Recall / NDCG.
    sample : int
        Query only a seeded random sample of this many later interactions (0 = all of them);
        every later interaction is still revealed and learned from.
    steps, replay_share, lr_scale :
        Fine-tuning budget per update (`m6rec.online.finetune.finetune`).
    half_life : float
        Fold-in of ``ease``: recency weighting in seconds (0 = none; `Updater`).

    Returns
    -------
    dict with ``metrics`` (``ndcg@k``, ``recall@k``), ``queries``, ``updates``, timings and the
    cumulative ``curve`` (one point per chunk).
    """
    from m6rec.online.updater import Updater

    policy = parse_policy(policy)
    every = policy.every or DEFAULT_EVERY
    later = stream.later
    # each later interaction's position in its user's history = the length of its query history
    users = later["user_idx"].to_numpy(np.int64)
    items = later["item_idx"].to_numpy(np.int64)
    seqs = later["seq"].to_numpy(np.int64)
    repeat = _is_repeat(stream.full, users, seqs, items)
    query = ~repeat
    if sample and sample < int(query.sum()):
        rng = np.random.default_rng(seed)
        chosen = rng.choice(np.flatnonzero(query), size=int(sample), replace=False)
        query = np.zeros(len(later), bool)
        query[chosen] = True
    updater = Updater(model, stream.train, policy, steps=steps, replay=replay_share,
                      lr_scale=lr_scale, random_state=seed,
                      half_life=half_life) if policy.updates else None
    current = model
    ndcg = np.zeros(len(later))
    hit = np.zeros(len(later))
    curve: dict[str, list[float]] = {"events": [], f"ndcg@{k}": [], f"recall@{k}": [],
                                     "queries": []}
    update_seconds, query_seconds = [], 0.0
    for start in range(0, len(later), every):
        stop = min(len(later), start + every)
        q = np.flatnonzero(query[start:stop]) + start
        if len(q):
            t0 = time.perf_counter()
            h = prefix_histories(stream.full, users[q], seqs[q])
            ids, _ = current.recommend(h, k=k, exclude_seen=True)
            query_seconds += time.perf_counter() - t0
            found = ids == items[q][:, None]
            rank = np.where(found.any(1), found.argmax(1), -1)
            hit[q] = rank >= 0
            ndcg[q] = np.where(rank >= 0, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)
        done = query[:stop]
        n_done = int(done.sum())
        curve["events"].append(stop)
        curve["queries"].append(n_done)
        curve[f"ndcg@{k}"].append(float(ndcg[:stop][done].mean()) if n_done else 0.0)
        curve[f"recall@{k}"].append(float(hit[:stop][done].mean()) if n_done else 0.0)
        if updater is not None and stop < len(later):
            current, _ = updater.update_indices(later.iloc[start:stop])
            update_seconds.append(updater.last_update["seconds"])
        if progress is not None:
            progress(f"{stop}/{len(later)} events, NDCG@{k} {curve[f'ndcg@{k}'][-1]:.4f}")
    n_q = int(query.sum())
    return {
        "metrics": {f"ndcg@{k}": float(ndcg[query].mean()) if n_q else 0.0,
                    f"recall@{k}": float(hit[query].mean()) if n_q else 0.0},
        "model": model.name, "params": model.get_params(), "policy": str(policy),
        "dataset": stream.dataset.name, **stream.info,
        "queries": n_q, "repeats_skipped": int(repeat.sum()),
        "cold_user_queries": int((query & (seqs == 0)).sum()),
        "sample": int(sample), "seed": int(seed), "chunk_events": every,
        "finetune": ({"steps": steps, "replay": replay_share, "lr_scale": lr_scale}
                     if policy.kind == "finetune" else None),
        "half_life": float(half_life) if policy.kind == "foldin" else 0.0,
        "updates": len(update_seconds),
        "update_seconds_mean": float(np.mean(update_seconds)) if update_seconds else 0.0,
        "update_seconds_max": float(np.max(update_seconds)) if update_seconds else 0.0,
        "update_seconds_total": float(np.sum(update_seconds)),
        "query_seconds_total": query_seconds,
        "history_at_query": "every earlier event of the user (all policies alike)",
        "curve": curve,
    }


def _is_repeat(full: Histories, users: np.ndarray, seqs: np.ndarray,
               items: np.ndarray) -> np.ndarray:
    """True where the item already occurs earlier in the user's history."""
    key = pd.DataFrame({"u": users, "i": items, "s": seqs})
    first = pd.DataFrame({"u": np.repeat(full.users, full.lengths), "i": full.items,
                          "s": np.arange(len(full.items)) - np.repeat(full.indptr[:-1],
                                                                        full.lengths)})
    first = first.groupby(["u", "i"], as_index=False)["s"].min()
    merged = key.merge(first, on=["u", "i"], how="left", suffixes=("", "_first"))
    return (merged["s_first"].to_numpy() < merged["s"].to_numpy())


def write_results(result: dict[str, Any], out: str | Path, command: str = "") -> Path:
    """``out/results.json`` and ``out/curve.png`` (cumulative Recall@k / NDCG@k)."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    if command:
        result = {**result, "command": command}
    (d / "results.json").write_text(json.dumps(result, indent=2, default=_jsonable))
    plot_curves({result["policy"]: result}, d / "curve.png",
                title=f"{result['model']} on {result['dataset']}: prequential")
    return d / "results.json"


def plot_curves(results: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One panel per metric, one line per run (cumulative mean over the queries so far)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    any_res = next(iter(results.values()))
    metrics = [m for m in any_res["metrics"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4))
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        for label, res in results.items():
            c = res["curve"]
            ax.plot(c["events"], c[metric], label=f"{label} ({res['metrics'][metric]:.4f})")
        ax.set_xlabel("later events revealed")
        ax.set_ylabel(f"cumulative {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot store {type(o).__name__} in results.json")
