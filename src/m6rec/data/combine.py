"""Several domains as one training set, for open-domain (text) models.

Each domain keeps its own data; in the combined view every id is namespaced
(``"{domain}/{id}"``) so items and users of different domains never collide, and catalogue
columns are renamed to shared roles (``title``, ``categories``, ``year``) so one text template
reads them all. An item's text is the same in the combined view as in its own domain (the
domain is not written into it): a model trained on several domains reads a new domain's
catalogue exactly as it read its sources, and the encodings cached for one domain serve both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from m6rec.data.dataset import Dataset

YEAR_COLUMNS = ("year", "release_year")


def _canonical_items(ds: Dataset) -> pd.DataFrame:
    items = ds.items.copy()
    if ds.title_column and ds.title_column != "title":
        items = items.rename(columns={ds.title_column: "title"})
    if ds.category_column:
        cats = [", ".join(c) for c in ds.item_categories()]
        items = items.drop(columns=[ds.category_column])
        items["categories"] = np.asarray(cats, dtype=object)
    year = next((c for c in YEAR_COLUMNS if c in items.columns), None)
    if year and year != "year":
        items = items.rename(columns={year: "year"})
    return items


def combine(datasets: list[Dataset], name: str | None = None) -> Dataset:
    """One `Dataset` holding every domain's interactions, catalogue and profiles, ids namespaced.

    Knowledge graphs are not carried over (they are per-domain)."""
    if not datasets:
        raise ValueError("combine needs at least one dataset")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"domain names must be unique, got {names}")
    inters, items, users = [], [], []
    u_off = i_off = 0
    events: dict[str, int] = {}
    for ds in datasets:
        inter = ds.inter.copy()
        inter["user_idx"] += u_off
        inter["item_idx"] += i_off
        if "event" in inter.columns:
            codes = np.array([events.setdefault(e, len(events)) for e in ds.event_types],
                             dtype=np.int64)
            inter["event"] = codes[inter["event"].to_numpy()]
        inters.append(inter)
        items.append(_canonical_items(ds))
        prof = (ds.users.copy() if ds.users is not None
                else pd.DataFrame(index=range(ds.n_users)))
        users.append(prof.reset_index(drop=True))
        u_off += ds.n_users
        i_off += ds.n_items
    inter = pd.concat(inters, ignore_index=True)
    if "event" in inter.columns:
        inter["event"] = inter["event"].fillna(0).astype(np.int64)
    if "rating" in inter.columns and inter["rating"].isna().any():
        inter = inter.drop(columns=["rating"])  # ratings only where every domain has them
    catalogue = pd.concat(items, ignore_index=True).fillna("")
    profiles = pd.concat(users, ignore_index=True).fillna("")
    has_profiles = any(d.users is not None for d in datasets)
    return Dataset(
        name=name or "+".join(names),
        inter=inter,
        user_ids=np.concatenate([[f"{d.name}/{u}" for u in d.user_ids] for d in datasets]
                                ).astype(object),
        item_ids=np.concatenate([d.namespaced_item_ids() for d in datasets]).astype(object),
        items=catalogue,
        users=profiles if has_profiles else None,
        event_types=list(events),
        source=",".join(d.source for d in datasets),
    )
