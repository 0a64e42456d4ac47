"""EASE's recency weighting (``decay``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.data import Histories, from_dataframe
from m6rec.models.base import Recommender
from m6rec.registry import build_model


def _data(n_items=8, n_users=30, length=6):
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", float(t)) for u in range(n_users)
            for t, i in enumerate(rng.choice(n_items, length, replace=False))]
    return from_dataframe(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def test_decay_weighs_each_history_item_by_its_age(tmp_path):
    """Score = sum over the history's distinct items of decay ** age (newest 0; a repeated
    item at its newest place) times its row of B; decay 1 is plain EASE; the decay is saved."""
    ds = _data()
    plain = build_model("ease", reg=5.0).fit(ds)
    m = build_model("ease", reg=5.0, decay=0.5).fit(ds)
    np.testing.assert_array_equal(m.weights_, plain.weights_)  # decay only acts at scoring
    hist = [[3, 1, 3, 6], [2], [5, 0]]
    got = m.score(Histories.from_lists(hist))
    B = plain.weights_
    ages = [{1: 2, 3: 1, 6: 0}, {2: 0}, {5: 1, 0: 0}]
    want = np.stack([sum(0.5 ** a * B[i] for i, a in row.items()) for row in ages])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    flat = [sum(B[i] for i in set(row)) for row in hist]
    np.testing.assert_allclose(plain.score(Histories.from_lists(hist)), np.stack(flat),
                               rtol=1e-5, atol=1e-6)
    m.save(tmp_path / "e")
    np.testing.assert_allclose(Recommender.load(tmp_path / "e").score(Histories.from_lists(hist)),
                               got, rtol=1e-6)


@pytest.mark.parametrize("decay", [0.0, 1.5, -0.1])
def test_decay_out_of_range_is_refused(decay):
    with pytest.raises(ValueError, match="decay must be in"):
        build_model("ease", decay=decay).fit(_data())


def test_too_large_is_refused_at_once_with_what_to_use_instead():
    """With a cap far below the estimate, fit refuses before allocating, and the message names
    the estimate and the alternatives; the error is a MemoryError and a ValueError (CLI line)."""
    from m6rec.memory import MemoryBudgetError
    from m6rec.models.ease import solve_bytes

    ds = _data(n_items=40)
    cap_gb = solve_bytes(40) / 2 / 1024**3
    with pytest.raises(MemoryBudgetError, match=r"EASE on 40 items .* needs about .*max_items"):
        build_model("ease", reg=5.0, memory_gb=cap_gb).fit(ds)
    assert issubclass(MemoryBudgetError, MemoryError) and issubclass(MemoryBudgetError, ValueError)
    assert not hasattr(build_model("ease"), "weights_")


def test_pruned_equals_exact_when_nothing_is_pruned():
    ds = _data(n_items=12)
    exact = build_model("ease", reg=5.0).fit(ds)
    same = build_model("ease", reg=5.0, max_items=12).fit(ds)
    more = build_model("ease", reg=5.0, max_items=1000).fit(ds)
    h = Histories.from_lists([[3, 1, 3, 6], [2], [5, 0, 11]])
    np.testing.assert_array_equal(same.score(h), exact.score(h))
    np.testing.assert_array_equal(more.score(h), exact.score(h))
    assert same.items_ is None


def test_exact_solver_matches_the_closed_form():
    ds = _data(n_items=10)
    x = ds.csr().toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 7.0 * np.eye(10))
    b = p / (-np.diag(p))[None, :]
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(build_model("ease", reg=7.0).fit(ds).weights_, b, atol=1e-6)


def test_pruned_is_exact_ease_on_the_most_popular_items(tmp_path, caplog):
    """Kept = the items with the most users; B there is EASE fitted on X[:, kept]; the other
    items score 0; a log line says so; save/load keeps the pruned form."""
    import logging

    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}", float(t)) for u in range(60)
            for t, i in enumerate(rng.choice(20, 5, replace=False, p=np.linspace(2, 0.1, 20)
                                             / np.linspace(2, 0.1, 20).sum()))]
    ds = from_dataframe(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    with caplog.at_level(logging.INFO, logger="m6rec.models.ease"):
        m = build_model("ease", reg=3.0, max_items=6).fit(ds)
    assert "pruned to the 6 most popular of 20 items" in caplog.text
    x = ds.csr().toarray()
    users = x.sum(axis=0)
    kept = np.sort(np.argsort(-users, kind="stable")[:6])
    np.testing.assert_array_equal(m.items_, kept)
    xs = x[:, kept].astype(np.float64)
    p = np.linalg.inv(xs.T @ xs + 3.0 * np.eye(6))
    b = p / (-np.diag(p))[None, :]
    np.fill_diagonal(b, 0.0)
    h = Histories.from_lists([[int(kept[0]), int(kept[3])], [0, 1, 2, 3, 4, 5, 6, 7]])
    want = np.zeros((2, ds.n_items))
    want[:, kept] = h.csr(ds.n_items).toarray()[:, kept] @ b
    got = m.score(h)
    np.testing.assert_allclose(got, want, atol=1e-5)
    m.save(tmp_path / "p")
    np.testing.assert_array_equal(Recommender.load(tmp_path / "p").score(h), got)


def test_auto_prunes_only_beyond_the_budget(caplog):
    import logging

    from m6rec.models.ease import solve_bytes

    ds = _data(n_items=40)
    exact = build_model("ease", reg=5.0, max_items="auto").fit(ds)
    assert exact.items_ is None
    cap_gb = (solve_bytes(40) - 1) / 1024**3  # just below what 40 items need
    with caplog.at_level(logging.INFO, logger="m6rec.models.ease"):
        m = build_model("ease", reg=5.0, max_items="auto", memory_gb=cap_gb).fit(ds)
    assert m.items_ is not None and 1 <= len(m.items_) < 40
    assert "pruned to the" in caplog.text


@pytest.mark.parametrize("bad", [0, -3, 2.5, "all", True])
def test_bad_max_items_is_refused(bad):
    with pytest.raises(ValueError, match="max_items must be"):
        build_model("ease", max_items=bad).fit(_data())
