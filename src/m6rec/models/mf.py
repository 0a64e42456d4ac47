"""Matrix factorisation baselines: PureSVD, implicit-feedback ALS and BPR.

ALS and BPR are trained by the ``implicit`` library's CPU code (``implicit.cpu.*``, never the GPU
classes), on the user x item CSR matrix (implicit >= 0.5 convention).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender


def _check(positive: dict[str, float], non_negative: dict[str, float]) -> None:
    for key, value in positive.items():
        if not value > 0:
            raise ValueError(f"{key} must be > 0, got {value!r}")
    for key, value in non_negative.items():
        if not value >= 0:
            raise ValueError(f"{key} must be >= 0, got {value!r}")


class PureSVD(Recommender):
    """Truncated SVD ``X ~ U S V^T`` of the binary train matrix; score = h @ V @ V^T.

    Folding in through ``V`` works for any history, seen or new user. Reference: P. Cremonesi,
    Y. Koren, R. Turrin, "Performance of recommender algorithms on top-N recommendation tasks",
    RecSys 2010.

    Parameters
    ----------
    factors : int
        Rank of the SVD; must be below min(n_users, n_items).
    random_state : int
        Seeds ARPACK's starting vector.
    """

    name = "puresvd"

    def __init__(self, factors: int = 64, random_state: int = 0):
        self.factors = factors
        self.random_state = random_state

    def fit(self, dataset: Dataset, valid: Histories | None = None) -> PureSVD:
        x = dataset.csr().astype(np.float64)
        if int(self.factors) != self.factors or not 1 <= self.factors < min(x.shape):
            raise ValueError(f"factors must be an integer in [1, min(n_users, n_items) = "
                             f"{min(x.shape)}), got {self.factors!r}")
        _, _, vt = spla.svds(x, k=int(self.factors), solver="arpack",
                             random_state=self.random_state)
        self.item_factors_ = np.ascontiguousarray(vt.T, dtype=np.float32)  # [n_items, factors]
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        return self

    def _score_rows(self, histories: Histories) -> np.ndarray:
        v = self.item_factors_
        return np.asarray((histories.csr(self.n_items_) @ v) @ v.T, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_factors_ = state["item_factors"]


class ALS(Recommender):
    """Implicit-feedback ALS (weighted matrix factorisation) with confidence ``C = 1 + alpha x``.

    Trained by ``implicit.cpu.als.AlternatingLeastSquares`` on ``(1 + alpha) X`` (implicit uses
    the stored value itself as the confidence). Every query, known user or not, is folded in with
    the closed-form user solve ``u = (Y^T C Y + reg I)^-1 Y^T C p`` against the item factors Y.
    Reference: Y. Hu, Y. Koren, C. Volinsky, "Collaborative Filtering for Implicit Feedback
    Datasets", ICDM 2008.

    Parameters
    ----------
    factors : int
    regularization : float
        L2 weight on the factors.
    alpha : float
        Confidence slope: an observed interaction weighs ``1 + alpha``.
    iterations : int
    random_state : int
        Seeds the factor initialisation.
    num_threads : int
        implicit's threads (0 = all cores).
    """

    name = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0,
                 iterations: int = 15, random_state: int = 0, num_threads: int = 0):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def fit(self, dataset: Dataset, valid: Histories | None = None) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        _check({"factors": self.factors, "iterations": self.iterations},
               {"regularization": self.regularization, "alpha": self.alpha})
        confidence = dataset.csr() * np.float32(1.0 + self.alpha)
        with threadpool_limits(1, "blas"):  # implicit warns (and slows down) otherwise
            model = AlternatingLeastSquares(
                factors=int(self.factors), regularization=float(self.regularization), alpha=1.0,
                iterations=int(self.iterations), random_state=self.random_state, num_threads=int(self.num_threads))
            model.fit(confidence, show_progress=False)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        self._prepare()
        return self

    def _prepare(self) -> None:
        y = self.item_factors_.astype(np.float64)
        self._y64 = y
        self._gram = y.T @ y + self.regularization * np.eye(y.shape[1])

    def user_factors(self, histories: Histories) -> np.ndarray:
        """Folded-in user vectors, float64 [n, factors]."""
        y, h = self._y64, histories.csr(self.n_items_)
        b = (1.0 + self.alpha) * np.asarray(h @ y)
        a = np.repeat(self._gram[None], len(histories), axis=0)
        for r in range(len(histories)):  # small f x f corrections, one per row of the batch
            yr = y[h.indices[h.indptr[r]:h.indptr[r + 1]]]
            a[r] += self.alpha * (yr.T @ yr)
        return np.linalg.solve(a, b[..., None])[..., 0]

    def _score_rows(self, histories: Histories) -> np.ndarray:
        # the user solve in float64, the [n, n_items] product in float32 (half the time)
        return self.user_factors(histories).astype(np.float32) @ self.item_factors_.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_factors_ = state["item_factors"]
        self._prepare()


class BPR(Recommender):
    """Bayesian Personalized Ranking matrix factorisation (``implicit.cpu.bpr``).

    implicit appends an item-bias column: item factors are ``[n_items, factors + 1]`` and user
    factors carry a constant 1 there. Known users (``histories.users >= 0``) use their learned
    factors; unknown users get the mean of their history items' factors (bias column set to 1).
    Reference: S. Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback",
    UAI 2009.

    Parameters
    ----------
    factors : int
    learning_rate : float
    regularization : float
    iterations : int
        Epochs of SGD.
    random_state : int
        Seeds initialisation and sampling (runs are only bit-reproducible with one thread).
    num_threads : int
        implicit's threads (0 = all cores; 1 for bit-reproducible runs).
    """

    name = "bpr"

    def __init__(self, factors: int = 64, learning_rate: float = 0.01,
                 regularization: float = 0.01, iterations: int = 100, random_state: int = 0,
                 num_threads: int = 0):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def fit(self, dataset: Dataset, valid: Histories | None = None) -> BPR:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        _check({"factors": self.factors, "learning_rate": self.learning_rate,
                "iterations": self.iterations}, {"regularization": self.regularization})
        model = BayesianPersonalizedRanking(
            factors=int(self.factors), learning_rate=float(self.learning_rate),
            regularization=float(self.regularization), iterations=int(self.iterations),
            random_state=self.random_state, num_threads=int(self.num_threads))
        model.fit(dataset.csr(), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        return self

    def user_factors(self, histories: Histories) -> np.ndarray:
        """User vectors [n, factors + 1] (learned, or the mean of the history's item factors)."""
        users = np.asarray(histories.users)
        known = (users >= 0) & (users < self.n_users_)
        h = histories.csr(self.n_items_)
        counts = np.maximum(h.getnnz(axis=1), 1).astype(np.float32)
        u = np.asarray(h @ self.item_factors_) / counts[:, None]
        u[:, -1] = 1.0
        u[known] = self.user_factors_[users[known]]
        return u.astype(np.float32, copy=False)

    def _score_rows(self, histories: Histories) -> np.ndarray:
        return self.user_factors(histories) @ self.item_factors_.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]
