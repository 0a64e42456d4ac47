"""OpenDomain: hand-computed scores on a four-item catalogue, binding, and the weight choice."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.data.histories import Histories
from m6rec.eval.evaluate import evaluate
from m6rec.eval.protocols import make_split
from m6rec.models.base import Recommender
from m6rec.models.opendomain import OpenDomain, choose_weights
from m6rec.registry import build_model


class FakeEncoder:
    """Texts -> fixed unit vectors (the `m6rec.text.Encoder` protocol)."""

    def __init__(self, table):
        self.table = {k: np.asarray(v, np.float32) for k, v in table.items()}
        self.name = "fake:" + hashlib.sha256(repr(sorted(table.items())).encode()).hexdigest()
        self.dim = 2

    def encode(self, texts, batch_size=64, show_progress=False):
        return np.stack([self.table[t] for t in texts])


ENC = FakeEncoder({"a": (1.0, 0.0), "b": (0.0, 1.0), "c": (0.6, 0.8), "d": (0.8, -0.6)})


def _data(titles=("a", "b", "c", "d"), users=("u1", "u1", "u2", "u2", "u3"),
          items=("i0", "i1", "i2", "i0", "i0")):
    inter = pd.DataFrame({"user_id": list(users), "item_id": list(items),
                          "timestamp": [1.0, 2.0, 1.0, 2.0, 1.0][: len(users)]})
    cat = pd.DataFrame({"item_id": [f"i{k}" for k in range(len(titles))], "title": list(titles)})
    return from_dataframe(inter, items=cat, name="tiny")


def test_hand_computed_score():
    # users of i0 = {u1, u2, u3}, i1 = {u1}, i2 = {u2}, i3 = {}: cos(i0, i1) = cos(i0, i2)
    # = 1 / sqrt(3), cos(i1, i2) = 0. History [i1, i0] (i0 newest), decay 0.5: weights 2/3 on
    # i0, 1/3 on i1 -> C = [1/3, 2/3, 2/3, 0] / sqrt(3). LM term (last item a): [1, 0, .6, .8].
    m = OpenDomain(encoder=ENC, cooc_weight=1.5, cooc_decay=0.5, pop_weight=0.1).fit(_data())
    c = np.array([1 / 3, 2 / 3, 2 / 3, 0.0]) / np.sqrt(3)
    pop = np.array([1.0, 0.5, 0.5, 0.0])  # log(1 + count) / log(4), counts 3, 1, 1, 0
    expected = np.array([1.0, 0.0, 0.6, 0.8]) + 1.5 * c + 0.1 * pop
    np.testing.assert_allclose(m.score(Histories.from_lists([[1, 0]]))[0], expected, rtol=1e-5)
    text, cooc, prior = m.terms(Histories.from_lists([[1, 0]]))
    np.testing.assert_allclose(cooc[0], c, rtol=1e-5)
    # the co-occurrence term is a weighted mean: a longer history does not scale it up
    _, cooc2, _ = m.terms(Histories.from_lists([[1, 0, 1, 0]]))
    assert cooc2.max() <= 1.0 and cooc2[0, 1] > 0


def test_bind_reads_the_new_logs_statistics():
    m = OpenDomain(encoder=ENC, cooc_weight=1.0, text_recent=1).fit(_data())
    # another catalogue where i1 and i2 co-occur and i0 is alone
    other = _data(users=("v1", "v1", "v2"), items=("i1", "i2", "i0"))
    m.bind(other)
    _, cooc, _ = m.terms(Histories.from_lists([[1]]))
    np.testing.assert_allclose(cooc[0], [0.0, 0.0, 1.0, 0.0], atol=1e-6)


def test_save_load_round_trip(tmp_path):
    m = build_model("opendomain", encoder="hashing:16", pop_weight=0.3).fit(_data())
    m.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    h = Histories.from_lists([[0, 1], [2], []])
    np.testing.assert_allclose(loaded.score(h), m.score(h), rtol=1e-6)


def test_choose_weights_picks_the_best_mean_relative_point(ml100k):
    split = make_split(ml100k, "loo")
    out = choose_weights([(split, None)], params={"encoder": "hashing:32"},
                         weights=(0.0, 1.0, 30.0), decays=(0.5,), max_users=300)
    scores = [g["score"] for g in out["grid"]]
    best = out["grid"][int(np.argmax(scores))]
    assert (out["cooc_weight"], out["cooc_decay"]) == (best["cooc_weight"], best["cooc_decay"])
    assert max(scores) == pytest.approx(1.0)  # one source: its best point scores 1
    # the figures are those of the model itself on the same (sampled) validation users
    pick = np.sort(np.random.default_rng(0).choice(len(split.valid), 300, replace=False))
    valid = type(split.valid)(split.valid.users[pick], split.valid.histories.take(pick),
                              split.valid.targets[pick])
    m = OpenDomain(encoder="hashing:32", cooc_weight=30.0, cooc_decay=0.5).fit(split.train)
    got = evaluate(m, valid, ks=(10,), metrics=("ndcg",))["ndcg@10"]
    assert out["grid"][2]["per_source"]["ml-100k"] == pytest.approx(got, abs=1e-5)
    # on ml-100k co-occurrence carries far more than hashed titles
    assert out["grid"][2]["per_source"]["ml-100k"] > out["grid"][0]["per_source"]["ml-100k"]
