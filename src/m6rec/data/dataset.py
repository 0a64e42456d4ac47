"""The in-memory dataset: interactions, catalogue, user profiles, knowledge graph and id maps.

Raw ids (strings) become contiguous indices here and nowhere else (Cornac's convention): models,
indexes and metrics see ``user_idx`` / ``item_idx`` only; the CLI and the service translate back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from m6rec.data.histories import Histories

# Column roles in a catalogue, by the names datasets use for them (first match wins).
TITLE_COLUMNS = ("title", "movie_title", "name", "item_name")
CATEGORY_COLUMNS = ("categories", "class", "genres", "genre", "category", "tags")


@dataclass(eq=False)
class KnowledgeGraph:
    """Triples over entities plus the item -> entity links.

    Attributes
    ----------
    entity_ids, relation_ids : str arrays, index -> raw id
    triples : int64 [m, 3] (head, relation, tail) indices
    item_entity : int64 [n_items]; entity index of each item, -1 when the item has no link
    """

    entity_ids: np.ndarray
    relation_ids: np.ndarray
    triples: np.ndarray
    item_entity: np.ndarray

    @property
    def n_entities(self) -> int:
        return len(self.entity_ids)

    @property
    def n_relations(self) -> int:
        return len(self.relation_ids)


@dataclass(eq=False)
class Dataset:
    """One domain's data.

    Attributes
    ----------
    name : str
        Domain name; item ids of several domains are kept apart as ``"{name}/{item_id}"``.
    inter : DataFrame
        One row per interaction, sorted by user then time: ``user_idx`` (int64), ``item_idx``
        (int64), ``timestamp`` (float64 unix seconds, NaN when the source has order only),
        ``seq`` (int64, 0-based position in the user's history) and, when present, ``rating``
        (float32) and ``event`` (int64 code into ``event_types``).
    user_ids, item_ids : object arrays of str, index -> raw id
    items : DataFrame
        The catalogue, row ``i`` = item ``i``; text columns as str ("" when missing).
    users : DataFrame or None
        Profiles, row ``u`` = user ``u``.
    kg : KnowledgeGraph or None
    event_types : list of str
    source : str
        Where it was loaded from.
    """

    name: str
    inter: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    kg: KnowledgeGraph | None = None
    event_types: list[str] = field(default_factory=list)
    source: str = ""

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.inter)

    @property
    def has_ratings(self) -> bool:
        return "rating" in self.inter.columns

    @property
    def has_timestamps(self) -> bool:
        return bool(self.inter["timestamp"].notna().any())

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: {self.n_users} users, {self.n_items} items, "
                f"{self.n_interactions} interactions)")

    # -- id maps -------------------------------------------------------------------------------
    @cached_property
    def _user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids)}

    @cached_property
    def _item_index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.item_ids)}

    def user_index(self, user_id: str) -> int | None:
        """Index of a raw user id, or None when unknown."""
        return self._user_index.get(str(user_id))

    def item_index(self, item_id: str) -> int | None:
        """Index of a raw item id (plain or ``"{name}/id"``), or None when unknown."""
        item_id = str(item_id)
        idx = self._item_index.get(item_id)
        if idx is None and item_id.startswith(self.name + "/"):
            idx = self._item_index.get(item_id[len(self.name) + 1 :])
        return idx

    def namespaced_item_ids(self) -> np.ndarray:
        """Item ids prefixed by the domain name, unique across domains."""
        return np.array([f"{self.name}/{i}" for i in self.item_ids], dtype=object)

    # -- catalogue roles -------------------------------------------------------------------------
    @cached_property
    def title_column(self) -> str | None:
        return next((c for c in TITLE_COLUMNS if c in self.items.columns), None)

    @cached_property
    def category_column(self) -> str | None:
        return next((c for c in CATEGORY_COLUMNS if c in self.items.columns), None)

    def titles(self) -> np.ndarray:
        """One display title per item (the raw id when the catalogue has none)."""
        if self.title_column is None:
            return self.item_ids.copy()
        t = self.items[self.title_column].to_numpy(dtype=object)
        return np.where(t == "", self.item_ids, t)

    def item_categories(self) -> list[list[str]]:
        """Each item's categories / genres / tags as a list (empty when there is no such column).

        Separators: ``|`` or ``,`` when the column uses them, else whitespace (RecBole token_seq).
        """
        col = self.category_column
        if col is None:
            return [[] for _ in range(self.n_items)]
        values = self.items[col].astype(str)
        sample = " ".join(values.head(200))
        sep = "|" if "|" in sample else "," if "," in sample else None
        return [[p.strip() for p in v.split(sep) if p.strip()] for v in values]

    def category_matrix(self) -> tuple[sp.csr_matrix, list[str]]:
        """Multi-hot item x category matrix and the category names."""
        cats = self.item_categories()
        vocab = sorted({c for cs in cats for c in cs})
        pos = {c: j for j, c in enumerate(vocab)}
        rows = [i for i, cs in enumerate(cats) for _ in cs]
        cols = [pos[c] for cs in cats for c in cs]
        m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                          shape=(self.n_items, len(vocab)))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m, vocab

    # -- views -----------------------------------------------------------------------------------
    def with_interactions(self, inter: pd.DataFrame) -> Dataset:
        """The same domain (id maps, catalogue, profiles, KG) with another set of interactions.

        ``inter`` keeps each user's chronological order (by its ``seq``); ``seq`` is renumbered
        from 0 within each user."""
        inter = inter.sort_values(["user_idx", "seq"], kind="stable").reset_index(drop=True)
        inter["seq"] = inter.groupby("user_idx").cumcount().astype(np.int64)
        ds = replace(self, inter=inter)
        ds.__dict__.pop("_user_index", None)
        ds.__dict__.pop("_item_index", None)
        return ds

    def item_counts(self) -> np.ndarray:
        """Number of interactions per item (repeats counted), int64 [n_items]."""
        return np.bincount(self.inter["item_idx"].to_numpy(), minlength=self.n_items)

    def csr(self, values: str | None = None) -> sp.csr_matrix:
        """User x item matrix [n_users, n_items]: binary (repeats counted once), or the given
        column (e.g. ``"rating"``; repeated pairs are summed)."""
        u = self.inter["user_idx"].to_numpy()
        i = self.inter["item_idx"].to_numpy()
        data = (np.ones(len(u), np.float32) if values is None
                else self.inter[values].to_numpy(np.float32))
        m = sp.csr_matrix((data, (u, i)), shape=(self.n_users, self.n_items))
        if values is None:
            m.sum_duplicates()
            m.data[:] = 1.0
        return m

    def histories(self, users: np.ndarray | None = None) -> Histories:
        """Chronological histories of the given user indices (all users by default)."""
        inter = self.inter
        u = inter["user_idx"].to_numpy()
        counts = np.bincount(u, minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        full = Histories(
            indptr=indptr,
            items=inter["item_idx"].to_numpy(np.int64),
            users=np.arange(self.n_users, dtype=np.int64),
            timestamps=inter["timestamp"].to_numpy(np.float64),
            ratings=inter["rating"].to_numpy(np.float32) if self.has_ratings else None,
            events=inter["event"].to_numpy(np.int64) if "event" in inter.columns else None,
        )
        return full if users is None else full.take(np.asarray(users, dtype=np.int64))

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name, "users": self.n_users, "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.n_interactions / max(1, self.n_users * self.n_items),
            "ratings": self.has_ratings, "timestamps": self.has_timestamps,
            "item_columns": list(self.items.columns),
            "user_columns": [] if self.users is None else list(self.users.columns),
            "kg_triples": 0 if self.kg is None else len(self.kg.triples),
            "source": self.source,
        }
