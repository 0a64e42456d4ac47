"""TransE / RotatE on tiny synthetic graphs, the npz round trip and the item-feature matrix."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.data.dataset import KnowledgeGraph
from m6rec.data.validate import build_kg
from m6rec.kg import KGEmbeddings, kg_item_features, train_kg_embeddings


def chain_graph(n: int = 10) -> KnowledgeGraph:
    """Entities a0..a9, b0..b9, c0..c9; relation r0: a_i -> b_i, r1: b_i -> c_i (one-to-one)."""
    ents = [f"{p}{i}" for p in "abc" for i in range(n)]
    triples = [(i, 0, n + i) for i in range(n)] + [(n + i, 1, 2 * n + i) for i in range(n)]
    return KnowledgeGraph(entity_ids=np.array(ents, dtype=object),
                          relation_ids=np.array(["r0", "r1"], dtype=object),
                          triples=np.array(triples, dtype=np.int64),
                          item_entity=np.arange(n, dtype=np.int64))


def tail_ranks(emb: KGEmbeddings, kg: KnowledgeGraph) -> np.ndarray:
    """1-based rank of the true tail among all entities for each triple (head + relation)."""
    t = kg.triples
    d = emb.distance(emb.entity[t[:, 0]][:, None, :], t[:, 1][:, None], emb.entity[None])
    true = d[np.arange(len(t)), t[:, 2]]
    return (d < true[:, None]).sum(axis=1) + 1


@pytest.mark.parametrize("method", ["transe", "rotate"])
def test_head_plus_relation_is_nearest_to_tail(method):
    kg = chain_graph()
    emb = train_kg_embeddings(kg, dim=16, method=method, epochs=300, batch_size=20, lr=0.02,
                              n_negatives=4, random_state=0, device="cpu")
    ranks = tail_ranks(emb, kg)
    assert (ranks == 1).mean() >= 0.9, ranks
    # an untrained (random) embedding does not pass the same check
    rng = np.random.default_rng(0)
    rand = KGEmbeddings(emb.entity_ids, emb.relation_ids,
                        rng.normal(size=emb.entity.shape).astype(np.float32),
                        rng.normal(size=emb.relation.shape).astype(np.float32), method, emb.params)
    assert (tail_ranks(rand, kg) == 1).mean() < 0.5


def test_seeded_and_leaves_global_rng_alone():
    import torch

    kg = chain_graph(4)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_kg_embeddings(kg, dim=8, epochs=3, batch_size=4, random_state=5, device="cpu")
    after = torch.rand(1)
    b = train_kg_embeddings(kg, dim=8, epochs=3, batch_size=4, random_state=5, device="cpu")
    assert torch.equal(before, after)
    np.testing.assert_array_equal(a.entity, b.entity)


def test_save_load_round_trip(tmp_path):
    emb = train_kg_embeddings(chain_graph(4), dim=8, method="rotate", epochs=2, device="cpu")
    path = emb.save(tmp_path / "kg.npz")
    back = KGEmbeddings.load(path)
    assert back.method == "rotate" and back.params == emb.params
    np.testing.assert_array_equal(back.entity, emb.entity)
    np.testing.assert_array_equal(back.relation, emb.relation)
    assert list(back.entity_ids) == list(emb.entity_ids)


def linked_dataset():
    inter = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["x", "y", "y", "z"],
                          "timestamp": [1.0, 2.0, 3.0, 4.0]})
    kg = pd.DataFrame({"head_id": ["e1", "e2"], "relation_id": ["r", "r"],
                       "tail_id": ["e3", "e3"]})
    link = pd.DataFrame({"item_id": ["x", "z"], "entity_id": ["e1", "e2"]})
    ds = from_dataframe(inter, name="toy")
    return replace(ds, kg=build_kg(kg, "toy.kg", link, "toy.link", pd.Index(ds.item_ids)))


def test_item_features_zero_rows_and_mask():
    ds = linked_dataset()
    feats, mask = kg_item_features(ds, dim=6, seed=0, epochs=2, device="cpu")
    assert feats.shape == (ds.n_items, 6) and feats.dtype == np.float32
    linked = {ds.item_index("x"), ds.item_index("z")}
    assert set(np.flatnonzero(mask)) == linked
    assert np.all(feats[~mask] == 0)
    np.testing.assert_allclose(np.linalg.norm(feats[mask], axis=1), 1.0, rtol=1e-5)


def test_item_features_cache(tmp_path):
    ds = linked_dataset()
    cache = tmp_path / "kg.npz"
    a, _ = kg_item_features(ds, dim=6, seed=0, epochs=2, cache=cache, device="cpu")
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    b, _ = kg_item_features(ds, dim=6, seed=0, epochs=2, cache=cache, device="cpu")
    assert cache.stat().st_mtime_ns == stamp  # read, not retrained
    np.testing.assert_array_equal(a, b)
    c, _ = kg_item_features(ds, dim=6, seed=1, epochs=2, cache=cache, device="cpu")
    assert not np.array_equal(a, c)  # other parameters: retrained


def test_no_kg_gives_empty_features(checkerboard):
    feats, mask = kg_item_features(checkerboard, dim=4)
    assert feats.shape == (checkerboard.n_items, 4) and not mask.any() and not feats.any()


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "distmult"}, "method"), ({"dim": 0}, "dim"),
    ({"method": "rotate", "dim": 7}, "even"), ({"p_norm": 3}, "p_norm"), ({"lr": 0}, "lr")])
def test_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_kg_embeddings(chain_graph(3), **kwargs)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such KG embeddings"):
        KGEmbeddings.load(tmp_path / "nope.npz")
