"""TextSim: the frozen language model's own similarity, with no training at all.

Every item is scored by the cosine between its frozen LM vector (all-MiniLM-L6-v2 by default,
the same cached encodings `m6` reads) and an aggregate of the LM vectors of the user's
``n_recent`` newest history items, weighted ``decay ** age`` (age 0 = the newest). Nothing is
fitted: ``fit`` reads only the catalogue's text and, when ``pop_weight`` > 0, the item counts of
the interactions it is given. So the model serves a catalogue it never saw (`bind`) as well as
its own, and it is the honest zero-shot baseline of every open-domain figure (content-based
recommendation from pretrained sentence vectors, e.g. Hou et al., "Towards Universal Sequence
Representation Learning for Recommender Systems", KDD 2022, UniSRec, whose text-only baseline
this is).

The scoring functions (`lm_scores`, `pop_prior`) are shared with the open-domain model
(`m6rec.models.opendomain`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender

AGGREGATES = ("sum", "max")


def recent_weights(histories: Histories, n_recent: int, decay: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The newest ``n_recent`` items of each row with their weights ``decay ** age``.

    Returns
    -------
    rows, ages, items, weights : [m] arrays (row index, age, item index, weight); age 0 = the
    row's newest item.
    """
    lengths = np.minimum(histories.lengths, n_recent)
    rows = np.repeat(np.arange(len(histories)), lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    ages = np.arange(len(rows)) - first  # 0 = the newest (read backwards from each row's end)
    items = histories.items[np.repeat(histories.indptr[1:], lengths) - 1 - ages]
    return rows, ages, items, (float(decay) ** ages).astype(np.float32)


def lm_scores(vectors: np.ndarray, histories: Histories, n_recent: int = 1, decay: float = 0.8,
              agg: str = "sum") -> np.ndarray:
    """Cosine of every item's LM vector with the user's recent items' vectors, [n, n_items].

    Parameters
    ----------
    vectors : float32 [n_items, D], unit rows (the frozen LM encodings)
    histories : Histories
    n_recent : int
        Newest history items read.
    decay : float
        Weight of an item ``age`` steps before the newest: ``decay ** age``.
    agg : {"sum", "max"}
        ``"sum"``: the cosine with the weighted sum of those vectors; ``"max"``: the largest
        weighted cosine with any of them. A row with an empty history scores 0 everywhere.
    """
    n = len(histories)
    rows, ages, items, w = recent_weights(histories, n_recent, decay)
    if agg == "sum":
        q = np.zeros((n, vectors.shape[1]), np.float32)
        np.add.at(q, rows, w[:, None] * vectors[items])
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        return q @ vectors.T
    out = np.zeros((n, len(vectors)), np.float32)
    for age in range(int(ages.max(initial=-1)) + 1):
        at = ages == age
        s = w[at, None] * (vectors[items[at]] @ vectors.T)
        # age 0 exists in every non-empty row: it sets the row, later ones can only raise it
        out[rows[at]] = s if age == 0 else np.maximum(out[rows[at]], s)
    return out


def pop_prior(counts: np.ndarray) -> np.ndarray:
    """``log(1 + count) / log(1 + max count)`` per item, float32 in [0, 1] (0 for no counts)."""
    c = np.log1p(np.asarray(counts, dtype=np.float64))
    top = c.max(initial=0.0)
    return (c / top if top > 0 else c).astype(np.float32)


class TextSim(Recommender):
    """Score = cosine(frozen LM vector of the item, recency-weighted LM vectors of the user's
    newest items) [+ ``pop_weight`` x log-popularity]. Training-free (see the module docstring).

    Parameters
    ----------
    encoder : str
        Text encoder spec for `m6rec.text.get_encoder` (``default`` = all-MiniLM-L6-v2, offline).
    text_budget : int
        Most characters of an item's text (200, as `m6`, so both read the same cached vectors).
    n_recent : int
        Newest history items read (1 = the last item only).
    decay : float
        In (0, 1]: weight ``decay ** age`` of a history item ``age`` steps before the newest.
    agg : {"sum", "max"}
        Cosine with the weighted sum of the recent vectors, or the largest weighted cosine.
    pop_weight : float
        >= 0: adds ``pop_weight * log(1 + c_i) / log(1 + max c)`` with ``c_i`` the item's count
        in the interactions ``fit`` (or `bind`) reads: a statistic of the log, nothing fitted.
    verbose : bool
        Show encoding progress.
    """

    name = "textsim"
    reads_text = True

    def __init__(self, encoder: Any = "default", text_budget: int = 200, n_recent: int = 1,
                 decay: float = 0.8, agg: str = "sum", pop_weight: float = 0.0,
                 verbose: bool = False):
        self.encoder = encoder
        self.text_budget = text_budget
        self.n_recent = n_recent
        self.decay = decay
        self.agg = agg
        self.pop_weight = pop_weight
        self.verbose = verbose

    def _check_params(self) -> None:
        if int(self.n_recent) != self.n_recent or self.n_recent < 1:
            raise ValueError(f"n_recent must be an integer >= 1, got {self.n_recent!r}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {self.decay!r}")
        if self.agg not in AGGREGATES:
            raise ValueError(f"agg must be one of {', '.join(AGGREGATES)}, got {self.agg!r}")
        if not self.pop_weight >= 0:
            raise ValueError(f"pop_weight must be >= 0, got {self.pop_weight!r}")
        if int(self.text_budget) != self.text_budget or self.text_budget < 20:
            raise ValueError(f"text_budget must be an integer >= 20, got {self.text_budget!r}")

    def _read(self, dataset: Dataset) -> None:
        from m6rec.text import encode_cached, get_encoder, item_texts

        enc = get_encoder(self.encoder)
        texts = item_texts(dataset, budget=int(self.text_budget))
        vectors, hits, misses = encode_cached(enc, texts, show_progress=self.verbose)
        self.item_text_ = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        self.encode_stats_ = {"item_hits": hits, "item_misses": misses}
        self.counts_ = dataset.item_counts().astype(np.float32)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users

    def fit(self, dataset: Dataset, valid: Histories | None = None) -> TextSim:
        """Encode the catalogue's item texts (cached) and count the items' interactions."""
        self._check_params()
        self._read(dataset)
        return self

    def bind(self, dataset: Dataset) -> TextSim:
        """Score ``dataset``'s catalogue: its item texts are encoded and its interactions
        counted (for ``pop_weight``); nothing else changes."""
        self._check_fitted()
        self._read(dataset)
        return self

    def _score_rows(self, histories: Histories) -> np.ndarray:
        s = lm_scores(self.item_text_, histories, int(self.n_recent), float(self.decay), self.agg)
        if self.pop_weight > 0:
            s += float(self.pop_weight) * pop_prior(self.counts_)[None, :]
        return s

    def encode_texts(self, texts: list[str], space: str = "lm") -> np.ndarray:
        """Free texts read by the model's LM, [n, D] (the space of ``item_text_``)."""
        from m6rec.text import get_encoder

        self._check_fitted()
        if space not in ("item", "lm"):
            raise ValueError(f"space must be 'item' or 'lm', got {space!r}")
        return np.asarray(get_encoder(self.encoder).encode(list(texts)), dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        """The item vectors scored against: the LM encodings, float32 [n_items, D]."""
        self._check_fitted()
        return self.item_text_

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_text": self.item_text_, "counts": self.counts_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_text_ = np.asarray(state["item_text"], dtype=np.float32)
        self.counts_ = np.asarray(state["counts"], dtype=np.float32)
