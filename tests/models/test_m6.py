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

FAST = {"encoder": "hashing:64", "hidden": 32, "n_heads": 1, "inner": 64, "max_len": 10,
        "epochs": 30, "patience": 30, "lr": 5e-3, "dropout": 0.0, "attn_dropout": 0.0,
        "device": "cpu"}


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


def test_m6_learns_next_item():
    ds = _cycle()
    m = build_model("m6", **FAST).fit(ds)
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
    params = {"encoder": "default", "text_only": True, "hidden": 32, "n_heads": 1,
              "inner": 64, "max_len": 20, "epochs": 4, "lr": 3e-3, "device": "cpu"}
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
    assert "blocks.0.qkv.weight" in adapted.init_loaded_
    frozen = dict(adapted.module_.named_parameters())
    assert not frozen["blocks.0.qkv.weight"].requires_grad
    assert frozen["adapter.0.weight"].requires_grad
    # the frozen Transformer kept the source model's weights
    np.testing.assert_array_equal(frozen["blocks.0.qkv.weight"].detach().numpy(),
                                  dict(base.module_.named_parameters())[
                                      "blocks.0.qkv.weight"].detach().numpy())
    assert 0 < adapted.trainable_fraction() < 0.5
    with pytest.raises(ValueError, match="adapt_only needs init"):
        build_model("m6", adapt_only=True).fit(target)


def test_add_ids_gives_a_text_only_init_trainable_id_embeddings(tmp_path):
    source = _cycle()
    base = build_model("m6", **{**FAST, "epochs": 3, "text_only": True}).fit(source)
    base.save(tmp_path / "base")
    import json  # a model saved before a parameter existed: the parameter keeps its default
    cfg = json.loads((tmp_path / "base" / "config.json").read_text())
    del cfg["params"]["impute_ids"]
    (tmp_path / "base" / "config.json").write_text(json.dumps(cfg))
    target = _cycle(n_items=16, n_users=30)
    adapted = build_model("m6", init=str(tmp_path / "base"), adapt_only=True, add_ids=True,
                          epochs=2, device="cpu").fit(target)
    params = dict(adapted.module_.named_parameters())
    assert not adapted.text_only
    assert params["id_emb.weight"].shape[0] == target.n_items
    assert params["id_emb.weight"].requires_grad and params["gate.weight"].requires_grad
    assert not params["blocks.0.qkv.weight"].requires_grad
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


def test_rating_head_learns_ratings_beside_the_next_item(tmp_path):
    ds = _cycle()
    inter = pd.DataFrame([(f"u{u}", f"i{(u + t) % 12}", float(t))
                          for u in range(40) for t in range(15)],
                         columns=["user_id", "item_id", "timestamp"])  # _cycle's events
    inter["rating"] = [1.0 + (int(i[1:]) % 5) for i in inter["item_id"]]  # item i: 1 + i % 5
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(12)],
                          "title": [f"station number {i}" for i in range(12)]})
    rated = from_dataframe(inter, items=items, name="rated")
    m = build_model("m6", **{**FAST, "epochs": 60, "patience": 60},
                    rating_weight=1.0).fit(rated)
    h = Histories.from_lists([[(s + t) % 12 for t in range(5)] for s in range(12)])
    targets = np.array([[(s + 5) % 12] for s in range(12)])  # the item that comes next
    pred = m.predict_ratings(h, targets)
    truth = 1.0 + (targets % 5)
    # item indices follow first appearance, which is i0, i1, ... here
    assert [rated.item_index(f"i{k}") for k in range(12)] == list(range(12))
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
    baseline = float(np.sqrt(np.mean((inter["rating"].mean() - truth) ** 2)))
    assert rmse < 0.5 * baseline, (rmse, baseline)
    assert pred.min() >= 1.0 and pred.max() <= 5.0
    # next-item ranking still learned
    ids, _ = m.recommend(h, k=1, exclude_seen=False)
    assert np.mean(ids[:, 0] == targets[:, 0]) > 0.8
    m.save(tmp_path / "rated")
    np.testing.assert_allclose(Recommender.load(tmp_path / "rated").predict_ratings(h, targets),
                               pred, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="has no 'rating' column"):
        build_model("m6", **FAST, rating_weight=1.0).fit(ds)
    plain = build_model("m6", **{**FAST, "epochs": 1}).fit(ds)
    with pytest.raises(ValueError, match="rating_weight > 0"):
        plain.predict_ratings(h, targets)


def test_lm_lora_tuning_runs_on_cpu_and_round_trips(tmp_path):
    """LoRA adapters inside MiniLM: trained (only they change), the catalogue re-encoded with
    them, saved, loaded and used again to read a new catalogue."""
    ds = _cycle(n_items=8, n_users=12, length=6)
    params = {**FAST, "encoder": "default", "epochs": 2, "patience": 2, "hidden": 16,
              "inner": 16, "lm_lora_rank": 2, "lm_refresh": 4, "batch_size": 8}
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


def _windows():
    """Two right-aligned windows [2, 12]: 10 real items and 4 real items (pads = 99)."""
    items = torch.full((2, 12), 99, dtype=torch.int64)
    items[0, 2:] = torch.arange(10)
    items[1, 8:] = torch.tensor([20, 21, 22, 23])
    return items, items != 99


def test_augmented_windows_keep_their_items_and_extras_aligned():
    from m6rec.models.m6 import augment_windows

    items, mask = _windows()
    extras = {"events": items.clone(), "users": torch.tensor([[5] * 12, [7] * 12])}
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        out, real, ex = augment_windows(items, mask, extras, rng, pad=99)
        assert real[:, -1].all()  # the newest slot is always a real position
        assert (ex["users"][:, -1] == torch.tensor([5, 7])).all()
        for r in range(2):
            orig = items[r][mask[r]].tolist()
            got = out[r][real[r]].tolist()
            kept = [i for i in got if i != 99]  # 99 inside the view: a masked (blank) item
            assert len(kept) == len(set(kept)) and set(kept) <= set(orig)
            # extras follow their items (events equal the items here) at unmasked positions
            assert ex["events"][r][real[r]][torch.tensor(got) != 99].tolist() == kept
            assert (out[r][~real[r]] == 99).all() and (ex["events"][r][~real[r]] == 0).all()
            if len(got) < len(orig):
                seen.add("crop")
                assert any(orig[s:s + len(got)] == got for s in range(len(orig)))
            elif 99 in got:
                seen.add("mask")
            elif got != orig:
                seen.add("reorder")
                assert sorted(got) == sorted(orig)
    assert seen == {"crop", "mask", "reorder"}


def test_contrastive_term_is_off_by_default_and_trains_when_on():
    ds = _cycle()
    off = build_model("m6", **{**FAST, "epochs": 1}).fit(ds)
    items = torch.full((3, 10), ds.n_items, dtype=torch.int64)  # pads = n_items
    items[0, 2:], items[1, 6:], items[2, :] = torch.arange(8), torch.arange(4), torch.arange(10)
    mask = items < ds.n_items
    assert off.module_.aux_loss(items, mask, {}, None) is None
    on = build_model("m6", **{**FAST, "cl_weight": 0.5}).fit(ds)
    on.module_.train()
    loss = on.module_.aux_loss(items, mask, {}, None, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert on.module_.blocks[0].qkv.weight.grad.abs().sum() > 0
    # still learns the cycle with the extra term, and the term changed the training
    rows = [[(s + t) % 12 for t in range(5)] for s in range(12)]
    ids, _ = on.recommend(Histories.from_lists(rows), k=1, exclude_seen=False)
    hits = np.mean([ds.item_index(f"i{(s + 5) % 12}") == ids[s, 0] for s in range(12)])
    assert hits >= 0.9
    ref = build_model("m6", **FAST).fit(ds)
    assert on.history_[0]["loss"] != ref.history_[0]["loss"]


def test_contrastive_views_leave_the_older_items_out_even_when_as_many_as_the_window():
    """CL4SRec augments a window's per-position inputs only; ``older`` (the items before the
    window, here as many as ``max_len``) is not one of them, whatever its width."""
    ds = _cycle()
    m = build_model("m6", **{**FAST, "epochs": 1, "cl_weight": 0.5, "long_term": 10}).fit(ds)
    items = torch.arange(20).remainder(12).view(2, 10)
    mask = torch.ones_like(items, dtype=torch.bool)
    older = torch.full((2, 10), -1, dtype=torch.int64)
    older[1, 4:] = torch.arange(6)
    m.module_.train()
    torch.manual_seed(0)  # the same dropout draws for both
    with_older = m.module_._contrastive_loss(items, mask, {"older": older},
                                             torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    without = m.module_._contrastive_loss(items, mask, {}, torch.Generator().manual_seed(0))
    assert with_older.item() == without.item()  # the same computation, bit for bit


@pytest.mark.parametrize("bad", [{"cl_weight": -0.1}, {"cl_temperature": 0.0}])
def test_contrastive_parameters_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        build_model("m6", **{**FAST, **bad}).fit(_cycle())


def test_gru_tower_learns_next_item_and_never_reads_pads():
    ds = _cycle()
    m = build_model("m6", **{**FAST, "tower": "gru", "n_layers": 1}).fit(ds)
    assert len(m.module_.blocks) == 0 and hasattr(m.module_, "gru")
    rows = [[(s + t) % 12 for t in range(5)] for s in range(12)]
    ids, _ = m.recommend(Histories.from_lists(rows), k=1, exclude_seen=False)
    hits = np.mean([ds.item_index(f"i{(s + 5) % 12}") == ids[s, 0] for s in range(12)])
    assert hits >= 0.9
    module = m.module_.eval()
    x = torch.randn(2, 10, 32)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, :6] = False  # row 0: 4 items after 6 pads
    with torch.no_grad():
        padded = module._gru(x, mask)
        alone = module._gru(x[:1, 6:], torch.ones(1, 4, dtype=torch.bool))
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
    m = build_model("m6", **{**FAST, "epochs": 3, "text_only": True, "text_match": 4,
                             "tower": "gru", "n_layers": 1}).fit(ds)
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
    them the same way; scores stay one dot product; it round-trips; compression refuses it."""
    ds = _cycle()
    m = build_model("m6", **{**FAST, "epochs": 3, "max_len": 3, "long_term": 5,
                             "tower": "gru", "n_layers": 1}).fit(ds)
    mod = m.module_
    assert float(mod.lt_proj.weight.detach().abs().max()) > 0  # trained away from its zero start
    seqs = [list(range(10)), [1, 2], [4]]
    hist = Histories.from_lists(seqs)
    assert m._inputs(hist)[2]["older"].tolist() == [[2, 3, 4, 5, 6], [-1] * 5, [-1] * 5]
    # training windows: inputs 3, target after; the items before each window, newest last
    win = m._training_windows(Histories.from_lists([list(range(12))]))
    older = {tuple(x[mk].tolist()): o.tolist()
             for x, mk, o in zip(win[0], win[2], win[3]["older"], strict=True)}
    assert older == {(8, 9, 10): [3, 4, 5, 6, 7], (5, 6, 7): [0, 1, 2, 3, 4],
                     (2, 3, 4): [-1, -1, -1, 0, 1], (0, 1): [-1] * 5}
    newest = m._training_windows(Histories.from_lists([list(range(12))]), newest_only=True)
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
    x, mk, ex = m._inputs(hist)  # more older items than long_term (as a teacher reads): unread
    ex["older"] = np.concatenate([np.array([[0, 1], [-1, -1], [-1, -1]]), ex["older"]], axis=1)
    with torch.no_grad():
        more = mod.encode(torch.as_tensor(x), torch.as_tensor(mk),
                          {k: torch.as_tensor(v) for k, v in ex.items()})[:, -1].numpy()
    np.testing.assert_allclose(more, users, rtol=1e-5, atol=1e-6)
    m.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    np.testing.assert_allclose(again.score(hist), m.score(hist), rtol=1e-5, atol=1e-5)
    from m6rec.compress.frozen import freeze

    with pytest.raises(ValueError, match="long_term"):
        freeze(again)
    with pytest.raises(ValueError, match="long_term"):
        build_model("m6", **{**FAST, "long_term": -1}).fit(ds)


@pytest.mark.parametrize("n", [2, 5, 9, 10, 23])
def test_overlapping_windows_train_each_target_once_with_the_longest_context(n):
    """``stride`` < ``max_len``: windows end every ``stride`` items; every target is trained
    exactly once, in the window where the most items come before it."""
    m = build_model("m6", **{**FAST, "max_len": 4, "stride": 2})
    m.n_items_ = 100
    items, targets, mask, _ = m._training_windows(Histories.from_lists([list(range(n))]))
    trained = mask & (targets >= 0)
    assert sorted(targets[trained].tolist()) == list(range(1, n))  # each target once
    context = np.cumsum(mask, axis=1)  # items read up to each position
    for t in range(1, n):  # windows end at n, n - 2, ...: t's reads 4 items before it, or 3
        most = 4 if (n - 1 - t) % 2 == 0 else 3
        assert context[trained & (targets == t)].item() == min(t, most)
    plain = m._training_windows(Histories.from_lists([list(range(n))]), stride=4)
    assert sorted(plain[1][plain[2]].tolist()) == list(range(1, n))


def test_overlapping_windows_learn_next_item():
    ds = _cycle()
    fit = build_model("m6", **{**FAST, "stride": 3, "mask_history": True}).fit(ds)
    ids, _ = fit.recommend(Histories.from_lists([[0, 1, 2, 3]]), k=1)
    assert ids[0, 0] == ds.item_index("i4")
    with pytest.raises(ValueError, match="stride"):
        build_model("m6", **{**FAST, "stride": 11}).fit(ds)


@pytest.mark.parametrize("decay", [1.0, 0.7])
def test_ease_teacher_reads_the_history_so_far(decay):
    """The teacher's targets at a position: softmax(EASE(history up to there) / T) over the
    items not in that history (window items so far and older ones), times the weight; with
    ``decay`` each history item's EASE row weighs ``decay ** age``."""
    from m6rec.models.m6 import ease_teacher

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
                       torch.as_tensor(older), torch.as_tensor(rows), 0.5, 0.3, decay).numpy()
    want = []
    for row in range(2):
        first = int((~mask[row]).sum())
        for pos in np.flatnonzero(rows[row]):
            seen = [o for o in older[row] if o >= 0] + list(items[row, first:pos + 1])
            age = np.arange(len(seen))[::-1]  # newest (the item at pos) 0
            z = (decay ** age[:, None] * B[seen]).sum(0) / 0.5
            z[seen] = -np.inf
            e = np.exp(z - z[np.isfinite(z)].max())
            want.append(0.3 * e / e.sum())
    np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-7)


def test_ease_teacher_pulls_the_model_towards_ease_and_is_training_only(tmp_path):
    """``teacher_weight``: fitting with the EASE teacher's soft targets brings the model's
    softmax closer to the teacher's; the teacher is neither kept nor saved."""
    from m6rec.models.ease import EASE
    from m6rec.models.m6 import ease_teacher

    ds = _cycle(n_items=20, length=12)
    params = {**FAST, "epochs": 15, "max_len": 4, "tower": "gru", "n_layers": 1,
              "teacher_temperature": 0.1, "teacher_reg": 2.0}
    m = build_model("m6", **params, teacher_weight=2.0).fit(ds)
    plain = build_model("m6", **params).fit(ds)
    assert m._older_len() == 0 and not any("teacher" in k for k in m._state())
    B = torch.as_tensor(EASE(reg=2.0).fit(ds).weights_)
    B = torch.cat([B, torch.zeros(1, B.shape[1])])

    def distance(model):  # KL(teacher || model) over the training positions
        x, _, mk, ex = (torch.as_tensor(a) if not isinstance(a, dict)
                        else {k: torch.as_tensor(v) for k, v in a.items()}
                        for a in model._training_windows(ds.histories()))
        p = ease_teacher(B, x, mk, None, mk, 0.1, 1.0)
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
    with pytest.raises(ValueError, match="full softmax"):
        build_model("m6", **params, teacher_weight=1.0, loss="sampled").fit(ds)
    with pytest.raises(ValueError, match="teacher_decay"):
        build_model("m6", **params, teacher_weight=1.0, teacher_decay=0.0).fit(ds)


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
