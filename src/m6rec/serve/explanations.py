"""Explanations of the service's answers (``explain=true``): `m6rec.explain.Explainer` over the
live catalogue, and for vector models the leave-one-out user vectors that explain every item
of a list at once, cached per user.

For a dot-product model a drop is ``score(user) - score(user without item j)``: the user
vectors without each of the newest ``explain_history`` history items, encoded in one batch
from exactly the history the ranking encoded, give every item's drops; they are cached under
the user-cache key plus the model version, with each item's finished explanation memoised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from m6rec.serve.user_cache import UserCache, history_key

Row = tuple[str, int, np.ndarray, np.ndarray, np.ndarray]  # user id, index, items, times, events


class Explanations:
    """Explanations over a catalogue with a scorer (`VectorScorer` or `DenseScorer`).

    Parameters
    ----------
    dataset : the served dataset (KG relations, training data)
    catalogue : the live `Catalogue` (titles and categories the sentences name)
    scorer : the engine's scorer
    stack : rows (index, items, times, events) -> `Histories`
    model_version : part of the cache key
    cache : most users whose leave-one-out vectors are kept
    history : the newest this many history items are tested by leave-one-out
    """

    def __init__(self, dataset: Any, catalogue: Any, scorer: Any,
                 stack: Callable[[list], Any], model_version: int = 0, cache: int = 2048,
                 history: int = 20) -> None:
        self.dataset, self.catalogue, self.scorer = dataset, catalogue, scorer
        self.stack, self.model_version, self.history = stack, model_version, int(history)
        self.cache = UserCache(cache)
        self._explainer = None

    @property
    def explainer(self):
        """`m6rec.explain.Explainer` over the live catalogue (KG relations from the dataset)."""
        if self._explainer is None:
            from m6rec.explain import Explainer

            ex = Explainer(_Scores(self.scorer), self.dataset, top=2)
            c = self.catalogue
            ex.item_ids, ex.titles, ex.categories = c.item_ids, c.titles, c.categories
            self._explainer = ex
        return self._explainer

    def leave_one_out(self, rows: list[Row], n: int) -> list[tuple]:
        """(tested history items [m], user vectors without each of them [m, d], their text
        queries [m, D] or None, memo of finished explanations) per row; ``n``: the items of
        the batch's catalogue. The newest ``m`` items (at most ``history`` and the explainer's
        ``max_history``) are each removed in turn (profile, times and event types kept)."""
        scorer = self.scorer
        prefix = f"loo:{self.model_version}:{scorer.version}:{n}".encode()
        keys = [history_key(prefix, u, items, ts, ev) for _, u, items, ts, ev in rows]
        m_max = max(1, min(self.explainer.max_history, self.history))

        def compute(miss: list[int]) -> list[tuple]:
            batch: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
            spans: list[tuple[np.ndarray, int, int]] = []
            groups: list[int] = []  # the variants of one history share an id
            for x in miss:
                _, u, items, ts, ev = rows[x]
                k = len(items)
                start = len(batch)
                for j in range(max(0, k - m_max), k):
                    keep = np.arange(k) != j
                    batch.append((u, items[keep], ts[keep], ev[keep]))
                groups += [x] * (len(batch) - start)
                spans.append((items[max(0, k - m_max):], start, len(batch)))
            vecs = scorer.user_vectors(self.stack(batch), n, np.array(groups, np.int64))
            queries = scorer.text_queries([b[1] for b in batch])
            # copies: a slice would keep the encoder's whole [rows, L, d] output alive
            return [(tested, vecs[a:b].copy(), None if queries is None else queries[a:b].copy(),
                     {}) for tested, a, b in spans]

        return self.cache.get_or_compute([r[0] for r in rows], keys, compute)

    def explain(self, strategy: str, history: np.ndarray, ids: np.ndarray,
                turns: tuple[str, ...], match: np.ndarray | None,
                loo: tuple | None = None, exclude: np.ndarray | None = None
                ) -> list[dict[str, Any]]:
        """Per item: the `m6rec.explain.Explanation` fields (``because`` = its sentence, the
        explanation's own score as ``explained_score``: ``score`` stays the ranking score);
        with a request, its match and the request in the sentence. ``loo``: (user vector,
        its text query, tested history items, leave-one-out vectors, their queries, memo)."""
        from m6rec.recommend import request_sentence

        if strategy == "popular":
            return [{"because": "Popular with other users.", "sentence": "Popular with other "
                     "users.", "method": "none", "history": []} for _ in ids]
        if strategy == "profile":
            return [{"because": "Its text matches your profile.", "method": "profile",
                     "history": []} for _ in ids]
        out: list[dict[str, Any]] = [{} for _ in ids]
        n_base = self.catalogue.n_base
        if strategy in ("history", "history+query"):
            if loo is not None:
                user, query, tested, without, without_q, memo = loo
                version = self.catalogue.version  # titles and categories the text names
                todo = np.array([i for i in ids if (int(i), version) not in memo], np.int64)
                if len(todo):
                    ex = np.zeros(0, np.int64) if exclude is None else exclude
                    users = np.concatenate([user[None], without])
                    queries = (None if query is None else np.concatenate([query[None],
                                                                          without_q]))
                    s = self.scorer.score_items(users, queries, todo, ex)
                    full = s[0]
                    drops = (full[None, :] - s[1:]).astype(np.float32)
                    if len(memo) > 1000:  # a long-lived user: start over
                        memo.clear()
                    for i, e in zip(todo, self.explainer.from_contributions(
                            todo, tested, drops, full), strict=True):
                        memo[int(i), version] = _explained(e)
                out = [dict(memo[int(i), version]) for i in ids]  # callers add keys
            else:
                hist = history[history < n_base]
                ok = ids < n_base
                for x, e in zip(np.flatnonzero(ok), self.explainer.explain(hist, ids[ok]),
                                strict=True):
                    out[x] = _explained(e)
                for x in np.flatnonzero(~ok):
                    out[x] = {"because": "", "method": "none", "history": []}
        if turns:
            for x, i in enumerate(ids):
                d = out[x]
                d["query_match"] = round(float(match[i]), 4)
                d["because"] = d["sentence"] = request_sentence(d.get("sentence", ""), turns[-1],
                                                             strategy == "history+query")
                d.setdefault("history", [])
                d.setdefault("method", "query")
        return out


class _Scores:
    """The ``score(histories, items)`` the explainer calls."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.max_len = getattr(scorer.model, "max_len", None)

    def score(self, h: Any, item_idx: np.ndarray) -> np.ndarray:
        if hasattr(self.scorer, "user_vectors"):  # a vector model: dot products
            return self.scorer.user_vectors(h) @ self.scorer.vectors(item_idx).T
        return self.scorer.score_items(h, item_idx)


def _explained(e: Any) -> dict[str, Any]:
    """An `Explanation` as the service sends it: its score under ``explained_score``."""
    d = e.to_dict()
    d["explained_score"] = d.pop("score")
    return d
