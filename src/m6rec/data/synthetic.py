"""Seeded synthetic interaction logs with the shape of real ones, at any size.

Used by ``benchmarks/scale_curve.py`` to measure how every cost grows with the data. The log has

- **Zipf item popularity**: item weight ``1 / (rank + 10) ** zipf`` (rank 0 the most popular);
- **heavy-tailed user activity**: Pareto(1.5) history lengths (clipped) (at least ``min_len``),
  scaled so the log has exactly ``n_interactions`` rows;
- **topics**: every item belongs to one topic; a user has a favourite topic and draws a fresh
  item from it with probability ``p_topic`` (by popularity within the topic), else from the
  whole catalogue;
- **sessions**: a new session starts with probability ``p_session`` (hours to days later; within a
  session events are about a minute apart); inside a session the next event is, with
  probability ``p_next``, the fixed successor of the previous item (a popular item of the same
  topic: sequential structure a sequence model can learn), with probability ``p_repeat`` a
  repeat of one of the last three items, else a fresh draw;
- **item texts** built from a pseudo-word vocabulary with topic-specific words (titles) and the
  topic's genre name, so text models can run.

Everything comes from one ``numpy.random.Generator(seed)``: the same arguments give the same log.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "te", "vi", "zo", "pa", "qu", "di", "fe", "go",
              "ha", "ju", "ly", "mo", "nu", "ri", "so", "ta", "ve", "wi", "xa", "yo", "ze", "bo")


def _vocabulary(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct pseudo-words of 2-4 syllables."""
    words: set[str] = set()
    syl = np.array(_SYLLABLES, dtype=object)
    while len(words) < n:
        k = rng.integers(2, 5, size=2 * n)
        parts = rng.integers(0, len(syl), size=(2 * n, 4))
        for kk, p in zip(k, parts, strict=True):
            words.add("".join(syl[p[:kk]]))
            if len(words) >= n:
                break
    return np.array(sorted(words), dtype=object)[rng.permutation(n)]


def _lengths(n_users: int, n_interactions: int, min_len: int,
             rng: np.random.Generator) -> np.ndarray:
    """Pareto(1.5)-shaped lengths (clipped at 200 times the smallest) >= min_len, summing to
    exactly n_interactions."""
    if n_users * min_len > n_interactions:
        raise ValueError(f"{n_users} users x min_len {min_len} exceed {n_interactions} rows")
    raw = np.minimum(rng.pareto(1.5, size=n_users) + 1.0, 200.0)
    extra = n_interactions - n_users * min_len
    lengths = min_len + np.floor(raw / raw.sum() * extra).astype(np.int64)
    short = n_interactions - int(lengths.sum())
    if short:
        lengths[rng.choice(n_users, size=short, replace=False)] += 1
    return lengths


def generate(n_interactions: int, n_items: int, n_users: int | None = None, *, seed: int = 0,
             zipf: float = 1.05, n_topics: int | None = None, p_topic: float = 0.8,
             p_session: float = 0.15, p_next: float = 0.4, p_repeat: float = 0.1,
             min_len: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic log: ``(interactions, items)``.

    Parameters
    ----------
    n_interactions, n_items : int
    n_users : int, optional
        Default ``n_interactions // 10`` (heavy-tailed lengths around a mean of 10).
    seed : int
    zipf : float
        Popularity exponent.
    n_topics : int, optional
        Default ``max(8, n_items // 500)``.
    p_topic, p_session, p_next, p_repeat : float
        See the module docstring.
    min_len : int
        Shortest history (5 leaves train, valid and test items under leave-one-out).

    Returns
    -------
    interactions : DataFrame ``user_id, item_id, timestamp`` (str, str, int64 unix seconds),
        ``n_interactions`` rows, each user's rows in time order.
    items : DataFrame ``item_id, title, categories`` (``n_items`` rows).
    """
    rng = np.random.default_rng(seed)
    n_users = n_users or max(1, n_interactions // 10)
    n_topics = n_topics or max(8, n_items // 500)
    n = int(n_interactions)

    # items: popularity rank -> weight; topic of each item
    rank = rng.permutation(n_items)
    weight = 1.0 / (rank + 10.0) ** zipf
    topic = rng.integers(0, n_topics, size=n_items)
    by_topic = np.argsort(topic, kind="stable")
    t_start = np.searchsorted(topic[by_topic], np.arange(n_topics + 1))
    cum = np.cumsum(weight[by_topic])
    cum_at = np.concatenate([[0.0], cum])[t_start]  # cumulative weight before each topic
    g_cum = np.cumsum(weight) / weight.sum()

    def draw_topic(t: np.ndarray) -> np.ndarray:
        lo, hi = cum_at[t], cum_at[t + 1]
        empty = hi <= lo
        u = lo + rng.random(len(t)) * (hi - lo)
        pos = np.minimum(np.searchsorted(cum, u, side="right"), n_items - 1)
        out = by_topic[pos]
        if empty.any():  # a topic without items: draw globally
            out[empty] = np.searchsorted(g_cum, rng.random(int(empty.sum())), side="right")
        return out

    succ = draw_topic(topic)  # each item's successor: a popular item of its own topic
    succ = np.where(succ == np.arange(n_items), draw_topic(topic), succ)

    # users and positions
    lengths = _lengths(n_users, n, min_len, rng)
    user = np.repeat(np.arange(n_users), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos = np.arange(n) - np.repeat(starts, lengths)
    fav = rng.integers(0, n_topics, size=n_users)

    new_session = (rng.random(n) < p_session) | (pos == 0)
    kind = rng.random(n)  # < p_next: successor; < p_next + p_repeat: repeat; else fresh
    fresh = new_session | (kind >= p_next + p_repeat)
    is_repeat = ~fresh & (kind >= p_next)
    back = np.where(is_repeat, np.minimum(rng.integers(1, 4, size=n), pos), 1)
    back = np.maximum(back, 1)

    items = np.full(n, -1, dtype=np.int64)
    idx = np.flatnonzero(fresh)
    in_topic = rng.random(len(idx)) < p_topic
    items[idx[in_topic]] = draw_topic(fav[user[idx[in_topic]]])
    glob = idx[~in_topic]
    items[glob] = np.minimum(np.searchsorted(g_cum, rng.random(len(glob)), side="right"),
                             n_items - 1)
    todo = np.flatnonzero(~fresh)
    while len(todo):  # follow chains of successors / repeats back to a fresh draw
        src = items[todo - back[todo]]
        ready = src >= 0
        t = todo[ready]
        items[t] = np.where(is_repeat[t], src[ready], succ[np.maximum(src[ready], 0)])
        todo = todo[~ready]

    # time: users start over a year; minutes apart within a session, hours-days between
    gap = np.where(new_session, rng.exponential(2 * 86400.0, size=n), rng.exponential(60.0, n))
    gap[pos == 0] = 0.0
    t0 = 1_600_000_000 + rng.integers(0, 365 * 86400, size=n_users)
    csum = np.cumsum(gap)
    ts = np.repeat(t0, lengths) + (csum - np.repeat(csum[starts], lengths))
    inter = pd.DataFrame({
        "user_id": np.char.add("u", user.astype(str)).astype(object),
        "item_id": np.char.add("i", items.astype(str)).astype(object),
        "timestamp": np.floor(ts).astype(np.int64) + pos,  # strictly increasing per user
    })

    # texts: 2-4 title words (mostly from the topic's own 40 words), the topic's genre
    vocab = _vocabulary(max(200, 40 * n_topics), rng)
    genres = _vocabulary(n_topics + 50, np.random.default_rng(seed + 1))[:n_topics]
    n_words = rng.integers(2, 5, size=n_items)
    own = rng.random((n_items, 4)) < 0.75
    word = np.where(own, topic[:, None] * 40 + rng.integers(0, 40, size=(n_items, 4)),
                    rng.integers(0, len(vocab), size=(n_items, 4))) % len(vocab)
    w = vocab[word]
    titles = [" ".join(row[:k]).title() for row, k in zip(w, n_words, strict=True)]
    catalogue = pd.DataFrame({
        "item_id": np.char.add("i", np.arange(n_items).astype(str)).astype(object),
        "title": np.array(titles, dtype=object),
        "categories": genres[topic].astype(object),
    })
    return inter, catalogue
