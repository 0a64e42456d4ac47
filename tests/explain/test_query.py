"""Text-query recommendation: turn weights, steering, request-only and personalised lists, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from m6rec.recommend import query_scores, recommend_for_user, steer, turn_weights
from m6rec.registry import build_model


def test_turn_weights_latest_most():
    w = turn_weights(3, 0.5)
    assert w.sum() == pytest.approx(1.0) and w[2] > w[1] > w[0]
    np.testing.assert_allclose(turn_weights(4, 1.0), 0.25)
    with pytest.raises(ValueError, match="query_decay"):
        turn_weights(2, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        turn_weights(0)


def test_steer_weight_moves_from_history_to_request(rng):
    user = rng.normal(size=(2, 30)).astype(np.float32)
    match = rng.normal(size=30).astype(np.float32)
    assert (np.argsort(-steer(user, match, 0.0), axis=1) == np.argsort(-user, axis=1)).all()
    far = steer(user, match, 1e6)
    assert (np.argmax(far, axis=1) == np.argmax(match)).all()
    with pytest.raises(ValueError, match="query_weight"):
        steer(user, match, -1.0)


def _parity(ds, ids):
    return [int(ds.item_ids[ds.item_index(i)][1:]) % 2 for i in ids]


def test_request_alone_finds_matching_items(checkerboard, tiny_m6):
    out = recommend_for_user(tiny_m6, checkerboard, None, k=10, query="odd item")
    assert out["strategy"] == "query"
    assert _parity(checkerboard, [it["item_id"] for it in out["items"]]) == [1] * 10


def test_request_steers_a_users_list(checkerboard, tiny_m6):
    """An even user asking for odd items: weight 0 keeps their (even) taste, a large weight
    follows the request."""
    own = recommend_for_user(tiny_m6, checkerboard, "u0", k=5, query="odd item",
                             query_weight=0.0)
    asked = recommend_for_user(tiny_m6, checkerboard, "u0", k=5, query="odd item",
                               query_weight=10.0, explain=True)
    assert own["strategy"] == asked["strategy"] == "history+query"
    assert _parity(checkerboard, [it["item_id"] for it in own["items"]])[0] == 0
    assert _parity(checkerboard, [it["item_id"] for it in asked["items"]]) == [1] * 5
    assert 'matches your request "odd item"' in asked["items"][0]["because"]
    hist = {str(checkerboard.item_ids[i])
            for i in checkerboard.histories(np.array([checkerboard.user_index("u0")])).row(0)}
    assert not hist & {it["item_id"] for it in asked["items"]}  # seen items stay out


def test_latest_turn_leads(checkerboard, tiny_m6):
    first_even = query_scores(tiny_m6, ["even item", "odd item"], decay=0.3)
    first_odd = query_scores(tiny_m6, ["odd item", "even item"], decay=0.3)
    odd = np.array([int(i[1:]) % 2 == 1 for i in checkerboard.item_ids])
    assert first_even[odd].mean() > first_even[~odd].mean()
    assert first_odd[~odd].mean() > first_odd[odd].mean()


def test_query_needs_a_text_model(checkerboard):
    model = build_model("itemknn").fit(checkerboard)
    with pytest.raises(ValueError, match="text model"):
        recommend_for_user(model, checkerboard, "u0", query="odd item")
    with pytest.raises(ValueError, match="non-empty"):
        query_scores(model, ["  "])


def test_cli_recommend_query_and_explain(checkerboard, tiny_m6, tmp_path):
    from m6rec.cli import app
    from m6rec.models.io import save_model_dir

    inter, items = checkerboard.inter, checkerboard.items
    d = tmp_path / "data"
    d.mkdir()
    import pandas as pd

    pd.DataFrame({"user_id": checkerboard.user_ids[inter["user_idx"]],
                  "item_id": checkerboard.item_ids[inter["item_idx"]],
                  "timestamp": inter["timestamp"]}).to_csv(d / "interactions.csv", index=False)
    items.assign(item_id=checkerboard.item_ids).to_csv(d / "items.csv", index=False)
    model_dir = save_model_dir(tiny_m6, tmp_path / "m6", checkerboard)
    runner = CliRunner()
    spec = str(d)
    r = runner.invoke(app, ["recommend", "--model-dir", str(model_dir), "--data", spec,
                            "--user", "u0", "--query", "odd item", "--query-weight", "10",
                            "--explain", "--json", "-k", "3"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["strategy"] == "history+query" and len(out["items"]) == 3
    assert all("because" in it and "history" in it for it in out["items"])
    r = runner.invoke(app, ["recommend", "--model-dir", str(model_dir), "--data", spec])
    assert r.exit_code == 2 and "--user, --query" in r.output


def test_m6_user_vectors_and_text_encodings_match_its_scores(checkerboard, tiny_m6):
    h = checkerboard.histories(np.arange(4))
    np.testing.assert_allclose(tiny_m6.user_vectors(h) @ tiny_m6.item_vectors().T,
                               tiny_m6.score(h), rtol=1e-4, atol=1e-4)
    lm = tiny_m6.encode_texts(["odd item"], space="lm")
    assert lm.shape == (1, tiny_m6.item_text_.shape[1])
    item = tiny_m6.encode_texts(["odd item"], space="item")
    assert item.shape == (1, tiny_m6.hidden)
    with pytest.raises(ValueError, match="space"):
        tiny_m6.encode_texts(["x"], space="nope")


def test_explained_list_keeps_the_ranking_scores(ml100k):
    """``explain=True`` adds reasons; ``score`` stays the ranking score (sorted, and identical
    to the same request without explanations); the explainer's own number is apart."""
    from m6rec.eval.protocols import make_split

    split = make_split(ml100k, "loo")
    model = build_model("ease", reg=250.0).fit(split.train)
    plain = recommend_for_user(model, ml100k, "1", k=10)
    explained = recommend_for_user(model, ml100k, "1", k=10, explain=True)
    scores = [it["score"] for it in explained["items"]]
    assert [it["item_id"] for it in explained["items"]] == [it["item_id"] for it in plain["items"]]
    assert scores == [it["score"] for it in plain["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all("explained_score" in it and it["because"] for it in explained["items"])
