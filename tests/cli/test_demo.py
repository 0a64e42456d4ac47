"""`m6rec demo`: m6 built at its defaults, beside the baselines, then top-10, request, serve hint.

m6 itself is shrunk here (hashing encoder, one epoch, no EASE teacher) by wrapping the registry,
so the test runs in seconds; the wrapper also records what the demo asked for, which must be the
defaults."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import m6rec.demo
import m6rec.registry
from m6rec.cli import app
from m6rec.models.io import load_model_dir

TINY = {"encoder": "hashing:32", "hidden": 16, "inner": 16, "max_len": 10,
        "epochs": 1, "device": "cpu", "teacher_weight": 0.0}


def test_demo_trains_m6_at_its_defaults_beside_baselines(monkeypatch, tmp_path, ml100k):
    asked = []
    build = m6rec.registry.build_model

    def shrunk(name, **params):
        if name == "m6":
            asked.append(dict(params))
            params = {**params, **TINY}
        return build(name, **params)

    monkeypatch.setattr(m6rec.registry, "build_model", shrunk)
    monkeypatch.setattr(m6rec.demo, "BASELINES", ("pop", "ease"))
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--user", "1"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert asked == [{"verbose": True}]  # nothing but progress output changed from the defaults
    text = res.output
    # stdout is not a terminal here: progress comes as plain log lines, one per epoch
    assert "m6 epoch 1:" in text and "fitting ease" in text
    for row in ("pop", "ease", "m6"):
        assert f" {row} " in text
    assert "top-10 for user 1" in text and "Because you" in text
    assert m6rec.demo.REQUEST in text and "top-10 for your request" in text
    assert f"m6rec serve --model-dir {out / 'model'}" in text
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["models"]) == {"pop", "ease", "m6"}
    model, meta = load_model_dir(out / "model", ml100k)
    assert model.name == "m6" and meta["data_spec"] == "ml-100k"
    # a second run finds the catalogue encoded: nothing left to encode
    again = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "again")],
                               catch_exceptions=False)
    assert again.exit_code == 0 and ", 0 encoded now" in again.output
