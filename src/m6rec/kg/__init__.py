"""Knowledge-graph embeddings (TransE, RotatE) and the item features derived from them.

``kg_item_features(dataset, dim, seed) -> (features [n_items, dim], mask [n_items])`` is the
one call a model needs: rows of items without a KG link are zero and their mask is False.
"""

from __future__ import annotations

from m6rec.kg.transe import (
    METHODS,
    KGEmbeddings,
    item_kg_features,
    kg_item_features,
    train_kg_embeddings,
)

__all__ = ["METHODS", "KGEmbeddings", "item_kg_features", "kg_item_features",
           "train_kg_embeddings"]
