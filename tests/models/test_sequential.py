"""Sequence models (GRU4Rec, SASRec) and their shared base, loop and losses: on item cycles
(user sequences i -> i + 1 mod n) both must learn the next item within a few seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from m6rec.data import Dataset, Histories, from_dataframe
from m6rec.eval.protocols import make_split
from m6rec.models.base import Recommender
from m6rec.models.sequential import SequentialRecommender
from m6rec.registry import build_model
from m6rec.train.loop import EarlyStopping, resolve_device, seeded
from m6rec.train.losses import choose_loss, full_softmax_ce, sampled_softmax_ce

N_ITEMS = 12
SEQUENTIAL = ["sasrec", "gru4rec"]
TINY = {"hidden": 16, "max_len": 8, "epochs": 25, "batch_size": 32, "lr": 1e-2, "dropout": 0.0,
        "device": "cpu", "random_state": 0}
EXTRA = {"sasrec": {"inner": 16, "attn_dropout": 0.0}, "gru4rec": {"gru_hidden": 16}}


def _params(name: str, **kw) -> dict:
    return {**TINY, **EXTRA[name], **kw}


@pytest.fixture(scope="module")
def cycles() -> Dataset:
    """60 users, each walking 10 steps of the cycle 0 -> 1 -> ... -> 11 -> 0 from its own start."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        start = int(rng.integers(N_ITEMS))
        for t in range(10):
            rows.append((f"u{u}", f"i{(start + t) % N_ITEMS}", float(1000 * u + 60 * t)))
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)]})
    return from_dataframe(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
                          items=items, name="cycles")


def _queries(ds: Dataset) -> tuple[Histories, np.ndarray]:
    """Every 3-step walk of the cycle (in dataset indices) and the item that follows it."""
    idx = [ds.item_index(f"i{i}") for i in range(N_ITEMS)]
    rows = [[idx[(s + t) % N_ITEMS] for t in range(3)] for s in range(N_ITEMS)]
    return Histories.from_lists(rows), np.array([idx[(s + 3) % N_ITEMS] for s in range(N_ITEMS)])


@pytest.fixture(scope="module", params=SEQUENTIAL)
def fitted(request, cycles) -> SequentialRecommender:
    return build_model(request.param, **_params(request.param)).fit(cycles)


def test_learns_next_item(fitted, cycles):
    h, target = _queries(cycles)
    ids, _ = fitted.recommend(h, k=1)
    assert (ids[:, 0] == target).mean() >= 0.9
    assert len(fitted.history_) == TINY["epochs"] and fitted.best_epoch_ == TINY["epochs"]
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]


def test_batch_equals_one_by_one_any_length(fitted):
    rng = np.random.default_rng(1)
    rows = [list(rng.integers(0, N_ITEMS, size=n)) for n in (0, 1, 3, 8, 9, 20)]
    h = Histories.from_lists(rows)
    full = fitted.score(h)
    for u in range(len(rows)):
        np.testing.assert_allclose(fitted.score(h.take([u]))[0], full[u], rtol=1e-5, atol=1e-5)
    # only the newest max_len items count
    np.testing.assert_allclose(fitted.score(h.last(fitted.max_len)), full, rtol=1e-5, atol=1e-5)


def test_seeded_and_global_rng_untouched(cycles):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    h, _ = _queries(cycles)
    for name in SEQUENTIAL:
        a = build_model(name, **_params(name, epochs=3)).fit(cycles).score(h)
        b = build_model(name, **_params(name, epochs=3)).fit(cycles).score(h)
        c = build_model(name, **_params(name, epochs=3, random_state=1)).fit(cycles).score(h)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_save_load_round_trip(fitted, cycles, tmp_path):
    h, _ = _queries(cycles)
    loaded = Recommender.load(fitted.save(tmp_path / fitted.name))
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.score(h), fitted.score(h))


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_early_stopping_on_validation(name, cycles):
    split = make_split(cycles, "loo")
    m = build_model(name, **_params(name, epochs=40, patience=2))
    m.fit(split.train, valid=split.valid)
    evals = [r for r in m.history_ if "valid_ndcg@10" in r]
    assert evals and len(evals) == len(m.history_) < 40  # every epoch; stopped early
    best = max(evals, key=lambda r: r["valid_ndcg@10"])
    assert m.best_epoch_ == best["epoch"]
    from m6rec.eval.evaluate import evaluate

    # the restored weights are the best epoch's
    got = evaluate(m, split.valid, ks=(10,), metrics=("ndcg",), beyond_accuracy=False)
    assert got["ndcg@10"] == pytest.approx(best["valid_ndcg@10"])


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sampled_loss_learns(name, cycles):
    m = build_model(name, **_params(name, loss="sampled"))
    h, target = _queries(cycles)
    ids, _ = m.fit(cycles).recommend(h, k=1)
    assert (ids[:, 0] == target).mean() >= 0.9


def test_training_windows_cover_every_target_once():
    m = build_model("sasrec", max_len=3)
    m.n_items_ = 100
    rows = [list(range(10, 10 + n)) for n in (0, 1, 2, 4, 7, 8)]
    h = Histories.from_lists(rows)
    x, y, mask, _ = m.training_windows(h)
    assert x.shape == (0 + 0 + 1 + 1 + 2 + 3, 3)  # ceil((n - 1) / max_len) windows per row
    assert (x[~mask] == 100).all() and (y[mask] == x[mask] + 1).all()
    assert sorted(y[mask]) == sorted(i for r in rows for i in r[1:])
    # left padding: the real inputs of each window are contiguous and end the row
    assert all(mask[w, -1] and not (np.diff(mask[w].astype(int)) < 0).any() for w in range(len(x)))
    g = build_model("gru4rec", max_len=3)
    g.n_items_ = 100
    gx, gy, gmask, _ = g.training_windows(h)
    assert (gmask[:, 0]).all() and not (np.diff(gmask.astype(int), axis=1) > 0).any()
    np.testing.assert_array_equal(np.sort(gy[gmask]), np.sort(y[mask]))


def test_extras_time_gaps_aligned():
    class WithGaps(SequentialRecommender):
        extras = ("time_gaps", "ratings")

    m = WithGaps(max_len=3)
    m.n_items_ = 10
    h = Histories(np.array([0, 4, 4, 6]), np.array([1, 2, 3, 4, 5, 6]), np.array([0, 1, 2]),
                  timestamps=np.array([10.0, 15.0, 30.0, np.nan, 5.0, 6.0]))
    items, mask, extras = m.model_inputs(h)
    np.testing.assert_array_equal(items, [[2, 3, 4], [10, 10, 10], [10, 5, 6]])
    np.testing.assert_array_equal(extras["time_gaps"], [[5.0, 15.0, 0.0], [0, 0, 0], [0, 0, 1.0]])
    assert extras["time_gaps"].dtype == np.float32 and (extras["ratings"] == 0).all()


@pytest.mark.parametrize("bad", [{"max_len": 0}, {"dropout": 1.0}, {"loss": "bpr"},
                                 {"device": "tpu"}, {"lr": 0.0}])
def test_invalid_params(bad, cycles):
    with pytest.raises(ValueError):
        build_model("sasrec", **bad).fit(cycles)


def test_sasrec_heads_must_divide_hidden(cycles):
    with pytest.raises(ValueError, match="divide"):
        build_model("sasrec", hidden=10, n_heads=3).fit(cycles)


def test_losses_and_helpers():
    g = torch.Generator().manual_seed(0)
    h, table = torch.randn(6, 4, generator=g), torch.randn(9, 4, generator=g)
    t = torch.tensor([0, 3, 3, 8, 1, 2])
    ref = torch.nn.functional.cross_entropy(h @ table.T, t)
    assert torch.allclose(full_softmax_ce(h, t, table), ref)
    # with every item drawn as a candidate the sampled loss is finite and >= 0
    s = sampled_softmax_ce(h, t, table, n_negatives=50, generator=g)
    assert torch.isfinite(s) and s >= 0
    assert choose_loss("auto", 10, 100) == "ce" and choose_loss("auto", 1000, 100) == "sampled"
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    before = torch.random.get_rng_state()
    with seeded(7) as gen:
        x1, p1 = torch.rand(3), torch.randperm(5, generator=gen)
    with seeded(7) as gen:
        x2, p2 = torch.rand(3), torch.randperm(5, generator=gen)
    assert torch.equal(x1, x2) and torch.equal(p1, p2)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_early_stopping_helper():
    lin = torch.nn.Linear(2, 1)
    es = EarlyStopping(patience=2)
    assert not es.step(0.5, 1, lin)
    kept = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(1.0)
    assert not es.step(0.4, 2, lin) and es.step(0.5, 3, lin)  # ties are no improvement
    es.restore(lin)
    assert torch.equal(lin.weight, kept) and es.best_epoch == 1


def test_full_softmax_exclude_matches_masked_reference():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 4, generator=g, requires_grad=True)
    table = torch.randn(7, 4, generator=g, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3, 4])
    rows, cols = torch.tensor([0, 0, 1, 2]), torch.tensor([3, 0, 5, 6])  # (0, 0) is a target
    loss = full_softmax_ce(h, t, table, exclude=(rows, cols))
    loss.backward()
    h2 = h.detach().clone().requires_grad_()
    table2 = table.detach().clone().requires_grad_()
    drop = torch.zeros(5, 7, dtype=torch.bool)
    drop[0, 3] = drop[1, 5] = drop[2, 6] = True  # the target itself is never dropped
    ref = torch.nn.functional.cross_entropy((h2 @ table2.T).masked_fill(drop, float("-inf")), t)
    ref.backward()
    assert torch.allclose(loss, ref)
    assert torch.allclose(h.grad, h2.grad, atol=1e-6)
    assert torch.allclose(table.grad, table2.grad, atol=1e-6)


def test_full_softmax_soft_targets_match_the_weighted_reference():
    """``soft``: each row's loss gains sum_i w_i * -log softmax_i (value and gradients), with
    an excluded logit beside them."""
    g = torch.Generator().manual_seed(2)
    h = torch.randn(4, 3, generator=g, requires_grad=True)
    table = torch.randn(6, 3, generator=g, requires_grad=True)
    t = torch.tensor([0, 1, 2, 5])
    w = torch.tensor([[0.0, 0.2, 0.1, 0.0, 0.0, 0.0], [0.3, 0.0, 0.0, 0.1, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 0.0, 0.05, 0.0], [0.0] * 6])
    loss = full_softmax_ce(h, t, table, exclude=(torch.tensor([1]), torch.tensor([5])),
                           soft=w)
    loss.backward()
    h2 = h.detach().clone().requires_grad_()
    table2 = table.detach().clone().requires_grad_()
    z = h2 @ table2.T
    z = z.masked_fill(torch.tensor([[False] * 6, [False] * 5 + [True]] + [[False] * 6] * 2),
                      float("-inf"))
    logp = torch.log_softmax(z, dim=1)
    ref = (-logp.gather(1, t[:, None])[:, 0]
           - torch.where(w > 0, w * logp, 0.0).sum(1)).mean()
    ref.backward()
    assert torch.allclose(loss, ref)
    assert torch.allclose(h.grad, h2.grad, atol=1e-6)
    assert torch.allclose(table.grad, table2.grad, atol=1e-6)
