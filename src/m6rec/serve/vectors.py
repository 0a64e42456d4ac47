"""The item side of a vector model in the service (the sequence models, ``m6`` first): the item
table the user encoder reads, an index over the catalogue's items, the posted items' vectors,
and how a user's scores over all of them are formed.

Posted items have no ID part: a text model places them by the text adapter alone. With an
ID-trained model (``m6`` by default) such a vector scores far below the catalogue's items even
for a user whose newest films are the posted film's nearest neighbours (`new_items` ``raw``:
1% of such users had it in their top 10, `benchmarks/serve_new_items.py`), because the user
vector was trained against ID-dominated item vectors. ``calibrated`` (the default) scores a
posted item by the language model's similarity of its text to the user's newest items, put on
the user's own score scale: its z-score among the catalogue's items (a seeded reference sample
of them, the user's seen items left out) mapped, times `NEW_ITEM_SCALE`, onto the z-scale of the
user's model scores over the same items. A text-only model scores posted items on its own
scale already and is served ``raw``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from m6rec.data.histories import Histories
from m6rec.index import build_index
from m6rec.ranking import topk

#: how far a posted item's text-match z-score carries onto the model-score z-scale: at 1.0
#: posted items took 5.6% of ordinary users' top-10 slots (Hit@10 0.1294 against 0.1368
#: without them), at 0.8 1.0% (0.1357) while 76% of the matching users got the item in
#: their top 10 (ml-100k, `benchmarks/serve_new_items.py`)
NEW_ITEM_SCALE = 0.8
#: the newest history items the text match reads, weighted ``NEW_ITEM_DECAY ** age``
NEW_ITEM_HISTORY = 5
NEW_ITEM_DECAY = 0.5
#: most catalogue items in the reference sample of the calibration
REFERENCE_ITEMS = 4096
NEW_ITEM_MODES = ("calibrated", "raw")


def is_vector_model(model: Any) -> bool:
    return hasattr(model, "module_") and hasattr(model.module_, "item_table")


def has_id_part(model: Any) -> bool:
    return hasattr(getattr(model, "module_", None), "id_emb") and not getattr(
        model, "text_only", False)


class VectorScorer:
    """Item table, indexes and scoring of a vector model over a `Catalogue`.

    Parameters
    ----------
    model : a fitted vector model (``module_.item_table``; ``user_vectors``)
    catalogue : the live `m6rec.serve.catalogue.Catalogue` (posted items read from its LM
        encodings; text models only)
    index, faiss_threshold : see `m6rec.index.build_index` (the catalogue's items)
    new_items : ``calibrated`` or ``raw``, how posted items are scored (module docstring)
    index_cache : folder that keeps the built HNSW graph of the catalogue (the service's
        start-up; updated models are not cached)
    """

    def __init__(self, model: Any, catalogue: Any, index: str = "auto",
                 faiss_threshold: int = 50_000, new_items: str = "calibrated",
                 index_cache: str | Path | None = None) -> None:
        import torch

        if new_items not in NEW_ITEM_MODES:
            raise ValueError(f"new_items must be one of {', '.join(NEW_ITEM_MODES)}, "
                             f"got {new_items!r}")
        self.model, self.catalogue = model, catalogue
        self._takes_groups = _takes_groups(model)  # once: user_vectors is on every request
        self.text = bool(model.reads_text)
        self.n_base = catalogue.n_base
        self._index_kind, self._faiss_threshold, self.new_items = index, faiss_threshold, \
            new_items
        module = model.module_
        module.eval()
        with torch.inference_mode():
            base = module.item_table().float().cpu().numpy()
        self.index = build_index(base, kind=index, threshold=faiss_threshold,
                                 cache_dir=index_cache)
        posted = (self.text_vectors(catalogue.posted_lm()) if self.text
                  and len(catalogue) > self.n_base else np.zeros((0, base.shape[1]), np.float32))
        table = np.concatenate([base, posted])
        self.table = torch.as_tensor(table)  # what the user encoder reads (posted rows too)
        self._posted = np.zeros((max(16, len(posted)), base.shape[1]), np.float32)
        self._posted[: len(posted)] = posted
        # the item-to-item index, built on the first ``similar`` request (at a large catalogue
        # an ANN build takes minutes: start-up does not wait for it)
        self._sim: Any = None
        self._sim_lock = threading.Lock()
        self.version = 0  # +1 when an item's vector changes
        self.calibrated = (new_items == "calibrated" and self.text
                           and catalogue.lm is not None and has_id_part(model))
        if self.calibrated:
            n = self.n_base
            ref = (np.arange(n) if n <= REFERENCE_ITEMS else np.sort(
                np.random.default_rng(0).choice(n, REFERENCE_ITEMS, replace=False)))
            self._ref = ref
            self._ref_vecs = base[ref].copy()
            self._ref_lm = np.asarray(catalogue.lm[ref], np.float32).copy()

    def derive(self, model: Any, catalogue: Any) -> VectorScorer:
        """The same scorer for ``model`` (an update of this one's, same catalogue order) over
        ``catalogue``: a new table and index from its weights, posted items re-embedded."""
        return VectorScorer(model, catalogue, self._index_kind, self._faiss_threshold,
                            self.new_items)

    def __len__(self) -> int:
        return len(self.table)

    # -- item vectors ------------------------------------------------------------------------
    def text_vectors(self, lm: np.ndarray) -> np.ndarray:
        """Item vectors [n, d] of LM encodings [n, D] read as text only (no ID part)."""
        import torch

        with torch.inference_mode():
            t = torch.as_tensor(np.asarray(lm, np.float32))
            return self.model.module_.text_vectors(t).float().numpy()

    def item_vector(self, pos: int | None, lm: np.ndarray) -> np.ndarray:
        """The item-space vector of an item whose text has LM encoding ``lm`` [D]: a catalogue
        item keeps its ID part (its text is replaced in the model), any other is text only."""
        import torch

        if pos is not None and pos < self.n_base:
            module = self.model.module_
            with torch.inference_mode():
                module.item_text[pos] = torch.as_tensor(lm)
                return module.item_table()[pos].float().numpy()
        return self.text_vectors(lm[None])[0]

    def add(self, vec: np.ndarray) -> None:
        """Append a posted item's vector (its position is the table's length)."""
        import torch

        p = len(self.table) - self.n_base
        if p >= len(self._posted):
            self._posted = np.concatenate([self._posted, np.zeros_like(self._posted)])
        self._posted[p] = vec
        with self._sim_lock:
            self.table = torch.cat([self.table, torch.as_tensor(vec, dtype=torch.float32)[None]])
            if self._sim is not None:
                self._sim.add(_units(vec[None]))

    def update(self, pos: int, vec: np.ndarray, lm: np.ndarray | None = None) -> None:
        """Replace an item's vector (and, in the calibration's reference, its LM encoding)."""
        import torch

        with self._sim_lock:
            self.table[pos] = torch.as_tensor(vec, dtype=torch.float32)
            if self._sim is not None:
                self._sim.update(pos, _units(vec[None])[0])
        if pos < self.n_base:
            self.index.update(pos, vec)
            if self.calibrated:
                at = np.searchsorted(self._ref, pos)
                if at < len(self._ref) and self._ref[at] == pos:
                    self._ref_vecs[at] = vec
                    if lm is not None:
                        self._ref_lm[at] = lm
        else:
            self._posted[pos - self.n_base] = vec
        self.version += 1

    @property
    def sim_index(self) -> Any:
        """The index of the unit item vectors (posted items too), built on first use."""
        if self._sim is None:
            with self._sim_lock:
                if self._sim is None:
                    self._sim = build_index(_units(self.table.numpy()), kind=self._index_kind,
                                            threshold=self._faiss_threshold)
        return self._sim

    def vectors(self, idx: np.ndarray) -> np.ndarray:
        return self.table.numpy()[np.asarray(idx, np.int64)]

    # -- users -------------------------------------------------------------------------------
    def user_vectors(self, h: Histories, n: int | None = None,
                     groups: np.ndarray | None = None) -> np.ndarray:
        """User vectors [len(h), d]; text models read the current table (posted rows too),
        the first ``n`` rows when given (one batch sees one catalogue). ``groups``: rows that
        are variants of one history (see the model's ``user_vectors``)."""
        table = self.table.numpy()[:n] if self.text else None
        if groups is not None and self._takes_groups:
            return self.model.user_vectors(h, item_table=table, groups=groups)
        return self.model.user_vectors(h, item_table=table)

    def text_queries(self, histories: list[np.ndarray]) -> np.ndarray | None:
        """Per history (item positions, oldest first): the recency-weighted mean of the LM
        encodings of its newest `NEW_ITEM_HISTORY` items [n, D] (None unless calibrated)."""
        if not self.calibrated:
            return None
        lm = self.catalogue.lm
        out = np.zeros((len(histories), lm.shape[1]), np.float32)
        for x, items in enumerate(histories):
            newest = np.asarray(items, np.int64)[-NEW_ITEM_HISTORY:][::-1]
            if len(newest):
                w = NEW_ITEM_DECAY ** np.arange(len(newest), dtype=np.float32)
                out[x] = w @ lm[newest] / w.sum()
        return out

    # -- scores ------------------------------------------------------------------------------
    def posted_scores(self, users: np.ndarray, queries: np.ndarray | None,
                      excludes: list[np.ndarray], n: int) -> np.ndarray:
        """Scores [B, n - n_base] of the posted items among the first ``n`` items, excluded
        ones ``-inf``: the dot product (``raw``) or the calibrated text match."""
        p = max(0, n - self.n_base)
        posted = self._posted[:p]
        if not p:
            return np.zeros((len(users), 0), np.float32)
        if not self.calibrated:
            s = users @ posted.T
        else:
            s = self._calibrate(users, queries, excludes,
                                queries @ self.catalogue.lm[self.n_base:n].T)
        s = np.asarray(s, np.float32)
        for row, ex in enumerate(excludes):
            ex = ex[(ex >= self.n_base) & (ex < n)] - self.n_base
            s[row, ex] = -np.inf
        return s

    def _calibrate(self, users: np.ndarray, queries: np.ndarray, excludes: list[np.ndarray],
                   match: np.ndarray) -> np.ndarray:
        """Text matches [B, p] -> the users' score scale (see the module docstring)."""
        f = users @ self._ref_vecs.T  # [B, R] model scores of the reference items
        m = queries @ self._ref_lm.T  # [B, R] their text matches
        keep = np.ones(f.shape, bool)
        for row, ex in enumerate(excludes):
            keep[row, np.isin(self._ref, ex)] = False
        cnt = np.maximum(keep.sum(1, keepdims=True), 1)
        fm, mm = (f * keep).sum(1, keepdims=True) / cnt, (m * keep).sum(1, keepdims=True) / cnt
        fs = np.sqrt((((f - fm) * keep) ** 2).sum(1, keepdims=True) / cnt)
        ms = np.sqrt((((m - mm) * keep) ** 2).sum(1, keepdims=True) / cnt)
        return fm + NEW_ITEM_SCALE * fs * (match - mm) / np.maximum(ms, 1e-12)

    def search(self, users: np.ndarray, queries: np.ndarray | None, k: int,
               excludes: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (ids, scores) [B, k] over the first ``n`` items (-1 padding)."""
        ids, scores = self.index.search(users, k, exclude=excludes)
        if n <= self.n_base:
            return ids, scores
        posted = self.posted_scores(users, queries, excludes, n)
        cand = np.concatenate([np.where(ids >= 0, scores, -np.inf), posted], axis=1)
        pos = np.concatenate([ids, np.broadcast_to(
            np.arange(self.n_base, n), posted.shape)], axis=1)
        top, sc = topk(cand.astype(np.float32), k)
        out = np.where(top >= 0, np.take_along_axis(pos, np.maximum(top, 0), axis=1), -1)
        return out, sc

    def scores(self, users: np.ndarray, queries: np.ndarray | None,
               excludes: list[np.ndarray], n: int) -> np.ndarray:
        """Scores [B, n] of every item among the first ``n`` (nothing excluded: ``excludes``
        only shapes the calibration's reference)."""
        s = users @ self.table.numpy()[:n].T
        if self.calibrated and n > self.n_base:
            s[:, self.n_base:n] = self._calibrate(
                users, queries, excludes, queries @ self.catalogue.lm[self.n_base:n].T)
        return s

    def score_items(self, users: np.ndarray, queries: np.ndarray | None,
                    idx: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        """Scores [B, len(idx)] of the items ``idx`` for users [B, d] (and their text queries),
        the calibration's reference without ``exclude``; what `search` ranks by."""
        idx = np.asarray(idx, np.int64)
        s = users @ self.vectors(idx).T
        new = idx >= self.n_base
        if self.calibrated and new.any():
            ex = [exclude] * len(users)
            s[:, new] = self._calibrate(users, queries, ex,
                                        queries @ self.catalogue.lm[idx[new]].T)
        return s

    def similar(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Items closest to item ``i`` (cosine of the item vectors)."""
        return self.sim_index.search(self.sim_index.vectors(np.array([i])), k,
                                     exclude=[np.array([i])])


def _units(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _takes_groups(model: Any) -> bool:
    """Whether ``model.user_vectors`` accepts ``groups``."""
    import inspect

    try:
        return "groups" in inspect.signature(model.user_vectors).parameters
    except (TypeError, ValueError):
        return False
