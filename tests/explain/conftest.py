"""A tiny m6 (hashing encoder) fitted once on the checkerboard, shared by the explain tests."""

from __future__ import annotations

import pytest

from m6rec.registry import build_model


@pytest.fixture(scope="session")
def tiny_m6(checkerboard):
    return build_model("m6", encoder="hashing:32", hidden=16, inner=16, epochs=30,
                       lr=1e-2, batch_size=32).fit(checkerboard)
