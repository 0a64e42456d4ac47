"""Encoding progress outside a terminal: plain lines with texts done / total / rate."""

from __future__ import annotations

import io
import re

import numpy as np

from m6rec.text import EncodingCache, HashingEncoder, encode_cached
from m6rec.text.encoders import progress


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()  # not a tty
    with progress(10, "encoding", every=0.0, stream=out) as advance:
        for _ in range(5):
            advance(2)
    lines = out.getvalue().splitlines()
    # one line per advance before the end (every=0), then one final line
    assert len(lines) == 5
    assert lines[0].startswith("encoding: 2 / 10 (20.0%), ") and "min left" in lines[0]
    assert re.match(r"encoding: 10 / 10 \(100\.0%\), [\d.]+ /s, [\d.]+ s$", lines[-1])


def test_quiet_between_periods():
    out = io.StringIO()
    with progress(1000, "x", every=3600.0, stream=out) as advance:
        for _ in range(1000):
            advance(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("x: 1,000 / 1,000 (100.0%)")


def test_encode_cached_reports_over_every_miss(tmp_path, capsys):
    enc = HashingEncoder(16)
    texts = [f"text number {k}" for k in range(9)]
    plain, _, _ = encode_cached(enc, texts, EncodingCache(tmp_path / "a"))
    vecs, hits, misses = encode_cached(enc, texts, EncodingCache(tmp_path / "b"),
                                       batch_size=1, show_progress=True, chunk_size=4)
    np.testing.assert_allclose(vecs, plain, atol=1e-6)  # pieces do not change the vectors
    assert (hits, misses) == (0, 9)
    err = capsys.readouterr().err.splitlines()
    assert err and err[-1].startswith(f"encoding {enc.name}: 9 / 9 (100.0%)")  # one total
