"""Raw-id front door for one user: history lookup, top-k, titles, optional explanations and
free-text requests.

Text-query ("conversational") recommendation: each request is read by the model's own language
model and matched against each item's text and its categories (`query_scores`); the user's model
scores and the request match are standardised over the catalogue and added, the request
weighted by ``query_weight``::

    score(i) = z(model(history))[i] + query_weight * z(sum_t a_t match(q_t, item_i))

``a_t`` weighs the turns of a conversation, the latest most: ``a_t ∝ query_decay ** (T - 1 - t)``.
Without a history (an unknown user, or ``user_id=None``) only the request ranks the items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories

#: where a request meets the items: ``lm`` = the LM's own space (request vs item texts),
#: ``item`` = the model's item space (request through the item text adapter vs item vectors)
QUERY_SPACES = ("lm", "item")


def turn_weights(n_turns: int, decay: float = 0.5) -> np.ndarray:
    """Weights of ``n_turns`` requests, oldest first, summing to 1; the latest weighs most
    (``decay`` in (0, 1]: 1 = all turns equal)."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"query_decay must be in (0, 1], got {decay!r}")
    if n_turns < 1:
        raise ValueError("a query needs at least one non-empty request")
    w = decay ** np.arange(n_turns - 1, -1, -1, dtype=np.float64)
    return w / w.sum()


def query_scores(model: Any, queries: Sequence[str], decay: float = 0.5, space: str = "lm",
                 dataset: Dataset | None = None, attributes: float = 0.5) -> np.ndarray:
    """Match of every item to the request(s), float32 [n_items], read by the model's LM.

    Each request is matched against each item's whole text (cosine, in ``space``) and, with a
    ``dataset`` whose catalogue has categories, against the item's categories one by one (the
    best-matching one, cosine in the LM space): ``(1 - attributes) * z(text match) +
    attributes * z(category match)``. Turns are weighted by `turn_weights`."""
    queries = _clean_queries(queries)
    if not getattr(model, "reads_text", False) or not hasattr(model, "encode_texts"):
        raise ValueError(f"a text query needs a text model (m6); {getattr(model, 'name', model)!r} "
                         "does not read text")
    if space not in QUERY_SPACES:
        raise ValueError(f"query space must be one of {', '.join(QUERY_SPACES)}, got {space!r}")
    if not 0.0 <= attributes <= 1.0:
        raise ValueError(f"query attributes weight must be in [0, 1], got {attributes!r}")
    if space == "lm":
        items = np.asarray(model.item_text_, dtype=np.float32)
        q = ql = model.encode_texts(queries, space="lm")
    else:
        items = model.item_vectors()
        q = model.encode_texts(queries, space="item")
        ql = None
    cat, vocab = (dataset.category_matrix() if dataset is not None and attributes > 0
                  else (None, []))
    if len(vocab) and cat.shape[0] == items.shape[0]:
        ql = model.encode_texts(queries, space="lm") if ql is None else ql
        vocab_lm = model.encode_texts(vocab, space="lm")
    else:
        cat, vocab_lm = None, None
    return text_match(q, items, decay, cat, ql, vocab_lm, attributes)


def text_match(q: np.ndarray, items: np.ndarray, decay: float = 0.5, categories: Any = None,
               q_lm: np.ndarray | None = None, vocab_lm: np.ndarray | None = None,
               attributes: float = 0.5) -> np.ndarray:
    """The request match of `query_scores` from vectors, float32 [n_items].

    ``q`` [T, d]: the turns (oldest first) in the space of ``items`` [n_items, d] (cosine);
    ``categories``: sparse [n_items, n_categories] item-category matrix (or None), matched
    through ``q_lm`` [T, d_lm] against the category names' LM vectors ``vocab_lm``
    [n_categories, d_lm]: each item takes its best-matching category (items without one take
    the worst), and the two parts are mixed ``(1 - attributes) * z(text) + attributes *
    z(category)``. The service calls this with its live catalogue (posted items included)."""
    w = turn_weights(len(q), decay)
    match = _z(_unit(q) @ _unit(items).T)  # [T, n_items]
    if categories is not None and attributes > 0 and vocab_lm is not None and len(vocab_lm):
        per_cat = _unit(q_lm) @ _unit(vocab_lm).T  # [T, n_cats]
        best = np.zeros(match.shape)
        coo = categories.tocoo()
        for t in range(len(q)):
            b = np.full(categories.shape[0], -1.0)
            np.maximum.at(b, coo.row, per_cat[t, coo.col])
            best[t] = np.where(b > -1.0, b, per_cat[t].min())  # no category: worst
        match = (1.0 - attributes) * match + attributes * _z(best)
    return (w @ match).astype(np.float32)


def steer(user_scores: np.ndarray, match: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """``z(user_scores) + weight * z(match)`` row-wise (z: standardised over the catalogue,
    ignoring non-finite entries); ``user_scores`` [n, n_items], ``match`` [n_items]."""
    if not weight >= 0:
        raise ValueError(f"query_weight must be >= 0, got {weight!r}")
    return (_z(np.atleast_2d(user_scores)) + weight * _z(match[None, :])).astype(np.float32)


def recommend_for_user(model: Any, dataset: Dataset, user_id: str | None, k: int = 10,
                       explain: bool = False, query: str | Sequence[str] | None = None,
                       query_weight: float = 1.0, query_decay: float = 0.5,
                       query_space: str = "lm", query_attributes: float = 0.5,
                       phrasing: str = "template", generator: Any = None) -> dict[str, Any]:
    """``{"user_id", "strategy", "items": [{"item_id", "score", "title"[, explanation]}]}``.

    The user's whole history in ``dataset`` is the input and is excluded from the result.
    ``query``: one request or a conversation (a list, oldest first) steering the list with
    weight ``query_weight`` (see the module docstring; `query_scores` for ``query_space`` and
    ``query_attributes``); ``user_id=None`` with a query ranks by the request alone. ``explain`` adds an `m6rec.explain.Explanation` (as a dict) per item;
    ``phrasing="lm"`` has ``generator`` (default: `m6rec.text.generate.load_generator()`)
    rewrite each explanation's evidence into ``because``, checked by
    `m6rec.explain.grounded` (``lm``: raw text, replaced sentences, violations)."""
    if phrasing not in ("template", "lm"):
        raise ValueError(f"phrasing must be template or lm, got {phrasing!r}")
    queries = [query] if isinstance(query, str) else list(query or [])
    if user_id is None:
        if not queries:
            raise ValueError("give a user id, a query, or both")
        u, h = -1, Histories(np.zeros(2, np.int64), np.zeros(0, np.int64),
                             np.array([-1], np.int64))
    else:
        u = dataset.user_index(user_id)
        if u is None:
            raise ValueError(f"unknown user id {user_id!r} in dataset {dataset.name!r}")
        h = dataset.histories(np.array([u]))
    history = h.row(0)
    if queries:
        match = query_scores(model, queries, query_decay, query_space, dataset, query_attributes)
        if len(history):
            s, strategy = steer(model.score(h), match, query_weight)[0], "history+query"
        else:
            s, strategy = match.copy(), "query"
        s[history] = -np.inf
        from m6rec.ranking import topk

        ids, scores = topk(s[None], k)
    else:
        strategy = "history"
        ids, scores = model.recommend(h, k=k, exclude_seen=True)
    keep = ids[0] >= 0
    ids, scores = ids[0][keep], scores[0][keep]
    titles = dataset.titles()
    items = [{"item_id": str(dataset.item_ids[i]), "score": float(s), "title": str(titles[i])}
             for i, s in zip(ids, scores, strict=True)]
    if explain and len(ids):
        from m6rec.explain import Explainer

        exps = Explainer(model, dataset).explain(history, ids)
        phrased = _phrase(exps, dataset, generator) if phrasing == "lm" else None
        for n, (it, ex, i) in enumerate(zip(items, exps, ids, strict=True)):
            d = ex.to_dict()
            d["explained_score"] = d.pop("score")  # ``score`` stays the ranking score
            if phrased is not None:
                d["because"] = d["sentence"] = phrased[n].text
                d["lm"] = phrased[n].to_dict()
            if queries:
                d["query_match"] = round(float(match[i]), 4)
                req = queries[-1]
                d["because"] = d["sentence"] = request_sentence(d["sentence"], req, len(history) > 0)
            it.update(d)
    return {"user_id": None if user_id is None else str(user_id), "strategy": strategy,
            "items": items}


def _phrase(exps: list, dataset: Dataset, generator: Any) -> list:
    from m6rec.explain.grounded import phrase_explanations
    from m6rec.text.generate import load_generator

    return phrase_explanations(exps, generator or load_generator(), dataset)


def request_sentence(text: str, request: str, personal: bool) -> str:
    if not personal:
        return f'Matches your request "{request}".'
    return f'{text.rstrip(".")}; matches your request "{request}".'


def _clean_queries(queries: Sequence[str]) -> list[str]:
    if isinstance(queries, str):
        queries = [queries]
    out = [str(q).strip() for q in queries if str(q).strip()]
    if not out:
        raise ValueError("a query needs at least one non-empty request")
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _z(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    ok = np.isfinite(s)
    out = np.zeros_like(s)
    for r in range(len(s)):
        v = s[r][ok[r]]
        if len(v):
            out[r] = (s[r] - v.mean()) / max(float(v.std()), 1e-12)
        out[r][~ok[r]] = -np.inf
    return out
