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
