"""TextSim: hand-computed scores on a four-item catalogue with a fake encoder."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.registry import build_model


class FakeEncoder:
    """Texts -> fixed unit vectors (the `m6rec.text.Encoder` protocol)."""

    def __init__(self, table: dict[str, tuple[float, ...]]):
        self.table = {k: np.asarray(v, np.float32) for k, v in table.items()}
        self._name = "fake:" + hashlib.sha256(repr(sorted(table.items())).encode()).hexdigest()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return len(next(iter(self.table.values())))

    def encode(self, texts, batch_size=64, show_progress=False):
        return np.stack([self.table[t] for t in texts])


# a = (1, 0), b = (0, 1), c = (0.6, 0.8), d = (0.8, -0.6): all unit vectors
VECTORS = {"a": (1.0, 0.0), "b": (0.0, 1.0), "c": (0.6, 0.8), "d": (0.8, -0.6)}


def _data(titles=("a", "b", "c", "d"), name="tiny"):
    # counts: first item 3, second 1, third 1, fourth 0
    inter = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u3"],
                          "item_id": ["i0", "i1", "i2", "i0", "i0"],
                          "timestamp": [1.0, 2.0, 1.0, 2.0, 1.0]})
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(len(titles))],
                          "title": list(titles)})
    return from_dataframe(inter, items=items, name=name)


@pytest.fixture()
def enc():
    return FakeEncoder(VECTORS)


def test_sum_of_recent_vectors(enc):
    m = build_model("textsim", encoder=enc, n_recent=2, decay=0.5).fit(_data())
    h = Histories.from_lists([[0, 1]])  # a then b: q = b + 0.5 a = (0.5, 1), |q| = sqrt(1.25)
    norm = np.sqrt(1.25)
    expected = np.array([0.5, 1.0, 0.3 + 0.8, 0.4 - 0.6]) / norm
    np.testing.assert_allclose(m.score(h)[0], expected, rtol=1e-6)
    ids, _ = m.recommend(h, k=2)
    assert list(ids[0]) == [2, 3]  # c, then d; a and b are seen


def test_max_of_weighted_cosines(enc):
    m = build_model("textsim", encoder=enc, n_recent=2, decay=0.5, agg="max").fit(_data())
    s = m.score(Histories.from_lists([[0, 1]]))[0]  # max(cos(b, i), 0.5 cos(a, i))
    np.testing.assert_allclose(s, [0.5, 1.0, 0.8, 0.4], rtol=1e-6)


def test_last_item_only_and_older_items_ignored(enc):
    m = build_model("textsim", encoder=enc, n_recent=1).fit(_data())
    s = m.score(Histories.from_lists([[3, 2, 0, 1], [1]]))  # only b counts in both rows
    np.testing.assert_allclose(s[0], [0.0, 1.0, 0.8, -0.6], atol=1e-7)
    np.testing.assert_allclose(s[1], s[0])


def test_popularity_prior_reads_the_counts_it_is_given(enc):
    m = build_model("textsim", encoder=enc, n_recent=1, pop_weight=0.1).fit(_data())
    # log(1 + c) / log(1 + 3) for counts 3, 1, 1, 0 -> 1, 0.5, 0.5, 0
    s = m.score(Histories.from_lists([[1], []]))
    np.testing.assert_allclose(s[0], [0.1, 1.05, 0.85, -0.6], rtol=1e-6)
    np.testing.assert_allclose(s[1], [0.1, 0.05, 0.05, 0.0], rtol=1e-6)  # no history: prior only


def test_bind_reads_a_new_catalogue(enc):
    m = build_model("textsim", encoder=enc, n_recent=1).fit(_data())
    other = _data(titles=("d", "c", "b"), name="other")  # 3 items, in another order
    m.bind(other)
    assert m.n_items_ == 3
    s = m.score(Histories.from_lists([[2]]))[0]  # history: b
    np.testing.assert_allclose(s, [-0.6, 0.8, 1.0], rtol=1e-6)


def test_save_load_keeps_vectors_and_counts(tmp_path):
    m = build_model("textsim", encoder="hashing:16", n_recent=2, pop_weight=0.2).fit(_data())
    m.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    h = Histories.from_lists([[0, 1], [2], []])
    np.testing.assert_allclose(loaded.score(h), m.score(h), rtol=1e-6)
    assert loaded.get_params() == m.get_params()


@pytest.mark.parametrize("bad", [{"n_recent": 0}, {"decay": 1.5}, {"agg": "mean"},
                                 {"pop_weight": -1.0}])
def test_bad_settings_rejected(bad):
    with pytest.raises(ValueError):
        build_model("textsim", encoder="hashing:16", **bad).fit(_data())
