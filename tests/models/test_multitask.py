"""multitask: joint and single-task training, the rating tower, persistence, bad weights."""

from __future__ import annotations

import numpy as np
import pytest

from m6rec.models.base import Recommender
from m6rec.models.hybrid import split_ratings
from m6rec.models.multitask import MultiTask

SMALL = {"factors": 8, "feature_dim": 8, "mlp_hidden": 16, "rating_hidden": 8, "epochs": 30,
         "lr": 1e-2, "batch_size": 64}


@pytest.fixture(scope="module")
def rating_split(ml100k):
    sub = ml100k.with_interactions(ml100k.inter[ml100k.inter["user_idx"] < 150])
    return split_ratings(sub, seed=0)


@pytest.mark.parametrize("weights", ["1,1", "0,1"])
def test_rating_tower_beats_global_mean(rating_split, weights):
    train, valid, test = rating_split
    mean = float(train.inter["rating"].mean())
    baseline = float(np.sqrt(((test["rating"] - mean) ** 2).mean()))
    m = MultiTask(weights=weights, factors=16, epochs=15, patience=3, lr=3e-3).fit(train, valid)
    errs = m.rating_errors(test, train)
    assert errs["rmse"] < baseline - 0.05, (errs, baseline)


def test_joint_model_ranks_checkerboard_and_round_trips(checkerboard, tmp_path):
    ds = checkerboard
    # the checkerboard has no ratings: the rating task needs them
    with pytest.raises(ValueError, match="rating"):
        MultiTask(**SMALL).fit(ds)
    m = MultiTask(**{**SMALL, "weights": "1,0"}).fit(ds)
    ids, _ = m.recommend(ds.histories(), k=1)
    expected = np.array([ds.item_index("i" + ds.user_ids[u][1:]) for u in range(ds.n_users)])
    np.testing.assert_array_equal(ids[:, 0], expected)


def test_predict_ratings_round_trip_and_batches(rating_split, tmp_path, monkeypatch):
    train, valid, test = rating_split
    m = MultiTask(**{**SMALL, "epochs": 3}).fit(train)
    h = train.histories(test["user_idx"].to_numpy()[:40])
    items = np.stack([test["item_idx"].to_numpy()[:40], np.zeros(40, np.int64)], axis=1)
    pred = m.predict_ratings(h, items)
    assert pred.shape == (40, 2) and (pred >= 1).all() and (pred <= 5).all()
    monkeypatch.setattr(m, "batch_size", 7)
    np.testing.assert_allclose(m.predict_ratings(h, items), pred, rtol=1e-5, atol=1e-5)
    m.save(tmp_path / "mt")
    loaded = Recommender.load(tmp_path / "mt")
    assert isinstance(loaded, MultiTask) and loaded.weights == "1,1"
    np.testing.assert_allclose(loaded.predict_ratings(h, items), pred, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.score(h), m.score(h), rtol=1e-5, atol=1e-5)


def test_weights_change_what_is_learned(rating_split):
    """A rating-only model leaves the click tower at its initialisation; joint training moves
    it (the weights really switch the tasks)."""
    train, _, _ = rating_split
    # one epoch in large batches: what is checked is which weights move, not how far they get
    few = {**SMALL, "epochs": 1, "batch_size": 1024}
    only_rating = MultiTask(**{**few, "weights": "0,1"}).fit(train)
    joint = MultiTask(**{**few, "weights": "1,1"}).fit(train)
    fresh = MultiTask(**{**few, "weights": "0,1", "lr": 1e-12}).fit(train)
    w0 = fresh.module_.item_bias.weight.detach().numpy()
    np.testing.assert_allclose(only_rating.module_.item_bias.weight.detach().numpy(), w0)
    assert np.abs(joint.module_.item_bias.weight.detach().numpy() - w0).max() > 1e-3


@pytest.mark.parametrize("weights", ["1", "0,0", "-1,1", "a,b", "1,1,1"])
def test_bad_weights(checkerboard, weights):
    with pytest.raises(ValueError, match="weights"):
        MultiTask(**{**SMALL, "weights": weights}).fit(checkerboard)
