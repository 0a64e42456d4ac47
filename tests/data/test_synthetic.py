"""The seeded synthetic log: exact size, reproducible, Zipf-skewed, sequential, with texts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from m6rec.data.synthetic import generate


def test_seeded_sized_and_shaped():
    a, items = generate(20_000, 1_000, seed=5)
    b, items_b = generate(20_000, 1_000, seed=5)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(items, items_b)
    assert not a.equals(generate(20_000, 1_000, seed=6)[0])
    assert len(a) == 20_000 and len(items) == 1_000
    assert a["user_id"].nunique() == 2_000
    lengths = a.groupby("user_id").size()
    assert lengths.min() >= 5 and lengths.max() > 5 * lengths.median()  # heavy tail
    counts = a["item_id"].value_counts()
    assert counts.iloc[:10].sum() > 0.05 * len(a)  # the top 1% of items draw > 5% of events
    assert a.groupby("user_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    assert set(a["item_id"]) <= set(items["item_id"])
    assert (items["title"].str.len() > 0).all() and items["categories"].nunique() >= 8
    # sequential structure: the most common successor of an item follows it far above chance
    nxt = a.groupby("user_id")["item_id"].shift(-1)
    pairs = pd.DataFrame({"a": a["item_id"], "b": nxt}).dropna()
    top = pairs.groupby("a")["b"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    assert float(np.median(top[pairs.groupby("a").size() >= 20])) > 0.2
