"""Fold-in: a folded-in model equals (or approaches) one refitted on all the data, without
touching the serving model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.data import Histories
from m6rec.online import Updater, parse_policy
from m6rec.online.foldin import clone, make_foldin
from m6rec.registry import build_model


def _first_part(ds, share=0.6):
    """The dataset cut after the first ``share`` of its events in time order, and the rest."""
    ordered = ds.inter.sort_values(["timestamp", "user_idx", "seq"], kind="stable")
    cut = int(share * len(ordered))
    return ds.with_interactions(ordered.iloc[:cut].copy()), ordered.iloc[cut:].reset_index(drop=True)


def test_parse_policy():
    assert str(parse_policy("static")) == "static"
    assert parse_policy("foldin").every == 1000
    assert parse_policy("finetune:50").kind == "finetune"
    assert parse_policy("finetune:50").every == 50
    for bad in ("retrain", "finetune:0", "finetune:x", "static:3"):
        with pytest.raises(ValueError, match="policy"):
            parse_policy(bad)


@pytest.mark.parametrize("name", ["ease", "itemknn", "pop", "userknn"])
def test_foldin_equals_refit(checkerboard, name):
    first, rest = _first_part(checkerboard)
    model = build_model(name).fit(first)
    before = clone(model)
    upd = Updater(model, first, "foldin")
    for start in range(0, len(rest), 97):  # several updates, uneven chunks
        new, version = upd.update_indices(rest.iloc[start:start + 97])
    assert version == -(-len(rest) // 97)
    refit = build_model(name).fit(checkerboard)
    h = checkerboard.histories()
    np.testing.assert_allclose(new.score(h), refit.score(h), rtol=1e-4, atol=1e-5)
    # the model given to the updater still scores as before
    np.testing.assert_array_equal(model.score(h), before.score(h))
    assert not np.allclose(model.score(h), new.score(h))


def test_puresvd_foldin_is_a_fixpoint_and_places_new_items(checkerboard):
    ds = checkerboard
    model = build_model("puresvd", factors=2).fit(ds)
    fold = make_foldin(model, ds)
    same = fold.apply(model, ds, ds, np.arange(ds.n_users))  # nothing new: same subspace
    v0, v1 = model.item_factors_, same.item_factors_
    np.testing.assert_allclose(v1 @ v1.T, v0 @ v0.T, atol=1e-4)
    # item 2's events hidden at fit time: its vector is ~0, then folded in from the data
    hidden = ds.with_interactions(ds.inter[ds.inter["item_idx"] != 2].copy())
    m2 = build_model("puresvd", factors=2).fit(hidden)
    assert np.abs(m2.item_factors_[2]).max() < 1e-6
    users = np.unique(ds.inter.loc[ds.inter["item_idx"] == 2, "user_idx"])
    m3 = make_foldin(m2, hidden).apply(m2, hidden, ds, users)
    even_user = Histories.from_lists([[0, 4, 6, 8]])
    odd = np.arange(1, ds.n_items, 2)
    before, after = m2.score(even_user)[0], m3.score(even_user)[0]
    assert before[2] <= before[odd].max() + 1e-6  # unknown: no better than an odd item
    assert after[2] > after[odd].max() + 0.1  # placed among the even items


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_factor_foldin_learns_a_new_item(checkerboard, name):
    ds = checkerboard
    hidden = ds.with_interactions(ds.inter[ds.inter["item_idx"] != 2].copy())
    params = {"factors": 8, "num_threads": 1}
    if name == "bpr":
        params.update(iterations=200, learning_rate=0.05)
    model = build_model(name, **params).fit(hidden)
    even_user = Histories.from_lists([[0, 4, 6, 8, 10, 12]])
    evens = np.array([i for i in range(14, ds.n_items, 2)])
    odd = np.arange(1, ds.n_items, 2)

    def gap(m):  # item 2's score relative to the other unseen even items'
        s = m.score(even_user)[0]
        return s[2] - s[evens].mean(), s

    gap_before, _ = gap(model)
    events = ds.inter[ds.inter["item_idx"] == 2]
    new, version = Updater(model, hidden, "foldin").update_indices(events)
    gap_after, scores = gap(new)
    assert version == 1
    assert gap_after > gap_before
    assert scores[2] > scores[odd].max()  # above every odd item: placed among the even ones


def test_update_with_raw_ids(checkerboard):
    first, _ = _first_part(checkerboard)
    model = build_model("ease").fit(first)
    upd = Updater(model, first, "foldin")
    events = pd.DataFrame({"user_id": ["u0", "new-user", "new-user"],
                           "item_id": ["i2", "i1", "i3"],
                           "timestamp": [1e9, 1e9 + 1, "2030-01-01"]})
    new, version = upd.update(events)
    assert version == 1 and new is not model and upd.model is new
    assert upd.dataset.n_users == checkerboard.n_users + 1
    u = upd.dataset.user_index("new-user")
    assert list(upd.dataset.histories([u]).items) == [1, 3]
    with pytest.raises(ValueError, match="'nope' is not in the catalogue"):
        upd.update(pd.DataFrame({"user_id": ["u0"], "item_id": ["nope"]}))
    with pytest.raises(ValueError, match="missing column"):
        upd.update(pd.DataFrame({"user_id": ["u0"]}))
    with pytest.raises(ValueError, match="timestamp"):
        upd.update(pd.DataFrame({"user_id": ["u0"], "item_id": ["i2"], "timestamp": ["soon"]}))


def test_static_policy_records_events_only(checkerboard):
    first, rest = _first_part(checkerboard)
    model = build_model("ease").fit(first)
    upd = Updater(model, first, "static")
    new, version = upd.update_indices(rest)
    assert new is model and version == 0
    assert upd.dataset.n_interactions == checkerboard.n_interactions


def test_unsupported_policies(checkerboard):
    model = build_model("ease").fit(checkerboard)
    with pytest.raises(ValueError, match="finetune applies to sequential models"):
        Updater(model, checkerboard, "finetune:10")
    with pytest.raises(ValueError, match="cannot score new items"):
        Updater(model, checkerboard, "foldin").add_items(pd.DataFrame({"item_id": ["x"]}))


def _weighted_ease(ds, reg, half_life):
    """EASE solved from scratch on rows weighted by 2^-((now - user's newest event) / h)."""
    inter = ds.inter
    last = inter.groupby("user_idx")["timestamp"].max().reindex(range(ds.n_users)).to_numpy()
    w = np.exp2(-(inter["timestamp"].max() - last) / half_life)
    x = ds.csr().toarray().astype(np.float64)
    g = (x * w[:, None]).T @ x + reg * np.eye(ds.n_items)
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_recency_foldin_is_exact(checkerboard):
    first, rest = _first_part(checkerboard)
    model = build_model("ease", reg=50.0).fit(first)
    h = 200.0  # timestamps run 0..1250: old users weigh up to ~2^-6
    upd = Updater(model, first, "foldin", half_life=h)
    for start in range(0, len(rest), 113):
        new, _ = upd.update_indices(rest.iloc[start:start + 113])
    np.testing.assert_allclose(new.weights_, _weighted_ease(checkerboard, 50.0, h),
                               rtol=1e-4, atol=1e-5)
    uniform = build_model("ease", reg=50.0).fit(checkerboard).weights_
    assert np.abs(new.weights_ - uniform).max() > 1e-2  # the weighting changes the model
    # a half-life far longer than the data = the uniform fold-in
    upd = Updater(model, first, "foldin", half_life=1e12)
    far, _ = upd.update_indices(rest)
    np.testing.assert_allclose(far.weights_, uniform, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="half_life"):
        Updater(build_model("pop").fit(first), first, "foldin", half_life=h)


def test_ease_woodbury_updates_equal_refit(checkerboard):
    first, rest = _first_part(checkerboard, share=0.3)
    model = build_model("ease", reg=5.0).fit(first)
    upd = Updater(model, first, "foldin")
    ways = []
    for start in range(0, len(rest), 7):  # ~125 small updates: Woodbury, refreshed every 50
        new, _ = upd.update_indices(rest.iloc[start:start + 7])
        ways.append(upd._foldin.last_solve)
    assert ways.count("woodbury") > 100 and ways.count("inverse") >= 2
    refit = build_model("ease", reg=5.0).fit(checkerboard)
    np.testing.assert_allclose(new.weights_, refit.weights_, rtol=1e-4, atol=1e-5)


def test_puresvd_foldin_converges_to_refit(checkerboard):
    first, rest = _first_part(checkerboard, share=0.4)
    model = build_model("puresvd", factors=2).fit(first)
    fold = make_foldin(model, first)
    users = np.unique(rest["user_idx"].to_numpy())
    new = fold.apply(model, first, checkerboard, users)
    for _ in range(20):  # no new events: further subspace iterations on all the data
        new = fold.apply(new, checkerboard, checkerboard, np.zeros(0, np.int64))
    v, r = new.item_factors_, build_model("puresvd", factors=2).fit(checkerboard).item_factors_
    np.testing.assert_allclose(v @ v.T, r @ r.T, atol=1e-3)
    v0 = model.item_factors_
    assert np.abs(v0 @ v0.T - r @ r.T).max() > 3e-3  # the first-part basis was different
