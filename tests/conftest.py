"""Shared fixtures: the built-in ml-100k (loaded once) and a tiny checkerboard dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.data import Dataset, from_dataframe, load_dataset


@pytest.fixture(scope="session")
def ml100k() -> Dataset:
    return load_dataset("ml-100k")


def checkerboard_frames(n: int = 50) -> tuple[pd.DataFrame, pd.DataFrame]:
    """implicit's checkerboard: user u likes every item of its parity (u % 2 == i % 2).

    User u's item u is withheld (so it never appears in training); a good model ranks it first.
    Items come in a seeded random order per user; item text says only what matters, the parity. Returns (interactions, items catalogue)."""
    rows = []
    t = 0
    order = np.random.default_rng(7)
    for u in range(n):
        # each user meets their items in a seeded random order: sequence models then learn
        # co-occurrence (which items go together), not "item i is followed by item i + 2"
        for i in order.permutation([i for i in range(n) if (u % 2) == (i % 2) and i != u]):
            rows.append((f"u{u}", f"i{i}", float(t)))
            t += 1
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n)],
                          "title": ["even item" if i % 2 == 0 else "odd item" for i in range(n)],
                          "categories": ["even" if i % 2 == 0 else "odd" for i in range(n)]})
    return inter, items


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
