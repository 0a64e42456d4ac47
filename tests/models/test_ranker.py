"""The DIN ranker: candidates stay on top, it fixes a wrong retriever, weights and persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.eval.evaluate import evaluate
from m6rec.eval.protocols import EvalSet
from m6rec.models.base import Recommender
from m6rec.registry import build_model
from synthetic_data import checkerboard_frames

FAST = {"hidden": 16, "att_hidden": 8, "mlp_hidden": 16, "epochs": 15, "lr": 1e-2,
        "batch_size": 64, "per_user": 10}


@pytest.fixture(scope="module")
def odd_popular():
    """The checkerboard plus 10 users who take every odd item: popularity is wrong for the
    even users, whose withheld item (even) sits below every odd item in `pop`'s order."""
    inter, items = checkerboard_frames()
    extra = [(f"fan{f}", f"i{i}", 10_000.0 + 100 * f + i) for f in range(10) for i in range(1, 50, 2)]
    inter = pd.concat([inter, pd.DataFrame(extra, columns=inter.columns)], ignore_index=True)
    return from_dataframe(inter, items=items, name="odd-popular")


def withheld_set(ds, step: int = 1) -> EvalSet:
    """Checkerboard users u0, u_step, ... with their history and their withheld item as target."""
    import scipy.sparse as sp

    users = np.array([ds.user_index(f"u{u}") for u in range(0, 50, step)])
    targets = np.array([ds.item_index(f"i{u}") for u in range(0, 50, step)])
    n = len(users)
    t = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), targets)), shape=(n, ds.n_items))
    return EvalSet(users=users, histories=ds.histories(users), targets=t)


@pytest.fixture(scope="module")
def fitted(odd_popular):
    return build_model("ranker", retriever="pop", n_candidates=30, **FAST).fit(odd_popular)


def test_candidates_stay_on_top_in_retriever_order_below(fitted, odd_popular):
    h = odd_popular.histories()
    ids, _ = fitted.recommend(h, k=odd_popular.n_items)
    r_ids, _ = fitted.retriever_.recommend(h, k=odd_popular.n_items)
    for u in range(len(h)):
        n = min(30, int((r_ids[u] >= 0).sum()))
        assert set(ids[u, :n]) == set(r_ids[u, :n])  # re-ordered, never replaced
        np.testing.assert_array_equal(ids[u, n:], r_ids[u, n:])  # the rest: retriever order


def test_ranker_beats_a_wrong_retriever(fitted, odd_popular):
    es = withheld_set(odd_popular, step=2)  # the even users: popularity points them to odd items
    pop = evaluate(fitted.retriever_, es, ks=(10,), metrics=("ndcg",), beyond_accuracy=False)
    ranked = evaluate(fitted, es, ks=(10,), metrics=("ndcg",), beyond_accuracy=False)
    assert pop["ndcg@10"] == 0.0
    assert ranked["ndcg@10"] > 0.9
    assert ranked["ndcg@10"] > pop["ndcg@10"] + 0.5


def test_retriever_weight_one_is_the_retriever(fitted, odd_popular):
    h = odd_popular.histories()
    fitted.retriever_weight_, saved = 1.0, fitted.retriever_weight_
    try:
        ids, _ = fitted.recommend(h, k=30)
    finally:
        fitted.retriever_weight_ = saved
    r_ids, _ = fitted.retriever_.recommend(h, k=30)
    np.testing.assert_array_equal(ids, r_ids)


def test_weight_chosen_on_validation(odd_popular):
    es = withheld_set(odd_popular)
    m = build_model("ranker", retriever="pop", n_candidates=30, **FAST).fit(odd_popular, valid=es)
    assert [g["retriever_weight"] for g in m.grid_] == pytest.approx(np.linspace(0, 1, 11))
    best = max(g["valid_ndcg@10"] for g in m.grid_)
    chosen = next(g for g in m.grid_ if g["retriever_weight"] == m.retriever_weight_)
    assert chosen["valid_ndcg@10"] == best
    assert m.retriever_weight_ < 1.0  # the ranker is better than popularity here


def test_retriever_from_a_saved_directory_and_round_trip(odd_popular, tmp_path):
    from m6rec.models.io import save_model_dir

    ease = build_model("ease").fit(odd_popular)
    save_model_dir(ease, tmp_path / "ease", odd_popular)
    m = build_model("ranker", retriever=str(tmp_path / "ease"), n_candidates=20,
                    **FAST).fit(odd_popular)
    h = odd_popular.histories()
    np.testing.assert_allclose(m.retriever_.score(h), ease.score(h), rtol=1e-6)
    m.save(tmp_path / "ranker")
    back = Recommender.load(tmp_path / "ranker")
    np.testing.assert_allclose(back.score(h), m.score(h), rtol=1e-5, atol=1e-6)
    assert back.retriever_weight_ == m.retriever_weight_


@pytest.mark.parametrize("params, match", [
    ({"retriever_weight": 2}, "retriever_weight"), ({"retriever_weight": "x"}, "retriever_weight"),
    ({"n_hard": 0, "n_random": 0}, "negatives"), ({"retriever": "ranker"}, "own retriever"),
    ({"retriever": "nope"}, "unknown model"), ({"n_candidates": 0}, "n_candidates")])
def test_bad_params(params, match, checkerboard):
    with pytest.raises((ValueError, KeyError), match=match):
        build_model("ranker", **params).fit(checkerboard)


def test_cli_retriever_option(tmp_path):
    import json

    from typer.testing import CliRunner

    from m6rec.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", "ml-100k", "--model", "ranker", "--retriever",
                              "pop", "--out", str(tmp_path / "r"), "--param", "epochs=1",
                              "--param", "per_user=1", "--param", "hidden=8",
                              "--param", "max_len=5", "--param", "n_candidates=20",
                              "--param", "device=cpu", "--protocol", "all"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["params"]["retriever"] == "pop"
    res = runner.invoke(app, ["train", "--data", "ml-100k", "--model", "ease", "--retriever",
                              "pop", "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "ranker model only" in res.output
