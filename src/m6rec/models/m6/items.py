"""The item side of ``m6`` read from the data: item and profile texts through the language
model (cached on disk, M6-Rec's late interaction: every segment is encoded once) and the
optional extra item feature vectors (knowledge-graph entities)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset

#: most characters of an item's text (``m6rec encode --budget`` writes the same cache)
TEXT_BUDGET = 200


def encode_catalogue(model: Any, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(item text vectors [n_items, D], profile vectors [n_users, D]) of ``dataset`` by the
    encoder of ``model`` (an ``m6``), via the cache; item texts go through the model's tuned
    LM adapters when it has them. Users without a profile text get a zero vector. Sets
    ``model.item_strings_`` and ``model.encode_stats_``."""
    from m6rec.text import encode_cached, get_encoder, item_texts, user_profile_text

    enc = get_encoder(model.encoder)
    texts = item_texts(dataset, budget=TEXT_BUDGET)
    model.item_strings_ = texts
    if getattr(model, "lora_state_", None):
        from m6rec.text.lora import LoRATextTower

        tower = LoRATextTower(model.encoder, texts, rank=model.lm_lora_rank)
        tower.load_lora_state(model.lora_state_)
        items, hits, misses = tower.encode_all().numpy(), 0, len(texts)
    else:
        items, hits, misses = encode_cached(enc, texts, show_progress=model.verbose)
    model.encode_stats_ = {"item_hits": hits, "item_misses": misses}
    if dataset.users is not None and dataset.n_users:
        texts = [user_profile_text(dataset, u) for u in range(dataset.n_users)]
        profiles, _, _ = encode_cached(enc, texts)
        profiles[np.array([not t for t in texts])] = 0.0
    else:
        profiles = np.zeros((dataset.n_users, items.shape[1]), np.float32)
    return items.astype(np.float32), profiles.astype(np.float32)


def item_features(spec: str, dataset: Dataset, seed: int, device: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(features [n_items, F], mask [n_items]) of ``item_features`` ``spec`` (F = 0 when
    ""): ``"kg"`` TransE on the dataset's own triples, else a saved KG embeddings .npz."""
    spec = str(spec or "")
    if not spec:
        return np.zeros((dataset.n_items, 0), np.float32), np.zeros(dataset.n_items, bool)
    from m6rec.kg import item_kg_features

    if spec == "kg" and dataset.kg is None:
        raise ValueError(f"item_features='kg' needs a knowledge graph, and dataset "
                         f"{dataset.name!r} has none")
    if spec != "kg" and not Path(spec).is_file():
        raise ValueError(f"item_features must be '', 'kg' or a saved KG embeddings .npz "
                         f"file; {spec!r} is none of these")
    feats, mask = item_kg_features(dataset, path="" if spec == "kg" else spec, seed=seed,
                                   device=device)
    return np.asarray(feats, np.float32), np.asarray(mask, bool)
