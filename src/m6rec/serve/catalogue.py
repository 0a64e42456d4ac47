"""The live catalogue of the service: the dataset's items (positions ``0 .. n_base - 1``), then
the items posted since, in the order they arrived, with their titles, categories, events per
item (popularity) and, for text models, the language model's encodings of their texts.

Writers hold the engine's lock; readers do not lock: a new item's position becomes visible
(`Catalogue.index`) only once every list holds its row.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from m6rec.serve.replication import Cursor


class Catalogue:
    """Items by position: ids, titles, categories, popularity and LM encodings.

    Parameters
    ----------
    item_ids, titles, categories : the dataset's catalogue, in index order
    counts : training events per item [n_base]
    lm : the LM encodings of the items' texts [n_base, D] (text models), or None
    """

    def __init__(self, item_ids: list[str], titles: list[str], categories: list[list[str]],
                 counts: np.ndarray, lm: np.ndarray | None = None) -> None:
        n = len(item_ids)
        self.n_base = n
        self.item_ids = [str(i) for i in item_ids]
        self.item_pos: dict[str, int] = {i: k for k, i in enumerate(self.item_ids)}
        self.titles = [str(t) for t in titles]
        self.categories = [list(c) for c in categories]
        self.popularity = np.zeros(max(16, 2 * n), dtype=np.float64)
        self.popularity[:n] = counts
        self.lm = None if lm is None else np.array(lm, dtype=np.float32, copy=True)
        self.log_counts: dict[str, int] = {}  # events per item id in the log (popularity's part)
        # what is applied from the store's feeds (events by id, posted items by seq)
        self.event_cursor, self.item_cursor = Cursor(), Cursor()
        self.version = 0  # +1 when a catalogue item's title or categories change
        self._categories_cache: tuple[tuple[int, int], Any, list[str]] | None = None

    @classmethod
    def from_dataset(cls, dataset: Any, lm: np.ndarray | None = None) -> Catalogue:
        return cls(list(dataset.item_ids), list(dataset.titles()), dataset.item_categories(),
                   dataset.item_counts(), lm)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def events_seen(self) -> int:
        """The event id up to which every event is counted."""
        return self.event_cursor.offset

    @events_seen.setter
    def events_seen(self, offset: int) -> None:
        self.event_cursor.offset = int(offset)

    def share_log(self) -> None:
        """Other processes write to the same store: our own writes no longer move the
        offsets (the follower's reads of the feed do; `m6rec.serve.replication`)."""
        self.event_cursor.shared = self.item_cursor.shared = True

    def log_state(self) -> tuple[int, dict[str, int]]:
        """(offset, events per item up to it): what a snapshot may store (events counted
        above the offset, out of order, are left out)."""
        counts = dict(self.log_counts)
        for item_id in self.event_cursor.ahead.values():
            counts[item_id] -= 1
        return self.event_cursor.offset, counts

    def index(self, item_id: str) -> int | None:
        return self.item_pos.get(str(item_id))

    def is_posted(self, pos: int) -> bool:
        return pos >= self.n_base

    # -- writes (under the engine's lock) ----------------------------------------------------
    def append(self, item_id: str, title: str, categories: list[str],
               lm: np.ndarray | None = None) -> int:
        """Add a posted item's row; returns its position. Its id is not found (`index`) until
        `publish`: the caller first adds its vector wherever the position is read."""
        pos = len(self.item_ids)
        if pos >= len(self.popularity):
            self.popularity = np.concatenate([self.popularity, np.zeros_like(self.popularity)])
        # events may name it before it arrives here (posted to another process)
        self.popularity[pos] = self.log_counts.get(item_id, 0)
        self.titles.append(title)
        self.categories.append(list(categories))
        if lm is not None:
            self._put_lm(pos, lm)
        self.item_ids.append(item_id)
        return pos

    def publish(self, item_id: str, pos: int) -> None:
        """Make an appended item findable by its id."""
        self.item_pos[item_id] = pos

    def update(self, pos: int, title: str, categories: list[str],
               lm: np.ndarray | None = None) -> None:
        """Change a known item's title, categories (and LM encoding)."""
        self.titles[pos] = title
        self.categories[pos] = list(categories)
        self.version += 1
        if lm is not None:
            self._put_lm(pos, lm)

    def _put_lm(self, pos: int, lm: np.ndarray) -> None:
        if self.lm is None:
            return
        if pos >= len(self.lm):  # grow by doubling; rows past the catalogue are never read
            self.lm = np.concatenate([self.lm, np.zeros_like(self.lm)])
        self.lm[pos] = lm

    def count(self, item_ids: list[str]) -> None:
        """Events just committed (or read from the feed) for these items: popularity and the
        log's counts (an item not here yet gets its count when it arrives)."""
        for i in item_ids:
            pos = self.item_pos.get(i)
            if pos is not None:
                self.popularity[pos] += 1
            self.log_counts[i] = self.log_counts.get(i, 0) + 1

    def add_log_counts(self, counts: dict[str, int]) -> None:
        """Events per item replayed from the log (a snapshot plus its tail)."""
        for item_id, c in counts.items():
            self.log_counts[item_id] = self.log_counts.get(item_id, 0) + c
            pos = self.item_pos.get(item_id)
            if pos is not None:
                self.popularity[pos] += c

    # -- reads -------------------------------------------------------------------------------
    def posted_lm(self) -> np.ndarray:
        """LM encodings of the posted items [n_posted, D]."""
        n = len(self.item_ids)
        if self.lm is None:
            return np.zeros((n - self.n_base, 0), np.float32)
        return self.lm[self.n_base:n]

    def category_matrix(self, n: int):
        """Sparse [n, n_categories] item-category matrix of the first ``n`` items, and the
        category names (cached until the catalogue changes)."""
        from scipy import sparse

        key = (n, self.version)
        cached = self._categories_cache
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        cats = self.categories[:n]
        vocab = sorted({c for cs in cats for c in cs})
        col = {c: k for k, c in enumerate(vocab)}
        rows = [i for i, cs in enumerate(cats) for _ in cs]
        cols = [col[c] for cs in cats for c in cs]
        m = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                              shape=(n, len(vocab)))
        self._categories_cache = (key, m, vocab)
        return m, vocab

    def copy(self) -> Catalogue:
        """An independent copy (a derived engine's catalogue)."""
        new = Catalogue.__new__(Catalogue)
        new.__dict__.update(self.__dict__)
        new.item_ids, new.item_pos = list(self.item_ids), dict(self.item_pos)
        new.titles, new.categories = list(self.titles), [list(c) for c in self.categories]
        new.popularity = self.popularity.copy()
        new.lm = None if self.lm is None else self.lm.copy()
        new.log_counts = dict(self.log_counts)
        new.event_cursor, new.item_cursor = self.event_cursor.copy(), self.item_cursor.copy()
        new._categories_cache = None
        return new


def title_of(fields: dict[str, Any], item_id: str) -> str:
    return str(fields.get("title") or fields.get("name") or item_id)


def categories_of(fields: dict[str, Any]) -> list[str]:
    """A posted item's categories: a list, or one string split at ``|`` and ``,``."""
    cats = fields.get("categories") or []
    if isinstance(cats, str):
        cats = [c.strip() for c in cats.replace("|", ",").split(",") if c.strip()]
    return [str(c) for c in cats]


def item_text(dataset: Any, item_id: str, fields: dict[str, Any], budget: int) -> str:
    """A posted item's text, rendered by the dataset's item template exactly as the catalogue's
    own items are (its ``categories`` go into the dataset's category column)."""
    import pandas as pd

    from m6rec.text import item_texts

    ds = dataset
    row = {c: "" for c in ds.items.columns}
    for k, v in fields.items():
        row[k] = "|".join(map(str, v)) if isinstance(v, list) else str(v)
    if ds.category_column and "categories" in fields and ds.category_column != "categories":
        row[ds.category_column] = row.pop("categories")
    one = replace(ds, items=pd.DataFrame([row]), item_ids=np.array([item_id], object))
    for cached in ("title_column", "category_column"):
        one.__dict__.pop(cached, None)
    return item_texts(one, budget=budget)[0]
