"""Explanations and pitches written by a generative LM, and checked against their evidence.

The explainer (`m6rec.explain.Explainer`) measures why an item was recommended: the history
items that raised its score (with their shares), the categories they share with it and the
knowledge-graph relations between them. :func:`phrase_explanations` hands exactly that evidence
to a `m6rec.text.generate.Generator` and asks for one or two sentences; :class:`GroundingChecker`
then reads every generated sentence and rejects one that names anything outside the evidence:

- a **catalogue title** other than the recommended item and the evidence's items (titles are
  matched longest first, in both "Shawshank Redemption, The" and "The Shawshank Redemption"
  forms, without a trailing "(1995)"; one-word titles only when capitalised);
- a **category** (genre) that is neither the item's nor an evidence item's;
- a **relation** word (director, actor, sequel, writer, ...) for a relation not in the evidence;
- a **number** (a share, a year, a count) that the evidence does not hold;
- a **name**: a capitalised word sequence (a person, a studio, a film outside the catalogue)
  whose words are not in the evidence, apart from a sentence's first word.

A rejected sentence is replaced by the template sentence (`m6rec.explain.sentence`), so what
reaches the user only ever names what the explainer measured; each replacement is counted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from m6rec.explain.explanation import Explanation, sentence

#: relation roles (as in `m6rec.explain.kg_relations`) -> words that claim them
ROLE_WORDS: dict[str, tuple[str, ...]] = {
    "director": ("director", "directors", "directed", "directs", "filmmaker"),
    "writer": ("writer", "writers", "written", "wrote", "screenplay", "screenwriter"),
    "actor": ("actor", "actors", "actress", "actresses", "starring", "starred", "stars",
              "cast", "co-star"),
    "sequel": ("sequel", "sequels", "follow-up"),
    "prequel": ("prequel", "prequels"),
    "cinematographer": ("cinematographer", "cinematography"),
    "producer": ("producer", "producers", "produced"),
    "production company": ("studio", "studios"),
}
#: category name (lower case) -> extra words that name it
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "sci-fi": ("sci-fi", "sci fi", "scifi", "science fiction", "science-fiction"),
    "children's": ("children's", "kids", "children"),
    "film-noir": ("film-noir", "film noir", "noir"),
    "comedy": ("comedy", "comedies", "comedic"),
    "drama": ("drama", "dramas", "dramatic"),
    "thriller": ("thriller", "thrillers"),
    "romance": ("romance", "romances", "romantic"),
    "horror": ("horror",),
    "mystery": ("mystery", "mysteries"),
    "fantasy": ("fantasy", "fantasies"),
    "documentary": ("documentary", "documentaries"),
    "musical": ("musical", "musicals"),
    "western": ("western", "westerns"),
    "animation": ("animation", "animated", "cartoon"),
    "adventure": ("adventure", "adventures"),
    "action": ("action",),
    "crime": ("crime",),
    "war": ("war",),
}
#: one-word titles that are also everyday words are never taken for titles
_COMMON = {"it", "i", "he", "she", "we", "you", "they", "them", "us", "her", "him", "this", "that",
           "if", "so", "yes", "no", "go", "up", "now", "love", "home", "here", "there", "again",
           "why", "what", "who", "when", "how", "more", "only", "also", "just", "because"}
_GENRE_WORDS = {w for ws in CATEGORY_WORDS.values() for w in ws}
_ARTICLES = ("The", "A", "An", "Il", "La", "Le", "Les", "L'", "El", "Das", "Der", "Die")
#: capitalised words that name nothing
_PLAIN = {"i", "you", "your", "we", "it", "this", "that", "these", "those", "if", "because",
          "since", "as", "and", "but", "so", "the", "a", "an", "of", "in", "on", "with", "for",
          "to", "its", "their", "they", "he", "she", "here", "there", "both", "like", "also",
          "enjoyed", "watched", "loved", "liked", "movie", "movies", "film", "films", "based",
          "given", "we've", "you've", "you'll", "you're", "it's", "recommended", "recommend",
          "our", "my", "me", "not", "just", "what", "when", "which", "who", "why", "how",
          "similar", "fans", "fan", "overall", "all", "together", "plus", "then", "there's",
          "i'm", "i've", "i'd", "i'll", "here's", "let's", "that's", "hi", "hello", "sure"}
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-\.&*]*")


def norm(text: str) -> str:
    """Lower case, accents, punctuation and a possessive 's dropped, spaces collapsed."""
    t = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    t = re.sub(r"[’`]", "'", t.lower())
    t = re.sub(r"[^a-z0-9']+", " ", t)
    words = (re.sub(r"'s$", "", w.strip("'")) for w in t.split())  # "Brazil's" -> "brazil"
    return " ".join(w for w in words if w)


def natural_title(title: str) -> str:
    """"Shawshank Redemption, The" -> "The Shawshank Redemption" (also before "(...)")."""
    m = re.match(r"^(.*?), (" + "|".join(re.escape(a) for a in _ARTICLES) + r")( \(.*\))?$",
                 str(title).strip())
    if not m:
        return str(title).strip()
    art = m.group(2)
    return f"{art}{'' if art.endswith(chr(39)) else ' '}{m.group(1)}{m.group(3) or ''}"


def title_variants(title: str) -> set[str]:
    """Normalised forms under which a title may be mentioned."""
    out = set()
    for t in {str(title), natural_title(title)}:
        base = re.sub(r"\s*\([^)]*\)\s*$", "", t).strip()  # "(1995)", "(Cite des ...)"
        for v in (t, base):
            n = norm(v)
            if n:
                out.add(n)
                words = n.split()
                if len(words) > 1 and words[0] in {"the", "a", "an"}:
                    out.add(" ".join(words[1:]))  # "Shawshank Redemption"
    return out


@dataclass
class Check:
    """The verdict on one sentence: ``ok`` when ``violations`` is empty."""

    text: str
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


class GroundingChecker:
    """Finds what a sentence names that its evidence does not hold.

    Parameters
    ----------
    titles : every catalogue title (index = item index)
    category_names : the catalogue's category names
    """

    def __init__(self, titles: Sequence[str], category_names: Sequence[str]) -> None:
        self.titles = [str(t) for t in titles]
        self.variants: dict[str, set[int]] = {}
        self.single_case: dict[str, set[str]] = {}  # one-word variant -> its written forms
        for i, t in enumerate(self.titles):
            for v in title_variants(t):
                if len(v.split()) == 1:
                    if v in _COMMON or len(v) < 2 or v in _GENRE_WORDS:
                        continue  # "War" (from "War, The") reads as the genre
                    self.single_case.setdefault(v, set()).update(
                        w for w in _WORD.findall(natural_title(t)) if norm(w) == v)
                self.variants.setdefault(v, set()).add(i)
        self.max_words = max((len(v.split()) for v in self.variants), default=1)
        self.categories: dict[str, str] = {}  # phrase -> category name (lower)
        for c in category_names:
            key = str(c).lower()
            for w in CATEGORY_WORDS.get(key, (key,)):
                self.categories[norm(w)] = key

    @classmethod
    def for_dataset(cls, dataset: Any, titles: Sequence[str] | None = None) -> GroundingChecker:
        cats = sorted({c for cs in dataset.item_categories() for c in cs if c != "unknown"})
        return cls(titles if titles is not None else dataset.titles(), cats)

    def check(self, text: str, items: Sequence[int], categories: Sequence[str] = (),
              roles: Sequence[str] = (), numbers: Sequence[str] = (),
              words: Sequence[str] = ()) -> Check:
        """Check one sentence against evidence: the items it may name (indices), categories,
        relation roles, numbers and other words it may use (e.g. the user's own request)."""
        allowed_items = {int(i) for i in items}
        allowed_cats = {str(c).lower() for c in categories}
        allowed_roles = set(roles)
        allowed_numbers = {str(n) for n in numbers}
        vocab = set(norm(" ".join(words)).split())
        for i in allowed_items:
            if 0 <= i < len(self.titles):
                for v in title_variants(self.titles[i]):
                    vocab.update(v.split())
                    allowed_numbers.update(re.findall(r"\d+", v))
        vocab.update(w for c in allowed_cats for p in CATEGORY_WORDS.get(c, (c,))
                     for w in norm(p).split())
        out = Check(text)
        tokens = _WORD.findall(text)
        normed = [norm(t) for t in tokens]
        covered = [False] * len(tokens)
        # titles, longest first
        j = 0
        while j < len(tokens):
            hit = None
            for n in range(min(self.max_words, len(tokens) - j), 0, -1):
                phrase = " ".join(w for w in normed[j : j + n] if w)
                if not phrase or phrase not in self.variants:
                    continue
                written = re.sub(r"['’]s$", "", tokens[j].rstrip(".,"))
                if n == 1 and written not in self.single_case.get(phrase, ()):
                    continue  # a one-word title counts only as written (capitalised)
                hit = (n, self.variants[phrase])
                break
            if hit is None:
                j += 1
                continue
            n, owners = hit
            if not owners & allowed_items:
                shown = " ".join(tokens[j : j + n])
                out.violations.append(f"title not in the evidence: {shown!r}")
            for q in range(j, j + n):
                covered[q] = True
            j += n
        # categories, relation words, numbers
        flat = " " + " ".join(w for w, c in zip(normed, covered, strict=True) if not c) + " "
        for phrase, cat in self.categories.items():
            if f" {phrase} " in flat and cat not in allowed_cats:
                out.violations.append(f"category not in the evidence: {phrase!r}")
        for role, ws in ROLE_WORDS.items():
            if role not in allowed_roles and any(f" {norm(w)} " in flat for w in ws):
                out.violations.append(f"relation not in the evidence: {role!r}")
        for num in re.findall(r"\d+(?:\.\d+)?", " ".join(t for t, c in zip(tokens, covered,
                                                                           strict=True) if not c)):
            if num not in allowed_numbers:
                out.violations.append(f"number not in the evidence: {num}")
        # names: runs of capitalised words outside titles
        starts = _sentence_starts(text, tokens)
        run: list[int] = []
        for q in range(len(tokens) + 1):
            cap = (q < len(tokens) and not covered[q] and tokens[q][:1].isupper()
                   and normed[q] not in _PLAIN)
            if cap:
                run.append(q)
                continue
            if run:
                if len(run) == 1 and run[0] in starts:
                    pass  # a sentence's first word
                else:
                    unknown = [tokens[r] for r in run if normed[r] and not set(
                        normed[r].split()) <= vocab and normed[r] not in self.categories]
                    if unknown:
                        out.violations.append(f"name not in the evidence: {' '.join(unknown)!r}")
                run = []
        return out


def _sentence_starts(text: str, tokens: list[str]) -> set[int]:
    """Indices of tokens that open a sentence."""
    starts, pos = set(), 0
    prev_end = ""
    for q, t in enumerate(tokens):
        at = text.find(t, pos)
        gap = text[pos:at] if at >= 0 else ""
        if q == 0 or re.search(r"[.!?:;]\s*$", prev_end + gap) or '"' in gap:
            starts.add(q)
        pos = at + len(t) if at >= 0 else pos
        prev_end = t[-1:] if t.endswith(".") and len(t) > 2 and not re.search(r"\.\w", t) else ""
    return starts


def split_sentences(text: str, most: int = 2) -> list[str]:
    """The first ``most`` sentences of a generated text (one line; list markers dropped)."""
    text = re.sub(r"\s+", " ", str(text).replace("*", "")).strip()
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", text)
    out = [p.strip() for p in parts if len(p.split()) >= 3]  # drops "Sure!" and the like
    if len(out) > 1 and not re.search(r"[.!?\"')]$", out[-1]):
        out = out[:-1]  # cut off by max_tokens
    return out[:most]


# -- explanations --------------------------------------------------------------------------------
def _pct(share: float) -> str:
    return f"{round(100 * float(share))}%"


def evidence_of(ex: Explanation, index_of: dict[str, int], item_categories: Sequence[Sequence[str]]
                ) -> dict[str, Any]:
    """What an explanation may mention: item indices, categories, roles, numbers."""
    items = [index_of[ex.item_id]] if ex.item_id in index_of else []
    items += [index_of[h["item_id"]] for h in ex.history if h["item_id"] in index_of]
    items += [index_of[r["item_id"]] for r in ex.relations if r["item_id"] in index_of]
    cats = {c["name"] for c in ex.categories}
    cats.update(item_categories[items[0]] if items else [])
    numbers = [_pct(h["share"]).rstrip("%") for h in ex.history]
    numbers += [_pct(c["share"]).rstrip("%") for c in ex.categories]
    numbers += [str(len(ex.history))]
    return {"items": items, "categories": sorted(cats), "roles": [r["role"] for r in ex.relations],
            "numbers": numbers}


def explanation_prompt(ex: Explanation, item_categories: Sequence[str], noun: str = "movie",
                       verb: str = "watched") -> str:
    """The evidence as a short fact sheet plus the instruction."""
    name = natural_title(ex.title)
    lines = [f"Recommended {noun}: {name}" + (f" ({', '.join(item_categories)})"
                                              if item_categories else "")]
    if ex.history:
        cited = ", ".join(f"{natural_title(h['title'])} ({_pct(h['share'])})" for h in ex.history)
        lines.append(f"Because you {verb}: {cited}.")
    if ex.categories:
        lines.append("Shared genres: " + ", ".join(c["name"] for c in ex.categories) + ".")
    for r in ex.relations:
        lines.append(f"Link: {_relation_text(name, r)}.")
    lines.append(f"Write one or two short sentences to the user, saying \"you\", about why they "
                 f"may like {name}. Mention only the {noun}s and facts above.")
    return "\n".join(lines)


def _relation_text(name: str, r: dict[str, Any]) -> str:
    t, role = natural_title(r["title"]), r["role"]
    if role in ("sequel", "prequel"):
        return f"{name} is a {role} to {t}"
    if role == "actor":
        return f"{name} shares an actor with {t}"
    if role == "production company":
        return f"{name} comes from the same studio as {t}"
    return f"{name} has the same {role} as {t}"


SYSTEM = ("You write short, friendly recommendation notes. Use only the facts you are given; "
          "never add other titles, names or numbers.")


@dataclass
class Phrased:
    """A generated text after the check.

    Attributes
    ----------
    text : what the user sees: the generated sentences that passed, the template in place of
        each that did not
    raw : the generator's output (first two sentences)
    template : the template sentence
    checks : one `Check` per raw sentence
    replaced : how many raw sentences were replaced by the template
    """

    text: str
    raw: str
    template: str
    checks: list[Check]
    replaced: int

    @property
    def grounded_raw(self) -> bool:
        return all(c.ok for c in self.checks) and bool(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "raw": self.raw, "replaced": self.replaced,
                "violations": [v for c in self.checks for v in c.violations]}


def ground(raw: str, template: str, checker: GroundingChecker, evidence: dict[str, Any],
           words: Sequence[str] = ()) -> Phrased:
    """Check each of the first two sentences of ``raw``; replace failing ones by ``template``
    (said once). An empty output counts as one replaced sentence."""
    sents = split_sentences(raw)
    checks = [checker.check(s, evidence["items"], evidence.get("categories", ()),
                            evidence.get("roles", ()), evidence.get("numbers", ()), words)
              for s in sents]
    kept: list[str] = []
    for c in checks:
        s = c.text if c.ok else template  # a repeated sentence is said once
        if s not in kept:
            kept.append(s)
    replaced = sum(not c.ok for c in checks)
    if not checks:
        kept, replaced = [template], 1
    return Phrased(" ".join(kept), " ".join(sents), template, checks, replaced)


def phrase_explanations(explanations: Sequence[Explanation], generator: Any, dataset: Any,
                        checker: GroundingChecker | None = None, cache: Any = None,
                        settings: Any = None, item_ids: Sequence[str] | None = None,
                        titles: Sequence[str] | None = None,
                        categories: Sequence[Sequence[str]] | None = None) -> list[Phrased]:
    """Rewrite explanations with ``generator`` (all in one batched, cached call) and check them.

    ``item_ids``, ``titles``, ``categories``: the catalogue the explanations index into
    (default: the dataset's). Explanations without evidence (no history) keep their template.
    """
    from m6rec.text.generate import GenerationSettings, generate_cached
    from m6rec.text.templates import Templates

    ids = [str(i) for i in (item_ids if item_ids is not None else dataset.item_ids)]
    index_of = {i: n for n, i in enumerate(ids)}
    cats = categories if categories is not None else dataset.item_categories()
    checker = checker or GroundingChecker.for_dataset(dataset, titles)
    verb = Templates().verb_for(dataset.name).lower()
    noun = "movie" if verb == "watched" else "item"
    settings = settings or GenerationSettings(max_tokens=60, system=SYSTEM)
    todo = [n for n, ex in enumerate(explanations) if ex.history]
    prompts = [explanation_prompt(explanations[n], _own(cats, index_of, explanations[n].item_id),
                                  noun, verb) for n in todo]
    texts, _ = generate_cached(generator, prompts, settings, cache) if prompts else ([], 0)
    raw = dict(zip(todo, texts, strict=True))
    out = []
    for n, ex in enumerate(explanations):
        template = ex.sentence or sentence(ex, verb)
        if n not in raw:
            out.append(Phrased(template, "", template, [], 0))
            continue
        out.append(ground(raw[n], template, checker, evidence_of(ex, index_of, cats)))
    return out


def _own(cats: Sequence[Sequence[str]], index_of: dict[str, int], item_id: str) -> list[str]:
    i = index_of.get(item_id)
    return [c for c in cats[i] if c != "unknown"] if i is not None else []


# -- personalised content -------------------------------------------------------------------------
PITCH_SYSTEM = ("You write short, personal movie pitches. Use only the facts you are given; "
                "never add other titles, names or numbers.")


def pitch_prompt(ex: Explanation, item_categories: Sequence[str], noun: str = "movie",
                 verb: str = "watched") -> str:
    """The item's text and the user's evidence, and the instruction for a pitch."""
    name = natural_title(ex.title)
    lines = [f"The {noun}: {name}" + (f" ({', '.join(item_categories)})" if item_categories
                                        else "")]
    if ex.history:
        lines.append(f"The user {verb} and liked: "
                     + ", ".join(natural_title(h["title"]) for h in ex.history) + ".")
    if ex.categories:
        lines.append("Genres they share: " + ", ".join(c["name"] for c in ex.categories) + ".")
    for r in ex.relations:
        lines.append(f"Link: {_relation_text(name, r)}.")
    lines.append(f"Write a two-sentence pitch of {name} to this user, saying \"you\". Mention "
                 f"only the {noun}s and facts above.")
    return "\n".join(lines)


def describe_item(model: Any, dataset: Any, user_id: str, item_id: str, generator: Any,
                  cache: Any = None) -> dict[str, Any]:
    """A short personalised pitch of ``item_id`` for ``user_id`` (M6-Rec's content task).

    The evidence is the explainer's for this (user, item) pair: the history items that raise
    the item's score, shared categories and KG relations, plus the item's own categories. The
    pitch is checked like an explanation; a failing sentence is replaced by a template pitch.
    Returns ``{"user_id", "item_id", "title", "pitch", "raw", "replaced", "violations",
    "evidence"}``."""
    import numpy as np

    from m6rec.explain.explanation import Explainer
    from m6rec.text.generate import GenerationSettings, generate_cached
    from m6rec.text.templates import Templates

    u = dataset.user_index(user_id)
    if u is None:
        raise ValueError(f"unknown user id {user_id!r} in dataset {dataset.name!r}")
    ids = [str(i) for i in dataset.item_ids]
    index_of = {i: n for n, i in enumerate(ids)}
    if str(item_id) not in index_of:
        raise ValueError(f"unknown item id {item_id!r} in dataset {dataset.name!r}")
    item = index_of[str(item_id)]
    history = dataset.histories(np.array([u])).row(0)
    ex = Explainer(model, dataset).explain(history, np.array([item]))[0]
    cats = dataset.item_categories()
    own = [c for c in cats[item] if c != "unknown"]
    verb = Templates().verb_for(dataset.name).lower()
    noun = "movie" if verb == "watched" else "item"
    name = natural_title(ex.title)
    template = f"{name}" + (f" ({', '.join(own)})" if own else "") + ". " + (
        ex.sentence if ex.history else "Popular with other users.")
    settings = GenerationSettings(max_tokens=70, system=PITCH_SYSTEM)
    (raw,), _ = generate_cached(generator, [pitch_prompt(ex, own, noun, verb)], settings, cache)
    ph = ground(raw, template, GroundingChecker.for_dataset(dataset),
                evidence_of(ex, index_of, cats))
    return {"user_id": str(user_id), "item_id": str(item_id), "title": ex.title,
            "pitch": ph.text, "raw": ph.raw, "replaced": ph.replaced,
            "violations": [v for c in ph.checks for v in c.violations],
            "evidence": ex.to_dict()}
