"""Small datasets the tests build themselves (imported by name: a module name no other test
folder uses, unlike ``conftest``, which several folders have)."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
