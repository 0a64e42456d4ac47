"""The library side of the service (no FastAPI here): a loaded model, its catalogue, an item
index and the store, answering recommendation requests from every committed event.

The engine puts together parts that each hold one thing and are importable alone:

- `m6rec.serve.catalogue.Catalogue`: the items (the dataset's, then the posted ones), their
  titles, categories, popularity and LM encodings;
- a scorer per kind of model: `m6rec.serve.vectors.VectorScorer` for vector models (the
  sequence models, ``m6`` first: users encoded from their history, items in an index, posted
  items placed by their text) and `m6rec.serve.dense.DenseScorer` for any other (EASE, KNN,
  MF, ...: ``model.score`` over its catalogue);
- `m6rec.serve.user_cache.UserCache`: user vectors kept while a history is unchanged;
- `m6rec.serve.query.QueryMatcher`: free-text requests against the catalogue (text models);
- `m6rec.serve.explanations.Explanations`: ``explain=true``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.ranking import topk
from m6rec.serve.catalogue import Catalogue, categories_of, item_text, title_of
from m6rec.serve.dense import DenseScorer
from m6rec.serve.explanations import Explanations
from m6rec.serve.query import LazyEncoder, QueryMatcher
from m6rec.serve.refresh import Refresher
from m6rec.serve.user_cache import UserCache, history_key
from m6rec.serve.vectors import NEW_ITEM_MODES, VectorScorer, is_vector_model
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


@dataclass(frozen=True)
class Options:
    """The engine's settings (see `Engine`), shared by every engine derived from one."""

    index: str = "auto"
    faiss_threshold: int = 50_000
    pseudonymise_key: str | None = None
    history_limit: int = 500
    query_weight: float = 1.0
    query_decay: float = 0.5
    query_attributes: float = 0.5
    user_cache: int = 100_000
    explain_cache: int = 2048
    explain_history: int = 20
    new_items: str = "calibrated"
    shared_log: bool = False


class Source:
    """What every version of the served model shares: the model directory, the store, the
    dataset (training histories, users) and the options. Nothing here changes while serving."""

    def __init__(self, model_dir: Path, store: Store, data_spec: str, tie_break: str,
                 dataset: Dataset, meta: dict, options: Options) -> None:
        self.model_dir, self.store, self.data_spec = model_dir, store, data_spec
        self.tie_break, self.dataset, self.meta, self.options = tie_break, dataset, meta, options
        self.histories = dataset.histories()
        self.event_code = {t: k for k, t in enumerate(dataset.event_types)}
        key = options.pseudonymise_key
        self.key = key.encode() if key else None
        self._train_csr = None

    @property
    def train_csr(self):
        """Users x items of the training data (built on first use: similar users)."""
        if self._train_csr is None:
            self._train_csr = self.dataset.csr()
        return self._train_csr


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
    new_items : how posted items (no ID part) are scored by an ID-trained text model:
        ``calibrated`` (default) or ``raw`` (`m6rec.serve.vectors`)
    shared_log : other processes write to the same store: a follower of its change feed
        (`m6rec.serve.replication.Follower`) applies their items and events, each once
    """

    def __init__(self, model_dir: str | Path, store: Store, data: str | None = None,
                 index: str = "auto", faiss_threshold: int = 50_000,
                 pseudonymise_key: str | None = None, history_limit: int = 500,
                 query_weight: float = 1.0, query_decay: float = 0.5,
                 query_attributes: float = 0.5, user_cache: int = 100_000,
                 explain_cache: int = 2048, explain_history: int = 20,
                 snapshot: str | Path | None = None, new_items: str = "calibrated",
                 shared_log: bool = False):
        from m6rec.config import Settings
        from m6rec.data.cache import load_cached
        from m6rec.models.io import load_model_dir

        if new_items not in NEW_ITEM_MODES:
            raise ValueError(f"new_items must be one of {', '.join(NEW_ITEM_MODES)}, "
                             f"got {new_items!r}")
        options = Options(index, faiss_threshold, pseudonymise_key, history_limit, query_weight,
                          query_decay, query_attributes, user_cache, explain_cache,
                          explain_history, new_items, shared_log)
        model_dir = Path(model_dir)
        _, meta = load_model_dir(model_dir)  # checks the directory, says what it holds
        spec = data or meta.get("data_spec")
        if not spec:
            raise ValueError(f"{model_dir}: meta.json names no dataset; pass --data SPEC")
        tie_break = Settings().tie_break
        # through the dataset cache: a restart or reload reads arrays, not the source files
        dataset = load_cached(spec, tie_break)
        model, meta = load_model_dir(model_dir, dataset)
        source = Source(model_dir, store, spec, tie_break, dataset, meta, options)
        text = bool(model.reads_text and is_vector_model(model))
        catalogue = Catalogue.from_dataset(dataset, model.item_text_ if text else None)
        self._assemble(source, model, catalogue, self._scorer_for(source, model, catalogue),
                       version=0, encoder=LazyEncoder(model.encoder) if text else None)
        if shared_log:
            self.catalogue.share_log()
        posted = store.all_items()  # items posted earlier (also by other replicas)
        for it in posted:
            self._apply_item(it)
        if posted and posted[-1].seq is not None:  # one read: the item feed up to there
            self.catalogue.item_cursor.advance(max(it.seq or 0 for it in posted))
        self.snapshot_path = snapshot
        self._replay(store)

    @staticmethod
    def _scorer_for(source: Source, model: Any, catalogue: Catalogue):
        o = source.options
        if is_vector_model(model):
            from m6rec.config import Settings

            return VectorScorer(model, catalogue, o.index, o.faiss_threshold, o.new_items,
                                index_cache=Settings().cache_dir / "indexes")
        return DenseScorer(model, source.dataset)

    def _assemble(self, source: Source, model: Any, catalogue: Catalogue, scorer: Any,
                  version: int, encoder: LazyEncoder | None,
                  matcher: QueryMatcher | None = None) -> None:
        """Set this engine up from its parts (a new engine, or one derived from another)."""
        o = source.options
        self.source, self.model, self.catalogue, self.scorer = source, model, catalogue, scorer
        self.model_name = source.meta.get("model", model.name)
        self.vector_mode = isinstance(scorer, VectorScorer)
        self.text_mode = bool(model.reads_text and self.vector_mode)
        self.model_version = version  # +1 per online update (`derive`)
        self.loaded_at = time.time()
        self._encoder = encoder
        self.user_cache = UserCache(o.user_cache)
        self.explanations = Explanations(source.dataset, catalogue, scorer, self._stack,
                                         version, o.explain_cache, o.explain_history)
        self.matcher = None
        if self.text_mode:
            self.matcher = (matcher.with_catalogue(catalogue) if matcher is not None else
                            QueryMatcher(encoder.encode, catalogue, o.query_decay,
                                         o.query_attributes))
        self._lock = threading.Lock()  # writers of the catalogue and the item vectors
        self._batch_lock = threading.Lock()
        self._batchers: dict[str, Any] = {}
        self._closed = False
        self._successor: Engine | None = None
        # users whose cached encodings a new event makes stale are re-encoded in the background
        self.refresher = Refresher(self._refresh)
        self._stored_as: dict[str, str] = {}  # stored id (pseudonym) -> request id
        self._last_explained: dict[str, RecRequest] = {}  # user -> last plain explained request

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
            catalogue = self.catalogue.copy()
            scorer = (self.scorer.derive(serving, catalogue) if self.vector_mode
                      else self.scorer.derive(serving))
            new = Engine.__new__(Engine)
            new._assemble(self.source, serving, catalogue, scorer, version, self._encoder,
                          self.matcher)
            new.snapshot_path, new.snapshot_offset = self.snapshot_path, self.snapshot_offset
            self._successor = new
        return new

    # -- what the parts hold, by their old names ---------------------------------------------
    model_dir = property(lambda self: self.source.model_dir)
    store = property(lambda self: self.source.store)
    dataset = property(lambda self: self.source.dataset)
    meta = property(lambda self: self.source.meta)
    data_spec = property(lambda self: self.source.data_spec)
    tie_break = property(lambda self: self.source.tie_break)
    history_limit = property(lambda self: self.source.options.history_limit)
    query_weight = property(lambda self: self.source.options.query_weight)
    item_ids = property(lambda self: self.catalogue.item_ids)
    item_pos = property(lambda self: self.catalogue.item_pos)
    titles = property(lambda self: self.catalogue.titles)
    categories = property(lambda self: self.catalogue.categories)
    popularity = property(lambda self: self.catalogue.popularity)
    n_base = property(lambda self: self.catalogue.n_base)
    events_seen = property(lambda self: self.catalogue.events_seen)
    cache_hits = property(lambda self: self.user_cache.hits)
    cache_misses = property(lambda self: self.user_cache.misses)
    explainer = property(lambda self: self.explanations.explainer)

    @property
    def index(self):
        """The catalogue items' vector index (vector models)."""
        return self.scorer.index

    @property
    def encoder(self):
        """The model's text encoder (text models; loaded on first use)."""
        return self._encoder.get()

    # -- the event log -----------------------------------------------------------------------
    def _replay(self, store: Store) -> None:
        """Events per item from the snapshot (when valid) plus the log after its offset (one
        aggregate query), into the catalogue's popularity."""
        from m6rec.serve import snapshot

        snap = snapshot.load(self.snapshot_path, store)
        offset, counts = snap if snap is not None else (0, {})
        tail, seen = store.item_counts(offset)
        for item_id, count in tail.items():
            counts[item_id] = counts.get(item_id, 0) + count
        self.catalogue.add_log_counts(counts)
        self.catalogue.events_seen = seen
        self.snapshot_offset = offset

    def save_snapshot(self) -> None:
        """Write the log-derived state with the offset it covers (no-op without a path)."""
        from m6rec.serve import snapshot

        if self.snapshot_path is None:
            return
        with self._lock:
            offset, counts = self.catalogue.log_state()
        snapshot.save(self.snapshot_path, self.store, offset, counts)

    # -- ids ---------------------------------------------------------------------------------
    def pseudonym(self, user_id: str) -> str:
        """The id under which a user's events are stored (keyed HMAC when configured)."""
        key = self.source.key
        if key is None:
            return user_id
        return "p_" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:40]

    def item_index(self, item_id: str) -> int | None:
        return self.catalogue.index(item_id)

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
        pos = self.catalogue.item_pos
        for j, events in enumerate(batches):
            unknown = [k for k, e in enumerate(events) if e["item_id"] not in pos]
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
            self._apply_events([replace(e, id=i) for e, i in zip(rows, ids, strict=True)])
            for j, a, b in spans:
                out[j] = ids[a:b]
        return out

    def submit_events(self, events: list[dict[str, Any]]) -> Future:
        """Queue one request's events for group commit; the future holds their ids."""
        return self._submit("events", self.add_events_many, events)

    def add_item(self, item_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Store an item, then put it into the index; returns what happened."""
        item = Item(item_id, dict(fields), time.time())
        existed = self.catalogue.index(item_id) is not None
        seq = self.store.put_items([item])[0]
        done = self._apply_item(replace(item, seq=seq))
        if done is None:  # the change feed applied it first (`m6rec.serve.replication`)
            done = {"item_id": item_id, "created": not existed,
                    "indexed": self.text_mode and self.catalogue.index(item_id) is not None}
        return done

    def _apply_item(self, item: Item) -> dict[str, Any] | None:
        """Put a stored item (written here or read from the change feed) into the catalogue
        and the index; None when its write (``seq``) is applied already."""
        with self._lock:
            if self._successor is not None:  # swapped out by an online update: it serves now
                return self._successor._apply_item(item)
            cat = self.catalogue
            if item.seq is not None and not cat.item_cursor.claim(item.seq):
                return None
            pos = cat.index(item.item_id)
            title, cats = title_of(item.fields, item.item_id), categories_of(item.fields)
            vec = lm = None
            if self.text_mode:
                text = item_text(self.dataset, item.item_id, item.fields,
                                 getattr(self.model, "text_budget", 400))
                lm = np.asarray(self.encoder.encode([text]), dtype=np.float32)[0]
                vec = self.scorer.item_vector(pos, lm)
            new = pos is None
            if new:
                if not self.text_mode:
                    # an ID model cannot score an item it was not trained on: keep it stored
                    return {"item_id": item.item_id, "created": True, "indexed": False,
                            "reason": f"model {self.model_name!r} does not read item text"}
                pos = cat.append(item.item_id, title, cats, lm)
                self.scorer.add(vec)
                cat.publish(item.item_id, pos)  # visible to readers last
            else:
                cat.update(pos, title, cats, lm)
                if vec is not None:
                    self.scorer.update(pos, vec, lm)
            return {"item_id": item.item_id, "created": new, "indexed": vec is not None}

    def _apply_events(self, events: list[Event]) -> int:
        """Count stored events (committed here or read from the change feed) into popularity,
        each once (its id decides); returns how many were new here."""
        with self._lock:
            if self._successor is not None:
                return self._successor._apply_events(events)
            cur = self.catalogue.event_cursor
            claimed = [e for e in events if cur.claim(e.id, e.item_id)]
            self.catalogue.count([e.item_id for e in claimed])
        if claimed and self.vector_mode:
            self.refresher.touch(dict.fromkeys(e.user_id for e in claimed))
        return len(claimed)

    def _refresh(self, stored_ids: list[str]) -> None:
        """Re-encode the users (stored ids) whose user vector or leave-one-out vectors are
        cached, under the keys their next request computes (`Refresher`); users who asked
        for explanations get their list explained again (the sentences memoised), as their
        last explained request asked for it."""
        ids = [self._stored_as.get(s) for s in stored_ids]
        explained = self.explanations.cache
        loo = [u for u in ids if u is not None and u in explained]
        vec = [u for u in ids if u is not None and u in self.user_cache and u not in explained]
        if vec:
            self._cached_user_vectors([(u, *self.history(u)) for u in vec])
        if loo:
            self.recommend_many([replace(self._last_explained.get(u, RecRequest(u)),
                                         explain=True) for u in loo])

    def _advance(self, items: int | None = None, events: int | None = None) -> None:
        """The change feeds were read (and applied) up to these offsets."""
        with self._lock:
            if self._successor is not None:
                return self._successor._advance(items, events)
            if items is not None:
                self.catalogue.item_cursor.advance(items)
            if events is not None:
                self.catalogue.event_cursor.advance(events)
            return None

    # -- reads -------------------------------------------------------------------------------
    def history(self, user_id: str) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(training user index or -1, item indices, timestamps, event codes), oldest first:
        the training history followed by every stored event of the user."""
        u = self.dataset.user_index(user_id)
        u = -1 if u is None else int(u)
        items, ts, ev = [], [], []
        if u >= 0:
            row = self.source.histories.take(np.array([u]))
            items.append(row.items)
            ts.append(row.timestamps if row.timestamps is not None
                      else np.full(len(row.items), np.nan))
            ev.append(row.events if row.events is not None else np.zeros(len(row.items), np.int64))
        stored = self.store.user_events(self.pseudonym(user_id), limit=self.history_limit)
        pos, code = self.catalogue.item_pos, self.source.event_code
        known = [(pos[e.item_id], e.timestamp, code.get(e.type or "", 0))
                 for e in stored if e.item_id in pos]
        if known:
            a = np.array(known, dtype=np.float64)
            items.append(a[:, 0].astype(np.int64))
            ts.append(a[:, 1])
            ev.append(a[:, 2].astype(np.int64))
        if not items:
            return u, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
        return u, np.concatenate(items), np.concatenate(ts), np.concatenate(ev)

    @staticmethod
    def _stack(rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> Histories:
        """Several users' (index, items, timestamps, event codes) as one `Histories`."""
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([len(r[1]) for r in rows], out=indptr[1:])
        return Histories(indptr, np.concatenate([r[1] for r in rows]).astype(np.int64),
                         np.array([r[0] for r in rows], np.int64),
                         np.concatenate([r[2] for r in rows]).astype(np.float64), None,
                         np.concatenate([r[3] for r in rows]).astype(np.int64))

    def _user_vectors(self, h: Histories, n: int | None = None) -> np.ndarray:
        return self.scorer.user_vectors(h, n)

    def _cached_user_vectors(self, rows: list[tuple[str, int, np.ndarray, np.ndarray,
                                                    np.ndarray]], n: int | None = None
                             ) -> np.ndarray:
        """User vectors for (user_id, index, items, timestamps, event codes) rows over the
        first ``n`` items, encoding only the users whose history (or the item table) changed
        since their last request.

        The key is a digest of everything the encoder reads (the whole history arrays, the
        training-user index for the profile, the item-table version and size), so a cached
        vector is exactly what encoding again would give; a new event changes the history and
        so the key (read-your-writes holds)."""
        n = len(self.scorer) if n is None else n
        prefix = f"{self.scorer.version}:{n}".encode()
        keys = [history_key(prefix, u, items, ts, ev) for _, u, items, ts, ev in rows]

        def compute(miss: list[int]) -> list[np.ndarray]:
            fresh = self._user_vectors(self._stack([rows[x][1:] for x in miss]), n)
            return [v.copy() for v in fresh]  # not views that keep the whole batch alive

        return np.stack(self.user_cache.get_or_compute([r[0] for r in rows], keys, compute))

    def _remember(self, user_ids: list[str]) -> None:
        """Map the stored ids of users whose encodings get cached back to their request ids
        (the events that make them stale carry stored ids)."""
        known = self._stored_as
        if len(known) > 2 * max(self.user_cache.size, self.explanations.cache.size, 1):
            known.clear()  # bounded: users not seen since are just not refreshed
            self._last_explained.clear()
        for u in user_ids:
            known[self.pseudonym(u)] = u

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
        self.refresher.close()

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
        pos = self.catalogue.item_pos
        for j, r in enumerate(requests):
            try:
                if r.turns and not self.text_mode:
                    raise Unsupported(f"query needs a text model; the loaded model is "
                                      f"{self.model_name!r}")
                u, items, ts, ev = self.history(r.user_id)
                ex = np.unique(np.concatenate([items, np.array(
                    [pos[i] for i in r.exclude if i in pos], np.int64)]))
                rows.append((j, r, u, items, ts, ev, ex))
            except (NotFound, Unsupported, ValueError) as e:
                out[j] = e
        # one catalogue for the whole batch (items posted meanwhile wait for the next one)
        n = len(self.scorer) if self.vector_mode else self.catalogue.n_base
        match: dict[tuple, np.ndarray] = {}
        for _, r, *_rest in rows:
            if r.turns and _match_key(r) not in match:
                match[_match_key(r)] = self.matcher.match(r.turns, n, r.query_decay,
                                                          r.query_attributes)
        found: dict[int, tuple[str, np.ndarray, np.ndarray, str]] = {}
        hist = [row for row in rows if len(row[3])]
        user_vec: dict[int, np.ndarray] = {}
        user_q: dict[int, np.ndarray | None] = {}
        if hist and self.vector_mode:
            scorer = self.scorer
            self._remember([row[1].user_id for row in hist])
            users = self._cached_user_vectors([(r.user_id, u, it, ts, ev)
                                               for _, r, u, it, ts, ev, _ in hist], n)
            queries = scorer.text_queries([row[3] for row in hist])
            for x, row in enumerate(hist):
                user_vec[row[0]] = users[x]
                user_q[row[0]] = None if queries is None else queries[x]
            plain = [x for x, row in enumerate(hist) if not row[1].turns]
            if plain:
                ids, scores = scorer.search(users[plain], _rows(queries, plain),
                                            max(hist[x][1].k for x in plain),
                                            [hist[x][6] for x in plain], n)
                for y, x in enumerate(plain):
                    j, r = hist[x][0], hist[x][1]
                    found[j] = ("history", ids[y, :r.k], scores[y, :r.k], "")
            steered = [x for x, row in enumerate(hist) if row[1].turns]
            if steered:
                full = scorer.scores(users[steered], _rows(queries, steered),
                                     [hist[x][6] for x in steered], n)
                for y, x in enumerate(steered):
                    j, r, ex = hist[x][0], hist[x][1], hist[x][6]
                    weight = self.query_weight if r.query_weight is None else r.query_weight
                    s = steer(full[y][None], match[_match_key(r)], weight)
                    found[j] = ("history+query", *_top(s, ex, r.k), "")
        elif hist:
            nb = self.catalogue.n_base
            base = [(u, it[it < nb], ts[it < nb], ev[it < nb]) for _, _, u, it, ts, ev, _ in hist]
            ids, scores = self.scorer.search(self._stack(base), max(r.k for _, r, *_ in hist),
                                             [row[6] for row in hist])
            for x, (j, r, *_rest) in enumerate(hist):
                found[j] = ("history", ids[x, :r.k], scores[x, :r.k], "")
        loo: dict[int, tuple] = {}
        if hist and self.vector_mode:  # leave-one-out vectors of every explained history
            asked = [row for row in hist if row[1].explain]
            for row in asked:
                if not row[1].turns:
                    self._last_explained[row[1].user_id] = row[1]
            got = self.explanations.leave_one_out(
                [(r.user_id, u, it, ts, ev) for _, r, u, it, ts, ev, _ in asked], n)
            for row, g in zip(asked, got, strict=True):
                loo[row[0]] = (user_vec[row[0]], user_q[row[0]], *g)
        for j, r, u, _, _, _, ex in rows:
            if j in found:
                continue
            profile = "" if r.turns else self.profile_text(r.user_id, u)
            if r.turns:
                found[j] = ("query", *_top(match[_match_key(r)][None], ex, r.k), "")
            elif profile and self.text_mode:
                lm = np.asarray(self.encoder.encode([profile]), np.float32)
                vec = self.scorer.text_vectors(lm)[0]
                # text matching: cosine, so items with an ID part (larger norms) do not crowd
                # out items known by their text alone (new ones)
                ids, scores = self.scorer.sim_index.search(_unit(vec)[None], r.k, exclude=[ex])
                found[j] = ("profile", ids[0], scores[0], profile)
            else:
                s = self.popularity[:n].astype(np.float32).copy()
                s[ex[ex < n]] = -np.inf
                ids, scores = topk(s[None], r.k)
                found[j] = ("popular", ids[0], scores[0], profile)
        item_ids, titles = self.catalogue.item_ids, self.catalogue.titles
        for j, r, _, items, _, _, ex in rows:
            strategy, ids, scores, profile = found[j]
            keep = ids >= 0
            ids, scores = ids[keep], scores[keep]
            items_out = [{"item_id": item_ids[i], "score": float(s), "title": titles[i]}
                         for i, s in zip(ids, scores, strict=True)]
            if r.explain:
                whys = self.explanations.explain(strategy, items, ids, r.turns,
                                                 match.get(_match_key(r)) if r.turns else None,
                                                 loo.get(j), ex)
                for it, why in zip(items_out, whys, strict=True):
                    it.update(why)
            out[j] = {"user_id": r.user_id, "strategy": strategy, "items": items_out}
        return out

    # -- what generation reads -------------------------------------------------------------
    def grounding_checker(self):
        """`m6rec.explain.grounded.GroundingChecker` over the live catalogue (posted items
        included), rebuilt when an item is added or changed."""
        from m6rec.explain.grounded import GroundingChecker

        with self._lock:
            key = (len(self.catalogue.item_ids), self.catalogue.version)
            titles, cats = self.catalogue_lists()[1:]
        cached = getattr(self, "_grounding", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        names = sorted({c for cs in cats for c in cs if c != "unknown"})
        checker = GroundingChecker(titles, names)
        self._grounding = (key, checker)
        return checker

    def catalogue_lists(self) -> tuple[list[str], list[str], list[list[str]]]:
        """(item ids, titles, categories) of the live catalogue, copied."""
        c = self.catalogue
        return list(c.item_ids), list(c.titles), [list(x) for x in c.categories]

    # -- similarity --------------------------------------------------------------------------
    def similar_items(self, item_id: str, k: int = 10) -> dict[str, Any]:
        i = self.item_index(item_id)
        if i is None:
            raise NotFound(f"unknown item_id {item_id!r}")
        if not self.vector_mode and i >= self.n_base:
            raise Unsupported(f"item {item_id!r} has no interactions the model knows")
        ids, scores = self.scorer.similar(i, k)
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
        X = self.source.train_csr
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


def _rows(a: np.ndarray | None, idx: list[int]) -> np.ndarray | None:
    return None if a is None else a[idx]


def _top(s: np.ndarray, exclude: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (ids, scores) of one score row [1, n] with ``exclude`` left out."""
    s = np.array(s, dtype=np.float32, copy=True)
    s[0, exclude[exclude < s.shape[1]]] = -np.inf
    ids, scores = topk(s, k)
    return ids[0], scores[0]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _match_key(r: RecRequest) -> tuple:
    """A batch's request-match cache key: the turns and this request's match settings."""
    return (r.turns, r.query_decay, r.query_attributes)
