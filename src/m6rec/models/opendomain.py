"""OpenDomain: a zero-shot scorer for a domain no parameter was trained on.

Score of item ``i`` for a user = ``LM(i) + cooc_weight * C(i) + pop_weight * P(i)``:

- ``LM(i)``: the frozen language model's similarity (`m6rec.models.textsim.lm_scores`): the
  cosine between the item's MiniLM vector and the user's newest ``text_recent`` items' vectors.
  What the LM knows about a new domain is kept as it is: nothing is trained on top of it.
- ``C(i)``: recency-weighted co-occurrence read from the log the model is given: the mean over
  the user's newest ``cooc_recent`` items ``j`` (weights ``cooc_decay ** age``, normalised to
  sum to 1, so the term's scale does not grow with the history's length) of the item-item
  cosine ``|U_i & U_j| / (sqrt|U_i| sqrt|U_j| + shrink)``, each item's ``k`` nearest kept
  (`m6rec.models.knn.ItemKNN`'s similarity). Counting, not fitting: no gradient step, no solver.
- ``P(i)``: ``log(1 + count_i) / log(1 + max count)`` from the same log.

So ``fit(dataset)`` / ``bind(dataset)`` read the catalogue's text and the interactions' counts
and co-occurrences only. The two weights are the model's only free numbers; ``m6rec pretrain``
chooses them on the source domains' validation users (`choose_weights`) and a new domain is
scored with them unchanged (zero-shot in the sense of "no parameter updated with the target's
data": its log's statistics are read at scoring time, as serving does). Co-occurrence from the
target log is the popularity / co-visitation side of PrepRec (Xu et al., "Prepare for Cold
Start: Training a Recommender Model with No Data", 2023) and the frozen-LM side is M6-Rec's
late interaction (Cui et al., arXiv 2205.08084) read without any adapter.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender
from m6rec.models.textsim import lm_scores, pop_prior, recent_weights

#: the grid `choose_weights` searches (cooc_weight x cooc_decay)
COOC_WEIGHTS = (0.3, 1.0, 3.0, 10.0, 30.0)
COOC_DECAYS = (0.5, 0.8)


class OpenDomain(Recommender):
    """Frozen-LM similarity + recency-weighted co-occurrence + popularity, read from the
    catalogue and log it is given (see the module docstring).

    Parameters
    ----------
    encoder : str
        Text encoder spec (``default`` = all-MiniLM-L6-v2, offline).
    text_budget : int
        Most characters of an item's text (200, as `m6` and `textsim`: the same cached vectors).
    text_recent : int
        Newest history items the LM term reads (1 = the last item).
    text_decay : float
        Recency weight of the LM term's items.
    cooc_weight : float
        >= 0: weight of the co-occurrence term.
    cooc_recent : int
        Newest history items the co-occurrence term reads.
    cooc_decay : float
        In (0, 1]: their weights ``decay ** age`` (normalised per user).
    k, shrink :
        Neighbours kept per item and the cosine's shrink term (`ItemKNN`).
    pop_weight : float
        >= 0: weight of the log-popularity prior.
    verbose : bool
        Show encoding progress.
    """

    name = "opendomain"
    reads_text = True

    def __init__(self, encoder: Any = "default", text_budget: int = 200, text_recent: int = 1,
                 text_decay: float = 0.8, cooc_weight: float = 3.0, cooc_recent: int = 50,
                 cooc_decay: float = 0.5, k: int = 100, shrink: float = 0.0,
                 pop_weight: float = 0.0, verbose: bool = False):
        self.encoder = encoder
        self.text_budget = text_budget
        self.text_recent = text_recent
        self.text_decay = text_decay
        self.cooc_weight = cooc_weight
        self.cooc_recent = cooc_recent
        self.cooc_decay = cooc_decay
        self.k = k
        self.shrink = shrink
        self.pop_weight = pop_weight
        self.verbose = verbose

    def _check_params(self) -> None:
        for key in ("text_recent", "cooc_recent", "k"):
            v = getattr(self, key)
            if int(v) != v or v < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {v!r}")
        for key in ("text_decay", "cooc_decay"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in (0, 1], got {getattr(self, key)!r}")
        for key in ("cooc_weight", "pop_weight", "shrink"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)!r}")

    # -- reading a catalogue and its log -----------------------------------------------------------
    def _read(self, dataset: Dataset, vectors: np.ndarray | None = None) -> None:
        from m6rec.models.knn import ItemKNN

        if vectors is None:
            from m6rec.text import encode_cached, get_encoder, item_texts

            texts = item_texts(dataset, budget=int(self.text_budget))
            vectors, hits, misses = encode_cached(get_encoder(self.encoder), texts,
                                                  show_progress=self.verbose)
            self.encode_stats_ = {"item_hits": hits, "item_misses": misses}
        self.item_text_ = np.asarray(vectors, np.float32).reshape(dataset.n_items, -1)
        self.counts_ = dataset.item_counts().astype(np.float32)
        knn = ItemKNN(k=int(self.k), shrink=float(self.shrink)).fit(dataset)
        self.similarity_ = knn.similarity_
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users

    def fit(self, dataset: Dataset, valid: Histories | None = None,
            vectors: np.ndarray | None = None) -> OpenDomain:
        """Encode the catalogue (cached; or take its LM ``vectors`` [n_items, D]) and count the
        interactions' items and co-occurrences."""
        self._check_params()
        self._read(dataset, vectors)
        return self

    def bind(self, dataset: Dataset) -> OpenDomain:
        """Score ``dataset``'s catalogue, reading its text and its log's statistics."""
        self._check_fitted()
        self._read(dataset)
        return self

    # -- scoring ------------------------------------------------------------------------------------
    def terms(self, histories: Histories) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(LM term [n, n_items], co-occurrence term [n, n_items], popularity prior [n_items])."""
        text = lm_scores(self.item_text_, histories, int(self.text_recent),
                         float(self.text_decay))
        rows, _, items, w = recent_weights(histories, int(self.cooc_recent),
                                           float(self.cooc_decay))
        total = np.bincount(rows, weights=w, minlength=len(histories))
        w = w / np.maximum(total[rows], 1e-12)
        W = sp.csr_matrix((w.astype(np.float32), (rows, items)),
                          shape=(len(histories), self.n_items_))
        cooc = W @ self.similarity_
        cooc = cooc.toarray() if sp.issparse(cooc) else np.asarray(cooc)
        return text, cooc.astype(np.float32), pop_prior(self.counts_)

    def _score_rows(self, histories: Histories) -> np.ndarray:
        text, cooc, pop = self.terms(histories)
        s = text + float(self.cooc_weight) * cooc
        if self.pop_weight > 0:
            s += float(self.pop_weight) * pop[None, :]
        return s

    def encode_texts(self, texts: list[str], space: str = "lm") -> np.ndarray:
        """Free texts read by the model's LM, [n, D] (the space of ``item_text_``)."""
        from m6rec.text import get_encoder

        self._check_fitted()
        return np.asarray(get_encoder(self.encoder).encode(list(texts)), dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        from m6rec.models.knn import _csr_state

        return {"item_text": self.item_text_, "counts": self.counts_,
                **_csr_state("similarity", self.similarity_)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        from m6rec.models.knn import _csr_from_state

        self.item_text_ = np.asarray(state["item_text"], np.float32)
        self.counts_ = np.asarray(state["counts"], np.float32)
        self.similarity_ = _csr_from_state("similarity", state)


def choose_weights(sources: Sequence[tuple[Any, Any]], params: dict[str, Any] | None = None,
                   weights: Sequence[float] = COOC_WEIGHTS, decays: Sequence[float] = COOC_DECAYS,
                   max_users: int = 3000, seed: int = 0,
                   advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Choose ``cooc_weight`` and ``cooc_decay`` on the source domains only.

    Parameters
    ----------
    sources : list of (Split, LM vectors [n_items, D] or None)
        Each source domain's split (its training part is read, its validation users score)
        and, optionally, its catalogue's vectors (else encoded / read from the cache).
    params : dict, optional
        The other `OpenDomain` parameters.
    max_users : int
        Validation users scored per source (a seeded sample; all when fewer).

    Returns
    -------
    ``{"cooc_weight", "cooc_decay", "grid": [{"cooc_weight", "cooc_decay", "per_source",
    "score"}]}``: each point's NDCG@10 per source, its ``score`` the mean over sources of
    NDCG@10 / the source's best NDCG@10 on the grid (so a dense domain with high figures does
    not outvote a sparse one); the best point (first on ties).
    """
    from m6rec.train.validation import validation_ndcg

    params = dict(params or {})
    grid = list(itertools.product(weights, decays))
    table = np.zeros((len(sources), len(grid)))
    names = []
    for s, (split, vectors) in enumerate(sources):
        names.append(split.dataset.name)
        valid = split.valid
        if valid is None:
            raise ValueError(f"source {split.dataset.name!r} has no validation users")
        if len(valid) > max_users:
            pick = np.sort(np.random.default_rng(seed).choice(len(valid), max_users,
                                                              replace=False))
            valid = type(valid)(valid.users[pick], valid.histories.take(pick), valid.targets[pick])
        model = OpenDomain(**params).fit(split.train, vectors=vectors)
        for g, (w, d) in enumerate(grid):
            model.cooc_weight, model.cooc_decay = float(w), float(d)
            table[s, g] = validation_ndcg(model, valid)
            if advance is not None:
                advance(1)
    rel = table / np.maximum(table.max(axis=1, keepdims=True), 1e-12)
    score = rel.mean(axis=0)
    best = int(np.argmax(score))
    return {"cooc_weight": float(grid[best][0]), "cooc_decay": float(grid[best][1]),
            "sources": names,
            "grid": [{"cooc_weight": float(w), "cooc_decay": float(d),
                      "per_source": {n: round(float(table[s, g]), 5)
                                     for s, n in enumerate(names)},
                      "score": round(float(score[g]), 5)} for g, (w, d) in enumerate(grid)]}
