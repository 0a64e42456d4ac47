"""Several domains combined into one training set."""

from __future__ import annotations

import pandas as pd

from m6rec.data import from_dataframe
from m6rec.data.combine import combine
from m6rec.text import item_texts


def _shop(name: str) -> object:
    inter = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"],
                          "timestamp": [1.0, 2.0, 3.0]})
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["Red pen", "Blue stapler"],
                          "categories": ["Office|Pens", "Office|Staplers"]})
    return from_dataframe(inter, items=items, name=name)


def test_combined_item_text_is_each_domains_own(ml100k):
    shop = _shop("shop")
    both = combine([ml100k, shop])
    assert both.n_items == ml100k.n_items + shop.n_items
    # the same text as in each domain alone: a model trained on the combined view reads a new
    # domain's catalogue as it read its sources (and the cached encodings serve both)
    assert item_texts(both) == item_texts(ml100k) + item_texts(shop)
    assert not any("domain" in t for t in item_texts(both))
    assert list(both.item_ids[-2:]) == ["shop/a", "shop/b"]
