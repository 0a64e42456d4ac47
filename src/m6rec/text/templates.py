"""Items, user profiles and behaviour written as plain text, in the M6-Rec style.

M6-Rec (Cui et al., "M6-Rec: Generative Pretrained Language Models are Open-Ended Recommender
Systems", arXiv 2205.08084) reads everything a recommender knows as text, e.g.::

    A 24 year old male technician. Watched Toy Story (1995; Animation, Children's, Comedy),
    rated 5, 3 days ago. Watched GoldenEye (1995; Action, Adventure, Thriller), rated 3, ...

The wording lives in :class:`Templates`, plain data (format strings, column lists, word maps) that a
user can change in code or in a JSON file; the functions here only fill it in. Every column a
catalogue has finds a role (title, year, categories, brand, description, other); unknown catalogues
fall back to ``"column: value"`` for each text column.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from m6rec.data.dataset import CATEGORY_COLUMNS, TITLE_COLUMNS, Dataset
from m6rec.data.histories import Histories

_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")


def _list(*values: str):
    return field(default_factory=lambda: list(values))


def _dict(**values: str):
    return field(default_factory=lambda: dict(values))


@dataclass
class Templates:
    """The wording of every text m6rec writes. Plain data: edit it, or save / load it as JSON.

    Column roles: for each role the first listed column the table has is used. Item pieces are
    format strings applied only when their value is non-empty, concatenated in ``item_parts`` order
    (``history_parts`` for items inside a behaviour text). Placeholders: ``{title}``, ``{brand}``,
    ``{details}`` (year and categories joined by ``details_separator``), ``{description}``,
    ``{column}`` / ``{value}`` (other columns), ``{item_id}`` (``item_fallback``); profile:
    ``{a}`` ("A" / "An") and ``{who}``; behaviour: ``{verb}``, ``{item}``, ``{rating}``, ``{ago}``.
    """

    # -- catalogue column roles ------------------------------------------------------------------
    title_columns: list[str] = field(default_factory=lambda: list(TITLE_COLUMNS))
    year_columns: list[str] = _list("year", "release_year", "release_date", "date")
    category_columns: list[str] = field(default_factory=lambda: list(CATEGORY_COLUMNS))
    brand_columns: list[str] = _list("brand", "manufacturer", "artist", "author", "publisher")
    description_columns: list[str] = _list("description", "summary", "overview", "plot",
                                           "abstract", "text")
    ignore_columns: list[str] = _list("url", "link", "image", "image_url", "imurl", "img",
                                      "item_id", "user_id", "id", "zip_code", "zip", "zipcode",
                                      "postcode", "postal_code")
    include_other: bool = True
    skip_values: list[str] = _list("unknown", "n/a", "na", "none", "nan", "null")
    max_categories: int = 8
    category_separator: str = ", "
    details_separator: str = "; "
    # -- item pieces ----------------------------------------------------------------------------
    item_title: str = "{title}"
    item_brand: str = " by {brand}"
    item_details: str = " ({details})"
    item_other: str = ". {column}: {value}"
    item_description: str = ". {description}"
    item_fallback: str = "Item {item_id}"
    item_parts: list[str] = _list("title", "brand", "details", "other", "description")
    history_parts: list[str] = _list("title", "details")
    history_budget: int = 160
    # -- user profiles --------------------------------------------------------------------------
    age_columns: list[str] = _list("age")
    gender_columns: list[str] = _list("gender", "sex")
    occupation_columns: list[str] = _list("occupation", "job", "profession")
    profile: str = "{a} {who}."
    profile_age: str = "{age} year old"
    gender_words: dict[str, str] = _dict(m="male", f="female", male="male", female="female")
    profile_other: str = "{column}: {value}."
    # -- behaviour ------------------------------------------------------------------------------
    verbs: dict[str, str] = _dict(**{"ml-": "Watched", "movielens": "Watched",
                                     "microlens": "Watched", "netflix": "Watched",
                                     "lastfm": "Listened to", "amazon": "Bought",
                                     "book": "Read"})
    default_verb: str = "Interacted with"
    event_verbs: dict[str, str] = _dict(click="Clicked", view="Viewed", purchase="Bought",
                                        buy="Bought", cart="Added to cart", like="Liked",
                                        play="Played", listen="Listened to", watch="Watched",
                                        rate="Rated", review="Reviewed")
    event: str = "{verb} {item}{rating}{ago}."
    rating: str = ", rated {rating}"
    ago: str = ", {ago}"
    event_separator: str = " "
    recent_first: bool = True

    # -- plain-data I/O -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Templates:
        """Defaults overridden by ``data``; unknown keys are an error (typos do not pass)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown template field(s): {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Templates:
        """Read a JSON file holding some or all fields (the rest keep their defaults)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of template fields")
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    def verb_for(self, domain: str) -> str:
        """The behaviour verb of a domain: the longest ``verbs`` key found in its name."""
        name = domain.lower()
        hits = [k for k in self.verbs if k.lower() in name]
        return self.verbs[max(hits, key=len)] if hits else self.default_verb



# -- small helpers ---------------------------------------------------------------------------------
def _pick(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def _clean(v: object, skip: set[str]) -> str:
    """One value as a single-line string; "" for missing / placeholder values."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = v if isinstance(v, str) else str(v)
    if not s or s.lower() in skip:
        return ""
    return " ".join(s.split()) if ("  " in s or "\n" in s or "\t" in s or "\r" in s) else s.strip()


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, marked with "..."."""
    if len(text) <= limit:
        return text
    if limit <= 3:
        return ""
    head = text[: limit - 3]
    if " " in head and not text[limit - 3].isspace():
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:.-") + "..."


def _split_sep(values: pd.Series) -> str | None:
    """The separator of a list-valued column: ``|`` or ``,`` when used, else whitespace."""
    sample = " ".join(values.head(200).astype(str))
    return "|" if "|" in sample else "," if "," in sample else None


def _is_text(col: pd.Series) -> bool:
    return col.dtype == object or pd.api.types.is_string_dtype(col.dtype)


class _Roles:
    """Which catalogue column plays which part, for one (catalogue, templates) pair."""

    def __init__(self, items: pd.DataFrame, t: Templates) -> None:
        cols = list(items.columns)
        self.title = _pick(cols, t.title_columns)
        self.year = _pick(cols, t.year_columns)
        self.category = _pick(cols, t.category_columns)
        self.brand = _pick(cols, t.brand_columns)
        self.description = _pick(cols, t.description_columns)
        used = {self.title, self.year, self.category, self.brand, self.description}
        ignore = {c.lower() for c in t.ignore_columns}
        self.other = [c for c in cols if c not in used and c.lower() not in ignore
                      and _is_text(items[c])] if t.include_other else []
        self.sep = _split_sep(items[self.category]) if self.category else None


def _column(items: pd.DataFrame, col: str | None, idx: np.ndarray, skip: set[str]) -> list[str]:
    if col is None:
        return [""] * len(idx)
    values = items[col].to_numpy(dtype=object)[idx]
    return [_clean(v, skip) for v in values]


def _years(raw: list[str]) -> list[str]:
    out = []
    for v in raw:
        m = _YEAR.search(v) if v else None
        out.append(m.group(1) if m else v if len(v) <= 12 else "")
    return out


def _categories(raw: list[str], sep: str | None, t: Templates, skip: set[str]) -> list[list[str]]:
    out = []
    for v in raw:
        seen: dict[str, str] = {}
        for p in v.split(sep):
            p = p.strip()
            if p and p.lower() not in skip and p.lower() not in seen:
                seen[p.lower()] = p
                if len(seen) >= t.max_categories:
                    break
        out.append(list(seen.values()))
    return out


def _render_items(dataset: Dataset, t: Templates, idx: np.ndarray, parts: Sequence[str],
                  budget: int) -> list[str]:
    """Texts of the items ``idx`` built from ``parts``, each at most ``budget`` characters.

    When the parts without the description are over budget, the title is cut to about half the
    budget, then trailing categories are dropped; the description fills what room is left."""
    items = dataset.items
    roles = _Roles(items, t)
    skip = {s.lower() for s in t.skip_values}
    n = len(idx)
    wanted = set(parts)
    ids = dataset.item_ids[idx]
    titles = _column(items, roles.title, idx, skip)
    if roles.title is not None:
        titles = [x or t.item_fallback.format(item_id=i) for x, i in zip(titles, ids, strict=True)]
    brands = [""] * n
    if "brand" in wanted:
        brands = [b if b and b.lower() not in x.lower() else ""
                  for b, x in zip(_column(items, roles.brand, idx, skip), titles, strict=True)]
    years, cats = [""] * n, [[] for _ in range(n)]
    if "details" in wanted:
        years = _years(_column(items, roles.year, idx, skip))
        cats = _categories(_column(items, roles.category, idx, skip), roles.sep, t, skip)
    other = [""] * n
    if "other" in wanted:
        for col in roles.other:
            name = col.replace("_", " ")
            for k, v in enumerate(_column(items, col, idx, skip)):
                if v and not v.startswith(("http://", "https://")):
                    other[k] += t.item_other.format(column=name, value=v)
    descriptions = (_column(items, roles.description, idx, skip) if "description" in wanted
                    else [""] * n)
    desc_overhead = len(t.item_description.format(description=""))

    def head(k: int, title: str, n_cats: int) -> str:
        details = t.details_separator.join(
            d for d in (years[k], t.category_separator.join(cats[k][:n_cats])) if d)
        piece = {"title": t.item_title.format(title=title) if title else "",
                 "brand": t.item_brand.format(brand=brands[k]) if brands[k] else "",
                 "details": t.item_details.format(details=details) if details else "",
                 "other": other[k]}
        return "".join(piece.get(p, "") for p in parts)

    out = []
    for k in range(n):
        title, n_cats = titles[k], len(cats[k])
        text = head(k, title, n_cats)
        if len(text) > budget:
            title = _cut(title, max(budget // 2, budget - (len(text) - len(title))))
            text = head(k, title, n_cats)
            while len(text) > budget and n_cats > 1:
                n_cats -= 1
                text = head(k, title, n_cats)
        room = budget - len(text) - desc_overhead
        if descriptions[k] and room >= 20:
            text += t.item_description.format(
                description=_cut(descriptions[k][: 4 * budget], room))
        # without a title column the text starts with whatever part comes first
        text = text.lstrip(" .,;:") or t.item_fallback.format(item_id=ids[k])
        out.append(_cut(text, budget))
    return out


# -- items -----------------------------------------------------------------------------------------
def item_texts(dataset: Dataset, templates: Templates | None = None, budget: int = 400,
               items: Sequence[int] | np.ndarray | None = None) -> list[str]:
    """One short text per item, e.g. ``"Toy Story (1995; Animation, Children's, Comedy)"``.

    Parameters
    ----------
    dataset : Dataset
    templates : Templates, optional
    budget : int
        Most characters per text; the description is cut first (at a word boundary).
    items : int array, optional
        Item indices to render (default: the whole catalogue, in index order).

    Returns
    -------
    list of str, one per item.
    """
    t = templates or Templates()
    idx = (np.arange(dataset.n_items) if items is None else np.asarray(items, dtype=np.int64))
    return _render_items(dataset, t, idx, t.item_parts, budget)


# -- users -----------------------------------------------------------------------------------------
def _article(who: str) -> str:
    first = who.split(" ", 1)[0].lower()
    if first[:1].isdigit():
        digits = first.split("-")[0]
        return "An" if digits.startswith("8") or digits in {"11", "18"} else "A"
    return "An" if first[:1] in set("aeiou") else "A"


def user_profile_text(dataset: Dataset, user_idx: int, templates: Templates | None = None) -> str:
    """A user's profile as a sentence, e.g. ``"A 24 year old male technician."``.

    Age, gender and occupation make the sentence; any other profile column is added as
    ``"Column: value."``. Returns "" when the dataset has no profiles or the user is unknown.
    """
    t = templates or Templates()
    users = dataset.users
    if users is None or user_idx is None or not 0 <= int(user_idx) < len(users):
        return ""
    skip = {s.lower() for s in t.skip_values}
    row = users.iloc[int(user_idx)]
    cols = list(users.columns)
    age_c, gender_c, occ_c = (_pick(cols, t.age_columns), _pick(cols, t.gender_columns),
                              _pick(cols, t.occupation_columns))

    def value(c: str | None) -> str:
        return "" if c is None else _clean(row[c], skip)

    age, gender, occupation = value(age_c), value(gender_c), value(occ_c)
    if age:
        try:
            a = float(age)
            age = str(int(a)) if a.is_integer() and a > 0 else "" if a <= 0 else age
        except ValueError:
            pass
    words = [t.profile_age.format(age=age) if age else "",
             t.gender_words.get(gender.lower(), gender.lower()) if gender else "",
             occupation]
    who = " ".join(w for w in words if w)
    out = [t.profile.format(a=_article(who), who=who)] if who else []
    ignore = {c.lower() for c in t.ignore_columns}
    for c in cols:
        if c in (age_c, gender_c, occ_c) or c.lower() in ignore:
            continue
        v = value(c)
        if v:
            name = c.replace("_", " ")
            out.append(t.profile_other.format(column=name[:1].upper() + name[1:], value=v))
    return " ".join(out)


# -- behaviour -------------------------------------------------------------------------------------
def _ago(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return ""
    if seconds < 60:
        return "just now"
    for size, unit, limit in ((60, "minute", 60), (3600, "hour", 24), (86400, "day", 14),
                              (7 * 86400, "week", 8), (30.44 * 86400, "month", 12)):
        n = int(seconds // size)
        if n < limit:
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    n = int(seconds // (365.25 * 86400))
    return f"{n} year{'s' if n != 1 else ''} ago"


def _rating(r: float) -> str:
    if not math.isfinite(r):
        return ""
    return str(int(r)) if float(r).is_integer() else f"{r:.1f}".rstrip("0")


def behaviour_text(dataset: Dataset, items: Sequence[int] | np.ndarray,
                   timestamps: Sequence[float] | np.ndarray | None = None,
                   ratings: Sequence[float] | np.ndarray | None = None,
                   now: float | None = None, max_items: int = 20,
                   events: Sequence[int | str] | np.ndarray | None = None,
                   templates: Templates | None = None) -> str:
    """A behaviour sequence as text, e.g. ``"Watched Toy Story (1995; ...), rated 5, 3 days ago."``.

    Parameters
    ----------
    dataset : Dataset
        Supplies the catalogue and the domain verb (``Templates.verbs``, by dataset name).
    items : int [n]
        Item indices, oldest first.
    timestamps : float [n], optional
        Unix seconds (NaN where unknown); times are said relative to ``now``.
    ratings : float [n], optional
    now : float, optional
        Reference time; default: the latest of ``timestamps``.
    max_items : int
        Only the ``max_items`` most recent interactions are written.
    events : int codes into ``dataset.event_types`` or str [n], optional
        Event types; their verb comes from ``Templates.event_verbs``.

    Returns
    -------
    str; most recent first when ``Templates.recent_first`` (a language model that truncates long
    inputs then drops the oldest events).
    """
    t = templates or Templates()
    idx = np.asarray(items, dtype=np.int64)[-max_items:] if max_items > 0 else np.zeros(0, int)
    n = len(idx)
    if n == 0:
        return ""
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)[-n:]
    rs = None if ratings is None else np.asarray(ratings, dtype=np.float64)[-n:]
    ev = None if events is None else list(events)[-n:]
    if ts is not None and now is None:
        finite = ts[np.isfinite(ts)]
        now = float(finite.max()) if len(finite) else None
    texts = _render_items(dataset, t, idx, t.history_parts, t.history_budget)
    verb = t.verb_for(dataset.name)
    lines = []
    for k in range(n):
        v = verb
        if ev is not None:
            e = ev[k]
            if not isinstance(e, str):
                e = dataset.event_types[int(e)] if 0 <= int(e) < len(dataset.event_types) else ""
            v = t.event_verbs.get(e.lower(), verb) if e else verb
        r = _rating(float(rs[k])) if rs is not None else ""
        a = _ago(now - float(ts[k])) if ts is not None and now is not None else ""
        lines.append(t.event.format(verb=v, item=texts[k],
                                    rating=t.rating.format(rating=r) if r else "",
                                    ago=t.ago.format(ago=a) if a else ""))
    if t.recent_first:
        lines.reverse()
    return t.event_separator.join(lines)


def user_text(dataset: Dataset, user_idx: int, history: Sequence[int] | np.ndarray | None = None,
              *, timestamps: Sequence[float] | np.ndarray | None = None,
              ratings: Sequence[float] | np.ndarray | None = None,
              events: Sequence[int | str] | np.ndarray | None = None, now: float | None = None,
              max_items: int = 20, templates: Templates | None = None) -> str:
    """Profile + behaviour of one user.

    ``history`` (item indices, oldest first) defaults to the user's interactions in ``dataset``
    together with their timestamps, ratings and events.
    """
    if history is None:
        h = dataset.histories(np.array([user_idx], dtype=np.int64))
        history, timestamps, ratings, events = h.items, h.timestamps, h.ratings, h.events
    parts = [user_profile_text(dataset, user_idx, templates),
             behaviour_text(dataset, history, timestamps, ratings, now, max_items, events,
                            templates)]
    return " ".join(p for p in parts if p)


def user_texts(dataset: Dataset, histories: Histories, now: float | np.ndarray | None = None,
               max_items: int = 20, templates: Templates | None = None) -> list[str]:
    """:func:`user_text` for every row of a batch of histories (``now``: scalar or one per row)."""
    out = []
    for r in range(len(histories)):
        s, e = histories.indptr[r], histories.indptr[r + 1]
        when = now if now is None or np.ndim(now) == 0 else float(np.asarray(now)[r])
        ts, rs, ev = (None if a is None else a[s:e]
                      for a in (histories.timestamps, histories.ratings, histories.events))
        out.append(user_text(dataset, int(histories.users[r]), histories.items[s:e],
                             timestamps=ts, ratings=rs, events=ev, now=when, max_items=max_items,
                             templates=templates))
    return out
