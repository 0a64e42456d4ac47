"""Compression of m6: frozen form, int8 / fp16, pruning, distillation, ONNX (no torch needed),
and `m6rec compress`. A tiny m6 (hashing encoder) on the checkerboard, trained once with the
defaults (GRU tower, EASE teacher, long-term term), and once with the Transformer tower."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.models.io import load_model_dir, save_model_dir
from m6rec.registry import build_model

TEACHER = {"encoder": "hashing:64", "hidden": 16, "inner": 16, "epochs": 30, "lr": 1e-2,
           "batch_size": 32, "device": "cpu"}
TRANSFORMER = {**TEACHER, "tower": "transformer", "n_layers": 2, "long_term": 0,
               "teacher_weight": 0.0}


@pytest.fixture(scope="module")
def teacher(checkerboard):
    return build_model("m6", **TEACHER).fit(checkerboard)


@pytest.fixture(scope="module")
def transformer(checkerboard):
    return build_model("m6", **TRANSFORMER).fit(checkerboard)


@pytest.fixture(scope="module")
def teacher_dir(teacher, checkerboard, tmp_path_factory):
    d = tmp_path_factory.mktemp("m6") / "teacher"
    save_model_dir(teacher, d, checkerboard, data_spec="", protocol="loo")
    return d


def _expected(ds):
    return np.array([ds.item_index("i" + ds.user_ids[u][1:]) for u in range(ds.n_users)])


def _top1(model, ds):
    return float((model.recommend(ds.histories(), k=1)[0][:, 0] == _expected(ds)).mean())


def _compact(teacher, ds, **kw):
    return build_model("m6-compact", **kw).compress(teacher, ds)


@pytest.mark.parametrize("tower", ["gru", "transformer"])
def test_frozen_form_scores_like_m6(tower, teacher, transformer, checkerboard):
    model = teacher if tower == "gru" else transformer
    assert (model.tower, bool(model.long_term)) == (tower, tower == "gru")
    h = checkerboard.histories()
    c = _compact(model, checkerboard)
    np.testing.assert_allclose(c.score(h), model.score(h), rtol=1e-5, atol=1e-5)
    unknown = Histories(h.indptr, h.items, np.full(len(h), -1, dtype=np.int64))
    np.testing.assert_allclose(c.score(unknown), model.score(unknown), rtol=1e-5, atol=1e-5)


def test_frozen_form_reads_the_long_term_history(teacher, checkerboard):
    """Histories longer than max_len: the items before the window change the scores (the
    long-term term), in the frozen form exactly as in the model."""
    m = build_model("m6", **{**TEACHER, "epochs": 2, "max_len": 3, "long_term": 5})
    m.fit(checkerboard)
    import torch

    with torch.no_grad():
        m.module_.lt_proj.weight.normal_()  # trained from zero: make the term visible
    h = checkerboard.histories()
    assert h.lengths.max() > 3
    c = _compact(m, checkerboard)
    np.testing.assert_allclose(c.score(h), m.score(h), rtol=1e-5, atol=1e-5)
    assert not np.allclose(c.score(h.last(3)), c.score(h))  # the older items count
    o = build_model("m6-onnx").export(m)
    np.testing.assert_allclose(o.score(h), m.score(h), atol=1e-4, rtol=0)


def test_int8_stores_int8_and_keeps_ranking(teacher, checkerboard, tmp_path):
    from torch.ao.nn.quantized import dynamic as nnqd

    c = _compact(teacher, checkerboard, table_dtype="int8", encoder_dtype="int8")
    layers = [m for m in c.module_.modules() if isinstance(m, nnqd.Linear)]
    assert layers, "no linear layer was quantised"
    c.save(tmp_path / "q")
    full = _compact(teacher, checkerboard).save(tmp_path / "f")
    with np.load(tmp_path / "q" / "state.npz") as z:
        assert z["q.table"].dtype == np.int8 and z["q.gru_out.weight"].dtype == np.int8
    def weight_bytes(d):
        with np.load(d / "state.npz") as z:
            return sum(z[k].nbytes for k in z.files if k != "arch")

    assert weight_bytes(tmp_path / "q") < 0.6 * weight_bytes(full)  # fp32 biases, norms
    h = checkerboard.histories()
    s, t = c.score(h), teacher.score(h)
    assert not np.array_equal(s, t)  # really quantised
    assert np.corrcoef(s.ravel(), t.ravel())[0, 1] > 0.99
    assert _top1(c, checkerboard) == _top1(teacher, checkerboard) == 1.0
    loaded = Recommender.load(tmp_path / "q")
    np.testing.assert_array_equal(loaded.score(h), s)


def test_fp16_tables(teacher, checkerboard, tmp_path):
    _compact(teacher, checkerboard, table_dtype="fp16").save(tmp_path / "h")
    with np.load(tmp_path / "h" / "state.npz") as z:
        assert z["h.table"].dtype == np.float16 and "w.table" not in z.files


# (the toy GRU tower keeps top-1 0.7 at 80% sparsity after 3 epochs: tested at 50%)
@pytest.mark.parametrize(("sparsity", "tower"), [(0.5, "gru"), (0.8, "transformer")])
def test_pruning_reaches_sparsity_and_stays_sparse(teacher, transformer, checkerboard,
                                                   sparsity, tower, tmp_path):
    from m6rec.compress.compact import prunable_all

    model = teacher if tower == "gru" else transformer
    c = _compact(model, checkerboard, sparsity=sparsity, epochs=3, lr=1e-2)
    params = dict(c.module_.named_parameters())
    names = prunable_all(c.module_)
    zeros = sum(int((params[n] == 0).sum()) for n in names)
    total = sum(params[n].numel() for n in names)
    assert zeros / total >= sparsity - 1e-3  # fine-tuning did not revive pruned weights
    c.save(tmp_path / "p")
    with np.load(tmp_path / "p" / "state.npz") as z:
        assert "c.table.data" in z.files and "w.table" not in z.files
        stored = sum(len(z[k]) for k in z.files if k.startswith("c.") and k.endswith(".data"))
        dense = sum(z[k].prod() for k in z.files if k.startswith("c.") and k.endswith(".shape"))
        assert stored <= (1 - sparsity) * dense + 1
    assert _top1(c, checkerboard) >= 0.9
    loaded = Recommender.load(tmp_path / "p")
    np.testing.assert_array_equal(loaded.score(checkerboard.histories()),
                                  c.score(checkerboard.histories()))


def test_distilled_student_is_smaller_and_learns(transformer, checkerboard):
    from m6rec.compress.frozen import freeze, n_parameters

    teacher = transformer
    c = _compact(teacher, checkerboard, student="width=8,n_layers=1,inner=8,n_heads=1",
                 epochs=20, lr=1e-2)
    assert c.arch_["width"] == 8 and c.arch_["n_layers"] == 1
    encoder = n_parameters(c.module_) - c.module_.table.numel() - c.module_.profile_vecs.numel()
    full = freeze(teacher)
    assert encoder < (n_parameters(full) - full.table.numel() - full.profile_vecs.numel()) / 3
    assert _top1(c, checkerboard) >= 0.9


@pytest.mark.parametrize("tune", [True, False])
def test_student_tunes_its_copy_of_the_tables_only_when_asked(teacher, checkerboard, tune):
    from m6rec.compress.frozen import freeze

    c = _compact(teacher, checkerboard, student="width=8,n_layers=1,inner=8,n_heads=1",
                 epochs=3, lr=1e-2, tune_tables=tune)
    full = freeze(teacher)
    same = [bool(torch_equal(c.module_.table, full.table)),
            bool(torch_equal(c.module_.profile_vecs, full.profile_vecs))]
    assert same == [not tune, not tune]
    assert bool(torch_equal(freeze(teacher).table, full.table))  # the teacher is untouched


def torch_equal(a, b) -> bool:
    return bool((a.detach() == b.detach()).all())


@pytest.mark.parametrize("spec", ["width=0", "depth=2", "width=6,n_heads=4", "width=x"])
def test_bad_student_spec(teacher, checkerboard, spec):
    with pytest.raises(ValueError, match="student"):
        _compact(teacher, checkerboard, student=spec)


def test_bad_params_rejected(teacher, checkerboard):
    for kw in ({"table_dtype": "int4"}, {"encoder_dtype": "fp16"}, {"sparsity": 1.0},
               {"sparsity": 0.5, "table_dtype": "int8"}):
        with pytest.raises(ValueError):
            _compact(teacher, checkerboard, **kw)


def test_onnx_equals_torch_and_runs_without_torch(teacher, checkerboard, tmp_path):
    h = checkerboard.histories()
    o = build_model("m6-onnx").export(teacher)
    np.testing.assert_allclose(o.score(h), teacher.score(h), atol=1e-4, rtol=0)
    one = h.take([3])
    np.testing.assert_allclose(o.score(one), teacher.score(one), atol=1e-4, rtol=0)
    d = tmp_path / "onnx"
    o.save(d)
    np.save(tmp_path / "expected.npy", teacher.score(h))
    np.savez(tmp_path / "h.npz", indptr=h.indptr, items=h.items, users=h.users,
             timestamps=h.timestamps)
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from m6rec.data.histories import Histories
        from m6rec.models.base import Recommender
        m = Recommender.load({str(d)!r})
        z = np.load({str(tmp_path / "h.npz")!r})
        s = m.score(Histories(z["indptr"], z["items"], z["users"], z["timestamps"]))
        np.testing.assert_allclose(s, np.load({str(tmp_path / "expected.npy")!r}), atol=1e-4)
        assert type(m).__name__ == "OnnxM6"
        assert "torch" not in sys.modules, "torch was imported"
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_onnx_of_a_distilled_student(teacher, checkerboard):
    c = _compact(teacher, checkerboard, student="width=8,n_layers=1,inner=8,n_heads=1", epochs=2)
    o = build_model("m6-onnx").export(c)
    h = checkerboard.histories()
    np.testing.assert_allclose(o.score(h), c.score(h), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="ONNX"):
        build_model("m6-onnx").export(_compact(teacher, checkerboard, encoder_dtype="int8"))


def test_compress_dir_and_cli(teacher_dir, checkerboard, tmp_path):
    from typer.testing import CliRunner

    from m6rec.cli import app
    from m6rec.compress.run import compress_dir

    out = tmp_path / "int8"
    r = CliRunner().invoke(app, ["compress", "--model-dir", str(teacher_dir), "--method", "int8",
                                 "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    model, meta = load_model_dir(out, checkerboard)
    assert model.name == "m6-compact" and model.table_dtype == "int8"
    assert json.loads((out / "meta.json").read_text())["method"] == "int8"
    assert _top1(model, checkerboard) == 1.0
    model, _ = compress_dir(teacher_dir, "prune:0.5", tmp_path / "p", {"epochs": 1},
                            data=checkerboard)
    assert model.sparsity == 0.5 and load_model_dir(tmp_path / "p", checkerboard)[0]
    r = CliRunner().invoke(app, ["compress", "--model-dir", str(teacher_dir), "--method",
                                 "prune:2", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "sparsity" in r.output


def test_default_student_fits_the_2m_budget_on_ml100k():
    from m6rec.compress.distill import student_arch
    from m6rec.compress.frozen import FrozenM6, n_parameters
    from m6rec.compress.run import parse_method

    name, kw = parse_method("distill")
    assert name == "m6-compact" and kw["epochs"] >= 50 and kw["patience"] >= 5
    teacher = {"n_items": 1682, "n_users": 943, "hidden": 64, "width": 64, "max_len": 50,
               "tower": "gru", "n_layers": 1, "n_heads": 2, "inner": 128, "long_term": 200,
               "n_events": 2, "use_time": True, "use_events": True,
               "use_profile": True}  # the m6 defaults on ml-100k
    student = n_parameters(FrozenM6(student_arch(teacher, kw["student"])))
    assert student <= 2_000_000
    assert student < n_parameters(FrozenM6(teacher))
    assert parse_method("distill:width=32")[1]["student"] == "width=32"


@pytest.mark.parametrize("method", ["int4", "prune:abc", "onnx:1", "fp16-index:3"])
def test_bad_methods(method):
    from m6rec.compress.run import parse_method

    with pytest.raises(ValueError, match="method"):
        parse_method(method)
