"""Score fusion: weights chosen on validation never lose to a member there, the weighted and
reciprocal-rank formulas, member parameters, persistence without pickle, and the model-spec
syntax of the CLI (``fusion(ease,itemknn)``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from m6rec.data import Dataset, Histories, from_dataframe
from m6rec.eval.evaluate import evaluate
from m6rec.eval.protocols import Split, make_split
from m6rec.models.base import Recommender
from m6rec.models.fusion import Fusion, simplex_grid
from m6rec.registry import build_model, parse_model_spec, split_models


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def clusters() -> Dataset:
    """150 users x 40 items in 4 taste clusters with popular items and noise, timestamped."""
    rng = np.random.default_rng(0)
    pop = 1.0 / np.arange(1, 41) ** 0.7
    rows = []
    for u in range(150):
        c = u % 4
        p = pop * np.where(np.arange(40) % 4 == c, 6.0, 1.0)
        items = rng.choice(40, size=int(rng.integers(6, 16)), replace=False, p=p / p.sum())
        rows += [(f"u{u}", f"i{i}", float(100 * u + t)) for t, i in enumerate(items)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return from_dataframe(inter, items=pd.DataFrame({"item_id": [f"i{i}" for i in range(40)]}),
                          name="clusters")


@pytest.fixture(scope="module")
def split(clusters) -> Split:
    return make_split(clusters, "loo")


def _ndcg(model, evalset) -> float:
    return evaluate(model, evalset, ks=(10,), metrics=("ndcg",), beyond_accuracy=False)["ndcg@10"]


@pytest.mark.parametrize("method,norm", [("weighted", "minmax"), ("weighted", "zscore"),
                                         ("rrf", "minmax")])
def test_validation_weights_not_below_any_member(split, method, norm):
    members = ["ease", "itemknn", "pop"]
    fusion = Fusion(members=",".join(members), member_params='{"ease": {"reg": 20.0}}',
                    method=method, norm=norm).fit(split.train, valid=split.valid)
    assert len(fusion.grid_) == len(simplex_grid(3, 10)) == 66
    np.testing.assert_allclose(fusion.weights_.sum(), 1.0)
    fused = _ndcg(fusion, split.valid)
    assert fused == pytest.approx(max(g["valid_ndcg@10"] for g in fusion.grid_), abs=1e-12)
    for name in members:
        params = {"reg": 20.0} if name == "ease" else {}
        single = _ndcg(build_model(name, **params).fit(split.train), split.valid)
        assert fused >= single - 1e-12, f"{method}: fusion {fused:.4f} < {name} {single:.4f}"


def test_weighted_minmax_and_zscore_formulas(split):
    h = split.test.histories
    f = Fusion(members="ease,itemknn", weights="0.3,0.7").fit(split.train)
    np.testing.assert_allclose(f.weights_, [0.3, 0.7])
    raw = [m.score(h).astype(np.float64) for m in f.members_]

    def minmax(s):
        return (s - s.min(1, keepdims=True)) / (s.max(1, keepdims=True) - s.min(1, keepdims=True))

    np.testing.assert_allclose(f.score(h), 0.3 * minmax(raw[0]) + 0.7 * minmax(raw[1]),
                               rtol=1e-5, atol=1e-6)
    f.norm = "zscore"
    z = [(s - s.mean(1, keepdims=True)) / s.std(1, keepdims=True) for s in raw]
    np.testing.assert_allclose(f.score(h), 0.3 * z[0] + 0.7 * z[1], rtol=1e-4, atol=1e-5)


def test_rrf_ranks():
    f = Fusion(method="rrf", rrf_k=60)
    s = np.array([[0.1, 0.5, 0.5, -1.0], [3.0, -np.inf, 2.0, np.nan]], np.float32)
    # ties go to the lower item index, as in `topk`; -inf / NaN rank last
    ranks = np.array([[3, 1, 2, 4], [1, 3, 2, 4]])
    np.testing.assert_allclose(f._transform(s), 1.0 / (60 + ranks), rtol=1e-6)


def test_rrf_fused_scores(split):
    h = split.test.histories
    f = Fusion(members="ease,itemknn", method="rrf", weights="1,2", rrf_k=10).fit(split.train)
    n_items = f.n_items_
    expected = np.zeros((len(h), n_items))
    for w, m in zip((1.0, 2.0), f.members_, strict=True):
        s = m.score(h)
        for r in range(len(h)):  # a test-only loop: the reference, not the code under test
            order = sorted(range(n_items), key=lambda i, row=s[r]: (-row[i], i))
            expected[r, order] += w / (10 + np.arange(1, n_items + 1))
    np.testing.assert_allclose(f.score(h), expected, rtol=1e-5)


def test_equal_weights_without_validation(split):
    f = Fusion(members="ease,itemknn,pop").fit(split.train)
    np.testing.assert_allclose(f.weights_, [1 / 3] * 3)
    assert f.grid_ is None


def test_member_params_inline_and_json(split):
    f = Fusion(members="ease(reg=10),itemknn", member_params='{"itemknn": {"k": 5}}',
               weights="1,1").fit(split.train)
    assert f.members_[0].reg == 10 and f.members_[1].k == 5


def test_members_that_validate_get_the_validation_set(split):
    f = Fusion(members="ease,multvae",
               member_params=json.dumps({"multvae": {"hidden": 16, "latent": 4, "epochs": 2,
                                                     "device": "cpu"}})
               ).fit(split.train, valid=split.valid)
    assert "valid_ndcg@10" in f.members_[1].history_[0]


def test_save_load_round_trip(split, tmp_path):
    f = Fusion(members="ease,itemknn", method="rrf").fit(split.train, valid=split.valid)
    f.save(tmp_path / "fusion")
    with np.load(tmp_path / "fusion" / "state.npz", allow_pickle=False) as z:
        assert {"members_json", "weights", "m0.weights"} <= set(z.files)
        assert all(z[k].dtype != object for k in z.files)
    loaded = Recommender.load(tmp_path / "fusion")
    assert isinstance(loaded, Fusion) and loaded.get_params() == f.get_params()
    assert [type(m) for m in loaded.members_] == [type(m) for m in f.members_]
    assert [(m.n_items_, m.n_users_) for m in loaded.members_] == [(f.n_items_, f.n_users_)] * 2
    np.testing.assert_array_equal(loaded.weights_, f.weights_)
    h = split.test.histories
    np.testing.assert_array_equal(loaded.score(h), f.score(h))
    np.testing.assert_array_equal(loaded.recommend(h, k=10)[0], f.recommend(h, k=10)[0])


@pytest.mark.parametrize("bad", [{"method": "mean"}, {"norm": "rank"}, {"weights": "1"},
                                 {"weights": "1,-1"}, {"weights": "a,b"}, {"members": ""},
                                 {"member_params": '{"als": {}}'}, {"rrf_k": -1}])
def test_invalid_params(bad, split):
    with pytest.raises(ValueError):
        Fusion(**bad).fit(split.train)


def test_unknown_member_is_a_key_error(split):
    with pytest.raises(KeyError):
        Fusion(members="ease,nosuchmodel").fit(split.train)


def test_split_models():
    assert split_models("ease, itemknn") == ["ease", "itemknn"]
    assert split_models("pop,fusion(ease,itemknn),bpr") == ["pop", "fusion(ease,itemknn)", "bpr"]
    assert split_models("fusion(ease(reg=5),fusion(pop,bpr)), ,als") == [
        "fusion(ease(reg=5),fusion(pop,bpr))", "als"]
    assert split_models("") == []
    assert split_models('fusion(a,weights="1,2"),b') == ['fusion(a,weights="1,2")', "b"]
    for bad in ("fusion(ease", "ease)", "a),(b", "f(a]", 'f(w="1,2)'):
        with pytest.raises(ValueError):
            split_models(bad)


def test_parse_model_spec():
    assert parse_model_spec("ease") == ("ease", {})
    assert parse_model_spec(" fusion(ease,itemknn) ") == ("fusion", {"members": "ease,itemknn"})
    assert parse_model_spec("ease(reg=500)") == ("ease", {"reg": 500})
    assert parse_model_spec('fusion(ease(reg=5),itemknn,method=rrf,weights="0.3,0.7")') == (
        "fusion", {"members": "ease(reg=5),itemknn", "method": "rrf", "weights": "0.3,0.7"})
    assert parse_model_spec("fusion(ease,pop,weights='1,2',member_params={\"ease\": {\"reg\": 5}})"
                            ) == ("fusion", {"members": "ease,pop", "weights": "1,2",
                                             "member_params": {"ease": {"reg": 5}}})
    assert parse_model_spec("fusion(pop,fusion(ease,itemknn))") == (
        "fusion", {"members": "pop,fusion(ease,itemknn)"})
    name, params = parse_model_spec("fusion(ease,itemknn,method=rrf)")
    assert build_model(name, **params).get_params()["members"] == "ease,itemknn"
    for bad in ("", "fusion(ease", "fusion(ease)x", "(ease)", "ease)"):
        with pytest.raises(ValueError):
            parse_model_spec(bad)


def test_nested_fusion_member(split):
    h = Histories.from_lists([[0, 1, 2], []])
    f = Fusion(members="pop,fusion(ease,itemknn)", weights="0.5,0.5").fit(split.train)
    assert isinstance(f.members_[1], Fusion) and np.isfinite(f.score(h)).all()
