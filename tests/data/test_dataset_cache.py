"""The on-disk dataset cache: reads back exactly what was loaded, follows edits of the source
files, and ignores what it cannot trust."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from m6rec.data import load_dataset
from m6rec.data.cache import load_cached, same, source_key


def folder(tmp_path, titles=("Alpha", "Beta", "Gamma")):
    d = tmp_path / "shop"
    d.mkdir(exist_ok=True)
    pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["a", "b", "b", "c"],
                  "timestamp": [1, 2, 3, 4]}).to_csv(d / "interactions.csv", index=False)
    pd.DataFrame({"item_id": ["a", "b", "c"], "title": list(titles),
                  "genres": ["x|y", "", "y"]}).to_csv(d / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u1", "u2"], "age": ["24", "53"]}).to_csv(d / "users.csv",
                                                                       index=False)
    return d


def test_reads_back_what_was_loaded_and_skips_parsing(tmp_path, monkeypatch):
    d, cache = folder(tmp_path), tmp_path / "cache"
    first = load_cached(str(d), directory=cache)
    same(load_dataset(str(d)), first)
    assert len(list(cache.iterdir())) == 1

    def no_parsing(*a, **k):
        raise AssertionError("parsed again")

    monkeypatch.setattr("m6rec.data.load_dataset", no_parsing)
    again = load_cached(str(d), directory=cache)
    same(first, again)
    assert again.titles().tolist() == ["Alpha", "Beta", "Gamma"]
    assert again.item_categories() == first.item_categories()
    assert (again.csr() != first.csr()).nnz == 0


def test_builtin_with_its_graph_round_trips(tmp_path):
    ds = load_cached("ml-100k", directory=tmp_path)
    cached = load_cached("ml-100k", directory=tmp_path)
    same(ds, cached)
    assert cached.kg is not None and cached.kg.n_entities == ds.kg.n_entities > 0


def test_an_edited_file_loads_afresh(tmp_path):
    d, cache = folder(tmp_path), tmp_path / "cache"
    key = source_key(str(d), "hash")
    load_cached(str(d), directory=cache)
    folder(tmp_path, titles=("Alpha", "Beta", "Delta"))
    st = (d / "items.csv").stat()
    os.utime(d / "items.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert source_key(str(d), "hash") != key
    assert load_cached(str(d), directory=cache).titles().tolist()[-1] == "Delta"
    assert source_key(str(d), "file") != source_key(str(d), "hash")


def test_a_corrupt_entry_is_ignored(tmp_path, caplog):
    d, cache = folder(tmp_path), tmp_path / "cache"
    load_cached(str(d), directory=cache)
    entry = cache / source_key(str(d), "hash")
    (entry / "arrays.npz").write_bytes(b"not an archive")
    got = load_cached(str(d), directory=cache)
    same(load_dataset(str(d)), got)
    assert "ignored" in caplog.text


def test_no_key_without_files():
    assert source_key("/nonexistent/folder/data.csv", "hash") is None
    with pytest.raises(Exception, match="no such dataset"):
        load_cached("/nonexistent/folder/data.csv")
