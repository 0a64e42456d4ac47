"""The CLI end to end on the built-in data, and its one-line errors (exit code 2)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from m6rec.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_datasets_lists_builtin():
    r = run("datasets")
    assert r.exit_code == 0 and "ml-100k" in r.stdout and "1682" in r.stdout


def test_train_evaluate_recommend(tmp_path):
    d = tmp_path / "ease"
    r = run("train", "--data", "ml-100k", "--model", "ease", "--param", "reg=300", "--out", str(d))
    assert r.exit_code == 0, r.output
    assert json.loads((d / "config.json").read_text())["params"]["reg"] == 300
    r = run("evaluate", "--model-dir", str(d), "--data", "ml-100k", "--protocol", "loo", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["dataset"] == "ml-100k" and out["protocol"] == "loo"
    for key in ("ndcg@10", "recall@10", "mrr@10", "hit@10", "ndcg@20", "recall@20"):
        assert 0.0 <= out["metrics"][key] <= 1.0
    assert out["metrics"]["ndcg@10"] > 0.05
    r = run("recommend", "--model-dir", str(d), "--data", "ml-100k", "--user", "1", "-k", "5",
            "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["user_id"] == "1" and len(rec["items"]) == 5
    assert {"item_id", "score", "title"} <= set(rec["items"][0])
    scores = [it["score"] for it in rec["items"]]
    assert scores == sorted(scores, reverse=True)


def test_benchmark_json_and_report(tmp_path):
    r = run("benchmark", "--data", "ml-100k", "--models", "pop,itemknn", "--protocol", "loo",
            "--out", str(tmp_path), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["dataset"] == "ml-100k" and set(out["models"]) == {"pop", "itemknn"}
    m = out["models"]["itemknn"]
    assert set(m["metrics"]) == {"ndcg@10", "recall@10", "mrr@10", "hit@10", "ndcg@20",
                                 "recall@20"}
    assert m["fit_seconds"] >= 0
    assert m["metrics"]["ndcg@10"] > out["models"]["pop"]["metrics"]["ndcg@10"]
    for f in ("report.md", "results.json", "metrics_loo.png"):
        assert (tmp_path / f).is_file()


@pytest.mark.parametrize("args, needle", [
    (["train", "--data", "ml-100k", "--model", "nope", "--out", "x"], "unknown model"),
    (["train", "--data", "no/such/path", "--model", "pop", "--out", "x"], "no such dataset"),
    (["train", "--data", "ml-100k", "--model", "ease", "--param", "reg", "--out", "x"],
     "expected key=value"),
    (["train", "--data", "ml-100k", "--model", "ease", "--param", "alpha=1", "--out", "x"],
     "has no parameter"),
    (["benchmark", "--data", "ml-100k", "--models", "pop", "--protocol", "bogus"], "protocol"),
    (["evaluate", "--model-dir", "/nonexistent", "--data", "ml-100k"], "not a model directory"),
    (["train", "--data", "ml-100k", "--model", "m6", "--adapt-only", "--out", "x"],
     "--adapt-only needs --init"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle, tmp_path):
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert needle in err and "Traceback" not in r.output
    assert len(err.splitlines()) == 1


def test_recommend_unknown_user(tmp_path):
    d = tmp_path / "pop"
    assert run("train", "--data", "ml-100k", "--model", "pop", "--out", str(d)).exit_code == 0
    r = runner.invoke(app, ["recommend", "--model-dir", str(d), "--data", "ml-100k",
                            "--user", "nobody"])
    assert r.exit_code == 2 and "unknown user id 'nobody'" in r.stderr


def test_train_init_adapt_only_reports_trainable_fraction(tmp_path):
    # no EASE teacher (training only, not what is checked here): it is most of a fit's cost
    small = ["--param", "encoder=hashing:32", "--param", "hidden=16", "--param", "max_len=10",
             "--param", "epochs=1", "--param", "text_only=true", "--param", "inner=16",
             "--param", "teacher_weight=0"]
    base = tmp_path / "base"
    r = run("train", "--data", "ml-100k", "--model", "m6", *small, "--out", str(base))
    assert r.exit_code == 0, r.output
    adapted = tmp_path / "adapted"
    r = run("train", "--data", "ml-100k", "--model", "m6", "--param", "epochs=1",
            "--param", "teacher_weight=0", "--init", str(base), "--adapt-only",
            "--out", str(adapted))
    assert r.exit_code == 0, r.output
    assert "trainable parameters:" in r.output
    params = json.loads((adapted / "config.json").read_text())["params"]
    assert params["adapt_only"] is True and params["init"] == str(base)
    assert params["encoder"] == "hashing:32"  # the architecture comes from --init


def _domain(root, name, words, n_users=6):
    """A tiny domain folder (interactions.csv + items.csv): user u reads words u..u+3."""
    d = root / name
    d.mkdir(parents=True)
    rows = [f"u{u},{name[0]}{(u + k) % len(words)},{k}" for u in range(n_users) for k in range(4)]
    (d / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    items = [f"{name[0]}{i},{w}" for i, w in enumerate(words)]
    (d / "items.csv").write_text("item_id,title\n" + "\n".join(items) + "\n")
    return d


def test_train_on_several_domains_then_zero_shot(tmp_path):
    a = _domain(tmp_path, "apples", ["red apple", "green apple", "apple pie", "apple juice",
                                     "cider", "apple tart"])
    b = _domain(tmp_path, "books", ["crime novel", "poetry", "history book", "cook book",
                                    "atlas", "comic"])
    c = _domain(tmp_path, "cars", ["red car", "blue car", "old car", "race car", "van"])
    out = tmp_path / "m6"
    r = run("train", "--data", f"{a},{b}", "--model", "m6", "--param", "encoder=hashing:32",
            "--param", "text_only=true", "--param", "hidden=16", "--param", "inner=16",
            "--param", "max_len=5", "--param", "epochs=1", "--out", str(out))
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_items"] == 12 and meta["dataset"] == "apples+books"
    r = run("evaluate", "--model-dir", str(out), "--data", str(c), "--json")  # a new catalogue
    assert r.exit_code == 0, r.output
    assert 0.0 <= json.loads(r.stdout)["metrics"]["ndcg@10"] <= 1.0
    r = runner.invoke(app, ["train", "--data", f"{a},{b}", "--model", "ease", "--out", "x"])
    assert r.exit_code == 2 and "read item text" in r.stderr


def test_zero_shot_textsim_counts_only_the_training_part(tmp_path):
    """`evaluate` binds a text model to the protocol's training part: a popularity prior read
    from the new catalogue's log never sees the test items."""
    from m6rec.data import load_dataset
    from m6rec.eval.evaluate import evaluate_split
    from m6rec.eval.protocols import make_split
    from m6rec.registry import build_model

    a = _domain(tmp_path, "apples", ["red apple", "green apple", "apple pie", "apple juice",
                                     "cider", "apple tart"])
    c = _domain(tmp_path, "cars", ["red car", "blue car", "old car", "race car", "van"],
                n_users=9)
    out = tmp_path / "ts"
    r = run("train", "--data", str(a), "--model", "textsim", "--param", "encoder=hashing:32",
            "--param", "pop_weight=5.0", "--out", str(out))
    assert r.exit_code == 0, r.output
    r = run("evaluate", "--model-dir", str(out), "--data", str(c), "--json")
    assert r.exit_code == 0, r.output
    split = make_split(load_dataset(c), "loo")
    got = json.loads(r.stdout)["metrics"]

    def ndcg(fitted_on):
        m = build_model("textsim", encoder="hashing:32", pop_weight=5.0).fit(fitted_on)
        return evaluate_split(m, split)["metrics"]["ndcg@10"]

    assert got["ndcg@10"] == pytest.approx(ndcg(split.train))
    assert ndcg(split.dataset) != pytest.approx(ndcg(split.train))  # counting test items shows


def test_pretrain_leaves_the_target_out_and_scores_it(tmp_path):
    a = _domain(tmp_path, "apples", ["red apple", "green apple", "apple pie", "apple juice",
                                     "cider", "apple tart"])
    b = _domain(tmp_path, "books", ["crime novel", "poetry", "history book", "cook book",
                                    "atlas", "comic"])
    c = _domain(tmp_path, "cars", ["red car", "blue car", "old car", "race car", "van"],
                n_users=9)
    out = tmp_path / "open"
    r = run("pretrain", "--data", f"{a},{b},{c}", "--exclude", "cars", "--param",
            "encoder=hashing:32", "--out", str(out))
    assert r.exit_code == 0, r.output
    info = json.loads((out / "pretrain.json").read_text())
    assert info["sources"] == ["apples", "books"] and info["left_out"] == ["cars"]
    assert len(info["grid"]) == 10 and info["cooc_weight"] in {g["cooc_weight"] for g in info["grid"]}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_items"] == 12  # the sources' catalogues only
    r = run("evaluate", "--model-dir", str(out), "--data", str(c), "--json")
    assert r.exit_code == 0, r.output
    assert 0.0 <= json.loads(r.stdout)["metrics"]["ndcg@10"] <= 1.0
    r = run("recommend", "--model-dir", str(out), "--data", str(c), "--user", "u1", "-k", "2",
            "--json")
    assert r.exit_code == 0, r.output
    items = json.loads(r.stdout)["items"]
    assert [it["item_id"] for it in items] == ["c0"]  # u1 has read the other four cars
    r = runner.invoke(app, ["pretrain", "--data", str(a), "--exclude", "nope", "--out", "x"])
    assert r.exit_code == 2 and "not among --data" in r.stderr
