"""hybrid: correctness on the checkerboard, rating mode on ml-100k, features and bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.data import DataError, Histories, from_dataframe
from m6rec.features import item_feature_matrix, load_item_vectors, user_feature_matrix
from m6rec.models.base import Recommender
from m6rec.models.hybrid import Hybrid, split_ratings

SMALL = {"factors": 8, "feature_dim": 8, "mlp_hidden": 16, "epochs": 30, "lr": 1e-2,
         "batch_size": 64}


def _withheld(ds):
    return np.array([ds.item_index("i" + ds.user_ids[u][1:]) for u in range(ds.n_users)])


@pytest.mark.parametrize("params", [{}, {"loss": "bpr"}, {"loss": "sampled", "n_negatives": 8},
                                    {"item_features": False, "user_features": False}],
                         ids=["ce", "bpr", "sampled", "no-features"])
def test_checkerboard_withheld_item_first_known_and_folded_in(checkerboard, params):
    ds = checkerboard
    m = Hybrid(**SMALL, **params).fit(ds)
    h = ds.histories()
    ids, _ = m.recommend(h, k=1)
    np.testing.assert_array_equal(ids[:, 0], _withheld(ds))
    unknown = Histories(h.indptr, h.items, np.full(len(h), -1, dtype=np.int64))
    ids_u, _ = m.recommend(unknown, k=1)
    np.testing.assert_array_equal(ids_u[:, 0], _withheld(ds))


def test_rating_mode_beats_global_mean(ml100k):
    sub = ml100k.with_interactions(ml100k.inter[ml100k.inter["user_idx"] < 150])
    train, valid, test = split_ratings(sub, seed=0)
    mean = float(train.inter["rating"].mean())
    baseline = float(np.sqrt(((test["rating"] - mean) ** 2).mean()))
    m = Hybrid(mode="rating", factors=16, epochs=15, patience=3, lr=3e-3).fit(train, valid)
    errs = m.rating_errors(test, train)
    assert errs["rmse"] < baseline - 0.05, (errs, baseline)
    pred = m.predict_ratings(train.histories(test["user_idx"].to_numpy()[:5]),
                             test["item_idx"].to_numpy()[:5, None])
    assert pred.shape == (5, 1) and (pred >= 1).all() and (pred <= 5).all()


def test_rating_mode_needs_ratings(checkerboard):
    with pytest.raises(ValueError, match="rating"):
        Hybrid(mode="rating", **SMALL).fit(checkerboard)
    with pytest.raises(ValueError, match="mode="):
        Hybrid(**SMALL).fit(checkerboard).predict_ratings(checkerboard.histories(), [[0]])


@pytest.mark.parametrize("bad", [{"mode": "regress"}, {"loss": "hinge"}, {"factors": 0},
                                 {"user_dropout": 1.0}])
def test_bad_params(checkerboard, bad):
    with pytest.raises(ValueError):
        Hybrid(**{**SMALL, **bad}).fit(checkerboard)


def test_split_ratings_is_disjoint_and_per_user(ml100k):
    train, valid, test = split_ratings(ml100k, seed=1)
    key = lambda f: set(zip(f["user_idx"], f["item_idx"], strict=True))  # noqa: E731
    assert not key(train.inter) & key(test) and not key(valid) & key(test)
    assert len(train.inter) + len(valid) + len(test) == ml100k.n_interactions
    assert abs(len(test) / ml100k.n_interactions - 0.1) < 0.01
    assert set(test["user_idx"]) == set(range(ml100k.n_users))  # every user has >= 20 ratings


# -- features ------------------------------------------------------------------------------------
def test_feature_matrices_on_ml100k(ml100k):
    u, names = user_feature_matrix(ml100k)
    assert u.shape == (ml100k.n_users, len(names))
    assert "age" in names and "gender=F" in names and not any(n.startswith("zip") for n in names)
    np.testing.assert_allclose(u[:, names.index("gender=F")] + u[:, names.index("gender=M")], 1)
    x, names = item_feature_matrix(ml100k)
    assert "release_year" in names and "category=Comedy" in names
    assert x[0, names.index("category=Comedy")] == 1  # Toy Story
    assert np.isfinite(x).all()


def _vec_ds():
    inter = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]})
    return from_dataframe(inter, name="tiny")


def test_item_vectors_npz_parquet_npy(tmp_path):
    ds = _vec_ds()
    ids = np.array(["y", "zzz"])  # one known, one unknown id
    np.savez(tmp_path / "v.npz", item_id=ids, vectors=np.array([[3.0, 4.0], [1.0, 1.0]]))
    v = load_item_vectors(tmp_path / "v.npz", ds)
    assert v.shape == (2, 2)
    np.testing.assert_allclose(v[ds.item_index("y")], [0.6, 0.8])
    np.testing.assert_allclose(v[ds.item_index("x")], 0)
    pd.DataFrame({"item_id": ["x"], "vector": [[0.0, 2.0]]}).to_parquet(tmp_path / "v.parquet")
    np.testing.assert_allclose(load_item_vectors(tmp_path / "v.parquet", ds)[ds.item_index("x")],
                               [0, 1])
    np.save(tmp_path / "v.npy", np.ones((ds.n_items, 3)))
    assert load_item_vectors(tmp_path / "v.npy", ds).shape == (ds.n_items, 3)


@pytest.mark.parametrize("case", ["duplicate", "nan", "unknown_ids", "suffix", "npy_rows",
                                  "ragged", "missing_keys", "missing_file"])
def test_bad_item_vector_files(tmp_path, case):
    ds = _vec_ds()
    path, line = tmp_path / "v.npz", None
    if case == "duplicate":
        np.savez(path, item_id=np.array(["x", "y", "x"]), vectors=np.ones((3, 2)))
        line = 3
    elif case == "nan":
        np.savez(path, item_id=np.array(["x", "y"]), vectors=np.array([[1.0, 1], [np.nan, 1]]))
        line = 2
    elif case == "unknown_ids":
        np.savez(path, item_id=np.array(["q"]), vectors=np.ones((1, 2)))
    elif case == "suffix":
        path = tmp_path / "v.csv"
        path.write_text("item_id,v\nx,1\n")
    elif case == "npy_rows":
        path = tmp_path / "v.npy"
        np.save(path, np.ones((5, 2)))
    elif case == "ragged":
        path = tmp_path / "v.parquet"
        pd.DataFrame({"item_id": ["x", "y"], "vector": [[1.0, 2.0], [1.0]]}).to_parquet(path)
        line = 2
    elif case == "missing_keys":
        np.savez(path, ids_of_items=np.array(["x"]), vectors=np.ones((1, 2)))
    else:
        path = tmp_path / "absent.npz"
    with pytest.raises(DataError) as err:
        load_item_vectors(path, ds)
    assert err.value.path == str(path)
    assert err.value.line == line


def test_item_vectors_feed_the_model_and_survive_save_load(checkerboard, tmp_path):
    ds = checkerboard
    parity = np.array([[1.0, 0.0] if int(i[1:]) % 2 == 0 else [0.0, 1.0] for i in ds.item_ids])
    np.savez(tmp_path / "vec.npz", item_id=ds.item_ids.astype(str), vectors=parity)
    m = Hybrid(**SMALL, item_features=False, user_features=False,
               vectors_file=str(tmp_path / "vec.npz")).fit(ds)
    assert m.module_.item_feat.shape == (ds.n_items, 2)
    m.save(tmp_path / "model")
    (tmp_path / "vec.npz").unlink()  # the saved model keeps its features
    loaded = Recommender.load(tmp_path / "model")
    h = ds.histories()
    np.testing.assert_allclose(loaded.score(h), m.score(h), rtol=1e-6, atol=1e-6)
    ids, _ = loaded.recommend(h, k=1)
    np.testing.assert_array_equal(ids[:, 0], _withheld(ds))
