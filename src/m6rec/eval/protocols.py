"""Evaluation protocols: how interactions are split into train / validation / test.

- ``loo``: per-user temporal leave-one-out, identical to RecBole's
  ``eval_args: {split: {LS: valid_and_test}, order: TO, group_by: user, mode: full}``: each user's
  last interaction is the test target, the one before it the validation target, the rest is
  training data. Ranking is over the full catalogue; items already in the user's earlier history
  are excluded. Users with 2 interactions get no validation target, users with 1 only train.
- ``time``: a global time cut-off (default the 80% quantile of timestamps): training data strictly
  before it, test targets after it, each test user's history taken from before it (no leakage from
  the future). Validation targets are the interactions in the last ``valid_fraction`` of the
  pre-cut-off period; the model is fitted on what precedes them.
- ``cold``: a seeded 10% of the items are removed from training entirely; the test targets are the
  interactions with them (full ranking: ID-only models cannot score them). The warm part is split
  leave-one-out as in ``loo``; its last item forms a second, ``warm`` test set so cold and warm
  accuracy come from the same model.

Timestamp ties are broken by a stable hash of (user, item) when the dataset is loaded, never by
item id, so each user's order (and so every split) is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from m6rec.data.dataset import Dataset
from m6rec.train.evalset import EvalSet

PROTOCOLS = ("loo", "time", "cold")


@dataclass(eq=False)
class Split:
    """A protocol's split of one dataset."""

    protocol: str
    dataset: Dataset
    train: Dataset
    valid: EvalSet | None
    test: EvalSet
    extra: dict[str, EvalSet] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)


def _eval_set(ds: Dataset, history: pd.DataFrame, targets: pd.DataFrame,
              drop_seen_targets: bool = True) -> EvalSet:
    """Users that have targets (and, when ``history`` has rows for them, their histories)."""
    if drop_seen_targets and len(history):
        seen = pd.MultiIndex.from_frame(history[["user_idx", "item_idx"]])
        key = pd.MultiIndex.from_frame(targets[["user_idx", "item_idx"]])
        targets = targets[~key.isin(seen)]
    users = np.unique(targets["user_idx"].to_numpy())
    h = ds.with_interactions(history[history["user_idx"].isin(users)]).histories(users)
    pos = np.searchsorted(users, targets["user_idx"].to_numpy())
    t = sp.csr_matrix((np.ones(len(targets), np.float32), (pos, targets["item_idx"].to_numpy())),
                      shape=(len(users), ds.n_items))
    t.sum_duplicates()
    t.data[:] = 1.0
    return EvalSet(users=users.astype(np.int64), histories=h, targets=t)


def _leave_one_out(ds: Dataset, inter: pd.DataFrame):
    """(train, valid, test) frames: per user the last row is test, the one before valid."""
    n = inter.groupby("user_idx")["seq"].transform("size").to_numpy()
    rank = inter.groupby("user_idx").cumcount().to_numpy()  # 0-based within the user
    from_end = n - 1 - rank
    test = inter[(from_end == 0) & (n >= 2)]
    valid = inter[(from_end == 1) & (n >= 3)]
    train = inter[~inter.index.isin(test.index) & ~inter.index.isin(valid.index)]
    return train, valid, test


def split_loo(ds: Dataset) -> Split:
    train, valid, test = _leave_one_out(ds, ds.inter)
    train_ds = ds.with_interactions(train)
    valid_set = _eval_set(ds, train, valid) if len(valid) else None
    test_set = _eval_set(ds, pd.concat([train, valid]), test)
    return Split("loo", ds, train_ds, valid_set, test_set,
                 info={"train": len(train), "valid": len(valid), "test": len(test)})


def split_time(ds: Dataset, cutoff_quantile: float = 0.8, valid_fraction: float = 0.1) -> Split:
    if not ds.has_timestamps:
        raise ValueError(f"{ds.name}: the 'time' protocol needs timestamps (this dataset has "
                         "order only; use 'loo')")
    if not 0.0 < cutoff_quantile < 1.0 or not 0.0 <= valid_fraction < cutoff_quantile:
        raise ValueError("need 0 < valid_fraction < cutoff_quantile < 1")
    ts = ds.inter["timestamp"].to_numpy()
    cut = float(np.nanquantile(ts, cutoff_quantile))
    vcut = float(np.nanquantile(ts, cutoff_quantile - valid_fraction))
    before = ds.inter[ts < cut]
    after = ds.inter[ts >= cut]
    train = before[before["timestamp"] < vcut] if valid_fraction > 0 else before
    valid = before[before["timestamp"] >= vcut] if valid_fraction > 0 else before.iloc[:0]
    # only users with some history before the cut-off can be evaluated
    after = after[after["user_idx"].isin(before["user_idx"].unique())]
    valid = valid[valid["user_idx"].isin(train["user_idx"].unique())]
    valid_set = _eval_set(ds, train, valid) if len(valid) else None
    test_set = _eval_set(ds, before, after)
    return Split("time", ds, ds.with_interactions(train), valid_set, test_set,
                 info={"cutoff": cut, "valid_cutoff": vcut, "train": len(train),
                       "valid": len(valid), "test": len(after)})


def split_cold(ds: Dataset, fraction: float = 0.1, seed: int = 2020) -> Split:
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(ds.item_counts() > 0)
    cold = np.sort(rng.choice(active, size=max(1, int(round(fraction * len(active)))),
                              replace=False))
    is_cold = ds.inter["item_idx"].isin(cold).to_numpy()
    warm_inter, cold_inter = ds.inter[~is_cold], ds.inter[is_cold]
    train, valid, warm_test = _leave_one_out(ds, warm_inter)
    history = pd.concat([train, valid])
    cold_inter = cold_inter[cold_inter["user_idx"].isin(history["user_idx"].unique())]
    valid_set = _eval_set(ds, train, valid) if len(valid) else None
    test_set = _eval_set(ds, history, cold_inter)
    warm_set = _eval_set(ds, history, warm_test)
    return Split("cold", ds, ds.with_interactions(train), valid_set, test_set,
                 extra={"warm": warm_set},
                 info={"cold_items": cold, "train": len(train), "valid": len(valid),
                       "test": len(cold_inter), "warm_test": len(warm_test)})


def make_split(ds: Dataset, protocol: str, **kwargs) -> Split:
    """Split ``ds`` by protocol name (``loo``, ``time`` or ``cold``)."""
    if protocol == "loo":
        return split_loo(ds, **kwargs)
    if protocol == "time":
        return split_time(ds, **kwargs)
    if protocol == "cold":
        return split_cold(ds, **kwargs)
    raise ValueError(f"unknown protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
