"""Late fusion of several recommenders' scores: weighted sums of per-row normalised scores, or
reciprocal-rank fusion, with the weights chosen on the validation set.

References: G. V. Cormack, C. L. A. Clarke, S. Buettcher, "Reciprocal Rank Fusion outperforms
Condorcet and individual Rank Learning Methods", SIGIR 2009 (``k = 60``); E. A. Fox, J. A. Shaw,
"Combination of Multiple Searches", TREC-2, 1994 (normalised score sums, CombSUM).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np

from m6rec import metrics as M
from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.ranking import topk
from m6rec.train.evalset import EvalSet

METHODS = ("weighted", "rrf")
NORMS = ("minmax", "zscore")
_META = "members_json"


class Fusion(Recommender):
    """Score = sum_j w_j f(s_j), over the members' dense scores s_j [n, n_items].

    ``method="weighted"``: f normalises each row, min-max to [0, 1] or z-score (constant rows
    give 0). ``method="rrf"``: f(s)[i] = 1 / (rrf_k + rank of i in the row), ranks 1-based over
    the whole catalogue (ties broken by item index, as in `topk`). Weights left empty are chosen
    on the validation set: every point of the simplex on a grid of step 0.1 (0.2 for more than
    three members) is scored by NDCG@10 and the best kept (the first on ties); each member alone
    is a grid point, so on the validation set the fusion is never below its best member (up to
    how `topk` breaks ties at the cut-off). The members' validation scores are held in memory
    during the search (members x n_valid x n_items float32). With no validation set the weights
    are equal. Members that use validation get the validation set for their own early stopping.

    Parameters
    ----------
    members : str
        Comma-separated registered model names; a member may carry its own parameters in the
        `parse_model_spec` syntax, e.g. ``"ease(reg=500),itemknn"``.
    member_params : str
        JSON object mapping a member name to its parameters (applied after the inline ones).
    method : {"weighted", "rrf"}
    norm : {"minmax", "zscore"}
        Per-row normalisation of the weighted method.
    weights : str
        Comma-separated non-negative floats, one per member; empty: chosen on validation.
    rrf_k : float
        The rank offset of reciprocal-rank fusion.
    """

    name = "fusion"
    uses_validation = True

    def __init__(self, members: str = "ease,itemknn", member_params: str = "{}",
                 method: str = "weighted", norm: str = "minmax", weights: str = "",
                 rrf_k: float = 60.0):
        self.members = members
        self.member_params = member_params
        self.method = method
        self.norm = norm
        self.weights = weights
        self.rrf_k = rrf_k

    def _specs(self) -> list[tuple[str, dict[str, Any]]]:
        from m6rec.registry import parse_model_spec, split_models

        specs = [parse_model_spec(s) for s in split_models(self.members)]
        if not specs:
            raise ValueError("members must name at least one registered model")
        extra = (json.loads(self.member_params) if isinstance(self.member_params, str)
                 else dict(self.member_params))
        if not isinstance(extra, dict):
            raise ValueError(f"member_params must be a JSON object, got {self.member_params!r}")
        names = {n for n, _ in specs}
        if set(extra) - names:
            raise ValueError(f"member_params names {sorted(set(extra) - names)} that are not "
                             f"members ({', '.join(sorted(names))})")
        return [(n, {**p, **extra.get(n, {})}) for n, p in specs]

    def _check_params(self) -> list[float] | None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if not self.rrf_k >= 0:
            raise ValueError(f"rrf_k must be >= 0, got {self.rrf_k!r}")
        if not str(self.weights).strip():
            return None
        try:
            w = [float(v) for v in str(self.weights).split(",")]
        except ValueError:
            raise ValueError(f"weights must be comma-separated floats, got {self.weights!r}") from None
        if any(not v >= 0 for v in w) or not sum(w) > 0:
            raise ValueError(f"weights must be >= 0 and not all 0, got {self.weights!r}")
        return w

    def fit(self, dataset: Dataset, valid: EvalSet | None = None) -> Fusion:
        from m6rec.registry import build_model

        fixed = self._check_params()
        specs = self._specs()
        if fixed is not None and len(fixed) != len(specs):
            raise ValueError(f"{len(fixed)} weights for {len(specs)} members")
        self.members_ = []
        for name, params in specs:
            m = build_model(name, **params)
            if m.uses_validation:
                m.fit(dataset, valid=valid)
            else:
                m.fit(dataset)
            self.members_.append(m)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        if fixed is not None:
            self.weights_ = np.asarray(fixed, np.float64)
            self.grid_ = None
        elif valid is not None and len(valid):
            self.weights_, self.grid_ = self._choose_weights(valid)
        else:
            self.weights_ = np.full(len(specs), 1.0 / len(specs))
            self.grid_ = None
        return self

    # -- weights ---------------------------------------------------------------------------------
    def _choose_weights(self, valid: EvalSet) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The simplex grid point with the best validation NDCG@10, and every point's score."""
        h = valid.histories
        parts = [self._transform(m.score(h)) for m in self.members_]
        rows = np.repeat(np.arange(len(h)), h.lengths)
        best, best_w, grid = -np.inf, None, []
        for w in simplex_grid(len(parts), 10 if len(parts) <= 3 else 5):
            s = _weighted_sum(parts, w)
            s[np.isnan(s)] = np.finfo(np.float32).min
            s[rows, h.items] = -np.inf  # as `recommend(exclude_seen=True)`
            ids, _ = topk(s, 10)
            score = M.ranking_metrics(ids, valid.targets, ks=(10,), metrics=("ndcg",))["ndcg@10"]
            grid.append({"weights": w.tolist(), "valid_ndcg@10": float(score)})
            if score > best:
                best, best_w = score, w
        return best_w, grid

    # -- scoring ---------------------------------------------------------------------------------
    def _transform(self, s: np.ndarray) -> np.ndarray:
        """A member's scores [n, n_items] -> the normalised scores or reciprocal ranks (float32)."""
        s = np.array(s, dtype=np.float32, copy=True)
        bad = ~np.isfinite(s)
        if bad.any():  # -inf / NaN: below every finite score of the row
            finite_min = np.where(bad, np.inf, s).min(axis=1, keepdims=True)
            s = np.where(bad, np.where(np.isfinite(finite_min), finite_min - 1, 0), s)
        if self.method == "rrf":
            order = np.argsort(-s, axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(1, s.shape[1] + 1)[None, :], axis=1)
            return (1.0 / (self.rrf_k + rank)).astype(np.float32)
        if self.norm == "minmax":
            lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
            span = hi - lo
            return np.where(span > 0, (s - lo) / np.where(span > 0, span, 1), 0).astype(np.float32)
        mean, std = s.mean(axis=1, keepdims=True), s.std(axis=1, keepdims=True)
        return np.where(std > 0, (s - mean) / np.where(std > 0, std, 1), 0).astype(np.float32)

    def _score_rows(self, histories: Histories) -> np.ndarray:
        parts = [self._transform(m.score(histories)) for m in self.members_]
        return _weighted_sum(parts, self.weights_)

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        meta = [{"name": m.name, "params": m.get_params(), "n_items": int(m.n_items_),
                 "n_users": int(m.n_users_)} for m in self.members_]
        state = {_META: np.frombuffer(json.dumps(meta, default=_jsonable).encode(), np.uint8),
                 "weights": np.asarray(self.weights_, np.float64)}
        for j, m in enumerate(self.members_):
            state.update({f"m{j}.{k}": v for k, v in m.get_state().items()})
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        from m6rec.registry import build_model

        meta = json.loads(np.asarray(state[_META], np.uint8).tobytes().decode())
        self.members_ = []
        for j, entry in enumerate(meta):
            m = build_model(entry["name"], **entry["params"])
            m.n_items_, m.n_users_ = int(entry["n_items"]), int(entry["n_users"])
            prefix = f"m{j}."
            m.set_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            self.members_.append(m)
        self.weights_ = np.asarray(state["weights"], np.float64)
        self.grid_ = None


def simplex_grid(m: int, steps: int) -> list[np.ndarray]:
    """Every weight vector of ``m`` non-negative multiples of ``1 / steps`` summing to 1."""
    out = []
    for cut in itertools.combinations(range(steps + m - 1), m - 1):  # stars and bars
        edges = np.array((-1, *cut, steps + m - 1))
        out.append((np.diff(edges) - 1) / steps)
    return out


def _weighted_sum(parts: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    out = np.zeros_like(parts[0])
    for w, p in zip(weights, parts, strict=True):
        if w:
            out += np.float32(w) * p
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in a fusion member's parameters")
