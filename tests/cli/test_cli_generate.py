"""The CLI's generative commands end to end on ml-100k with the tiny stand-in LM:
``recommend --explain --phrasing lm``, ``describe`` and ``chat`` (messages on stdin)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from m6rec.cli import app
from m6rec.text.generate import tiny_model

runner = CliRunner()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen-cli")
    small = ["--param", "encoder=hashing:32", "--param", "hidden=16", "--param", "max_len=10",
             "--param", "epochs=1", "--param", "inner=16"]
    r = runner.invoke(app, ["train", "--data", "ml-100k", "--model", "m6", *small, "--out",
                            str(tmp / "m6")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return tmp / "m6", tiny_model(tmp / "tiny")


def test_recommend_phrasing_lm(dirs):
    model, gen = dirs
    r = runner.invoke(app, ["recommend", "--model-dir", str(model), "--user", "1", "-k", "3",
                            "--explain", "--phrasing", "lm", "--generator", str(gen), "--json"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    items = json.loads(r.stdout)["items"]
    assert len(items) == 3
    for it in items:
        lm = it["lm"]
        assert it["because"] == lm["text"] and isinstance(lm["replaced"], int)
        assert lm["replaced"] == 0 or it["sentence"] in lm["text"] or lm["violations"]


def test_describe_and_chat(dirs):
    model, gen = dirs
    r = runner.invoke(app, ["describe", "--model-dir", str(model), "--user", "1", "--item", "50",
                            "--generator", str(gen), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["item_id"] == "50" and res["pitch"]
    r = runner.invoke(app, ["chat", "--model-dir", str(model), "--user", "1", "-k", "3",
                            "--generator", str(gen), "--json"],
                      input="a scary horror film\nsomething funnier\n\n", catch_exceptions=False)
    assert r.exit_code == 0, r.output
    turns = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert len(turns) == 2 and all(len(t["items"]) == 3 for t in turns)
    # each message, then the catalogue category read in it
    assert turns[1]["queries"][::2] == ["a scary horror film", "something funnier"]
    assert all(q.startswith("a ") and q.endswith(" movie") for q in turns[1]["queries"][1::2])
    r = runner.invoke(app, ["chat", "--model-dir", str(model), "--generator", str(gen)],
                      input="an animated film\n")
    assert r.exit_code == 0 and "m6rec>" in r.stdout and "1." in r.stdout
    r = runner.invoke(app, ["chat", "--model-dir", str(model), "--generator", str(gen),
                            "--steer", "bad"], input="x\n")
    assert r.exit_code == 2 and "steer must be one of" in r.stderr
