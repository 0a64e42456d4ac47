"""Fold-in: new events enter a fitted model without retraining it.

Every fold-in returns a *new* model object (the old one keeps serving, untouched) and keeps the
incremental statistics it needs between calls, started from the data the model was fitted on:

- ``ease``: the Gram matrix ``X^T X`` is updated by the touched users' rows (old rows out, new
  rows in) and the closed form ``B`` is solved again (one ``n_items^3`` inverse, no pass over
  the data);
- ``itemknn``: the item co-occurrence counts and item counts are updated the same way and the
  cosine top-k neighbours recomputed from them;
- ``userknn`` / ``pop``: their "weights" are the interaction matrix / counts, replaced by the
  current ones;
- ``als``: users are always folded in from their current history at query time; the factors of
  the items touched by new events are re-solved from the folded-in user factors (one ALS
  half-step restricted to those items, as implicit's ``partial_fit_items``);
- ``puresvd``: one step of subspace iteration on the current ``X^T X`` from the current basis
  (QR + Rayleigh-Ritz; a fixpoint on the fitted data, converges to a refit);
- ``bpr``: a few epochs of BPR SGD over the touched users' histories (their user vectors and
  the items they touch), all other factors fixed.

Sequential models (``sasrec``, ``gru4rec``, ``m6``) read the current history at query time;
their weights learn from new events with `m6rec.online.finetune`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from m6rec.data.dataset import Dataset
from m6rec.models.base import Recommender

FOLDIN_MODELS = ("ease", "itemknn", "userknn", "pop", "als", "puresvd", "bpr")


def clone(model: Recommender) -> Recommender:
    """A new model object with the same parameters and a copy of the learned state."""
    model._check_fitted()
    new = type(model)(**model.get_params())
    new.n_items_, new.n_users_ = model.n_items_, model.n_users_
    new.set_state({k: np.array(v, copy=True) for k, v in model.get_state().items()})
    return new


class FoldIn:
    """Incremental statistics of one fitted model (created from the data it was fitted on).

    ``apply(model, before, after, users)`` folds the events that turned ``before`` into
    ``after`` (both `Dataset` over the same catalogue; ``users`` = the user indices whose
    histories changed) into a copy of ``model`` and returns it."""

    def __init__(self, model: Recommender, dataset: Dataset):
        self.params = model.get_params()

    def apply(self, model: Recommender, before: Dataset, after: Dataset,
              users: np.ndarray) -> Recommender:
        raise NotImplementedError


def make_foldin(model: Recommender, dataset: Dataset, half_life: float = 0.0) -> FoldIn:
    """The fold-in of ``model`` (ValueError for models that have none). ``half_life``
    (seconds, 0 = none): recency weighting of users, for ``ease`` only (`EaseFoldIn`)."""
    kinds: dict[str, type[FoldIn]] = {
        "ease": EaseFoldIn, "itemknn": ItemKNNFoldIn, "userknn": RefitFoldIn, "pop": RefitFoldIn,
        "als": ALSFoldIn, "puresvd": PureSVDFoldIn, "bpr": BPRFoldIn}
    if model.name not in kinds:
        raise ValueError(f"model {model.name!r} has no fold-in (models with one: "
                         f"{', '.join(FOLDIN_MODELS)}); sequential models learn new events "
                         "with the finetune policy")
    if half_life:
        if half_life < 0 or model.name != "ease":
            raise ValueError(f"half_life must be > 0 and applies to ease only, got "
                             f"{half_life!r} for {model.name!r}")
        return EaseFoldIn(model, dataset, half_life=half_life)
    return kinds[model.name](model, dataset)


def _delta_gram(before: Dataset, after: Dataset, users: np.ndarray) -> sp.csr_matrix:
    """``X_after^T X_after - X_before^T X_before`` (binary X), only the touched users' rows
    differ. Users new in ``after`` have no row in ``before``."""
    xa = _rows(after, users)
    xb = _rows(before, users)
    return (xa.T @ xa - xb.T @ xb).tocsr()


def _rows(ds: Dataset, users: np.ndarray) -> sp.csr_matrix:
    """Binary rows of the given users (empty for users ``ds`` does not know)."""
    inter = ds.inter
    sel = inter[inter["user_idx"].isin(users)]
    pos = np.searchsorted(users, sel["user_idx"].to_numpy())
    m = sp.csr_matrix((np.ones(len(sel), np.float64), (pos, sel["item_idx"].to_numpy())),
                      shape=(len(users), ds.n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


class RefitFoldIn(FoldIn):
    """Models whose learned state is the interaction data itself (pop counts, userknn's
    matrix): refit on the current data, which costs one pass over it and no optimisation."""

    def apply(self, model, before, after, users):
        return type(model)(**model.get_params()).fit(after)


class EaseFoldIn(FoldIn):
    """Exact incremental Gram matrix. With ``half_life`` (seconds, > 0) each user's row is
    weighted by ``2 ** -((now - t_u) / half_life)``, ``t_u`` = the user's newest event and
    ``now`` = the newest event seen (a recency-weighted EASE: users active lately count more);
    the decay stays exact across updates (all weights scale by the same factor, touched users'
    rows are swapped with their new weights).

    Without a half-life the inverse ``P = (G + reg I)^-1`` is kept too and small updates change
    it by the Woodbury identity (the touched users' old rows out, new rows in: rank <= 2 x
    touched users, ``O(n_items^2 r)`` instead of an ``O(n_items^3)`` inverse), with a full
    inverse when the rank exceeds ``n_items / 8`` and every ``refresh`` updates (round-off)."""

    refresh = 50

    def __init__(self, model: Recommender, dataset: Dataset, half_life: float = 0.0):
        super().__init__(model, dataset)
        self.half_life = float(half_life)
        self.p: np.ndarray | None = None
        self.since_inverse = 0
        self.last_solve = ""
        x = dataset.csr().astype(np.float64)
        if self.half_life > 0:
            self.now, self.last = _last_event(dataset)
            x = sp.diags(np.sqrt(self._weights(self.last))) @ x
        self.gram = np.asarray((x.T @ x).todense(), dtype=np.float64)

    def _weights(self, last: np.ndarray) -> np.ndarray:
        return np.exp2(-(self.now - last) / self.half_life)

    def apply(self, model, before, after, users):
        if self.half_life > 0:
            now, last = _last_event(after)
            known = users < len(self.last)  # users new in `after` had no row before
            w_old = np.zeros(len(users))
            w_old[known] = np.exp2(-(now - self.last[users[known]]) / self.half_life)
            self.gram *= np.exp2(-(now - self.now) / self.half_life)
            self.now, self.last = now, last
            xa = sp.diags(np.sqrt(self._weights(last[users]))) @ _rows(after, users)
            xb = sp.diags(np.sqrt(w_old)) @ _rows(before, users)
            self.gram += (xa.T @ xa - xb.T @ xb).toarray()
            return self.solve(model, after.n_users)
        xa, xb = _rows(after, users), _rows(before, users)
        self.gram += (xa.T @ xa - xb.T @ xb).toarray()
        u = sp.vstack([xa, xb]).tocsr()  # [r, n_items]: rows in (+1), rows out (-1)
        sign = np.concatenate([np.ones(xa.shape[0]), -np.ones(xb.shape[0])])
        keep = np.diff(u.indptr) > 0
        u, sign = u[keep], sign[keep]
        if (self.p is None or self.since_inverse >= self.refresh
                or u.shape[0] > self.gram.shape[0] // 8):
            return self.solve(model, after.n_users)
        # (A + U^T C U)^-1 = P - P U^T (C^-1 + U P U^T)^-1 U P, C = diag(sign) = C^-1
        up = np.asarray(u @ self.p)  # [r, n]
        k = np.diag(sign) + np.asarray(u @ up.T)
        self.p -= up.T @ np.linalg.solve(k, up)
        self.since_inverse += 1
        self.last_solve = "woodbury"
        return self._from_inverse(model, self.p, after.n_users)

    def solve(self, model: Recommender, n_users: int) -> Recommender:
        """A new EASE model from the current (possibly recency-weighted) Gram matrix."""
        g = self.gram.copy()
        g[np.diag_indices_from(g)] += float(model.reg)
        p = np.linalg.inv(g)
        if self.half_life <= 0:
            self.p, self.since_inverse = p, 0
        self.last_solve = "inverse"
        return self._from_inverse(model, p, n_users)

    @staticmethod
    def _from_inverse(model: Recommender, p: np.ndarray, n_users: int) -> Recommender:
        b = p / (-np.diag(p))[None, :]
        np.fill_diagonal(b, 0.0)
        new = type(model)(**model.get_params())
        new.weights_ = b.astype(np.float32)
        new.n_items_, new.n_users_ = model.n_items_, n_users
        return new


def _last_event(ds: Dataset) -> tuple[float, np.ndarray]:
    """The newest timestamp and every user's newest one (-inf for users with no event)."""
    if not ds.has_timestamps:
        raise ValueError(f"{ds.name}: a half-life needs timestamps")
    inter = ds.inter
    last = np.full(ds.n_users, -np.inf)
    np.maximum.at(last, inter["user_idx"].to_numpy(), inter["timestamp"].to_numpy(np.float64))
    return float(inter["timestamp"].max()), last


class ItemKNNFoldIn(FoldIn):
    def __init__(self, model: Recommender, dataset: Dataset):
        super().__init__(model, dataset)
        x = dataset.csr().astype(np.float64)
        self.co = (x.T @ x).tocsr()  # co-occurrence counts; the diagonal = item counts

    def apply(self, model, before, after, users):
        from m6rec.models.knn import topk_per_row

        self.co = (self.co + _delta_gram(before, after, users)).tocsr()
        self.co.eliminate_zeros()
        counts = self.co.diagonal()
        norms = np.sqrt(counts)
        co = self.co.tocoo()
        keep = co.row != co.col
        r, c = co.row[keep], co.col[keep]
        v = co.data[keep] / (norms[r] * norms[c] + float(model.shrink))
        st = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=self.co.shape)
        st = topk_per_row(st, int(model.k))  # row j: j's neighbours (the matrix is symmetric)
        new = type(model)(**model.get_params())
        new.similarity_ = st.T.tocsr().astype(np.float32)
        new.n_items_, new.n_users_ = model.n_items_, after.n_users
        return new


class ALSFoldIn(FoldIn):
    def apply(self, model, before, after, users):
        items = _touched_items(after, users)
        new = clone(model)
        new.n_users_ = after.n_users
        if len(items) == 0:
            return new
        active = np.flatnonzero(np.bincount(after.inter["user_idx"].to_numpy(),
                                            minlength=after.n_users))
        h = after.histories(active)
        u = model.user_factors(h)  # [n_active, f] folded in against the current item factors
        reg = float(model.regularization) * np.eye(u.shape[1])
        utu = u.T @ u
        x = h.csr(model.n_items_).tocsc()
        y = new.item_factors_.astype(np.float64)
        alpha = float(model.alpha)
        for j in items:
            rows = x.indices[x.indptr[j]:x.indptr[j + 1]]
            if len(rows) == 0:
                continue
            uj = u[rows]
            y[j] = np.linalg.solve(utu + alpha * (uj.T @ uj) + reg, (1.0 + alpha) * uj.sum(0))
        new.item_factors_ = y.astype(np.float32)
        new._prepare()
        return new


class PureSVDFoldIn(FoldIn):
    """One step of subspace iteration per update: ``Q = qr(G V)``, then Rayleigh-Ritz
    (eigenvectors of ``Q^T G Q``) gives the new orthonormal basis, ``G`` = the current
    ``X^T X``. A fixpoint on the fitted data (``G V = V S^2``); repeated updates converge to
    the SVD of all the data, i.e. to a refit. (Re-projecting item vectors onto the fitted basis
    without re-orthonormalising lost 15% NDCG@10 against static on ml-100k.)"""

    def __init__(self, model: Recommender, dataset: Dataset):
        super().__init__(model, dataset)
        x = dataset.csr().astype(np.float64)
        self.gram = (x.T @ x).tocsr()
        self.v = model.item_factors_.astype(np.float64)

    def apply(self, model, before, after, users):
        self.gram = (self.gram + _delta_gram(before, after, users)).tocsr()
        q, _ = np.linalg.qr(np.asarray(self.gram @ self.v))
        w, e = np.linalg.eigh(q.T @ np.asarray(self.gram @ q))
        v = q @ e[:, np.argsort(-w)]
        v *= np.where(np.einsum("if,if->f", v, self.v) < 0, -1.0, 1.0)[None, :]  # keep signs
        self.v = v
        new = clone(model)
        new.n_users_ = after.n_users
        new.item_factors_ = v.astype(np.float32)
        return new


class BPRFoldIn(FoldIn):
    """BPR SGD restricted to the touched users: each epoch samples one (item, negative) per
    history interaction of those users; updates their user vectors and the sampled items'
    vectors with implicit's update rule (bias column of the user vector fixed at 1)."""

    def __init__(self, model: Recommender, dataset: Dataset, epochs: int = 5,
                 random_state: int = 0):
        super().__init__(model, dataset)
        self.epochs = epochs
        self.rng = np.random.default_rng(random_state)

    def apply(self, model, before, after, users):
        new = clone(model)
        uf, itf = new.user_factors_, new.item_factors_
        if after.n_users > len(uf):  # users new to the model start from the mean history
            extra = np.zeros((after.n_users - len(uf), uf.shape[1]), np.float32)
            extra[:, -1] = 1.0
            uf = np.concatenate([uf, extra])
        h = after.histories(users)
        rows = np.repeat(h.users, h.lengths)
        pos = h.items
        seen = set(zip(rows.tolist(), pos.tolist(), strict=True))
        lr, reg = float(model.learning_rate), float(model.regularization)
        for _ in range(self.epochs):
            order = self.rng.permutation(len(pos))
            for start in range(0, len(order), 256):
                b = order[start:start + 256]
                u, i = rows[b], pos[b]
                j = self.rng.integers(0, model.n_items_, len(b))
                ok = np.array([(a, c) not in seen for a, c in zip(u.tolist(), j.tolist(), strict=True)])
                u, i, j = u[ok], i[ok], j[ok]
                pu, qi, qj = uf[u], itf[i], itf[j]
                z = 1.0 / (1.0 + np.exp(np.einsum("nf,nf->n", pu, qi - qj)))
                du = lr * (z[:, None] * (qi - qj) - reg * pu)
                du[:, -1] = 0.0
                np.add.at(uf, u, du)
                np.add.at(itf, i, lr * (z[:, None] * pu - reg * qi))
                np.add.at(itf, j, lr * (-z[:, None] * pu - reg * qj))
        new.user_factors_, new.item_factors_ = uf.astype(np.float32), itf.astype(np.float32)
        new.n_users_ = len(uf)
        return new


def _touched_items(after: Dataset, users: np.ndarray) -> np.ndarray:
    """Items in the touched users' current histories (a superset of the new events' items)."""
    inter = after.inter
    return np.unique(inter.loc[inter["user_idx"].isin(users), "item_idx"].to_numpy())

