"""Mult-VAE (Liang et al., WWW 2018) on the checkerboard: learns it, early-stops on validation,
folds in any history, is reproducible and round-trips through save / load."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from m6rec.data import Dataset, Histories
from m6rec.eval.protocols import EvalSet
from m6rec.models.base import Recommender
from m6rec.models.multvae import MultVAE

TINY = {"hidden": 32, "latent": 8, "epochs": 30, "lr": 1e-2, "batch_size": 16, "device": "cpu"}


def _withheld(ds: Dataset) -> np.ndarray:
    return np.array([ds.item_index("i" + ds.user_ids[u][1:]) for u in range(ds.n_users)])


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny networks: one thread is fastest (and immune to a busy machine's contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def valid(checkerboard) -> EvalSet:
    """Every user's withheld item as the validation target."""
    h = checkerboard.histories()
    n = checkerboard.n_users
    targets = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), _withheld(checkerboard))),
                            shape=(n, checkerboard.n_items))
    return EvalSet(users=np.arange(n, dtype=np.int64), histories=h, targets=targets)


@pytest.fixture(scope="module")
def fitted(checkerboard, valid) -> MultVAE:
    return MultVAE(**TINY, patience=3).fit(checkerboard, valid=valid)


def test_learns_checkerboard_with_early_stopping(fitted, checkerboard):
    ids, _ = fitted.recommend(checkerboard.histories(), k=1)
    np.testing.assert_array_equal(ids[:, 0], _withheld(checkerboard))
    hist = fitted.history_
    assert [r["epoch"] for r in hist] == list(range(1, len(hist) + 1))
    assert all({"loss", "valid_ndcg@10"} <= set(r) for r in hist)
    assert max(r["valid_ndcg@10"] for r in hist) == pytest.approx(1.0)
    assert len(hist) < TINY["epochs"]  # a perfect score cannot improve: stopped after patience
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_unknown_users_fold_in(fitted, checkerboard):
    h = checkerboard.histories()
    unknown = Histories(h.indptr, h.items, np.full(len(h), -1, dtype=np.int64))
    np.testing.assert_array_equal(fitted.score(unknown), fitted.score(h))
    # a new user with only even items gets even items first
    ids, _ = fitted.recommend(Histories.from_lists([[checkerboard.item_index("i0"),
                                                     checkerboard.item_index("i2")]]), k=5)
    assert all(int(checkerboard.item_ids[i][1:]) % 2 == 0 for i in ids[0])


def test_seeded_and_leaves_global_rng_alone(checkerboard):
    before = torch.get_rng_state()
    a = MultVAE(**{**TINY, "epochs": 3}, random_state=1).fit(checkerboard)
    assert torch.equal(torch.get_rng_state(), before)
    b = MultVAE(**{**TINY, "epochs": 3}, random_state=1).fit(checkerboard)
    c = MultVAE(**{**TINY, "epochs": 3}, random_state=2).fit(checkerboard)
    h = checkerboard.histories()
    np.testing.assert_array_equal(a.score(h), b.score(h))
    assert not np.array_equal(a.score(h), c.score(h))


def test_save_load_round_trip(fitted, checkerboard, tmp_path):
    fitted.save(tmp_path / "vae")
    with np.load(tmp_path / "vae" / "state.npz", allow_pickle=False) as z:
        assert all(k.startswith("module.") for k in z.files)
    loaded = Recommender.load(tmp_path / "vae")
    assert isinstance(loaded, MultVAE) and loaded.get_params() == fitted.get_params()
    h = checkerboard.histories()
    np.testing.assert_array_equal(loaded.score(h), fitted.score(h))


def test_anneal_cap_zero_is_plain_autoencoder(checkerboard):
    """With beta = 0 the loss is the multinomial NLL alone: >= 24 log 24 on the checkerboard."""
    m = MultVAE(**{**TINY, "epochs": 5}, anneal_cap=0.0).fit(checkerboard)
    assert m.history_[-1]["loss"] >= 24 * np.log(24) - 1e-3


@pytest.mark.parametrize("bad", [{"dropout": 1.0}, {"epochs": 0}, {"latent": 0},
                                 {"lr": 0.0}, {"total_anneal_steps": -1}, {"device": "tpu"}])
def test_invalid_params(bad, checkerboard):
    with pytest.raises(ValueError):
        MultVAE(**{**TINY, **bad}).fit(checkerboard)
