"""Hybrid recommender: SVD-initialised matrix factorisation plus an MLP over user and item
features, fused by a shared linear layer (the "SVD + MLP" model of the M6-Rec seed documents).

A user is ``z_u = [p_u + mean_{j in H} q_j ; mlp_u(profile_u, mean_{j in H} x_j)]`` and an item
``z_i = [e_i ; mlp_i(x_i)]`` (``x`` the item features of `m6rec.features`, ``H`` the user's
history); score = ``w . (z_u * z_i) + b + b_i`` (+ ``mu + b_u`` in rating mode), the shared layer
``w`` being the fusion (NeuMF's GMF layer, He et al., WWW 2017; SVD++-style history pooling,
Koren, KDD 2008). ``p`` and ``e`` start from the truncated SVD of the training matrix (binary, or
mean-centred ratings). Because the score is bilinear the catalogue is scored with one product.
A user the model never saw (or any new history) is folded in through the pooled part alone; in
training the target item is left out of its own pooling, and ``user_dropout`` hides a share of
the known users' ``p_u`` so that the fold-in is trained too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.models.sequential import _require
from m6rec.train.evalset import EvalSet
from m6rec.train.params import set_train_params, shared

MODES = ("rank", "rating")
RANK_LOSSES = ("ce", "sampled", "bpr")


class Hybrid(Recommender):
    """MF + feature MLP, fused by a shared linear layer (see the module doc).

    Parameters
    ----------
    mode : {"rank", "rating"}
        Implicit feedback for top-k ranking, or MSE on the ``rating`` column.
    factors : int
        MF dimension (SVD rank).
    feature_dim, mlp_hidden : int
        Output and hidden width of the two feature MLPs.
    user_embedding : bool
        Also learn ``p_u`` for training users (default off: every user is its pooled history,
        which measured better on ml-100k, both for ranking on ``loo`` and for RMSE).
    user_features, item_features : bool
        Use the profile / catalogue features (`m6rec.features`).
    vectors_file : str
        Optional file of precomputed item vectors (``.npz`` / ``.parquet`` keyed by item id, or
        ``.npy`` in catalogue order), appended to the item features.
    max_levels : int
        Most levels of a categorical column turned into one-hots.
    svd_init : bool
        Start ``p`` and ``e`` from the truncated SVD (else small random values).
    loss : {"ce", "sampled", "bpr"}
        Rank mode: full-softmax cross-entropy, sampled softmax, or BPR with one uniform negative.
    n_negatives : int
        Uniform negatives of the sampled softmax.
    user_dropout : float
        Share of training examples whose ``p_u`` is hidden (trains the fold-in path).
    dropout : float
        Dropout on the user vector.
    epochs, batch_size, lr, weight_decay, patience, eval_every :
        Adam on shuffled (user, item) examples; early stopping on the validation set (NDCG@10 of
        an `EvalSet`, or minus the RMSE of a ratings frame with ``user_idx, item_idx, rating``).
    device : {"auto", "cpu", "cuda"}
    random_state : int
    verbose : bool
    """

    name = "hybrid"
    uses_validation = True

    train_params = shared(dropout=0.1, epochs=60, batch_size=1024, lr=1e-3, patience=5,
                          device="auto", random_state=0, verbose=False)

    def __init__(self, mode: str = "rank", factors: int = 64, feature_dim: int = 32,
                 mlp_hidden: int = 128, user_embedding: bool = False, user_features: bool = True,
                 item_features: bool = True, vectors_file: str = "", max_levels: int = 64,
                 svd_init: bool = True, loss: str = "ce", n_negatives: int = 256,
                 user_dropout: float = 0.2, weight_decay: float = 0.0, eval_every: int = 1,
                 **train: Any):
        self.mode = mode
        self.factors = factors
        self.feature_dim = feature_dim
        self.mlp_hidden = mlp_hidden
        self.user_embedding = user_embedding
        self.user_features = user_features
        self.item_features = item_features
        self.vectors_file = vectors_file
        self.max_levels = max_levels
        self.svd_init = svd_init
        self.loss = loss
        self.n_negatives = n_negatives
        self.user_dropout = user_dropout
        self.weight_decay = weight_decay
        self.eval_every = eval_every
        set_train_params(self, train)

    # -- hooks shared with MultiTask -------------------------------------------------------------
    def _check_params(self) -> None:
        from m6rec.train.loop import resolve_device

        _require(self, ints={"factors": 1, "feature_dim": 1, "mlp_hidden": 1, "max_levels": 1,
                             "n_negatives": 1, "epochs": 1, "batch_size": 1, "patience": 1,
                             "eval_every": 1}, positive=("lr",), non_negative=("weight_decay",))
        for key in ("dropout", "user_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {getattr(self, key)!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.loss not in RANK_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(RANK_LOSSES)}, got {self.loss!r}")
        resolve_device(self.device)

    def _needs_ratings(self) -> bool:
        return self.mode == "rating"

    def _extra_modules(self, d: int) -> dict[str, Any]:
        return {}

    def _batch_loss(self, module, z, users, items, ratings, gen):
        from m6rec.train.losses import sampled_softmax_ce

        if self.mode == "rating":
            return F.mse_loss(module.pair_scores(z, users, items), ratings)
        if self.loss == "bpr":
            neg = torch.randint(0, module.n_items, items.shape, generator=gen).to(items.device)
            diff = module.pair_scores(z, users, items) - module.pair_scores(z, users, neg)
            return -F.logsigmoid(diff).mean()
        hidden, table = module.softmax_inputs(z)
        if self.loss == "sampled":
            return sampled_softmax_ce(hidden, items, table, int(self.n_negatives), generator=gen)
        return self._ce(hidden, items, table)

    # -- training --------------------------------------------------------------------------------
    def fit(self, dataset: Dataset, valid: EvalSet | pd.DataFrame | None = None) -> Hybrid:
        from m6rec.train.loop import resolve_device, seeded, train_epochs
        from m6rec.train.losses import FullSoftmaxCE

        self._check_params()
        if self._needs_ratings() and not dataset.has_ratings:
            raise ValueError(f"{dataset.name}: rating prediction needs a 'rating' column")
        if not dataset.n_interactions:
            raise ValueError("the training data has no interactions: nothing to learn")
        device = resolve_device(self.device)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        inter = dataset.inter if self._needs_ratings() else \
            dataset.inter.drop_duplicates(["user_idx", "item_idx"])
        pair_u = inter["user_idx"].to_numpy(np.int64)
        pair_i = inter["item_idx"].to_numpy(np.int64)
        ratings = (inter["rating"].to_numpy(np.float32) if dataset.has_ratings
                   else np.ones(len(inter), np.float32))
        mean = float(ratings.mean()) if self._needs_ratings() else 0.0
        self.rating_range_ = np.array([ratings.min(), ratings.max()], np.float32)
        x = dataset.csr()
        ufeat, ifeat = self._features(dataset)
        self._ce = FullSoftmaxCE()
        with seeded(self.random_state, device) as gen:
            module = self._build(ufeat, ifeat)
            module.global_mean.fill_(mean)
            if self.svd_init:
                module.init_mf(*self._svd(dataset, mean))
            self.module_ = module = module.to(device)
            opt = torch.optim.Adam(module.parameters(), lr=self.lr,
                                   weight_decay=self.weight_decay)
            r_all = torch.from_numpy(ratings.copy())

            def step(idx: torch.Tensor) -> torch.Tensor:
                b = idx.numpy()
                users = torch.from_numpy(pair_u[b])
                if self.user_dropout > 0:
                    hide = torch.rand(len(b), generator=gen) < self.user_dropout
                    users = users.masked_fill(hide, self.n_users_)
                items = torch.from_numpy(pair_i[b]).to(device)
                z = module.users(users.to(device), *_bags(x[pair_u[b]], device), exclude=items)
                return self._batch_loss(module, z, users.to(device), items,
                                        r_all[idx].to(device), gen)

            res = train_epochs(module, opt, step, len(pair_u), epochs=int(self.epochs),
                               batch_size=int(self.batch_size), generator=gen,
                               validate=self._validator(valid, dataset), eval_every=int(self.eval_every),
                               patience=int(self.patience), verbose=self.verbose,
                               desc=self.name)
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        return self

    def _validator(self, valid, train: Dataset):
        if valid is None or not len(valid):
            return None
        if isinstance(valid, pd.DataFrame):
            return lambda: -self.rating_errors(valid, train)["rmse"]
        from m6rec.train.validation import validation_ndcg

        return lambda: validation_ndcg(self, valid)

    def _features(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        from m6rec.features import item_feature_matrix, load_item_vectors, user_feature_matrix

        lv = int(self.max_levels)
        u = (user_feature_matrix(dataset, lv)[0] if self.user_features
             else np.zeros((dataset.n_users, 0), np.float32))
        if self.item_features:
            i = item_feature_matrix(dataset, lv, self.vectors_file or None)[0]
        elif self.vectors_file:
            i = load_item_vectors(self.vectors_file, dataset)
        else:
            i = np.zeros((dataset.n_items, 0), np.float32)
        return u, i

    def _svd(self, dataset: Dataset, mean: float) -> tuple[np.ndarray, np.ndarray]:
        """User and item factors ``U sqrt(S)``, ``V sqrt(S)`` of the training matrix."""
        import scipy.sparse.linalg as spla

        on_ratings = self.mode == "rating"
        x = dataset.csr("rating" if on_ratings else None).astype(np.float64)
        if on_ratings:
            x.data -= mean
        k = min(int(self.factors), min(x.shape) - 1)
        p = np.zeros((x.shape[0], int(self.factors)), np.float32)
        q = np.zeros((x.shape[1], int(self.factors)), np.float32)
        if k >= 1:
            rng = np.random.default_rng(self.random_state)
            u, s, vt = spla.svds(x, k=k, v0=rng.uniform(-1, 1, min(x.shape)))
            p[:, :k], q[:, :k] = u * np.sqrt(s), vt.T * np.sqrt(s)
        return p, q

    def _build(self, user_feat: np.ndarray, item_feat: np.ndarray):
        return HybridModule(self.n_users_, self.n_items_, int(self.factors),
                            int(self.feature_dim), int(self.mlp_hidden), float(self.dropout),
                            user_feat, item_feat, bool(self.user_embedding), self._extra_modules)

    # -- scoring ---------------------------------------------------------------------------------
    def _user_vectors(self, histories: Histories):
        module = self.module_
        device = module.global_mean.device
        users = np.asarray(histories.users)
        known = (users >= 0) & (users < self.n_users_)
        u = torch.from_numpy(np.where(known, users, self.n_users_)).to(device)
        return module.users(u, *_bags(histories.csr(self.n_items_), device)), u

    def _score_rows(self, histories: Histories) -> np.ndarray:
        self.module_.eval()
        with torch.inference_mode():
            z, u = self._user_vectors(histories)
            return self.module_.all_scores(z, u).float().cpu().numpy()

    def item_vectors(self) -> np.ndarray:
        """The item tower's output ``z_i`` scaled by the fusion weights: float32 [n_items, d]."""
        self._check_fitted()
        with torch.inference_mode():
            return (self.module_.items() * self.module_.fuse.weight).float().cpu().numpy()

    def predict_ratings(self, histories: Histories, item_idx: np.ndarray) -> np.ndarray:
        """Predicted ratings [n, m] of per-row items ``item_idx`` (int [n, m]), clipped to the
        training range (rating mode only)."""
        if self.mode != "rating":
            raise ValueError("predict_ratings needs a hybrid fitted with mode='rating'")
        lo, hi = self.rating_range_
        return np.clip(self.score(histories, np.asarray(item_idx)), lo, hi)

    def rating_errors(self, frame: pd.DataFrame, train: Dataset) -> dict[str, float]:
        """RMSE / MAE on a frame of ``user_idx, item_idx, rating``; each row's input is the
        user's history in ``train``."""
        from m6rec.metrics import mae, rmse

        histories = train.histories(frame["user_idx"].to_numpy())
        pred = self.predict_ratings(histories, frame["item_idx"].to_numpy()[:, None])[:, 0]
        true = frame["rating"].to_numpy(np.float32)
        return {"rmse": rmse(pred, true), "mae": mae(pred, true), "n": float(len(frame))}

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        out = {f"module.{k}": v.detach().cpu().numpy()
               for k, v in self.module_.state_dict().items()}
        out["rating_range"] = self.rating_range_
        return out

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        from m6rec.train.loop import resolve_device

        module = self._build(state["module.user_feat"][:-1], state["module.item_feat"])
        module.load_state_dict({k[len("module."):]: torch.from_numpy(np.array(v))
                                for k, v in state.items() if k.startswith("module.")})
        self.module_ = module.to(resolve_device(self.device)).eval()
        self.rating_range_ = state["rating_range"]


def _bags(h, device):
    """(flat item indices, offsets, counts) of a CSR history matrix, as torch tensors."""
    return (torch.from_numpy(h.indices.astype(np.int64)).to(device),
            torch.from_numpy(h.indptr[:-1].astype(np.int64)).to(device),
            torch.from_numpy(np.diff(h.indptr).astype(np.float32)).to(device))


def split_ratings(ds: Dataset, test_fraction: float = 0.1, valid_fraction: float = 0.1,
                  seed: int = 0) -> tuple[Dataset, pd.DataFrame, pd.DataFrame]:
    """A random per-user hold-out of ratings: ``(train, valid, test)``; each user with at least
    five ratings gives ``round(fraction * n)`` ratings to each held-out frame (columns
    ``user_idx, item_idx, rating``)."""
    if not ds.has_ratings:
        raise ValueError(f"{ds.name}: no 'rating' column to split")
    inter = ds.inter
    key = np.random.default_rng(seed).random(len(inter))
    rank = pd.Series(key).groupby(inter["user_idx"].to_numpy()).rank(method="first").to_numpy() - 1
    n = inter.groupby("user_idx")["item_idx"].transform("size").to_numpy()
    n_test = np.where(n >= 5, np.round(test_fraction * n), 0)
    n_valid = np.where(n >= 5, np.round(valid_fraction * n), 0)
    is_test = rank < n_test
    is_valid = ~is_test & (rank < n_test + n_valid)
    cols = ["user_idx", "item_idx", "rating"]
    return (ds.with_interactions(inter[~is_test & ~is_valid]),
            inter.loc[is_valid, cols].reset_index(drop=True),
            inter.loc[is_test, cols].reset_index(drop=True))


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))

class HybridModule(nn.Module):
    """Towers and fusion layer; ``users`` index ``n_users`` is the unknown user (zeros)."""

    def __init__(self, n_users, n_items, factors, feature_dim, mlp_hidden, dropout,
                 user_feat, item_feat, user_embedding, extra_modules):
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        uf = np.vstack([user_feat, np.zeros((1, user_feat.shape[1]), np.float32)])
        self.register_buffer("user_feat", torch.as_tensor(uf, dtype=torch.float32))
        self.register_buffer("item_feat", torch.as_tensor(item_feat, dtype=torch.float32))
        self.register_buffer("global_mean", torch.zeros(()))
        self.user_emb = (nn.Embedding(n_users + 1, factors, padding_idx=n_users)
                         if user_embedding else None)
        self.hist_emb = nn.Embedding(n_items, factors)
        self.item_emb = nn.Embedding(n_items, factors)
        for emb in (self.hist_emb, self.item_emb, self.user_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.01)
                if emb.padding_idx is not None:
                    emb.weight.data[emb.padding_idx] = 0
        n_if = item_feat.shape[1]
        self.has_features = n_if > 0
        d = factors
        if self.has_features:
            self.user_mlp = mlp(uf.shape[1] + n_if, mlp_hidden, feature_dim)
            self.item_mlp = mlp(n_if, mlp_hidden, feature_dim)
            d += feature_dim
        self.fuse = nn.Linear(d, 1)  # the shared layer over z_u * z_i
        nn.init.ones_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)
        self.item_bias = nn.Embedding(n_items, 1)
        self.user_bias = nn.Embedding(n_users + 1, 1, padding_idx=n_users)
        nn.init.zeros_(self.item_bias.weight)
        nn.init.zeros_(self.user_bias.weight)
        self.drop = nn.Dropout(dropout)
        for key, value in extra_modules(d).items():
            setattr(self, key, value)

    def init_mf(self, p: np.ndarray, e: np.ndarray) -> None:
        with torch.no_grad():
            if self.user_emb is not None:
                self.user_emb.weight[:-1] = torch.from_numpy(p)
            self.item_emb.weight.copy_(torch.from_numpy(e))

    def users(self, users, items, offsets, counts, exclude=None):
        """z_u [B, d] from user indices [B], the flat history and its offsets / counts;
        ``exclude`` [B]: one history item per row left out of the pooling."""
        pooled = F.embedding_bag(items, self.hist_emb.weight, offsets, mode="sum")
        feats = (F.embedding_bag(items, self.item_feat, offsets, mode="sum")
                 if self.has_features else None)
        if exclude is not None:
            pooled = pooled - self.hist_emb(exclude)
            feats = feats - self.item_feat[exclude] if feats is not None else None
            counts = counts - 1
        c = counts.clamp(min=1)[:, None]
        mf = pooled / c
        if self.user_emb is not None:
            mf = mf + self.user_emb(users)
        parts = [mf]
        if self.has_features:
            parts.append(self.user_mlp(torch.cat([self.user_feat[users], feats / c], 1)))
        return self.drop(torch.cat(parts, 1))

    def items(self, idx=None):
        e = self.item_emb.weight if idx is None else self.item_emb(idx)
        if not self.has_features:
            return e
        x = self.item_feat if idx is None else self.item_feat[idx]
        return torch.cat([e, self.item_mlp(x)], 1)

    def pair_scores(self, z, users, items):
        """Score of row r's item ``items[r]``: [B]."""
        return (self.fuse(z * self.items(items))[:, 0] + self.item_bias(items)[:, 0]
                + self.user_bias(users)[:, 0] + self.global_mean)

    def all_scores(self, z, users):
        """Scores of every item: [B, n_items]."""
        s = (z * self.fuse.weight) @ self.items().T + self.item_bias.weight.T
        return s + (self.fuse.bias + self.user_bias(users) + self.global_mean)

    def softmax_inputs(self, z):
        """(hidden [B, d + 1], table [n_items, d + 1]) whose product is ``all_scores`` up to
        a per-row constant (the item bias rides in the last column)."""
        ones = torch.ones(len(z), 1, device=z.device, dtype=z.dtype)
        return (torch.cat([z * self.fuse.weight, ones], 1),
                torch.cat([self.items(), self.item_bias.weight], 1))
