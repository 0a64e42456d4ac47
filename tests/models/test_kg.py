"""The ``kg`` model: the no-KG twin is SASRec, KG vectors reach the item table, a linked cold
item is scored from its entity, persistence keeps the entity features."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.data.validate import build_kg
from m6rec.models.base import Recommender
from m6rec.registry import build_model
from synthetic_data import checkerboard_frames

FAST = {"hidden": 16, "inner": 16, "epochs": 30, "lr": 1e-2, "batch_size": 32, "device": "cpu"}
COLD = ("i0", "i2", "i1", "i3")  # items nobody interacted with (two even, two odd)


@pytest.fixture(scope="module")
def parity_kg():
    """The checkerboard without any interaction with items i0 to i3, plus a KG in which every
    item's entity points to its parity ("even" / "odd") and to its own "tag" entity that it
    shares with the next item of the same parity."""
    inter, items = checkerboard_frames()
    inter = inter[~inter["item_id"].isin(COLD)]
    ds = from_dataframe(inter, items=items, name="parity")
    triples = [(f"e{i}", "parity", "even" if i % 2 == 0 else "odd") for i in range(50)]
    triples += [(f"e{i}", "tag", f"t{i // 4}_{i % 2}") for i in range(50)]
    kg = pd.DataFrame(triples, columns=["head_id", "relation_id", "tail_id"])
    link = pd.DataFrame({"item_id": [f"i{i}" for i in range(50)],
                         "entity_id": [f"e{i}" for i in range(50)]})
    return replace(ds, kg=build_kg(kg, "parity.kg", link, "parity.link", pd.Index(ds.item_ids)))


@pytest.fixture(scope="module")
def twins(parity_kg):
    kg = build_model("kg", kg_epochs=200, kg_dim=16, **FAST).fit(parity_kg)
    twin = build_model("kg", use_kg=False, **FAST).fit(parity_kg)
    return kg, twin


def test_no_kg_twin_is_sasrec(checkerboard):
    twin = build_model("kg", use_kg=False, **FAST).fit(checkerboard)
    sasrec = build_model("sasrec", **FAST).fit(checkerboard)
    h = checkerboard.histories()
    np.testing.assert_allclose(twin.score(h), sasrec.score(h), rtol=1e-4, atol=1e-4)


def test_kg_features_and_mask(twins, parity_kg):
    kg, twin = twins
    assert kg.kg_mask_.all() and kg.kg_features_.shape == (parity_kg.n_items, 16)
    assert not twin.kg_mask_.any()
    # the entity vectors separate the parities: same-parity items are more alike
    f = kg.kg_features_
    parity = np.array([int(parity_kg.item_ids[i][1:]) % 2 for i in range(parity_kg.n_items)])
    sim = f @ f.T
    same = sim[parity[:, None] == parity[None, :]].mean()
    other = sim[parity[:, None] != parity[None, :]].mean()
    assert same > other + 0.2


def test_cold_linked_items_scored_from_their_entity(twins, parity_kg):
    """Every user: the KG model puts the never-seen items of the user's parity above the
    never-seen items of the other parity (it reads their entities); the twin has nothing to tell
    them apart by."""
    kg, twin = twins
    h = parity_kg.histories()
    parity = {u: int(parity_kg.user_ids[u][1:]) % 2 for u in range(parity_kg.n_users)}
    cold = np.array([parity_kg.item_index(c) for c in COLD])
    cold_parity = np.array([int(c[1:]) % 2 for c in COLD])

    def share_right(model):
        s = model.score(h)
        right = []
        for u in range(len(h)):
            mine = s[u, cold[cold_parity == parity[u]]]
            other = s[u, cold[cold_parity != parity[u]]]
            right.append(mine.min() > other.max())
        return float(np.mean(right))

    assert share_right(kg) >= 0.9
    assert share_right(twin) < share_right(kg)


def test_round_trip_keeps_features(twins, parity_kg, tmp_path):
    kg, _ = twins
    kg.save(tmp_path / "kg")
    back = Recommender.load(tmp_path / "kg")
    np.testing.assert_array_equal(back.kg_features_, kg.kg_features_)
    h = parity_kg.histories()
    np.testing.assert_allclose(back.score(h), kg.score(h), rtol=1e-5, atol=1e-6)


def test_kg_path_reads_saved_embeddings(parity_kg, tmp_path):
    from m6rec.kg import train_kg_embeddings

    emb = train_kg_embeddings(parity_kg.kg, dim=8, epochs=5, device="cpu")
    path = emb.save(tmp_path / "e.npz")
    m = build_model("kg", kg_path=str(path), **{**FAST, "epochs": 2}).fit(parity_kg)
    np.testing.assert_allclose(m.kg_features_, emb.item_features(parity_kg)[0])


@pytest.mark.parametrize("params", [{"kg_method": "transh"}, {"kg_dim": 0}])
def test_bad_params(params, checkerboard):
    with pytest.raises(ValueError):
        build_model("kg", **params).fit(checkerboard)


def test_dataset_without_kg_uses_no_features(checkerboard):
    m = build_model("kg", **{**FAST, "epochs": 2}).fit(checkerboard)
    assert not m.kg_mask_.any() and not m.kg_features_.any()


def test_from_ml100k_links(ml100k):
    from m6rec.kg import KGEmbeddings

    ds = ml100k
    rng = np.random.default_rng(0)
    fake = KGEmbeddings(ds.kg.entity_ids, ds.kg.relation_ids,
                        rng.normal(size=(ds.kg.n_entities, 4)).astype(np.float32),
                        np.zeros((ds.kg.n_relations, 4), np.float32), "transe")
    feats, mask = fake.item_features(ds)
    np.testing.assert_array_equal(mask, ds.kg.item_entity >= 0)
    i = int(np.flatnonzero(mask)[0])
    e = fake.entity[ds.kg.item_entity[i]]
    np.testing.assert_allclose(feats[i], e / np.linalg.norm(e), rtol=1e-5)
