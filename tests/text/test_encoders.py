"""Encoders: the real all-MiniLM-L6-v2 loaded offline, the hashing encoder, the factory."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from m6rec.text import (
    Encoder,
    HashingEncoder,
    SentenceTransformerEncoder,
    default_model_path,
    get_encoder,
)

HORROR = "Nightmare on Elm Street, A (1984; Horror)"
TOY = "Toy Story (1995; Animation, Children's, Comedy)"


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEncoder:
    """The bundled MiniLM, loaded once per test session with every network connection refused."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by m6rec.text.encoders on import
    mp = pytest.MonkeyPatch()

    def no_network(*args, **kwargs):
        raise OSError("network access attempted while loading the default encoder")

    mp.setattr(socket.socket, "connect", no_network)
    mp.setattr(socket.socket, "connect_ex", no_network)
    mp.setattr(socket, "create_connection", no_network)
    try:
        enc = SentenceTransformerEncoder()
        enc.encode(["warm up"])  # loads the model under the patch
    finally:
        mp.undo()
    return enc


def test_minilm_loads_offline_from_the_package(minilm):
    assert (default_model_path() / "model.safetensors").is_file()
    assert minilm.dim == 384
    assert minilm.name == "sentence-transformers:all-MiniLM-L6-v2"
    assert isinstance(minilm, Encoder)


def test_minilm_vectors(minilm):
    v = minilm.encode(["a scary horror film", HORROR, TOY], batch_size=2)
    assert v.dtype == np.float32 and v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1
    # batching and length-sorting do not change the vectors
    one_by_one = np.vstack([minilm.encode([t]) for t in ["a scary horror film", HORROR, TOY]])
    np.testing.assert_allclose(v, one_by_one, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_hashing_is_deterministic_and_similarity_aware():
    enc = HashingEncoder(dim=64)
    texts = ["Toy Story (1995; Animation, Comedy)", "Toy Story 2 (1999; Animation, Comedy)",
             "Heat (1995; Action, Crime, Thriller)", ""]
    v = enc.encode(texts, batch_size=2)
    assert v.dtype == np.float32 and v.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(v, HashingEncoder(dim=64).encode(texts))  # same in any process
    assert v[0] @ v[1] > 0.7 > v[0] @ v[2]
    assert HashingEncoder(dim=128).encode(texts[:1]).shape == (1, 128)
    assert enc.name != HashingEncoder(dim=128).name
    assert isinstance(enc, Encoder)


def test_progress_bar_does_not_change_results():
    enc = HashingEncoder(dim=32)
    texts = [f"item number {i}" for i in range(50)]
    np.testing.assert_array_equal(enc.encode(texts, batch_size=7, show_progress=True),
                                  enc.encode(texts))


def test_get_encoder_specs(tmp_path):
    assert isinstance(get_encoder("hashing"), HashingEncoder)
    assert get_encoder("hashing:16").dim == 16
    for spec in ("default", "minilm", "all-MiniLM-L6-v2", None):
        enc = get_encoder(spec)
        assert isinstance(enc, SentenceTransformerEncoder) and enc.is_default
        assert enc._st is None  # nothing loaded until first use
    h = HashingEncoder(8)
    assert get_encoder(h) is h
    assert get_encoder(str(tmp_path)).name == f"sentence-transformers:{tmp_path.resolve()}"
    assert get_encoder("default", max_seq_length=64).name.endswith("@64")
    with pytest.raises(ValueError, match="hashing:DIM"):
        get_encoder("hashing:abc")
    with pytest.raises(TypeError):
        get_encoder(3)  # type: ignore[arg-type]


def test_unknown_model_fails_clearly_offline(tmp_path):
    enc = SentenceTransformerEncoder(str(tmp_path / "no-such-model"))
    with pytest.raises(OSError, match="could not load sentence-transformers model"):
        enc.encode(["x"])
