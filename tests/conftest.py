"""Shared fixtures: the built-in ml-100k (loaded once), its MiniLM encodings (computed once and
kept between runs) and a tiny checkerboard dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from m6rec.data import Dataset, from_dataframe, load_dataset
from synthetic_data import checkerboard_frames


@pytest.fixture(scope="session")
def ml100k() -> Dataset:
    return load_dataset("ml-100k")


@pytest.fixture(scope="session")
def minilm_cache(request, tmp_path_factory, ml100k) -> Path:
    """A cache directory (for ``M6REC_CACHE_DIR``) holding ml-100k's item and profile texts as
    the real all-MiniLM-L6-v2 encodes them for ``m6`` (text budget 200).

    Encoding them takes about a minute on 2 cores, so it is done once: the directory lives in
    pytest's cache folder (``.pytest_cache/``, kept between runs; with ``-p no:cacheprovider``,
    in the run's shared temporary folder), and the first test process to get here encodes under
    a file lock while the other xdist workers wait, then read. The cache checks every shard's
    checksum on read, so a damaged one is re-encoded, never trusted."""
    import fcntl

    from m6rec.distributed.encode import encode_catalogue
    from m6rec.text import EncodingCache

    cache = getattr(request.config, "cache", None)
    if cache is not None:
        root = Path(cache.mkdir("m6rec-minilm"))
    else:  # the base temp dir's parent is the one shared by every xdist worker of this run
        root = tmp_path_factory.getbasetemp().parent / "m6rec-minilm"
        root.mkdir(exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            encode_catalogue(ml100k, "default", budget=200,
                             cache=EncodingCache(root / "encodings"))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root


@pytest.fixture(scope="session")
def checkerboard() -> Dataset:
    inter, items = checkerboard_frames()
    return from_dataframe(inter, items=items, name="checkerboard")


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_configure(config):
    """One encoding cache per test session (never the user's ~/.cache); one BLAS/torch thread
    per test process (the suite runs in 2 processes on 2 cores: more threads only contend)."""
    import os
    import tempfile

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    if "M6REC_CACHE_DIR" not in os.environ:
        os.environ["M6REC_CACHE_DIR"] = tempfile.mkdtemp(prefix="m6rec-test-cache-")
