"""The library side of the service (no FastAPI here): a loaded model, its catalogue, an item
index and the store, answering recommendation requests from every committed event.

Two scoring paths:

- **vector models** (the sequence models, ``m6`` first): the user is encoded from their
  history, the item vectors sit in an index (exact or FAISS) and new items are added to it;
  text models (``reads_text``) also encode posted items and free-text queries;
- **any other model** (EASE, KNN, MF, ...): ``model.score`` over its catalogue.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.index import build_index
from m6rec.ranking import topk
from m6rec.storage import Event, Item, Store
from m6rec.storage.base import check_event


@dataclass(frozen=True)
class RecRequest:
    """One recommendation request (see `Engine.recommend`)."""

    user_id: str
    k: int = 10
    exclude: tuple[str, ...] = ()
    query: str | tuple[str, ...] | None = None
    explain: bool = False
    query_weight: float | None = None  # None: the engine's
    query_decay: float | None = None  # None: the engine's
    query_attributes: float | None = None  # None: the engine's

    @property
    def turns(self) -> tuple[str, ...]:
        """The request(s) of a conversation, oldest first, blanks dropped (``query`` may be one
        string or several turns)."""
        q = (self.query,) if isinstance(self.query, str) else tuple(self.query or ())
        return tuple(t.strip() for t in q if t and t.strip())


class NotFound(LookupError):
    """An id the service does not know (404)."""


class Unsupported(ValueError):
    """A request the loaded model cannot answer (422)."""


class Engine:
    """Model + catalogue + index over one store.

    Parameters
    ----------
    model_dir : directory written by ``m6rec train``
    store : the event / item store
    data : dataset spec (default: the model's ``meta.json`` ``data_spec``)
    index, faiss_threshold : see `m6rec.index.build_index`
    pseudonymise_key : HMAC key for user ids at ingestion (None: ids are stored as given)
    history_limit : newest stored events read per user
    user_cache : most user vectors kept (vector models): a user's vector is reused while their
        history (and the item table) is unchanged, so repeated requests skip the encoder
    explain_cache : most users whose leave-one-out vectors are kept (vector models, for
        ``explain``), under the same key as the user-vector cache
    snapshot : file of the log-derived state (`m6rec.serve.snapshot`): read at start (only
        the log after its offset is replayed), written by `save_snapshot`
    explain_history : vector models: the newest this many history items are tested by
        leave-one-out (each removal is one more user encoding per request; the model still
        reads its whole window)
    query_weight, query_decay, query_attributes : free-text requests, as in
        `m6rec.recommend`: ``z(user scores) + query_weight * z(request match)``, turns weighted
        ``query_decay ** age``, the match mixing item text and categories (``query_attributes``)
    """

    def __init__(self, model_dir: str | Path, store: Store, data: str | None = None,
                 index: str = "auto", faiss_threshold: int = 50_000,
                 pseudonymise_key: str | None = None, history_limit: int = 500,
                 query_weight: float = 1.0, query_decay: float = 0.5,
                 query_attributes: float = 0.5, user_cache: int = 100_000,
                 explain_cache: int = 2048, explain_history: int = 20,
                 snapshot: str | Path | None = None):
        from m6rec.config import Settings
        from m6rec.data import load_dataset
        from m6rec.models.io import load_model_dir

        self.model_dir = Path(model_dir)
        self.store = store
        self.history_limit = history_limit
        self.query_weight = query_weight
        self.query_decay = query_decay
        self.query_attributes = query_attributes
        self._key = pseudonymise_key.encode() if pseudonymise_key else None
        self.loaded_at = time.time()
        _, meta = load_model_dir(self.model_dir)  # checks the directory, says what it holds
        spec = data or meta.get("data_spec")
        if not spec:
            raise ValueError(f"{self.model_dir}: meta.json names no dataset; pass --data SPEC")
        self.data_spec, self.tie_break = spec, Settings().tie_break
        self.dataset: Dataset = load_dataset(spec, tie_break=self.tie_break)
        self.model, self.meta = load_model_dir(self.model_dir, self.dataset)
        self.model_name = self.meta.get("model", self.model.name)
        ds = self.dataset
        self._lock = threading.Lock()
        self._batch_lock = threading.Lock()
        self._batchers: dict[str, Any] = {}
        self._closed = False
        self.n_base = ds.n_items
        self.item_ids: list[str] = [str(i) for i in ds.item_ids]
        self.item_pos: dict[str, int] = {i: k for k, i in enumerate(self.item_ids)}
        self.titles: list[str] = [str(t) for t in ds.titles()]
        self.categories: list[list[str]] = ds.item_categories()
        self.popularity = np.zeros(max(16, 2 * ds.n_items), dtype=np.float64)
        self.popularity[: ds.n_items] = ds.item_counts()
        self._full = ds.histories()
        self.event_code = {t: k for k, t in enumerate(ds.event_types)}
        self._train_csr = ds.csr()
        self._item_users = self._train_csr.T.tocsr()
        self.vector_mode = hasattr(self.model, "module_") and hasattr(self.model.module_,
                                                                      "item_table")
        self.text_mode = bool(self.model.reads_text and self.vector_mode)
        self._encoder = None
        self._explainer = None
        self._categories_cache: tuple[tuple[int, int], Any, list[str]] | None = None
        self._categories_version = 0
        self._vocab_lm: dict[str, np.ndarray] = {}
        self._user_cache: OrderedDict[str, tuple[bytes, np.ndarray]] = OrderedDict()
        self._user_cache_size = int(user_cache)
        self._loo_cache: OrderedDict[str, tuple[bytes, np.ndarray, np.ndarray, dict]] = (
            OrderedDict())
        self._loo_cache_size = int(explain_cache)
        self.explain_history = int(explain_history)
        self._cache_lock = threading.Lock()
        self._vectors_version = 0  # bumped when a catalogue item's vector changes
        self.cache_hits = self.cache_misses = 0
        self.model_version = 0  # +1 per online update (`derive`)
        self._successor: Engine | None = None
        self._index_kind, self._faiss_threshold = index, faiss_threshold
        if self.vector_mode:
            self._init_vectors(index, faiss_threshold)
            if self.text_mode:  # the LM's own item encodings (request matching), posted too
                self._lm = np.array(self.model.item_text_, dtype=np.float32, copy=True)
        for it in store.all_items():  # items posted earlier (also by other replicas)
            self._apply_item(it)
        self.snapshot_path = snapshot
        self._log_counts: dict[str, int] = {}  # events per item in the log (popularity's part)
        self._replay(store)

    def _replay(self, store: Store) -> None:
        """Events per item from the snapshot (when valid) plus the log after its offset (one
        aggregate query), into ``popularity``."""
        from m6rec.serve import snapshot

        snap = snapshot.load(self.snapshot_path, store)
        offset, counts = snap if snap is not None else (0, {})
        tail, self.events_seen = store.item_counts(offset)
        for item_id, count in tail.items():
            counts[item_id] = counts.get(item_id, 0) + count
        self._log_counts = counts
        self.snapshot_offset = offset
        for item_id, count in counts.items():
            pos = self.item_pos.get(item_id)
            if pos is not None:
                self.popularity[pos] += count

    def save_snapshot(self) -> None:
        """Write the log-derived state with the offset it covers (no-op without a path)."""
        from m6rec.serve import snapshot

        if self.snapshot_path is None:
            return
        with self._lock:
            offset, counts = self.events_seen, dict(self._log_counts)
        snapshot.save(self.snapshot_path, self.store, offset, counts)

    # -- vectors -----------------------------------------------------------------------------
    def _init_vectors(self, index: str, faiss_threshold: int) -> None:
        import torch

        module = self.model.module_
        module.eval()
        with torch.inference_mode():
            table = module.item_table().float().cpu().numpy()
        self.index = build_index(table, kind=index, threshold=faiss_threshold)
        norms = np.linalg.norm(table, axis=1, keepdims=True)
        self.sim_index = build_index(table / np.maximum(norms, 1e-12), kind=index,
                                     threshold=faiss_threshold)
        self._table = torch.as_tensor(table)

    def derive(self, model: Any, version: int) -> Engine:
        """A new engine serving ``model``, an updated version of this engine's model (same
        catalogue order, e.g. from `m6rec.online.Updater`), over the same store and catalogue;
        built off the request path, then swapped in by the caller in one assignment.

        From then on this engine forwards item writes to the new one (a request that started
        here may still post an item), so no posted item is lost in the swap. Vector models get
        a fresh item table and index from the new weights (posted items re-embedded from
        their stored LM encodings); ``model`` itself is not modified (a copy is served).
        """
        import copy

        serving = copy.deepcopy(model) if self.vector_mode else model
        with self._lock:  # no item is applied while the catalogue is copied
            new = copy.copy(self)
            new.model, new.model_version, new._successor = serving, version, None
            new.loaded_at = time.time()
            new.item_ids, new.item_pos = list(self.item_ids), dict(self.item_pos)
            new.titles, new.categories = list(self.titles), [list(c) for c in self.categories]
            new._lock, new._batch_lock, new._cache_lock = (threading.Lock(), threading.Lock(),
                                                            threading.Lock())
            new._batchers, new._closed = {}, False
            new._user_cache, new.cache_hits, new.cache_misses = OrderedDict(), 0, 0
            new._loo_cache = OrderedDict()
            new._explainer, new._categories_cache = None, None
            if self.vector_mode:
                new._init_vectors(self._index_kind, self._faiss_threshold)
                n = len(self.item_ids)
                if n > self.n_base:  # posted items: their text through the new adapter
                    vecs = _adapt(serving.module_, self._lm[self.n_base:n])
                    for v in vecs:
                        new._extend_table(v)
                    new.index.add(vecs)
                    new.sim_index.add(vecs / np.maximum(
                        np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12))
            self._successor = new
        return new

    def _cached_user_vectors(self, rows: list[tuple[str, int, np.ndarray, np.ndarray,
                                                    np.ndarray]]) -> np.ndarray:
        """User vectors for (user_id, index, items, timestamps, event codes) rows, encoding
        only the users whose history (or the item table) changed since their last request.

        The key is a digest of everything the encoder reads (the whole history arrays, the
        training-user index for the profile, the item-table version and size), so a cached
        vector is exactly what encoding again would give; a new event changes the history and
        so the key (read-your-writes holds)."""
        table_key = f"{self._vectors_version}:{len(self._table)}".encode()
        keys = [_digest(table_key, u, items, ts, ev) for _, u, items, ts, ev in rows]
        vecs: list[np.ndarray | None] = [None] * len(rows)
        with self._cache_lock:
            for x, (uid, *_rest) in enumerate(rows):
                hit = self._user_cache.get(uid)
                if hit is not None and hit[0] == keys[x]:
                    self._user_cache.move_to_end(uid)
                    vecs[x] = hit[1]
        miss = [x for x, v in enumerate(vecs) if v is None]
        if miss:
            fresh = self._user_vectors(self._stack([rows[x][1:] for x in miss]))
            with self._cache_lock:
                for x, v in zip(miss, fresh, strict=True):
                    vecs[x] = v = v.copy()  # not a view that keeps the whole batch alive
                    if self._user_cache_size > 0:
                        self._user_cache[rows[x][0]] = (keys[x], v)
                        self._user_cache.move_to_end(rows[x][0])
                while len(self._user_cache) > self._user_cache_size:
                    self._user_cache.popitem(last=False)
        self.cache_hits += len(rows) - len(miss)
        self.cache_misses += len(miss)
        return np.stack(vecs)

    def _user_vectors(self, h: Histories) -> np.ndarray:
        # text models read the current catalogue (base + posted items); one request sees one
        # table even while an item is being added
        table = self._table.numpy() if self.text_mode else None
        return self.model.user_vectors(h, item_table=table)

    @property
    def encoder(self):
        if self._encoder is None:
            from m6rec.text import get_encoder

            self._encoder = get_encoder(self.model.encoder)
        return self._encoder

    def _text_to_item_space(self, texts: list[str]) -> np.ndarray:
        """Free texts -> vectors in item space (the model's text adapter, no ID part)."""
        return _adapt(self.model.module_, np.asarray(self.encoder.encode(texts), np.float32))

    # -- ids ---------------------------------------------------------------------------------
    def pseudonym(self, user_id: str) -> str:
        """The id under which a user's events are stored (keyed HMAC when configured)."""
        if self._key is None:
            return user_id
        return "p_" + hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()[:40]

    def item_index(self, item_id: str) -> int | None:
        return self.item_pos.get(str(item_id))

    # -- writes ------------------------------------------------------------------------------
    def add_events(self, events: list[dict[str, Any]]) -> list[int]:
        """Store events (all or none) and return their ids once committed."""
        out = self.add_events_many([events])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def add_events_many(self, batches: list[list[dict[str, Any]]]) -> list[list[int] | Exception]:
        """Several requests' events in one transaction (group commit: one disk sync for all).

        A request naming an unknown item gets its error and stores nothing; the others are
        committed together, and each gets its ids once the commit has returned.
        """
        now = time.time()
        out: list[Any] = [None] * len(batches)
        rows: list[Event] = []
        spans: list[tuple[int, int, int]] = []
        for j, events in enumerate(batches):
            unknown = [k for k, e in enumerate(events) if e["item_id"] not in self.item_pos]
            if unknown:
                k = unknown[0]
                out[j] = NotFound(f"events[{k}].item_id {events[k]['item_id']!r} is not in the "
                                  "catalogue (POST /items first)")
                continue
            mine = [Event(self.pseudonym(e["user_id"]), e["item_id"], e.get("type"),
                          float(e["timestamp"]) if e.get("timestamp") is not None else now)
                    for e in events]
            try:  # one request's bad event must not fail the others committed with it
                for e in mine:
                    check_event(e)
            except ValueError as err:
                out[j] = err
                continue
            spans.append((j, len(rows), len(rows) + len(mine)))
            rows += mine
        if rows:
            ids = self.store.add_events(rows)
            with self._lock:
                for e in rows:
                    self.popularity[self.item_pos[e.item_id]] += 1
                    self._log_counts[e.item_id] = self._log_counts.get(e.item_id, 0) + 1
                self.events_seen = max(self.events_seen, max(ids))
            for j, a, b in spans:
                out[j] = ids[a:b]
        return out

    def submit_events(self, events: list[dict[str, Any]]) -> Future:
        """Queue one request's events for group commit; the future holds their ids."""
        return self._submit("events", self.add_events_many, events)

    def add_item(self, item_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Store an item, then put it into the index; returns what happened."""
        item = Item(item_id, dict(fields), time.time())
        self.store.put_items([item])
        return self._apply_item(item)

    def _apply_item(self, item: Item) -> dict[str, Any]:
        with self._lock:
            if self._successor is not None:  # swapped out by an online update: it serves now
                return self._successor._apply_item(item)
            pos = self.item_pos.get(item.item_id)
            title = str(item.fields.get("title") or item.fields.get("name") or item.item_id)
            cats = item.fields.get("categories") or []
            if isinstance(cats, str):
                cats = [c.strip() for c in cats.replace("|", ",").split(",") if c.strip()]
            vec = lm = None
            if self.text_mode:
                text = self._item_text(item)
                vec, lm = self._item_vector(pos, text)
            new = pos is None
            if new:
                if not self.text_mode:
                    # an ID model cannot score an item it was not trained on: keep it stored
                    return {"item_id": item.item_id, "created": True, "indexed": False,
                            "reason": f"model {self.model_name!r} does not read item text"}
                pos = len(self.item_ids)
                if pos >= len(self.popularity):
                    self.popularity = np.concatenate([self.popularity,
                                                      np.zeros_like(self.popularity)])
                self.titles.append(title)
                self.categories.append(list(cats))
                self.item_ids.append(item.item_id)
                self._lm_put(pos, lm)
                self._extend_table(vec)
                self.index.add(vec[None])
                self.sim_index.add(_unit(vec)[None])
                self.item_pos[item.item_id] = pos  # visible to readers last
            else:
                self.titles[pos] = title
                self.categories[pos] = list(cats)
                self._categories_version += 1
                if vec is not None:
                    self._lm_put(pos, lm)
                    self._table[pos] = _torch(vec)
                    self._vectors_version += 1
                    self.index.update(pos, vec)
                    self.sim_index.update(pos, _unit(vec))
            return {"item_id": item.item_id, "created": new, "indexed": vec is not None}

    def _item_text(self, item: Item) -> str:
        from m6rec.text import item_texts

        ds = self.dataset
        row = {c: "" for c in ds.items.columns}
        for k, v in item.fields.items():
            row[k] = "|".join(map(str, v)) if isinstance(v, list) else str(v)
        if ds.category_column and "categories" in item.fields and ds.category_column not in (
                "categories",):
            row[ds.category_column] = row.pop("categories")
        one = replace(ds, items=pd.DataFrame([row]), item_ids=np.array([item.item_id], object))
        for cached in ("title_column", "category_column"):
            one.__dict__.pop(cached, None)
        return item_texts(one, budget=getattr(self.model, "text_budget", 400))[0]

    def _item_vector(self, pos: int | None, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(item-space vector, LM encoding) of an item's text."""
        import torch

        module = self.model.module_
        t = np.asarray(self.encoder.encode([text]), dtype=np.float32)
        if pos is not None and pos < self.n_base:  # a changed catalogue item keeps its ID part
            with torch.inference_mode():
                module.item_text[pos] = torch.as_tensor(t[0])
                return module.item_table()[pos].float().numpy(), t[0]
        return _adapt(module, t)[0], t[0]

    def _lm_put(self, pos: int, lm: np.ndarray) -> None:
        if pos >= len(self._lm):  # grow by doubling; rows past the catalogue are never read
            self._lm = np.concatenate([self._lm, np.zeros_like(self._lm)])
        self._lm[pos] = lm

    def _extend_table(self, vec: np.ndarray) -> None:
        import torch

        self._table = torch.cat([self._table, _torch(vec)[None]])

    # -- reads -------------------------------------------------------------------------------
    def history(self, user_id: str) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(training user index or -1, item indices, timestamps, event codes), oldest first:
        the training history followed by every stored event of the user."""
        u = self.dataset.user_index(user_id)
        u = -1 if u is None else int(u)
        items, ts, ev = [], [], []
        if u >= 0:
            row = self._full.take(np.array([u]))
            items.append(row.items)
            ts.append(row.timestamps if row.timestamps is not None
                      else np.full(len(row.items), np.nan))
            ev.append(row.events if row.events is not None else np.zeros(len(row.items), np.int64))
        stored = self.store.user_events(self.pseudonym(user_id), limit=self.history_limit)
        known = [(self.item_pos[e.item_id], e.timestamp, self.event_code.get(e.type or "", 0))
                 for e in stored if e.item_id in self.item_pos]
        if known:
            a = np.array(known, dtype=np.float64)
            items.append(a[:, 0].astype(np.int64))
            ts.append(a[:, 1])
            ev.append(a[:, 2].astype(np.int64))
        if not items:
            return u, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
        return u, np.concatenate(items), np.concatenate(ts), np.concatenate(ev)

    def _histories(self, u: int, items: np.ndarray, ts: np.ndarray, ev: np.ndarray
                   ) -> Histories:
        return self._stack([(u, items, ts, ev)])

    @staticmethod
    def _stack(rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> Histories:
        """Several users' (index, items, timestamps, event codes) as one `Histories`."""
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([len(r[1]) for r in rows], out=indptr[1:])
        return Histories(indptr, np.concatenate([r[1] for r in rows]).astype(np.int64),
                         np.array([r[0] for r in rows], np.int64),
                         np.concatenate([r[2] for r in rows]).astype(np.float64), None,
                         np.concatenate([r[3] for r in rows]).astype(np.int64))

    def profile_text(self, user_id: str, u: int) -> str:
        from m6rec.text import user_profile_text

        if u >= 0:
            return user_profile_text(self.dataset, u)
        prof = self.store.get_user(self.pseudonym(user_id))
        if not prof:
            return ""
        return " ".join(f"{k}: {v}." for k, v in prof.items() if v not in (None, ""))

    def recommend(self, user_id: str, k: int = 10, exclude: list[str] | None = None,
                  query: str | list[str] | None = None, explain: bool = False,
                  query_weight: float | None = None, query_decay: float | None = None,
                  query_attributes: float | None = None) -> dict[str, Any]:
        """``{"user_id", "strategy", "items": [{"item_id", "score", "title"[, explanation]}]}``.

        ``query``: one free-text request or a conversation (a list, oldest first; the latest
        weighs most); ``query_weight``, ``query_decay``, ``query_attributes``: this
        request's (default: the engine's)."""
        q = query if query is None or isinstance(query, str) else tuple(query)
        out = self.recommend_many([RecRequest(user_id, k, tuple(exclude or ()), q, explain,
                                              query_weight, query_decay,
                                              query_attributes)])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def submit(self, request: RecRequest) -> Future:
        """Queue one request for the micro-batcher; the future holds its result (or error).

        Concurrent requests are answered together: one history read each, then one encoder
        pass and one index search for all of them, which is what lets 2 cores keep up.
        """
        return self._submit("recommend", self.recommend_many, request)

    def _submit(self, name: str, fn, request: Any) -> Future:
        from m6rec.serve.batching import BatcherClosed, MicroBatcher

        with self._batch_lock:
            if self._closed:
                raise BatcherClosed(f"engine for {self.model_dir} is closed")
            batcher = self._batchers.get(name)
            if batcher is None:
                batcher = self._batchers[name] = MicroBatcher(fn, name=f"m6rec-{name}")
        return batcher.submit(request)

    def close(self) -> None:
        """Stop the micro-batchers once the requests already queued are answered."""
        with self._batch_lock:
            self._closed = True
            batchers, self._batchers = list(self._batchers.values()), {}
        for b in batchers:
            b.close()

    def recommend_many(self, requests: list[RecRequest]) -> list[dict[str, Any] | Exception]:
        """Answer several requests at once; each slot holds its result or its (client) error.

        Uses every event committed before the call; seen and excluded items are left out.
        Users with history: vector models encode all of them in one pass and search the index
        once (a request with a free-text query scores the whole catalogue instead, to mix in
        the request match); other models score them in one call. Users without history get
        their query, their profile text, or popular items.
        """
        from m6rec.recommend import steer

        out: list[Any] = [None] * len(requests)
        rows: list[tuple[int, RecRequest, int, np.ndarray, np.ndarray, np.ndarray,
                         np.ndarray]] = []
        for j, r in enumerate(requests):
            try:
                if r.turns and not self.text_mode:
                    raise Unsupported(f"query needs a text model; the loaded model is "
                                      f"{self.model_name!r}")
                u, items, ts, ev = self.history(r.user_id)
                ex = np.unique(np.concatenate([items, np.array(
                    [self.item_pos[i] for i in r.exclude if i in self.item_pos], np.int64)]))
                rows.append((j, r, u, items, ts, ev, ex))
            except (NotFound, Unsupported, ValueError) as e:
                out[j] = e
        table = self._table if self.vector_mode else None  # one catalogue for the whole batch
        match: dict[tuple[tuple[str, ...], float], np.ndarray] = {}
        for _, r, *_rest in rows:
            if r.turns and self._match_key(r) not in match:
                match[self._match_key(r)] = self._query_match(r.turns, len(table),
                                                              *self._match_key(r)[1:])
        found: dict[int, tuple[str, np.ndarray, np.ndarray, str]] = {}
        hist = [row for row in rows if len(row[3])]
        if hist and self.vector_mode:
            users = self._cached_user_vectors([(r.user_id, u, it, ts, ev)
                                               for _, r, u, it, ts, ev, _ in hist])
            user_vec = {row[0]: users[x] for x, row in enumerate(hist)}
            plain = [x for x, row in enumerate(hist) if not row[1].turns]
            if plain:
                ids, scores = self.index.search(users[plain], max(hist[x][1].k for x in plain),
                                                exclude=[hist[x][6] for x in plain])
                for y, x in enumerate(plain):
                    j, r = hist[x][0], hist[x][1]
                    found[j] = ("history", ids[y, :r.k], scores[y, :r.k], "")
            steered = [x for x, row in enumerate(hist) if row[1].turns]
            if steered:
                full = users[steered] @ table.numpy().T
                for y, x in enumerate(steered):
                    j, r, ex = hist[x][0], hist[x][1], hist[x][6]
                    weight = self.query_weight if r.query_weight is None else r.query_weight
                    s = steer(full[y][None], match[self._match_key(r)], weight)
                    found[j] = ("history+query", *_top(s, ex, r.k), "")
        elif hist:
            base = [(u, it[it < self.n_base], ts[it < self.n_base], ev[it < self.n_base])
                    for _, _, u, it, ts, ev, _ in hist]
            s = self.model.score(self._stack(base))
            s = np.nan_to_num(s, nan=np.finfo(np.float32).min, posinf=np.finfo(np.float32).max)
            for x, (_, _, _, _, _, _, ex) in enumerate(hist):
                s[x, ex[ex < s.shape[1]]] = -np.inf
            ids, scores = topk(s, max(r.k for _, r, *_ in hist))
            for x, (j, r, *_rest) in enumerate(hist):
                found[j] = ("history", ids[x, :r.k], scores[x, :r.k], "")
        loo: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if hist and self.vector_mode:  # leave-one-out vectors of every explained history
            asked = [row for row in hist if row[1].explain]
            for row, got in zip(asked, self._leave_one_out(
                    [(r.user_id, u, it, ts, ev) for _, r, u, it, ts, ev, _ in asked]),
                    strict=True):
                loo[row[0]] = got
        n = len(self.item_ids)
        for j, r, u, _, _, _, ex in rows:
            if j in found:
                continue
            profile = "" if r.turns else self.profile_text(r.user_id, u)
            if r.turns:
                found[j] = ("query", *_top(match[self._match_key(r)][None], ex, r.k), "")
            elif profile and self.text_mode:
                vec = self._text_to_item_space([profile])[0]
                # text matching: cosine, so items with an ID part (larger norms) do not crowd
                # out items known by their text alone (new ones)
                ids, scores = self.sim_index.search(_unit(vec)[None], r.k, exclude=[ex])
                found[j] = ("profile", ids[0], scores[0], profile)
            else:
                s = self.popularity[:n].astype(np.float32).copy()
                s[ex] = -np.inf
                ids, scores = topk(s[None], r.k)
                found[j] = ("popular", ids[0], scores[0], profile)
        for j, r, _, items, _, _, _ in rows:
            strategy, ids, scores, profile = found[j]
            keep = ids >= 0
            ids, scores = ids[keep], scores[keep]
            items_out = [{"item_id": self.item_ids[i], "score": float(s), "title": self.titles[i]}
                         for i, s in zip(ids, scores, strict=True)]
            if r.explain:
                whys = self._explain(strategy, items, ids, r.turns,
                                     match.get(self._match_key(r)) if r.turns else None,
                                     (user_vec[j], *loo[j]) if j in loo else None)
                for it, why in zip(items_out, whys, strict=True):
                    it.update(why)
            out[j] = {"user_id": r.user_id, "strategy": strategy, "items": items_out}
        return out

    # -- free-text requests ------------------------------------------------------------------
    def _match_key(self, r: RecRequest) -> tuple[tuple[str, ...], float, float]:
        return (r.turns, self.query_decay if r.query_decay is None else float(r.query_decay),
                self.query_attributes if r.query_attributes is None
                else float(r.query_attributes))

    def _query_match(self, turns: tuple[str, ...], n: int, decay: float | None = None,
                     attributes: float | None = None) -> np.ndarray:
        """The request match of every item (the first ``n``: one batch's catalogue), float32
        [n]: `m6rec.recommend.text_match` over the live catalogue, posted items included."""
        from m6rec.recommend import text_match

        q = np.asarray(self.encoder.encode(list(turns)), dtype=np.float32)
        cat, vocab = self._category_matrix(n)
        vocab_lm = self._vocab_vectors(vocab) if vocab else None
        return text_match(q, self._lm[:n], self.query_decay if decay is None else decay,
                          cat if vocab else None, q, vocab_lm,
                          self.query_attributes if attributes is None else attributes)

    def _category_matrix(self, n: int):
        """Sparse [n, n_categories] item-category matrix of the live catalogue, and the names."""
        from scipy import sparse

        key = (n, self._categories_version)
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

    def _vocab_vectors(self, vocab: list[str]) -> np.ndarray:
        missing = [c for c in vocab if c not in self._vocab_lm]
        if missing:
            for c, v in zip(missing, self.encoder.encode(missing), strict=True):
                self._vocab_lm[c] = np.asarray(v, np.float32)
        return np.stack([self._vocab_lm[c] for c in vocab])

    # -- explanations ------------------------------------------------------------------------
    def _scorer(self):
        engine = self

        class _Scores:  # the `score(histories, items)` that the explainer calls
            max_len = getattr(engine.model, "max_len", None)

            def score(self, h: Histories, item_idx: np.ndarray) -> np.ndarray:
                if engine.vector_mode:
                    return engine._user_vectors(h) @ engine.index.vectors(item_idx).T
                return engine.model.score(h, item_idx)

        return _Scores()

    @property
    def explainer(self):
        """`m6rec.explain.Explainer` over the live catalogue (KG relations from the dataset)."""
        if self._explainer is None:
            from m6rec.explain import Explainer

            ex = Explainer(self._scorer(), self.dataset, top=2)
            ex.item_ids, ex.titles, ex.categories = self.item_ids, self.titles, self.categories
            self._explainer = ex
        return self._explainer

    def _leave_one_out(self, rows: list[tuple[str, int, np.ndarray, np.ndarray, np.ndarray]]
                       ) -> list[tuple[np.ndarray, np.ndarray, dict]]:
        """(tested history items [m], user vectors without each of them [m, d], memo of the
        finished explanations) for
        (user_id, index, items, timestamps, event codes) rows: the newest ``m`` items (the
        explainer's ``max_history``, the model's ``max_len``) are each removed in turn from
        exactly the history the ranking encoded (profile, times and event types kept);
        ``m`` is at most ``explain_history``.

        For a dot-product model these vectors explain any item: a drop is
        ``(user - loo) @ item``. All missing users' rows go through the encoder in one batch;
        the result is cached per user under the key of the user-vector cache (the whole
        history, the item-table version and size) plus the model version, so a repeated
        request skips the encoder and a new event or a model update recomputes it; the
        memo keeps each item's finished explanation under the same key."""
        table_key = (f"loo:{self.model_version}:{self._vectors_version}:"
                     f"{len(self._table)}").encode()
        keys = [_digest(table_key, u, items, ts, ev) for _, u, items, ts, ev in rows]
        out: list[Any] = [None] * len(rows)
        with self._cache_lock:
            for x, (uid, *_rest) in enumerate(rows):
                hit = self._loo_cache.get(uid)
                if hit is not None and hit[0] == keys[x]:
                    self._loo_cache.move_to_end(uid)
                    out[x] = hit[1:]
        miss = [x for x, o in enumerate(out) if o is None]
        if not miss:
            return out
        m_max = max(1, min(self.explainer.max_history, self.explain_history))
        batch: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        spans: list[tuple[int, np.ndarray, int, int]] = []
        for x in miss:
            _, u, items, ts, ev = rows[x]
            n = len(items)
            start = len(batch)
            for j in range(max(0, n - m_max), n):
                keep = np.arange(n) != j
                batch.append((u, items[keep], ts[keep], ev[keep]))
            spans.append((x, items[max(0, n - m_max):], start, len(batch)))
        vecs = self._user_vectors(self._stack(batch))
        with self._cache_lock:
            for x, tested, a, b in spans:
                # a copy: a slice would keep the encoder's whole [rows, L, d] output alive
                out[x] = (tested, vecs[a:b].copy(), {})
                if self._loo_cache_size > 0:
                    self._loo_cache[rows[x][0]] = (keys[x], *out[x])
                    self._loo_cache.move_to_end(rows[x][0])
            while len(self._loo_cache) > self._loo_cache_size:
                self._loo_cache.popitem(last=False)
        return out

    def _explain(self, strategy: str, history: np.ndarray, ids: np.ndarray,
                 turns: tuple[str, ...], match: np.ndarray | None,
                 loo: tuple[np.ndarray, np.ndarray, np.ndarray, dict] | None = None
                 ) -> list[dict[str, Any]]:
        """Per item: the `m6rec.explain.Explanation` fields (``because`` = its sentence, the
        explanation's own score as ``explained_score``: ``score`` stays the ranking score);
        with a request, its match and the request in the sentence. ``loo``: (user vector,
        tested history items, leave-one-out vectors, memo) of a vector model's user."""
        from m6rec.recommend import request_sentence

        if strategy == "popular":
            return [{"because": "Popular with other users.", "sentence": "Popular with other "
                     "users.", "method": "none", "history": []} for _ in ids]
        if strategy == "profile":
            return [{"because": "Its text matches your profile.", "method": "profile",
                     "history": []} for _ in ids]
        out: list[dict[str, Any]] = [{} for _ in ids]
        if strategy in ("history", "history+query"):
            if loo is not None:
                user, tested, without, memo = loo
                version = self._categories_version  # titles and categories the text names
                todo = np.array([i for i in ids if (int(i), version) not in memo], np.int64)
                if len(todo):
                    vecs = self.index.vectors(todo)
                    full = vecs @ user
                    drops = (full[None, :] - without @ vecs.T).astype(np.float32)
                    if len(memo) > 1000:  # a long-lived user: start over
                        memo.clear()
                    for i, e in zip(todo, self.explainer.from_contributions(
                            todo, tested, drops, full), strict=True):
                        memo[int(i), version] = _explained(e)
                out = [dict(memo[int(i), version]) for i in ids]  # callers add keys
            else:
                hist = history if self.vector_mode else history[history < self.n_base]
                ok = ids < self.n_base if not self.vector_mode else np.ones(len(ids), bool)
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

    def grounding_checker(self):
        """`m6rec.explain.grounded.GroundingChecker` over the live catalogue (posted items
        included), rebuilt when an item is added or changed."""
        from m6rec.explain.grounded import GroundingChecker

        with self._lock:
            key = (len(self.item_ids), self._categories_version)
            titles, cats = list(self.titles), [list(c) for c in self.categories]
        cached = getattr(self, "_grounding", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        names = sorted({c for cs in cats for c in cs if c != "unknown"})
        checker = GroundingChecker(titles, names)
        self._grounding = (key, checker)
        return checker

    def catalogue(self) -> tuple[list[str], list[str], list[list[str]]]:
        """(item ids, titles, categories) of the live catalogue, copied at one moment."""
        with self._lock:
            return list(self.item_ids), list(self.titles), [list(c) for c in self.categories]

    # -- similarity --------------------------------------------------------------------------
    def similar_items(self, item_id: str, k: int = 10) -> dict[str, Any]:
        i = self.item_index(item_id)
        if i is None:
            raise NotFound(f"unknown item_id {item_id!r}")
        if self.vector_mode:
            ids, scores = self.sim_index.search(self.sim_index.vectors(np.array([i])), k,
                                                exclude=[np.array([i])])
        else:  # cosine over the users who interacted with the items
            if i >= self.n_base:
                raise Unsupported(f"item {item_id!r} has no interactions the model knows")
            col = self._item_users[i]
            co = np.asarray((self._item_users @ col.T).todense()).ravel().astype(np.float32)
            norms = np.sqrt(np.maximum(self._item_users.getnnz(axis=1), 1)).astype(np.float32)
            s = co / (norms * norms[i])
            s[i] = -np.inf
            s[co == 0] = -np.inf
            ids, scores = topk(s[None], k)
        keep = ids[0] >= 0
        return {"item_id": item_id, "items": [
            {"item_id": self.item_ids[j], "score": float(s), "title": self.titles[j]}
            for j, s in zip(ids[0][keep], scores[0][keep], strict=True)]}

    def similar_users(self, user_id: str, k: int = 10) -> dict[str, Any]:
        """Training users ranked by cosine similarity of item sets (training + stored events)."""
        u, items, _, _ = self.history(user_id)
        items = np.unique(items[items < self.n_base])
        if not len(items):
            raise NotFound(f"user {user_id!r} has no history to compare")
        X = self._train_csr
        overlap = np.asarray(X[:, items].sum(axis=1)).ravel().astype(np.float32)
        sizes = np.maximum(X.getnnz(axis=1), 1).astype(np.float32)
        s = overlap / np.sqrt(sizes * len(items))
        s[overlap == 0] = -np.inf
        if u >= 0:
            s[u] = -np.inf
        ids, scores = topk(s[None], k)
        keep = ids[0] >= 0
        return {"user_id": user_id, "users": [
            {"user_id": str(self.dataset.user_ids[v]), "score": float(sc)}
            for v, sc in zip(ids[0][keep], scores[0][keep], strict=True)]}

    def user_history(self, user_id: str, limit: int = 50) -> dict[str, Any]:
        _, items, ts, _ = self.history(user_id)
        items, ts = items[-limit:], ts[-limit:]
        return {"user_id": user_id, "items": [
            {"item_id": self.item_ids[i], "title": self.titles[i],
             "timestamp": None if not np.isfinite(t) else float(t)}
            for i, t in zip(items[::-1], ts[::-1], strict=True)]}

    def list_users(self, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        """Training users' ids, in dataset order (``offset``, ``limit``)."""
        ids = self.dataset.user_ids
        return {"users": [str(u) for u in ids[offset:offset + limit]], "total": len(ids)}

    def info(self) -> dict[str, Any]:
        """What is served (no file-system paths: `/health` shows it to anyone)."""
        return {"model": self.model_name, "dataset": self.dataset.name, "items": len(self.item_ids),
                "users": self.dataset.n_users,
                "index": self.index.kind if self.vector_mode else "dense-scores",
                "reads_text": self.text_mode, "loaded_at": self.loaded_at,
                "model_version": self.model_version}


def _explained(e: Any) -> dict[str, Any]:
    """An `Explanation` as the service sends it: its score under ``explained_score``."""
    d = e.to_dict()
    d["explained_score"] = d.pop("score")
    return d


def _digest(prefix: bytes, u: int, *arrays: np.ndarray) -> bytes:
    h = hashlib.blake2b(prefix, digest_size=16)
    h.update(int(u).to_bytes(8, "little", signed=True))
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    return h.digest()


def _top(s: np.ndarray, exclude: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (ids, scores) of one score row [1, n] with ``exclude`` left out."""
    s = np.array(s, dtype=np.float32, copy=True)
    s[0, exclude[exclude < s.shape[1]]] = -np.inf
    ids, scores = topk(s, k)
    return ids[0], scores[0]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _torch(v: np.ndarray):
    import torch

    return torch.as_tensor(np.asarray(v, dtype=np.float32))


def _adapt(module: Any, t: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module.text_vectors(torch.as_tensor(t)).float().numpy()
