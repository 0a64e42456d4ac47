"""`Updater`: the one object a service (or a replay) calls to keep a model learning.

    upd = Updater(model, dataset, "foldin")           # or "finetune:500", or a Policy
    new_model, version = upd.update(events_df)        # off the request path
    app_state.model = new_model                       # atomic swap (one reference)

``update`` never changes the model it was given: it returns a new object (the old one keeps
serving while the update runs) and a version number that grows by one per update. Calls are
serialised by a lock, so a background thread and an HTTP handler may both call it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from m6rec.data.dataset import Dataset
from m6rec.models.base import Recommender
from m6rec.online.policy import Policy, parse_policy

REQUIRED = ("user_id", "item_id")


class Updater:
    """Folds new events into a model per a `Policy`.

    Parameters
    ----------
    model : Recommender
        The fitted serving model (never modified).
    dataset : Dataset
        The events the model has learned from (its catalogue and id maps); new events are
        appended to a copy of it.
    policy : str or Policy
        ``static`` | ``foldin`` | ``finetune[:N]`` (see `m6rec.online.policy`); ``N`` is used by
        callers that batch events (the replay, the service), ``update`` applies what it gets.
    steps, replay, lr_scale :
        Fine-tuning budget (see `m6rec.online.finetune.finetune`).
    random_state : int
        Seeds fine-tuning (offset by the version, so updates differ but runs repeat).
    half_life : float
        ``foldin`` of ``ease`` only: recency weighting, in seconds of event time (0 = none;
        see `m6rec.online.foldin.EaseFoldIn`).

    Attributes
    ----------
    model : Recommender
        The newest model.
    version : int
        0 for the model given, +1 per update.
    dataset : Dataset
        Every event known (the model's data plus the updates).
    last_update : dict
        ``seconds``, ``events``, ``users`` and the wall time ``at`` of the newest update.
    """

    def __init__(self, model: Recommender, dataset: Dataset, policy: str | Policy = "foldin",
                 *, steps: int = 10, replay: float = 0.5, lr_scale: float = 1.0,
                 random_state: int = 0, half_life: float = 0.0):
        model._check_fitted()
        if dataset.n_items != model.n_items_:
            raise ValueError(f"dataset {dataset.name!r} has {dataset.n_items} items, the model "
                             f"{model.n_items_}: pass the dataset the model was fitted on")
        self.policy = parse_policy(policy)
        self.model = model
        self.version = 0
        self.dataset = dataset
        self.steps, self.replay, self.lr_scale = steps, replay, lr_scale
        self.random_state = random_state
        self.last_update: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._foldin = None
        if self.policy.kind == "foldin":
            from m6rec.online.foldin import make_foldin

            self._foldin = make_foldin(model, dataset, half_life=half_life)
        elif self.policy.kind == "finetune":
            from m6rec.models.sequential import SequentialRecommender

            if not isinstance(model, SequentialRecommender):
                raise ValueError(f"policy finetune applies to sequential models (sasrec, "
                                 f"gru4rec, m6), not {model.name!r}: use foldin")

    # -- public API ------------------------------------------------------------------------------
    def update(self, events: pd.DataFrame) -> tuple[Recommender, int]:
        """Learn from new events (raw ids) and return ``(model, version)``.

        ``events`` has ``user_id``, ``item_id`` and optionally ``timestamp`` (unix seconds or
        a date string; missing = now), ``rating``, ``event`` (a name in the dataset's event
        types). Unknown users are added; unknown items are an error (post them first with
        `add_items`). With the ``static`` policy the events are recorded and the model kept.
        """
        with self._lock:
            return self.update_indices(self._to_indices(events))

    def update_indices(self, rows: pd.DataFrame) -> tuple[Recommender, int]:
        """`update` for events already in index space: a frame with ``user_idx``,
        ``item_idx``, ``timestamp`` (+ ``rating`` / ``event`` when the dataset has them), in
        time order. Users beyond the dataset's must have been added to its id maps."""
        with self._lock:
            t0 = time.perf_counter()
            before = self.dataset
            after = _append(before, rows)
            users = np.unique(rows["user_idx"].to_numpy(np.int64))
            model = self.model
            if len(rows) and self.policy.kind == "foldin":
                model = self._foldin.apply(model, before, after, users)
            elif len(rows) and self.policy.kind == "finetune":
                from m6rec.online.finetune import finetune

                model = finetune(model, after, users, steps=self.steps, replay=self.replay,
                                 lr_scale=self.lr_scale,
                                 random_state=self.random_state + self.version + 1)
            self.dataset = after
            if model is not self.model:
                self.model, self.version = model, self.version + 1
            self.last_update = {"seconds": time.perf_counter() - t0, "events": len(rows),
                                "users": len(users), "at": time.time()}
            return self.model, self.version

    def add_items(self, items: pd.DataFrame) -> tuple[Recommender, int]:
        """Add posted items (``item_id`` + text columns) to the catalogue.

        Text models (``m6``) embed them from their text at once (no ID part until they have
        interactions); other models cannot score items they were not fitted on (ValueError).
        Items already in the catalogue are an error."""
        if "item_id" not in items.columns:
            raise ValueError("items: missing column 'item_id'")
        ids = items["item_id"].astype(str).to_numpy()
        dup = [i for i in ids if self.dataset.item_index(i) is not None]
        if dup or len(set(ids)) != len(ids):
            raise ValueError(f"items: item_id {(dup or ids)[0]!r} is already in the catalogue "
                             "or given twice")
        if not self.model.reads_text:
            raise ValueError(f"model {self.model.name!r} cannot score new items without "
                             "retraining; only text models (m6) embed posted items")
        with self._lock:
            ds = self.dataset
            extra = pd.DataFrame({c: (items[c].astype(str).fillna("") if c in items.columns
                                      else "") for c in ds.items.columns})
            new_items = pd.concat([ds.items, extra], ignore_index=True)
            grown = replace(ds, item_ids=np.concatenate([ds.item_ids, ids.astype(object)]),
                            items=new_items)
            grown = grown.with_interactions(ds.inter.copy())
            for key in ("title_column", "category_column"):
                grown.__dict__.pop(key, None)
            model = grow_catalogue(self.model, grown)
            self.dataset = grown
            self.model, self.version = model, self.version + 1
            return self.model, self.version

    # -- helpers ---------------------------------------------------------------------------------
    def _to_indices(self, events: pd.DataFrame) -> pd.DataFrame:
        """Raw-id events -> index rows; new users are appended to the dataset's id maps."""
        missing = [c for c in REQUIRED if c not in events.columns]
        if missing:
            raise ValueError(f"events: missing column(s) {', '.join(missing)}")
        ds = self.dataset
        item_ids = events["item_id"].astype(str).to_numpy()
        items = np.array([ds.item_index(i) if ds.item_index(i) is not None else -1
                          for i in item_ids], dtype=np.int64)
        if (items < 0).any():
            row = int(np.flatnonzero(items < 0)[0])
            raise ValueError(f"events row {row}: item_id {item_ids[row]!r} is not in the "
                             "catalogue (post it with add_items first)")
        user_ids = events["user_id"].astype(str).to_numpy()
        new_users = [u for u in dict.fromkeys(user_ids) if ds.user_index(u) is None]
        if new_users:
            self.dataset = ds = _add_users(ds, new_users)
        users = np.array([ds.user_index(u) for u in user_ids], dtype=np.int64)
        out = pd.DataFrame({"user_idx": users, "item_idx": items,
                            "timestamp": _timestamps(events)})
        if ds.has_ratings:
            out["rating"] = (events["rating"].astype(np.float32) if "rating" in events.columns
                             else np.float32(np.nan))
        if "event" in ds.inter.columns:
            codes = {n: i for i, n in enumerate(ds.event_types)}
            names = (events["event"].astype(str) if "event" in events.columns
                     else pd.Series([ds.event_types[0] if ds.event_types else ""] * len(events)))
            bad = [n for n in names if n not in codes]
            if bad:
                raise ValueError(f"events: unknown event type {bad[0]!r} "
                                 f"(known: {', '.join(ds.event_types)})")
            out["event"] = names.map(codes).to_numpy(np.int64)
        return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _timestamps(events: pd.DataFrame) -> np.ndarray:
    if "timestamp" not in events.columns:
        return np.full(len(events), time.time())
    ts = events["timestamp"]
    num = pd.to_numeric(ts, errors="coerce")
    if num.isna().any():
        parsed = pd.to_datetime(ts[num.isna()], errors="coerce", utc=True)
        if parsed.isna().any():
            row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise ValueError(f"events row {row}: timestamp {ts[num.isna()].iloc[row]!r} is "
                             "neither unix seconds nor a date")
        epoch = pd.Timestamp(0, tz="UTC")
        num[num.isna()] = (parsed - epoch) / pd.Timedelta(seconds=1)
    return num.to_numpy(np.float64)


def _add_users(ds: Dataset, new_ids: list[str]) -> Dataset:
    users = ds.users
    if users is not None:
        blank = pd.DataFrame({c: [""] * len(new_ids) for c in users.columns})
        users = pd.concat([users, blank], ignore_index=True)
    grown = replace(ds, user_ids=np.concatenate([ds.user_ids, np.array(new_ids, object)]),
                    users=users)
    return grown.with_interactions(ds.inter.copy())


def _append(ds: Dataset, rows: pd.DataFrame) -> Dataset:
    """``ds`` plus ``rows`` (index space, time-ordered), each user's new events after their
    old ones."""
    if not len(rows):
        return ds
    counts = np.bincount(ds.inter["user_idx"].to_numpy(), minlength=ds.n_users)
    rows = rows.reset_index(drop=True)
    u = rows["user_idx"].to_numpy(np.int64)
    if u.min() < 0 or u.max() >= ds.n_users:
        raise ValueError("events hold a user index outside the dataset's users")
    new = pd.DataFrame({c: rows[c] if c in rows.columns else np.nan
                        for c in ds.inter.columns if c != "seq"})
    new["seq"] = counts[u] + rows.groupby("user_idx").cumcount().to_numpy()
    new = new.astype({c: ds.inter[c].dtype for c in new.columns if c in ds.inter.columns})
    return ds.with_interactions(pd.concat([ds.inter, new[ds.inter.columns]],
                                          ignore_index=True))


def grow_catalogue(model: Recommender, dataset: Dataset) -> Recommender:
    """A copy of a text model (``m6``) scoring ``dataset``'s catalogue: the first
    ``model.n_items_`` items keep their vectors (ID parts included), the new ones are encoded
    from their text (no ID part: their ID embedding rows start at zero, unseen)."""
    from m6rec.online.foldin import clone

    if model.name != "m6":
        raise ValueError(f"model {model.name!r} cannot grow its catalogue (only m6 reads text)")
    n_old, n_new = model.n_items_, dataset.n_items
    if n_new < n_old:
        raise ValueError("the new catalogue is smaller than the model's")
    new = clone(model)
    items, _ = new.encode_catalogue(dataset)
    state = new.get_state()
    state["item_text"] = items
    state["item_seen"] = np.concatenate([np.asarray(model.item_seen_, bool),
                                         np.zeros(n_new - n_old, bool)])
    key = "module.id_emb.weight"
    if key in state:
        w = state[key]
        state[key] = np.concatenate([w, np.zeros((n_new - n_old, w.shape[1]), w.dtype)])
    out = type(model)(**model.get_params())
    out.n_items_, out.n_users_ = n_new, model.n_users_
    out.set_state(state)
    return out
