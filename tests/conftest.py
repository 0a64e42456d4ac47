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
    Returns (interactions, items catalogue)."""
    rows = []
    t = 0
    for u in range(n):
        for i in range(n):
            if (u % 2) == (i % 2) and i != u:
                rows.append((f"u{u}", f"i{i}", float(t)))
                t += 1
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n)],
                          "title": [f"{'even' if i % 2 == 0 else 'odd'} item {i}" for i in range(n)],
                          "categories": ["even" if i % 2 == 0 else "odd" for i in range(n)]})
    return inter, items


@pytest.fixture(scope="session")
def checkerboard() -> Dataset:
    inter, items = checkerboard_frames()
    return from_dataframe(inter, items=items, name="checkerboard")


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
