"""Prequential replay on a tiny synthetic stream: an item that only becomes popular in the
second half of time is found by fold-in, never by the static model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.online.replay import fit_first_part, make_stream, run_replay, write_results
from m6rec.registry import build_model

N_FIRST = 100


def _trend_stream():
    """First part: 20 users, 5 events each on items i0..i19 (each item 5 times). Later: 40 users
    (20 new) each meet the new item i29, then 20 of them i28; one repeat event."""
    rows, t = [], 0.0
    for u in range(20):
        for j in range(5):
            rows.append((f"u{u}", f"i{(u * 5 + j) % 20}", t))
            t += 1
    for u in range(40):
        rows.append((f"u{u}", "i29", t))
        t += 1
    for u in range(20, 40):
        rows.append((f"u{u}", "i28", t))
        t += 1
    rows.append(("u0", "i0", t))  # u0 met i0 in the first part: a repeat, never queried
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)],
                          "title": [f"item {i}" for i in range(30)]})
    ds = from_dataframe(inter, items=items, name="trend")
    return make_stream(ds, fraction=N_FIRST / len(inter))


@pytest.fixture(scope="module")
def stream():
    return _trend_stream()


def test_stream_cut(stream):
    assert stream.info["train_events"] == N_FIRST
    assert len(stream.later) == 61
    assert stream.train.item_counts()[stream.dataset.item_index("i29")] == 0


def test_foldin_beats_static_on_a_new_trend(stream):
    model, _ = fit_first_part(build_model("pop"), stream)
    before = model.score(stream.full)
    static = run_replay(model, stream, "static")
    online = run_replay(model, stream, "foldin:10")
    # the repeat is skipped, everything else queried, for both alike
    assert static["repeats_skipped"] == online["repeats_skipped"] == 1
    assert static["queries"] == online["queries"] == 60
    assert static["cold_user_queries"] == 20
    # static never ranks the new items (15 unseen items with counts outrank them)
    assert static["metrics"]["recall@10"] == 0.0
    assert online["updates"] == 6 and static["updates"] == 0
    # after its first chunk fold-in knows i29 (then i28) is the trend: all 30 later i29 queries
    # and the last 10 i28 queries hit (the first chunk of each is scored before any update)
    assert online["metrics"]["recall@10"] == pytest.approx(40 / 60)
    assert online["metrics"]["ndcg@10"] > static["metrics"]["ndcg@10"] + 0.5
    # the curve is cumulative, one point per chunk, and ends at the overall figure
    assert online["curve"]["events"] == [10, 20, 30, 40, 50, 60, 61]
    assert online["curve"]["ndcg@10"][0] == 0.0  # first chunk: same (static) weights
    assert online["curve"]["ndcg@10"][-1] == pytest.approx(online["metrics"]["ndcg@10"])
    # the model given is never modified
    np.testing.assert_array_equal(model.score(stream.full), before)


def test_sample_is_seeded_and_shared(stream):
    model, _ = fit_first_part(build_model("pop"), stream)
    a = run_replay(model, stream, "foldin:10", sample=15, seed=3)
    b = run_replay(model, stream, "foldin:10", sample=15, seed=3)
    c = run_replay(model, stream, "foldin:10", sample=15, seed=4)
    assert a["queries"] == b["queries"] == c["queries"] == 15
    assert a["metrics"] == b["metrics"] and a["curve"] == b["curve"]
    assert a["curve"]["queries"] != c["curve"]["queries"]  # another seed, other events


def test_write_results(stream, tmp_path):
    model, _ = fit_first_part(build_model("pop"), stream)
    res = run_replay(model, stream, "foldin:20")
    path = write_results(res, tmp_path / "out", command="m6rec replay ...")
    stored = json.loads(path.read_text())
    assert set(stored["metrics"]) == {"ndcg@10", "recall@10"}
    assert stored["policy"] == "foldin:20" and stored["command"] == "m6rec replay ..."
    assert (tmp_path / "out" / "curve.png").stat().st_size > 0


def test_policy_errors(stream):
    model, _ = fit_first_part(build_model("pop"), stream)
    with pytest.raises(ValueError, match="sequential"):
        run_replay(model, stream, "finetune:10")
    with pytest.raises(ValueError, match="policy"):
        run_replay(model, stream, "retrain")
