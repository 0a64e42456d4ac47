"""``m6rec encode`` and ``m6rec batch-recommend`` in one process (the Ray paths are in
test_ray.py)."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from m6rec.cli import app


def test_encode_then_everything_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("M6REC_CACHE_DIR", str(tmp_path))
    args = ["encode", "--data", "ml-100k", "--encoder", "hashing:16"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    got = json.loads(first.stdout)
    assert got["texts"] == 1682 + 943 and got["hits"] == 0 and got["dim"] == 16
    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert again["hits"] == again["texts"] and again["encoded"] == 0


def test_batch_recommend_writes_every_users_top_k(tmp_path, ml100k):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", "ml-100k", "--model", "pop", "--out",
                              str(tmp_path / "pop"), "--protocol", "all"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "top.parquet"
    res = runner.invoke(app, ["batch-recommend", "--model-dir", str(tmp_path / "pop"), "--data",
                              "ml-100k", "--out", str(out), "-k", "5"])
    assert res.exit_code == 0, res.output
    frame = pd.read_parquet(out)
    assert len(frame) == 5 * ml100k.n_users and list(frame["rank"][:5]) == [1, 2, 3, 4, 5]
    u = ml100k.user_index(frame["user_id"][0])
    seen = set(ml100k.item_ids[ml100k.histories([u]).row(0)].astype(str))
    assert not seen & set(frame["item_id"][:5])
    assert (frame.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    bad = runner.invoke(app, ["batch-recommend", "--model-dir", str(tmp_path / "pop"), "--data",
                              "ml-100k", "--out", str(tmp_path / "top.csv")])
    assert bad.exit_code == 2 and ".parquet" in bad.output
