"""The M6 text model: learns, reads text for unseen items (zero-shot), binds new catalogues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from m6rec.data import Histories, from_dataframe
from m6rec.eval import metrics as M
from m6rec.models.base import Recommender
from m6rec.registry import build_model

FAST = {"encoder": "hashing:64", "hidden": 32, "inner": 64, "max_len": 10,
        "epochs": 30, "patience": 30, "lr": 5e-3, "dropout": 0.0, "device": "cpu"}
#: the Transformer tower without the default's teacher and long-term term
TRANSFORMER = {**FAST, "tower": "transformer", "n_layers": 2, "teacher_weight": 0.0,
               "long_term": 0}


def _cycle(n_items=12, n_users=40, length=15):
    """Users walk a cycle of items; item i's title names i."""
    rows = []
    for u in range(n_users):
        start = u % n_items
        for t in range(length):
            rows.append((f"u{u}", f"i{(start + t) % n_items}", float(t)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "title": [f"station number {i}" for i in range(n_items)]})
    return from_dataframe(inter, items=items, name="cycle")


@pytest.mark.parametrize("params", [FAST, TRANSFORMER], ids=["defaults", "transformer"])
def test_m6_learns_next_item(params):
    ds = _cycle()
    m = build_model("m6", **params).fit(ds)
    # after ... i(k-1), i(k) comes i(k+1)
    rows = [[(s + t) % 12 for t in range(5)] for s in range(12)]
    ids, _ = m.recommend(Histories.from_lists(rows), k=1, exclude_seen=False)
    expected = [(s + 5) % 12 for s in range(12)]
    hits = np.mean([ds.item_index(f"i{e}") == ids[r, 0] for r, e in enumerate(expected)])
    assert hits >= 0.9


def test_m6_text_only_has_no_id_parameters():
    ds = _cycle()
    m = build_model("m6", **{**FAST, "epochs": 1, "text_only": True}).fit(ds)
    assert not hasattr(m.module_, "id_emb")
    assert 0 < m.trainable_fraction() <= 1


@pytest.mark.parametrize("seen_negatives", [True, False])
def test_seen_negatives_leaves_items_without_interactions_out_of_training(seen_negatives):
    """With ``seen_negatives`` an item nobody interacted with takes no part in training: the
    weights do not depend on its text at all (without it, the item is a negative of every
    step, so its text moves the weights)."""
    def with_spare(title):
        ds = _cycle()
        rows = [(f"u{u}", f"i{(u % 12 + t) % 12}", float(t)) for u in range(40) for t in range(15)]
        items = pd.DataFrame({"item_id": [f"i{i}" for i in range(12)] + ["spare"],
                              "title": [f"station number {i}" for i in range(12)] + [title]})
        assert ds.n_items == 12
        return from_dataframe(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
                              items=items, name="cycle")

    params = {**FAST, "epochs": 3, "text_only": True, "seen_negatives": seen_negatives}
    a = build_model("m6", **params).fit(with_spare("a quiet harbour at dawn"))
    b = build_model("m6", **params).fit(with_spare("zebra xylophone quartz jukebox"))
    same = all(torch.equal(x, y) for x, y in zip(a.module_.state_dict().values(),
                                                 b.module_.state_dict().values(), strict=True)
               if x.dtype.is_floating_point and x.shape == y.shape and x.ndim and
               x.shape[0] != a.n_items_)
    assert same == seen_negatives
    assert a.score(Histories.from_lists([[0, 1, 2]])).shape == (1, 13)


def test_m6_save_load_and_bind(tmp_path):
    ds = _cycle()
    m = build_model("m6", **{**FAST, "epochs": 2}).fit(ds)
    h = ds.histories()
    m.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    np.testing.assert_allclose(again.score(h), m.score(h), rtol=1e-5, atol=1e-5)
    # a catalogue the model never saw: scored from text alone
    bigger = _cycle(n_items=20)
    again.bind(bigger)
    s = again.score(bigger.histories())
    assert s.shape == (bigger.n_users, 20) and np.isfinite(s).all()


def _comedy_split(ds):
    cats = ds.item_categories()
    comedy = np.array(["Comedy" in c for c in cats])
    inter = ds.inter
    is_c = comedy[inter["item_idx"].to_numpy()]
    train = ds.with_interactions(inter[~is_c])
    test = inter[is_c]
    users = np.unique(test["user_idx"].to_numpy())
    pos = np.searchsorted(users, test["user_idx"].to_numpy())
    import scipy.sparse as sp

    targets = sp.csr_matrix((np.ones(len(test), np.float32), (pos, test["item_idx"])),
                            shape=(len(users), ds.n_items))
    return train, users, targets, np.flatnonzero(comedy)


def test_zero_shot_on_unseen_comedies_beats_popularity(ml100k, minilm_cache, monkeypatch):
    """Train on every user's non-Comedy items; rank the Comedy films (never seen in training)
    for each user from their text alone. Popularity fitted on the same data cannot tell them
    apart; the text model must rank the user's comedies clearly better."""
    monkeypatch.setenv("M6REC_CACHE_DIR", str(minilm_cache))  # the real MiniLM, encoded once
    train, users, targets, comedies = _comedy_split(ml100k)
    params = {"encoder": "default", "text_only": True, "hidden": 32, "inner": 64,
              "max_len": 20, "epochs": 4, "lr": 3e-3, "device": "cpu"}
    model = build_model("m6", **params).fit(train)
    pop = build_model("pop").fit(train)
    h = train.histories(users)
    ids, _ = model.recommend(h, k=10, candidates=comedies)
    m6 = M.ranking_metrics(ids, targets, ks=(10,), metrics=("ndcg",))["ndcg@10"]
    # popularity fitted on the same data scores every unseen comedy 0: its ties are broken at
    # random here (item-index order would leak ml-100k's id order, which tracks popularity)
    rng = np.random.default_rng(0)
    pops = []
    for _ in range(5):
        s = pop.score(h, comedies) + rng.random((len(users), len(comedies))) * 1e-6
        top = comedies[np.argsort(-s, axis=1)[:, :10]]
        pops.append(M.ranking_metrics(top, targets, ks=(10,), metrics=("ndcg",))["ndcg@10"])
    assert m6 > 1.5 * max(pops), (m6, pops)


def test_adapt_only_trains_a_small_fraction(tmp_path):
    source = _cycle()
    base = build_model("m6", **{**FAST, "epochs": 3, "text_only": True}).fit(source)
    base.save(tmp_path / "base")
    target = _cycle(n_items=16, n_users=30)
    adapted = build_model("m6", init=str(tmp_path / "base"), adapt_only=True, epochs=2,
                          device="cpu", encoder="ignored-taken-from-init").fit(target)
    assert adapted.encoder == "hashing:64" and adapted.hidden == FAST["hidden"]
    assert "gru.weight_ih_l0" in adapted.init_loaded_
    frozen = dict(adapted.module_.named_parameters())
    assert not frozen["gru.weight_ih_l0"].requires_grad
    assert frozen["adapter.0.weight"].requires_grad
    # the frozen user tower kept the source model's weights
    np.testing.assert_array_equal(frozen["gru.weight_ih_l0"].detach().numpy(),
                                  dict(base.module_.named_parameters())[
                                      "gru.weight_ih_l0"].detach().numpy())
    assert 0 < adapted.trainable_fraction() < 0.5
    with pytest.raises(ValueError, match="adapt_only needs init"):
        build_model("m6", adapt_only=True).fit(target)


def test_add_ids_gives_a_text_only_init_trainable_id_embeddings(tmp_path):
    source = _cycle()
    base = build_model("m6", **{**FAST, "epochs": 3, "text_only": True}).fit(source)
    base.save(tmp_path / "base")
    import json  # a model saved before a parameter existed: the parameter keeps its default
    cfg = json.loads((tmp_path / "base" / "config.json").read_text())
    del cfg["params"]["text_match"]
    (tmp_path / "base" / "config.json").write_text(json.dumps(cfg))
    target = _cycle(n_items=16, n_users=30)
    adapted = build_model("m6", init=str(tmp_path / "base"), adapt_only=True, add_ids=True,
                          epochs=2, device="cpu").fit(target)
    params = dict(adapted.module_.named_parameters())
    assert not adapted.text_only
    assert params["id_emb.weight"].shape[0] == target.n_items
    assert params["id_emb.weight"].requires_grad and params["gate.weight"].requires_grad
    assert not params["gru.weight_ih_l0"].requires_grad
    assert "id_emb.weight" not in adapted.init_loaded_  # new, not from the text-only init
    text_only = build_model("m6", init=str(tmp_path / "base"), adapt_only=True, epochs=2,
                            device="cpu").fit(target)
    assert adapted.trainable_fraction() > text_only.trainable_fraction()
    adapted.save(tmp_path / "adapted")  # the saved model has its ID part
    again = Recommender.load(tmp_path / "adapted")
    h = Histories.from_lists([[0, 1, 2], [5, 6]])
    np.testing.assert_allclose(again.score(h), adapted.score(h), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="add_ids needs init"):
        build_model("m6", add_ids=True).fit(target)


def test_lm_lora_tuning_runs_on_cpu_and_round_trips(tmp_path):
    """LoRA adapters inside MiniLM: trained (only they change), the catalogue re-encoded with
    them, saved, loaded and used again to read a new catalogue."""
    ds = _cycle(n_items=8, n_users=12, length=6)
    params = {**FAST, "encoder": "default", "epochs": 2, "patience": 2, "hidden": 16,
              "inner": 16, "lm_lora_rank": 2, "batch_size": 8}
    frozen = build_model("m6", **{**params, "lm_lora_rank": 0, "epochs": 1}).fit(ds)
    tuned = build_model("m6", **params).fit(ds)
    assert tuned.module_.lm is None and tuned.lora_state_
    assert any("lora_B" in k and np.abs(v).max() > 0 for k, v in tuned.lora_state_.items())
    # the catalogue was re-encoded by the tuned LM: the text vectors moved, still unit length
    assert not np.allclose(tuned.item_text_, frozen.item_text_, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(tuned.item_text_, axis=1), 1.0, atol=1e-4)
    lm_share = tuned.lm_trainable_ / 22_713_216
    assert 0 < lm_share < 0.01
    tuned.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    h = ds.histories()
    np.testing.assert_allclose(back.score(h), tuned.score(h), rtol=1e-4, atol=1e-4)
    # a new catalogue is read through the tuned adapters, not the frozen cache
    other = _cycle(n_items=5, n_users=3, length=4)
    assert back.bind(other).score(other.histories()).shape == (3, 5)
    np.testing.assert_allclose(back.item_text_, tuned.bind(other).item_text_, atol=1e-5)


def test_gru_tower_learns_next_item_and_never_reads_pads():
    ds = _cycle()
    m = build_model("m6", **FAST).fit(ds)
    assert m.tower == "gru" and len(m.module_.blocks) == 0 and hasattr(m.module_, "gru")
    rows = [[(s + t) % 12 for t in range(5)] for s in range(12)]
    ids, _ = m.recommend(Histories.from_lists(rows), k=1, exclude_seen=False)
    hits = np.mean([ds.item_index(f"i{(s + 5) % 12}") == ids[s, 0] for s in range(12)])
    assert hits >= 0.9
    module = m.module_.eval()
    x = torch.randn(2, 10, 32)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, :6] = False  # row 0: 4 items after 6 pads
    from m6rec.models.m6.towers import gru_states

    def tower(x, mask):
        return gru_states(module.gru, module.gru_out, module.drop, x, mask)

    with torch.no_grad():
        padded = tower(x, mask)
        alone = tower(x[:1, 6:], torch.ones(1, 4, dtype=torch.bool))
    torch.testing.assert_close(padded[0, 6:], alone[0])
    assert (padded[0, :6] == 0).all()


def test_tower_is_checked():
    with pytest.raises(ValueError, match="tower"):
        build_model("m6", **{**FAST, "tower": "lstm"}).fit(_cycle())


def test_text_match_adds_the_lm_similarity_to_the_newest_items(tmp_path):
    """``text_match``: the score is the learned dot product plus ``s * q . t_i``, with ``q`` the
    softmax-weighted (per recency position, over the items there are) mean of the LM vectors of
    the newest items; still one dot product of saved user and item vectors."""
    ds = _cycle()
    m = build_model("m6", **{**FAST, "epochs": 3, "text_only": True, "text_match": 4}).fit(ds)
    H, T = m.hidden, m.item_text_
    items = m.item_vectors()
    assert items.shape == (12, H + T.shape[1])
    np.testing.assert_allclose(items[:, H:], T, atol=1e-6)  # the frozen LM vectors
    hist = Histories.from_lists([[3, 4, 5], [0, 1, 2, 3, 4, 5, 6]])
    users = m.user_vectors(hist)
    w = m.module_.match_w.detach().numpy()
    s = float(m.module_.match_scale.detach())
    for row, seq in enumerate([[3, 4, 5], [0, 1, 2, 3, 4, 5, 6]]):
        newest = seq[::-1][:4]
        a = np.exp(w[: len(newest)]) / np.exp(w[: len(newest)]).sum()
        np.testing.assert_allclose(users[row, H:], s * (a[:, None] * T[newest]).sum(0),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.score(hist), users @ items.T, rtol=1e-4, atol=1e-4)
    # free text reads into the same space: an item's own text gives its vector (text-only)
    own = m.encode_texts([m.item_strings_[7]], space="item")
    np.testing.assert_allclose(own[0], items[7], rtol=1e-4, atol=1e-4)
    m.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    np.testing.assert_allclose(again.score(hist), m.score(hist), rtol=1e-5, atol=1e-5)
    from m6rec.compress.frozen import freeze

    with pytest.raises(ValueError, match="text_match"):
        freeze(again)


def test_long_term_adds_the_mean_of_the_whole_history_to_the_user_vector(tmp_path):
    """``long_term``: the user vector gains ``W m``, ``m`` the mean item vector of the window's
    items and of up to ``long_term`` items before it; training windows read the items before
    them the same way; scores stay one dot product; it round-trips and freezes exactly."""
    ds = _cycle()
    m = build_model("m6", **{**FAST, "epochs": 3, "max_len": 3, "long_term": 5}).fit(ds)
    mod = m.module_
    assert float(mod.lt_proj.weight.detach().abs().max()) > 0  # trained away from its zero start
    seqs = [list(range(10)), [1, 2], [4]]
    hist = Histories.from_lists(seqs)
    assert m.model_inputs(hist)[2]["older"].tolist() == [[2, 3, 4, 5, 6], [-1] * 5, [-1] * 5]
    # training windows: inputs 3, target after; the items before each window, newest last
    win = m.training_windows(Histories.from_lists([list(range(12))]))
    older = {tuple(x[mk].tolist()): o.tolist()
             for x, mk, o in zip(win[0], win[2], win[3]["older"], strict=True)}
    assert older == {(8, 9, 10): [3, 4, 5, 6, 7], (5, 6, 7): [0, 1, 2, 3, 4],
                     (2, 3, 4): [-1, -1, -1, 0, 1], (0, 1): [-1] * 5}
    newest = m.training_windows(Histories.from_lists([list(range(12))]), newest_only=True)
    assert newest[3]["older"].tolist() == [[3, 4, 5, 6, 7]]  # online fine-tuning's windows
    users = m.user_vectors(hist)
    items = m.item_vectors()
    W = mod.lt_proj.weight.detach().numpy().copy()
    with torch.no_grad():
        mod.lt_proj.weight.zero_()
    tower_only = m.user_vectors(hist)
    with torch.no_grad():
        mod.lt_proj.weight.copy_(torch.as_tensor(W))
    for row, seen in enumerate([list(range(2, 10)), [1, 2], [4]]):
        np.testing.assert_allclose(users[row] - tower_only[row], W @ items[seen].mean(0),
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.score(hist), users @ items.T, rtol=1e-4, atol=1e-4)
    x, mk, ex = m.model_inputs(hist)  # more older items than long_term (as a teacher reads): unread
    ex["older"] = np.concatenate([np.array([[0, 1], [-1, -1], [-1, -1]]), ex["older"]], axis=1)
    with torch.no_grad():
        more = mod.encode(torch.as_tensor(x), torch.as_tensor(mk),
                          {k: torch.as_tensor(v) for k, v in ex.items()})[:, -1].numpy()
    np.testing.assert_allclose(more, users, rtol=1e-5, atol=1e-6)
    m.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    np.testing.assert_allclose(again.score(hist), m.score(hist), rtol=1e-5, atol=1e-5)
    from m6rec.compress.frozen import freeze

    f = freeze(again)
    feeds = {k: torch.as_tensor(v) for k, v in
             zip(("items", "mask"), m.model_inputs(hist)[:2], strict=True)}
    ex = {k: torch.as_tensor(v) for k, v in m.model_inputs(hist)[2].items()}
    with torch.no_grad():
        frozen = f(feeds["items"], feeds["mask"], ex["time_gaps"], ex["events"], ex["users"],
                   ex["older"]).numpy()
    np.testing.assert_allclose(frozen, m.score(hist), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="long_term"):
        build_model("m6", **{**FAST, "long_term": -1}).fit(ds)


def test_ease_teacher_reads_the_history_so_far():
    """The teacher's targets at a position: softmax(EASE(history up to there) / T) over the
    items not in that history (window items so far and older ones), times the weight."""
    from m6rec.train.teacher import ease_teacher

    rng = np.random.default_rng(0)
    n = 9
    B = rng.normal(size=(n, n)).astype(np.float32)
    np.fill_diagonal(B, 0.0)
    items = np.array([[n, 2, 5, 1], [3, 4, 6, 7]])
    mask = items < n
    rows = mask.copy()
    rows[1, 0] = False  # a position that is not trained
    older = np.array([[-1, 0], [8, 1]])
    padded = torch.cat([torch.as_tensor(B), torch.zeros(1, n)])
    got = ease_teacher(padded, torch.as_tensor(items), torch.as_tensor(mask),
                       torch.as_tensor(older), torch.as_tensor(rows), 0.3, 0.5).numpy()
    want = []
    for row in range(2):
        first = int((~mask[row]).sum())
        for pos in np.flatnonzero(rows[row]):
            seen = [o for o in older[row] if o >= 0] + list(items[row, first:pos + 1])
            z = B[seen].sum(0) / 0.5
            z[seen] = -np.inf
            e = np.exp(z - z[np.isfinite(z)].max())
            want.append(0.3 * e / e.sum())
    np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-7)


def test_ease_teacher_pulls_the_model_towards_ease_and_is_training_only(tmp_path, caplog):
    """``teacher_weight``: fitting with the EASE teacher's soft targets brings the model's
    softmax closer to the teacher's; the teacher is neither kept nor saved; under the sampled
    softmax it turns itself off with one log line."""
    from m6rec.models.ease import EASE
    from m6rec.train.teacher import REG, ease_teacher

    ds = _cycle(n_items=20, length=12)
    params = {**FAST, "epochs": 15, "max_len": 4, "long_term": 0}
    m = build_model("m6", **params, teacher_weight=2.0).fit(ds)
    plain = build_model("m6", **params, teacher_weight=0.0).fit(ds)
    assert m._older_len() == 0 and not any("teacher" in k for k in m.get_state())
    B = torch.as_tensor(EASE(reg=REG).fit(ds).weights_)
    B = torch.cat([B, torch.zeros(1, B.shape[1])])

    def distance(model):  # KL(teacher || model) over the training positions
        x, _, mk, ex = (torch.as_tensor(a) if not isinstance(a, dict)
                        else {k: torch.as_tensor(v) for k, v in a.items()}
                        for a in model.training_windows(ds.histories()))
        p = ease_teacher(B, x, mk, None, mk, 1.0)
        mod = model.module_
        mod.eval()
        with torch.no_grad():
            logq = torch.log_softmax(mod.encode(x, mk, ex)[mk] @ mod.item_table().T, dim=1)
        ok = p > 0
        return float((p[ok] * (p[ok].log() - logq[ok])).sum() / mk.sum())

    assert distance(m) < 0.8 * distance(plain)
    m.save(tmp_path / "m")
    hist = Histories.from_lists([[3, 4, 5, 6, 7, 8], [1, 2]])
    np.testing.assert_allclose(Recommender.load(tmp_path / "m").score(hist), m.score(hist),
                               rtol=1e-5, atol=1e-5)
    with caplog.at_level("WARNING", logger="m6rec.models"):
        sampled = build_model("m6", **{**params, "epochs": 2}, loss="sampled").fit(ds)
    off = [r for r in caplog.records if "teacher off" in r.getMessage()]
    assert len(off) == 1 and sampled._teacher is None and sampled.history_


def test_m6_switches_to_the_topk_teacher_when_the_dense_one_does_not_fit(monkeypatch, caplog):
    """Beyond what the dense teacher can hold, m6 distils the top-k one (each item's k largest
    EASE weights) instead, and is pulled towards it all the same."""
    from m6rec.train import teacher

    ds = _cycle(n_items=20, length=12)
    monkeypatch.setattr(teacher, "dense_bytes", lambda n: 10**15)  # "does not fit"
    monkeypatch.setattr(teacher, "TOPK", 4)
    top = teacher.fit_teacher(ds)
    assert isinstance(top, teacher.TopK) and top.index.shape == (21, 4)
    params = {**FAST, "epochs": 40, "max_len": 4, "long_term": 0}
    with caplog.at_level("INFO", logger="m6rec.models"):
        m = build_model("m6", **params, teacher_weight=2.0).fit(ds)
    assert any("top-k form" in r.getMessage() for r in caplog.records)
    plain = build_model("m6", **params, teacher_weight=0.0).fit(ds)

    def distance(model):  # KL(top-k teacher || model) over the training positions
        x, _, mk, ex = (torch.as_tensor(a) if not isinstance(a, dict)
                        else {k: torch.as_tensor(v) for k, v in a.items()}
                        for a in model.training_windows(ds.histories()))
        p = teacher.ease_teacher(top, x, mk, None, mk, 1.0)
        mod = model.module_
        mod.eval()
        with torch.no_grad():
            logq = torch.log_softmax(mod.encode(x, mk, ex)[mk] @ mod.item_table().T, dim=1)
        ok = p > 0
        return float((p[ok] * (p[ok].log() - logq[ok])).sum() / mk.sum())

    assert distance(m) < 0.9 * distance(plain)  # measured 1.51 vs 5.91


def _cycle_with_kg(linked: int = 8):
    from dataclasses import replace

    from m6rec.data.validate import build_kg

    ds = _cycle()
    triples = [(f"e{i}", "next", f"e{(i + 1) % 12}") for i in range(12)]
    kg = pd.DataFrame(triples, columns=["head_id", "relation_id", "tail_id"])
    link = pd.DataFrame({"item_id": [f"i{i}" for i in range(linked)],
                         "entity_id": [f"e{i}" for i in range(linked)]})
    return replace(ds, kg=build_kg(kg, "cycle.kg", link, "cycle.link", pd.Index(ds.item_ids)))


def test_item_features_fuse_kg_vectors_through_a_gate(tmp_path):
    """``item_features``: the linked items' KG entity vectors reach the item table through a
    projection and a gate; unlinked items are untouched; they persist; a bound catalogue has
    none; bad specs are refused."""
    from m6rec.kg import train_kg_embeddings

    ds = _cycle_with_kg()
    path = train_kg_embeddings(ds.kg, dim=8, epochs=5, random_state=0).save(tmp_path / "kg.npz")
    m = build_model("m6", **{**FAST, "epochs": 3, "item_features": str(path)}).fit(ds)
    mod = m.module_
    assert m.item_feats_.shape == (12, 8) and m.feat_mask_.sum() == 8
    full = m.item_vectors()
    with torch.no_grad():
        plain = mod._text_id_table(mod.item_text).numpy()
    linked = m.feat_mask_
    assert np.abs(full[linked] - plain[linked]).max() > 1e-4  # the KG part is there
    np.testing.assert_allclose(full[~linked], plain[~linked], atol=1e-6)
    m.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    h = ds.histories()
    np.testing.assert_allclose(again.score(h), m.score(h), rtol=1e-5, atol=1e-5)
    again.bind(_cycle(n_items=20))
    assert again.item_feats_.shape == (20, 8) and not again.feat_mask_.any()
    assert np.isfinite(again.score(Histories.from_lists([[0, 1, 2]]))).all()
    with pytest.raises(ValueError, match="knowledge graph"):
        build_model("m6", **{**FAST, "epochs": 1, "item_features": "kg"}).fit(_cycle())
    with pytest.raises(ValueError, match="item_features"):
        build_model("m6", **{**FAST, "epochs": 1, "item_features": "nowhere.npz"}).fit(ds)


def test_m6rec_models_lists_m6_with_at_most_25_described_parameters():
    from typer.testing import CliRunner

    from m6rec.cli import app

    r = CliRunner().invoke(app, ["models", "m6"])
    assert r.exit_code == 0, r.output
    head, *rows = r.output.strip().splitlines()
    names = [row.split("=")[0].strip() for row in rows]
    assert names == build_model("m6").param_names() and len(names) <= 25
    assert all(len(row.split(maxsplit=1)) == 2 for row in rows)  # each has a description
    assert "(25 parameters)" in head or len(names) < 25


def test_user_vectors_against_an_extended_catalogue():
    """What the service does for posted items: the default model (GRU tower, long-term term)
    reads histories against a longer item table; a new row that copies item 3's vector stands
    for item 3 exactly, in the window and among the older items."""
    ds = _cycle()
    m = build_model("m6", **{**FAST, "epochs": 2, "max_len": 4, "long_term": 6}).fit(ds)
    table = m.item_vectors()
    extended = np.concatenate([table, table[3:4]])  # item 12 = a copy of item 3
    h = Histories.from_lists([[0, 1, 2, 3, 4, 5], [3, 6, 7, 8, 9, 10, 11]])
    np.testing.assert_allclose(m.user_vectors(h, item_table=table), m.user_vectors(h),
                               rtol=1e-6, atol=1e-6)
    posted = Histories.from_lists([[0, 1, 2, 12, 4, 5], [12, 6, 7, 8, 9, 10, 11]])
    np.testing.assert_allclose(m.user_vectors(posted, item_table=extended),
                               m.user_vectors(h), rtol=1e-5, atol=1e-6)
    s = m.score_with(posted, extended)
    assert s.shape == (2, 13)
    np.testing.assert_allclose(s[:, 12], s[:, 3], rtol=1e-6, atol=1e-6)


def test_a_model_saved_with_retired_options_loads_only_at_their_current_values(tmp_path):
    import json

    m = build_model("m6", **{**FAST, "epochs": 1}).fit(_cycle())
    m.save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["params"].update({"n_heads": 2, "cl_weight": 0.0, "weight_decay": 0.0})  # as it was
    cfg_path.write_text(json.dumps(cfg))
    h = Histories.from_lists([[0, 1, 2]])
    np.testing.assert_array_equal(Recommender.load(tmp_path / "m").score(h), m.score(h))
    cfg["params"]["cl_weight"] = 0.5
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="cl_weight=0.5, an option m6 no longer has"):
        Recommender.load(tmp_path / "m")


def test_user_vectors_of_grouped_variants_equal_the_full_encoder():
    """``user_vectors(groups=...)`` (the GRU run once over what one history's leave-one-out
    variants share) gives the vectors of the full encoder at the newest position."""
    ds = _cycle()
    m = build_model("m6", **{**FAST, "epochs": 2}).fit(ds)
    rng = np.random.default_rng(0)
    rows, groups = [], []
    for g, k in enumerate([25, 14, 10, 4]):  # longer and shorter than the window (10)
        h = rng.integers(0, ds.n_items, k)
        for j in range(max(0, k - 5), k):
            rows.append(np.delete(h, j))
            groups.append(g)
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    users = np.array(groups, np.int64)  # the variants of one history share a (training) user
    hist = Histories(indptr, np.concatenate(rows), users,
                     np.arange(indptr[-1], dtype=np.float64), None,
                     np.zeros(indptr[-1], np.int64))
    grouped = m.user_vectors(hist, groups=np.array(groups))
    inputs, mask, extras = m.model_inputs(hist)
    with torch.inference_mode():
        full = m.module_.eval().encode(torch.as_tensor(inputs), torch.as_tensor(mask),
                                       {k: torch.as_tensor(v) for k, v in extras.items()})
    np.testing.assert_allclose(grouped, full[:, -1].numpy(), atol=1e-5)
    np.testing.assert_allclose(m.user_vectors(hist), grouped, atol=1e-5)


@pytest.mark.parametrize("text_only", [False, True], ids=["ids", "text-only"])
def test_sampled_step_on_the_rows_it_touches_equals_the_full_table_loss(text_only):
    """The sampled softmax's step computes the item table only for the rows its batch reads
    (the windows' and older items, the targets, the negatives): the loss and every gradient
    equal those of `sampled_softmax_ce` over the full table, with the same negatives."""
    from m6rec.models.sequential import sampled_step
    from m6rec.train.losses import N_NEGATIVES, sampled_softmax_ce

    ds = _cycle(n_items=30, length=14)
    m = build_model("m6", **{**FAST, "epochs": 1, "max_len": 4, "long_term": 6},
                    text_only=text_only, loss="sampled").fit(ds)
    x, y, mk, ex = (torch.as_tensor(a) if not isinstance(a, dict)
                    else {k: torch.as_tensor(v) for k, v in a.items()}
                    for a in m.training_windows(ds.histories()))
    assert "older" in ex and (ex["older"] >= 0).any()
    mod = m.module_
    mod.eval()  # no dropout: the two computations see the same tables
    only = torch.as_tensor(m._softmax_items()) if m._softmax_items() is not None else None
    pool = len(only) if only is not None else ds.n_items

    def grads(loss):
        mod.zero_grad()
        loss.backward()
        return float(loss.detach()), {k: p.grad.clone() for k, p in mod.named_parameters()
                             if p.grad is not None}

    sel = mk
    got = grads(sampled_step(mod, ds.n_items, x, sel, ex, y[sel], only,
                             torch.Generator().manual_seed(3)))
    neg = torch.randint(0, pool, (N_NEGATIVES,), generator=torch.Generator().manual_seed(3))
    table, target = mod.item_table(), y[sel]
    if only is not None:
        into = torch.full((ds.n_items + 1,), -1, dtype=torch.int64)
        into[only] = torch.arange(len(only))
        table, target = table[only], into[target]
    want = grads(sampled_softmax_ce(mod.encode(x, sel, ex)[sel], target, table,
                                    negatives=neg))
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    assert got[1].keys() == want[1].keys() and got[1]
    for k in want[1]:
        torch.testing.assert_close(got[1][k], want[1][k], rtol=1e-4, atol=1e-6)


def test_user_vectors_over_a_large_table_read_only_the_history_rows():
    """With an item table given (the service's, posted items included), the user vectors are
    computed from the rows the histories read (their window and older items): the same vectors
    as the encoder over the whole table, an empty history included."""
    ds = _cycle(n_items=30, length=14)
    m = build_model("m6", **{**FAST, "epochs": 1, "max_len": 4, "long_term": 6}).fit(ds)
    mod = m.module_
    mod.eval()
    with torch.no_grad():
        base = mod.item_table()
        table = torch.cat([base, base[:5] * 0.5 + 0.1])  # five posted items past the catalogue
    rows = [[3, 4, 5, 6, 7, 8, 9, 31], [1, 2], [], [30, 34, 0, 29]]
    h = Histories.from_lists(rows)
    got = m.user_vectors(h, item_table=table.numpy())
    x, mk, ex = m.model_inputs(h)
    x = np.where(mk, x, len(table))
    with torch.no_grad():
        want = mod.encode_last(torch.as_tensor(x), torch.as_tensor(mk),
                               {k: torch.as_tensor(v) for k, v in ex.items()}, table)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    assert "older" in ex and (ex["older"][0] >= 0).any()
