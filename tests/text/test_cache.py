"""The on-disk encoding cache: hits, misses, keys by encoder and text, corruption, concurrency."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from m6rec.text import EncodingCache, HashingEncoder, encode_cached, item_texts


class CountingEncoder(HashingEncoder):
    """A hashing encoder that records what it was asked to encode."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__(dim)
        self.seen: list[str] = []

    def encode(self, texts, batch_size=1024, show_progress=False):
        self.seen += list(texts)
        return super().encode(texts, batch_size, show_progress)


def _shards(directory: Path) -> list[Path]:
    return sorted((directory / "shards").rglob("*.npy"))


def test_miss_then_hit(tmp_path, ml100k):
    cache = EncodingCache(tmp_path)
    enc = CountingEncoder()
    texts = item_texts(ml100k)[:200]
    v1, hits, misses = encode_cached(enc, texts, cache)
    assert (hits, misses) == (0, 200) and len(enc.seen) == 200
    assert v1.dtype == np.float32 and v1.shape == (200, 32)
    np.testing.assert_array_equal(v1, enc.encode(texts))  # input order kept
    enc.seen.clear()
    v2, hits, misses = encode_cached(enc, texts, EncodingCache(tmp_path))  # a fresh reader
    assert (hits, misses) == (200, 0) and enc.seen == []
    np.testing.assert_array_equal(v1, v2)
    assert len(cache) == 200 and cache.encoders() == {enc.name: 200}


def test_changed_text_and_other_encoder_miss(tmp_path):
    cache = EncodingCache(tmp_path)
    enc = CountingEncoder()
    texts = ["Toy Story (1995)", "Heat (1995)", "Casino (1995)"]
    encode_cached(enc, texts, cache)
    enc.seen.clear()
    v, hits, misses = encode_cached(enc, ["Toy Story (1995)", "Heat (1996)", "Casino (1995)"], cache)
    assert (hits, misses) == (2, 1) and enc.seen == ["Heat (1996)"]
    np.testing.assert_array_equal(v, enc.encode(["Toy Story (1995)", "Heat (1996)", "Casino (1995)"]))
    other = CountingEncoder(dim=16)  # another name: nothing shared
    v, hits, misses = encode_cached(other, texts, cache)
    assert (hits, misses) == (0, 3) and v.shape == (3, 16)


def test_duplicates_are_encoded_once_and_empty_input(tmp_path):
    enc = CountingEncoder()
    v, hits, misses = encode_cached(enc, ["a", "b", "a", "a"], EncodingCache(tmp_path))
    assert (hits, misses) == (0, 4) and sorted(enc.seen) == ["a", "b"]
    np.testing.assert_array_equal(v[0], v[2])
    v, hits, misses = encode_cached(enc, [], EncodingCache(tmp_path))
    assert v.shape == (0, 32) and (hits, misses) == (0, 0)


def test_chunks_write_several_shards(tmp_path):
    enc = CountingEncoder()
    texts = [f"text {i}" for i in range(25)]
    v, _, misses = encode_cached(enc, texts, EncodingCache(tmp_path), chunk_size=10)
    assert misses == 25 and len(_shards(tmp_path)) == 3
    np.testing.assert_array_equal(v, enc.encode(texts))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_corrupt_shard_is_detected_and_reencoded(tmp_path, damage):
    enc = CountingEncoder()
    texts = [f"movie {i}" for i in range(20)]
    v1, _, _ = encode_cached(enc, texts, EncodingCache(tmp_path))
    (shard,) = _shards(tmp_path)
    raw = bytearray(shard.read_bytes())
    if damage == "flip":
        raw[-5] ^= 0xFF  # inside the float data: only the checksum can tell
        shard.write_bytes(bytes(raw))
    elif damage == "truncate":
        shard.write_bytes(bytes(raw[:100]))
    else:
        shard.unlink()
    enc.seen.clear()
    with pytest.warns(RuntimeWarning, match="unusable"):
        v2, hits, misses = encode_cached(enc, texts, EncodingCache(tmp_path))
    assert (hits, misses) == (0, 20) and len(enc.seen) == 20
    np.testing.assert_array_equal(v1, v2)
    assert shard not in _shards(tmp_path)  # the bad shard is gone, the new one serves hits
    _, hits, _ = encode_cached(enc, texts, EncodingCache(tmp_path))
    assert hits == 20


def test_no_pickle_and_plain_files(tmp_path):
    encode_cached(CountingEncoder(), ["x", "y"], EncodingCache(tmp_path))
    (shard,) = _shards(tmp_path)
    arr = np.load(shard, allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == (2, 32)
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone() == (2,)


def test_concurrent_readers_and_writers(tmp_path):
    enc = HashingEncoder(32)
    texts = [f"song {i}" for i in range(300)]
    expected = enc.encode(texts)

    def work(k: int) -> np.ndarray:
        part = texts[(k * 37) % 200 : (k * 37) % 200 + 100]
        v, _, _ = encode_cached(enc, part, EncodingCache(tmp_path))
        return v, part

    with ThreadPoolExecutor(4) as pool:
        for v, part in pool.map(work, range(12)):
            np.testing.assert_array_equal(v, expected[[texts.index(t) for t in part]])
    _, hits, misses = encode_cached(enc, texts, EncodingCache(tmp_path))
    assert hits + misses == 300 and hits >= 200


def test_default_directory_from_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("M6REC_CACHE_DIR", str(tmp_path / "c"))
    cache = EncodingCache()
    assert cache.directory == tmp_path / "c" / "encodings"
    _, _, misses = encode_cached(HashingEncoder(8), ["a"])
    assert misses == 1 and len(EncodingCache()) == 1
