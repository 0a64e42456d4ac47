"""Fine-tuning returns a new, changed model and leaves the serving one untouched; m6 embeds
posted items from their text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.online import Updater
from m6rec.registry import build_model

TINY = {"sasrec": {"hidden": 16, "inner": 16, "epochs": 5, "batch_size": 32, "device": "cpu"},
        "m6": {"encoder": "hashing:32", "hidden": 16, "inner": 16, "epochs": 5,
               "batch_size": 32, "device": "cpu"}}
EVENTS = pd.DataFrame({"user_id": ["u0", "u1"], "item_id": ["i2", "i3"],
                       "timestamp": [1e9, 1e9]})


@pytest.mark.parametrize("name", ["sasrec", "m6"])
def test_finetune_new_object(checkerboard, name):
    model = build_model(name, **TINY[name]).fit(checkerboard)
    h = checkerboard.histories()
    s0 = model.score(h)
    new, version = Updater(model, checkerboard, "finetune:10", steps=5).update(EVENTS)
    assert version == 1 and new is not model
    np.testing.assert_array_equal(model.score(h), s0)
    assert not np.allclose(new.score(h), s0)


def test_m6_add_items(checkerboard):
    model = build_model("m6", **TINY["m6"]).fit(checkerboard)
    upd = Updater(model, checkerboard, "finetune:10", steps=2)
    h = checkerboard.histories().take(slice(0, 3))
    new, version = upd.add_items(pd.DataFrame({"item_id": ["i50"], "title": ["even item"],
                                               "categories": ["even"]}))
    assert version == 1 and new.n_items_ == checkerboard.n_items + 1
    s_old, s_new = model.score(h), new.score(h)
    np.testing.assert_allclose(s_new[:, :-1], s_old, rtol=1e-4, atol=1e-4)
    assert np.isfinite(s_new[:, -1]).all()
    later, v2 = upd.update(pd.DataFrame({"user_id": ["u0"], "item_id": ["i50"]}))
    assert v2 == 2 and later.item_seen_[-1]
