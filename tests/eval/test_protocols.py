"""Protocols: RecBole-identical leave-one-out, leak-free time split, cold items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.eval.evaluate import evaluate
from m6rec.eval.protocols import make_split
from m6rec.models.base import Recommender


def _tiny():
    # u1: 4 events, u2: 3 events, u3: 2 events, u4: 1 event
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4),
            ("u2", "c", 5), ("u2", "a", 6), ("u2", "e", 7),
            ("u3", "b", 8), ("u3", "e", 9),
            ("u4", "d", 10)]
    return from_dataframe(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def _targets(ds, es):
    out = {}
    for row, u in enumerate(es.users):
        items = es.targets[row].indices
        out[ds.user_ids[u]] = sorted(ds.item_ids[i] for i in items)
    return out


def test_loo_matches_recbole_leave_one_out():
    ds = _tiny()
    s = make_split(ds, "loo")
    assert _targets(ds, s.test) == {"u1": ["d"], "u2": ["e"], "u3": ["e"]}
    assert _targets(ds, s.valid) == {"u1": ["c"], "u2": ["a"]}
    train = {(ds.user_ids[u], ds.item_ids[i]) for u, i in
             s.train.inter[["user_idx", "item_idx"]].itertuples(index=False)}
    assert train == {("u1", "a"), ("u1", "b"), ("u2", "c"), ("u3", "b"), ("u4", "d")}
    # test histories = train + valid, oldest first
    row = list(s.test.users).index(ds.user_index("u1"))
    assert [ds.item_ids[i] for i in s.test.histories.row(row)] == ["a", "b", "c"]


def test_loo_on_ml100k(ml100k):
    s = make_split(ml100k, "loo")
    assert len(s.test) == 943 and len(s.valid) == 943
    assert s.train.n_interactions == 100_000 - 2 * 943
    last = ml100k.inter.groupby("user_idx").tail(1)
    t = s.test.targets.tocoo()
    assert set(zip(s.test.users[t.row], t.col, strict=True)) == set(
        zip(last["user_idx"], last["item_idx"], strict=True))
    # no test target is in its own history
    for r in range(0, 943, 97):
        assert not set(s.test.targets[r].indices) & set(s.test.histories.row(r))


def test_time_split_has_no_future_leakage(ml100k):
    s = make_split(ml100k, "time")
    cut, vcut = s.info["cutoff"], s.info["valid_cutoff"]
    assert (s.train.inter["timestamp"] < vcut).all()
    assert np.all(s.test.histories.timestamps < cut)
    assert s.test.targets.nnz > 0 and len(s.valid) > 0


def test_time_split_needs_timestamps():
    df = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "y"], "position": [0, 1]})
    with pytest.raises(ValueError, match="timestamps"):
        make_split(from_dataframe(df), "time")


def test_cold_items_never_in_training(ml100k):
    s = make_split(ml100k, "cold")
    cold = set(s.info["cold_items"].tolist())
    assert len(cold) == round(0.1 * ml100k.n_items)
    assert not cold & set(s.train.inter["item_idx"].unique())
    assert set(s.test.targets.indices) <= cold
    assert not set(s.extra["warm"].targets.indices) & cold
    again = make_split(ml100k, "cold")
    assert np.array_equal(again.info["cold_items"], s.info["cold_items"])


def test_unknown_protocol(ml100k):
    with pytest.raises(ValueError, match="unknown protocol"):
        make_split(ml100k, "random")


class _Oracle(Recommender):
    """Scores the given target matrix (rows aligned with the batch)."""

    name = "oracle-test"

    def __init__(self, scores=None):
        self.scores = scores

    def fit(self, dataset, valid=None):
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        return self

    def _score_rows(self, histories):
        return self.scores[histories.users]


def test_evaluate_oracle_and_anti_oracle(ml100k):
    s = make_split(ml100k, "loo")
    full = np.zeros((ml100k.n_users, ml100k.n_items), np.float32)
    full[s.test.users] = s.test.targets.toarray()
    res = evaluate(_Oracle(full).fit(ml100k), s.test, dataset=ml100k)
    assert res["ndcg@10"] == pytest.approx(1.0) and res["recall@20"] == pytest.approx(1.0)
    res = evaluate(_Oracle(-full).fit(ml100k), s.test)
    assert res["recall@20"] == 0.0


def test_evaluation_excludes_history_items(ml100k):
    """An item already in the user's history can never be a top-k hit (RecBole's masking)."""
    s = make_split(ml100k, "loo")
    full = np.zeros((ml100k.n_users, ml100k.n_items), np.float32)
    h = s.test.histories
    rows = np.repeat(h.users, h.lengths)
    full[rows, h.items] = 10.0  # rank seen items first: they must all be filtered out
    full[s.test.users] += s.test.targets.toarray()
    res = evaluate(_Oracle(full).fit(ml100k), s.test)
    assert res["hit@10"] == pytest.approx(1.0)
