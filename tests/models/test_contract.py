"""The model contract, run for every registered model (implicit's checkerboard, scikit-learn's
common estimator checks): a new entry in ``m6rec.registry`` is covered automatically."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.registry import all_models, build_model

# Per-model parameters for the 50 x 50 checkerboard: small enough to be quick and valid there
# (PureSVD's rank must stay below min(n_users, n_items) = 50; the checkerboard has rank 2 + noise).
FAST_PARAMS: dict[str, dict] = {
    "puresvd": {"factors": 8},
    "sasrec": {"hidden": 16, "inner": 16, "epochs": 30, "lr": 1e-2, "batch_size": 32},
    "gru4rec": {"hidden": 16, "gru_hidden": 16, "epochs": 30, "lr": 1e-2, "batch_size": 32},
    "multvae": {"hidden": 32, "latent": 8, "epochs": 20, "lr": 1e-2, "batch_size": 50},
    "fusion": {"members": "ease,itemknn"},
    "hybrid": {"factors": 8, "feature_dim": 8, "mlp_hidden": 16, "epochs": 30, "lr": 1e-2,
               "batch_size": 64},
    "multitask": {"weights": "1,0", "factors": 8, "feature_dim": 8, "mlp_hidden": 16,
                  "epochs": 30, "lr": 1e-2, "batch_size": 64},
    "m6": {"encoder": "hashing:32", "hidden": 16, "inner": 16, "epochs": 30,
           "lr": 1e-2, "batch_size": 32},
    "textsim": {"encoder": "hashing:32", "n_recent": 3},
    "opendomain": {"encoder": "hashing:32", "k": 20},
    "kg": {"hidden": 16, "inner": 16, "epochs": 30, "lr": 1e-2, "batch_size": 32},
    "m6-compact": {"teacher": "m6(encoder=hashing:32,hidden=16,inner=16,epochs=30,"
                              "lr=0.01,batch_size=32)", "table_dtype": "int8",
                   "encoder_dtype": "int8"},
    "m6-onnx": {"teacher": "m6(encoder=hashing:32,hidden=16,inner=16,epochs=30,"
                           "lr=0.01,batch_size=32)"},
    "ranker": {"hidden": 16, "att_hidden": 8, "mlp_hidden": 16, "epochs": 15, "lr": 1e-2,
               "batch_size": 64, "per_user": 10},
}

# Parameters each model must reject with ValueError at fit time.
BAD_PARAMS: dict[str, dict] = {
    "itemknn": {"k": 0},
    "userknn": {"shrink": -1.0},
    "ease": {"reg": 0.0},
    "puresvd": {"factors": 50},
    "als": {"factors": 0},
    "bpr": {"iterations": 0},
    "textsim": {"decay": 0.0},
    "opendomain": {"cooc_decay": 0.0},
}

# Models with no personalisation: the checkerboard's withheld item cannot come first.
UNPERSONALISED = {"pop"}


@pytest.fixture(scope="module", params=all_models())
def model(request, checkerboard) -> Recommender:
    name = request.param
    m = build_model(name, **FAST_PARAMS.get(name, {}))
    assert m.fit(checkerboard) is m
    return m


def _unknown(h: Histories) -> Histories:
    """The same histories, presented as users the model never saw."""
    return Histories(h.indptr, h.items, np.full(len(h), -1, dtype=np.int64))


def test_fitted_attributes(model, checkerboard):
    assert model.n_items_ == checkerboard.n_items
    assert model.n_users_ == checkerboard.n_users
    assert model.get_params() == build_model(model.name, **model.get_params()).get_params()


def test_checkerboard_withheld_item_first(model, checkerboard):
    ds = checkerboard
    h = ds.histories()
    ids, scores = model.recommend(h, k=1)
    assert ids.shape == (ds.n_users, 1) and np.isfinite(scores).all()
    if model.name in UNPERSONALISED:
        for u in range(ds.n_users):
            assert ids[u, 0] >= 0 and ids[u, 0] not in set(h.row(u))
        return
    expected = np.array([ds.item_index("i" + ds.user_ids[u][1:]) for u in range(ds.n_users)])
    np.testing.assert_array_equal(ids[:, 0], expected)


@pytest.mark.parametrize("known", [True, False], ids=["known", "unknown"])
def test_batch_equals_one_by_one(model, checkerboard, known, monkeypatch):
    h = checkerboard.histories()
    h = h if known else _unknown(h)
    ids, scores = model.recommend(h, k=5)
    for u in range(len(h)):
        i1, s1 = model.recommend(h.take([u]), k=5)
        _assert_same_ranking(i1[0], s1[0], ids[u], scores[u], f"user {u}", model, h.take([u]))
    # several batches inside one call give the same answer as one batch
    monkeypatch.setattr(model, "batch_size", 7)
    i7, s7 = model.recommend(h, k=5)
    for u in range(len(h)):
        _assert_same_ranking(i7[u], s7[u], ids[u], scores[u], f"user {u}, batches of 7", model,
                             h.take([u]))


def _assert_same_ranking(ids_a, scores_a, ids_b, scores_b, msg, model=None, hist=None):
    """Equal scores, and equal ids except where two items' scores differ only by float
    rounding (identical item texts can tie up to the last bit of a matrix product)."""
    np.testing.assert_allclose(scores_a, scores_b, rtol=1e-5, atol=1e-6, err_msg=msg)
    diff = np.flatnonzero(ids_a != ids_b)
    if len(diff):
        assert model is not None, (msg, ids_a, ids_b)
        s = model.score(hist, np.concatenate([ids_a[diff], ids_b[diff]]))[0]
        np.testing.assert_allclose(s[: len(diff)], s[len(diff):], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{msg}: {ids_a} vs {ids_b}")


def test_save_load_round_trip(model, checkerboard, tmp_path):
    h = checkerboard.histories()
    model.save(tmp_path / model.name)
    loaded = Recommender.load(tmp_path / model.name)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    assert (loaded.n_items_, loaded.n_users_) == (model.n_items_, model.n_users_)
    for hh in (h, _unknown(h)):
        np.testing.assert_allclose(loaded.score(hh), model.score(hh), rtol=1e-6, atol=1e-7)


def test_recommend_filters(model, checkerboard):
    h = checkerboard.histories()
    n, n_items = len(h), model.n_items_
    ids, _ = model.recommend(h, k=n_items)
    for u in range(n):
        assert not set(ids[u][ids[u] >= 0]) & set(h.row(u))
    # every row has exactly n_items - |history| eligible items, then -1 padding
    np.testing.assert_array_equal((ids >= 0).sum(axis=1), n_items - h.lengths)

    rng = np.random.default_rng(0)
    candidates = rng.choice(n_items, size=12, replace=False)
    ids, scores = model.recommend(h, k=20, candidates=candidates)
    assert np.isin(ids[ids >= 0], candidates).all()
    assert np.isneginf(scores[ids < 0]).all()  # fewer than 20 candidates: padded

    exclude = sp.random(n, n_items, density=0.3, format="csr", random_state=1)
    ids, _ = model.recommend(h, k=10, exclude=exclude)
    for u in range(n):
        assert not set(ids[u][ids[u] >= 0]) & set(exclude[u].indices)

    ids, _ = model.recommend(h, k=n_items, exclude_seen=False)
    assert (ids >= 0).all()


def test_unknown_users_get_finite_scores(model):
    h = Histories.from_lists([[0, 2, 4], [1], [], [3, 5, 7, 9, 11]])
    s = model.score(h)
    assert s.shape == (4, model.n_items_) and s.dtype == np.float32
    assert np.isfinite(s).all()
    ids, scores = model.recommend(h, k=3)
    assert (ids >= 0).all() and np.isfinite(scores).all()


def test_score_subset_matches_full(model, checkerboard):
    h = checkerboard.histories()
    full = model.score(h)
    assert full.shape == (len(h), model.n_items_)
    items = np.array([3, 0, 17, 42, 8])
    np.testing.assert_allclose(model.score(h, items), full[:, items], rtol=1e-6, atol=1e-7)
    per_row = np.random.default_rng(0).integers(0, model.n_items_, size=(len(h), 4))
    np.testing.assert_allclose(model.score(h, per_row), np.take_along_axis(full, per_row, 1),
                               rtol=1e-6, atol=1e-7)


def test_unfitted_model_raises():
    for name in all_models():
        with pytest.raises(RuntimeError, match="not fitted"):
            build_model(name).score(Histories.from_lists([[0]]))


@pytest.mark.parametrize("name", sorted(BAD_PARAMS))
def test_invalid_params_rejected_in_fit(name, checkerboard):
    m = build_model(name, **BAD_PARAMS[name])  # __init__ only stores
    with pytest.raises(ValueError):
        m.fit(checkerboard)
