"""The PyArrow fast paths (CSV reading, numbers, ids, tie sorting) build exactly the dataset the
general path builds, and hand anything unusual to the general path with its exact errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.data import DataError, load_files
from m6rec.data import loaders as L
from m6rec.data.synthetic import generate


def _both(path, monkeypatch, **kw):
    fast = load_files(path, **kw)
    with monkeypatch.context() as m:
        m.setattr(L, "_read_csv_arrow", lambda raw, sep: None)
        slow = load_files(path, **kw)
    return fast, slow


def _same(a, b):
    pd.testing.assert_frame_equal(a.inter, b.inter)
    assert list(a.user_ids) == list(b.user_ids) and list(a.item_ids) == list(b.item_ids)
    pd.testing.assert_frame_equal(a.items, b.items)


@pytest.mark.parametrize("tie_break", ["hash", "file", "hash:s"])
def test_arrow_csv_equals_the_exact_reader_with_ties_and_spaces(tmp_path, monkeypatch, tie_break):
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"user_id": [f" u{x}" for x in rng.integers(0, 40, n)],
                       "item_id": [f"i{x} " for x in rng.integers(0, 200, n)],
                       "timestamp": rng.integers(0, 15, n).astype(str),
                       "rating": rng.integers(1, 6, n).astype(str)})
    df.to_csv(tmp_path / "t.csv", index=False)
    assert L._read_csv_arrow((tmp_path / "t.csv").read_bytes(), ",") is not None
    fast, slow = _both(tmp_path / "t.csv", monkeypatch, tie_break=tie_break)
    _same(fast, slow)


def test_synthetic_log_csv_and_parquet_load_the_same(tmp_path, monkeypatch):
    inter, items = generate(5000, 400, seed=3)
    inter.to_csv(tmp_path / "i.csv", index=False)
    inter.to_parquet(tmp_path / "i.parquet", index=False)
    items.to_csv(tmp_path / "items.csv", index=False)
    fast, slow = _both(tmp_path / "i.csv", monkeypatch, items=tmp_path / "items.csv")
    _same(fast, slow)
    pq = load_files(tmp_path / "i.parquet", items=tmp_path / "items.csv")
    _same(pq, fast)
    assert fast.n_interactions == 5000 and fast.n_items == 400


@pytest.mark.parametrize("body, problem, line", [
    ("u1,i1,5\nu2,i2\n", "expected 3 fields", 3),
    ("u1,i1,5\nu2,,6\n", "empty item_id", 3),
    ("u1,i1,5\nu2,i2,soon\n", "unparsable timestamp 'soon'", 3),
    ("u1,i1,5\n\nu2,i2,x\n", "unparsable timestamp 'x'", 4),  # blank line: exact reader
    ("u1,i1,5\nu2,i2,inf\n", "timestamp must be finite", 3),
    ("u1,i1,5\nu2,i9,6\n", "unknown item id 'i9'", 3),
])
def test_errors_still_name_the_line(tmp_path, body, problem, line):
    (tmp_path / "i.csv").write_text("user_id,item_id,timestamp\n" + body)
    (tmp_path / "items.csv").write_text("item_id,title\ni1,a\ni2,b\n")
    with pytest.raises(DataError, match=problem) as e:
        load_files(tmp_path / "i.csv", items=tmp_path / "items.csv")
    assert f"line {line}" in str(e.value)
