"""Conversational recommendation: a generative LM talks, the recommender ranks.

Each user message goes through a `m6rec.text.generate.Generator` that rewrites the conversation
so far into one short request ("a scary horror film that is not too long"); the requests steer
the user's ranking exactly as text queries do (`m6rec.recommend.recommend_for_user` with
``query``: the model's LM reads each request against the item texts and categories, the latest
turn weighted most). The LM then phrases a reply from the returned items only, and the reply is
checked like an LM explanation (`m6rec.explain.grounded`): a sentence that names a title,
category, number or name that is not among the returned items is replaced by a template.

``steer``: what steers the ranking.

- ``categories`` (default): each message, followed by the catalogue category it asks for as a
  short text ("a drama movie"). The category is the one that the generative LM finds most
  likely in "They want a <category> movie." as the answer to the message, against the same
  sentence after a neutral request (pointwise mutual information: the LM's prior for common
  words cancels), added to the text encoder's similarity of the message and the category name
  (both standardised over the categories). The LM reads "Something more serious." as drama,
  which the text encoder cannot; the encoder keeps "More suspense, please." on thriller, where
  the 135M LM says war. A generator that cannot score text (no ``loglikelihood``) leaves the
  encoder's choice.
- ``both``: the user's own messages, then the LM's rewrite of the whole conversation as the
  latest turn; ``lm``: the rewrites only; ``turns``: the messages only (no LM in the ranking).

With ``categories`` a follow-up keeps the earlier turns' category texts, so "Now make it
romantic too." after "a funny comedy" asks for both; the defaults (request weight 2 against
the history, category match weight 0.8, all turns alike) are those measured best on
``benchmarks/generative_chat.py`` (docs/experiments/generative.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from m6rec.data.dataset import Dataset

STEER = ("categories", "both", "lm", "turns")
#: how a category name is said in a sentence (others: lower case, "-" as a space)
_SPOKEN = {"sci-fi": "science fiction"}
NEUTRAL_REQUEST = "something"

REWRITE_SYSTEM = ("You rewrite a movie request so that it says everything the user wants now. "
                  "Answer with the request only.")
REPLY_SYSTEM = ("You are a friendly movie recommender. Reply in one or two short sentences and "
                "name only movies from the list you are given.")


def rewrite_prompt(messages: list[str]) -> str:
    """The instruction that turns the user's messages (oldest first) into one request."""
    if len(messages) == 1:
        return (f'A user asks for "{messages[0]}". Say what kind of movie they want, in a few '
                "words.")
    said = " Then they say: ".join(f'"{m}"' for m in messages)
    return (f"A user asks for {said}. Say what kind of movie they want now, in a few words, "
            "keeping both wishes.")


def category_prompt(message: str, noun: str = "movie") -> str:
    return f'A user asks for a {noun}: "{message}". What kind of {noun} do they want?'


def spoken(category: str) -> str:
    """"Sci-Fi" -> "science fiction", "Film-Noir" -> "film noir", "Children's" -> "children's"."""
    c = str(category).strip().lower()
    return _SPOKEN.get(c, c.replace("-", " "))


_PICKS: dict[tuple, str] = {}  # (generator, encoder, categories, noun, message) -> category


def pick_categories(messages: Sequence[str], categories: Sequence[str], generator: Any,
                    encode: Callable[[list[str]], Any], noun: str = "movie") -> list[str]:
    """The category each message asks for (see the module docstring), one per message.

    ``encode(texts) -> [n, d]`` is the text encoder (the model's LM); ``generator`` scores
    with ``loglikelihood`` when it has one. Picks are memoised per (generator, categories,
    message)."""
    import numpy as np

    cats = [str(c) for c in categories]
    if not cats:
        raise ValueError("the catalogue has no categories to steer by")
    names = [spoken(c) for c in cats]
    key0 = (getattr(generator, "name", ""), tuple(cats), noun)
    todo = [m for m in dict.fromkeys(messages) if (*key0, m) not in _PICKS]
    if todo:
        def z(a):
            a = np.asarray(a, np.float64)
            return (a - a.mean(-1, keepdims=True)) / np.maximum(a.std(-1, keepdims=True), 1e-12)

        vecs = np.asarray(encode(names + todo), np.float64)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        score = z(vecs[len(names):] @ vecs[: len(names)].T)  # [messages, categories]
        lm = _lm_preference(todo, names, generator, noun)
        if lm is not None:
            score = score + z(lm)
        for m, row in zip(todo, score, strict=True):
            if len(_PICKS) > 10_000:
                _PICKS.clear()
            _PICKS[(*key0, m)] = cats[int(np.argmax(row))]
    return [_PICKS[(*key0, m)] for m in messages]


def _lm_preference(messages: list[str], names: list[str], generator: Any, noun: str):
    """[messages, categories] log-likelihood of "They want a <name> <noun>." after each
    message minus after a neutral request; None when the generator cannot score."""
    import numpy as np

    score = getattr(generator, "loglikelihood", None)
    if score is None:
        return None
    answers = [f"They want a {n} {noun}." for n in names]
    asks = [NEUTRAL_REQUEST] + list(messages)
    try:
        got = score([category_prompt(m, noun) for m in asks for _ in names], answers * len(asks))
    except NotImplementedError:
        return None
    ll = np.array([lp for lp, _ in got], np.float64).reshape(len(asks), len(names))
    return ll[1:] - ll[:1]


def category_text(category: str, noun: str = "movie") -> str:
    return f"a {spoken(category)} {noun}"


def clean_request(text: str, fallback: str) -> str:
    """The first line of the LM's rewrite without quotes or a label; ``fallback`` if empty."""
    line = next((x for x in str(text).splitlines() if x.strip()), "")
    line = re.sub(r'^(description|request|answer|the user wants)\s*:\s*', "", line.strip(),
                  flags=re.I)
    line = re.sub(r'^(a |the )?user (asks for|requests|wants)\s*', "", line, flags=re.I)
    line = line.strip(' "\'*.')
    return " ".join(line.split()[:30]) or fallback


@dataclass
class Conversation:
    """A multi-turn conversation for one user (``user_id=None``: no history, requests only).

    Parameters
    ----------
    model, dataset : a fitted text model (m6) and its dataset
    user_id : raw user id
    generator : a `Generator`
    k : items per reply
    steer : ``both`` | ``lm`` | ``turns`` (see the module docstring)
    query_weight, query_decay, query_attributes : as in `m6rec.recommend.recommend_for_user`:
        the request weighs 2 against the history (in a conversation the user says what they
        want now), all turns weigh alike (a follow-up usually adds to the request) and the
        category match 0.8 of the request match (docs/experiments/generative.md)
    cache : a `m6rec.text.generate.GenerationCache` (None: the default one)
    rank : ``rank(queries) -> {"strategy", "items": [{"item_id", "score", "title"}]}``, the
        ranking the requests steer (default: `m6rec.recommend.recommend_for_user` over
        ``dataset``; the service passes its engine, which also reads stored events)
    catalogue : (item ids, titles, categories) the returned items come from (default: the
        dataset's; the service passes its live catalogue, posted items included)
    checker : a `m6rec.explain.grounded.GroundingChecker` over that catalogue
    """

    model: Any
    dataset: Dataset
    user_id: str | None
    generator: Any
    k: int = 10
    steer: str = "categories"
    query_weight: float = 2.0
    query_decay: float = 1.0
    query_attributes: float = 0.8
    cache: Any = None
    rank: Callable[[list[str]], dict[str, Any]] | None = None
    catalogue: tuple[Sequence[str], Sequence[str], Sequence[Sequence[str]]] | None = None
    checker: Any = None
    messages: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    #: steer="categories": the category each message asked for, oldest first
    picks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.steer not in STEER:
            raise ValueError(f"steer must be one of {', '.join(STEER)}, got {self.steer!r}")

    def queries(self) -> list[str]:
        """The texts that steer the ranking now, oldest first."""
        if self.steer == "categories":
            return [t for m, c in zip(self.messages, self.requests, strict=True) for t in (m, c)]
        if self.steer == "turns":
            return list(self.messages)
        if self.steer == "lm":
            return list(self.requests)
        return list(self.messages) + self.requests[-1:]

    def rewrite(self, messages: list[str]) -> str:
        from m6rec.text.generate import GenerationSettings, generate_cached

        settings = GenerationSettings(max_tokens=24, system=REWRITE_SYSTEM)
        (text,), _ = generate_cached(self.generator, [rewrite_prompt(messages)], settings,
                                     self.cache)
        return clean_request(text, messages[-1])

    def ask(self, message: str) -> dict[str, Any]:
        """One turn: ``{"request", "queries", "strategy", "reply", "reply_raw", "replaced",
        "violations", "items"}``."""
        message = _message(message, len(self.messages))
        self.messages.append(message)
        if self.steer == "categories":
            self.picks += self.categories_of([message])
            self.requests.append(category_text(self.picks[-1], self._noun()))
        else:
            self.requests.append(self.rewrite(self.messages) if self.steer != "turns"
                                 else message)
        return self._answer(message)

    def categories_of(self, messages: list[str]) -> list[str]:
        """The catalogue category each message asks for (`pick_categories`)."""
        _, _, cats = self._catalogue()
        names = sorted({c for cs in cats for c in cs if c != "unknown"})
        return pick_categories(messages, names, self.generator,
                               lambda t: self.model.encode_texts(t, space="lm"), self._noun())

    def _catalogue(self):
        return self.catalogue or (self.dataset.item_ids, self.dataset.titles(),
                                  self.dataset.item_categories())

    def _noun(self) -> str:
        from m6rec.text.templates import Templates

        return "movie" if Templates().verb_for(self.dataset.name).lower() == "watched" else "item"

    def answer(self, messages: Sequence[str]) -> dict[str, Any]:
        """The reply to a whole conversation given at once (the user's messages, oldest
        first), as `ask` would give after the last of them: the service keeps no state
        between requests. Only the rewrites the steering reads are generated (``lm``: one per
        turn, cached; ``both``: the last one)."""
        if isinstance(messages, str) or not len(messages):
            raise ValueError("messages: give at least one message (a list of strings)")
        self.messages = [_message(m, n) for n, m in enumerate(messages)]
        if self.steer == "categories":
            self.picks = self.categories_of(self.messages)
            self.requests = [category_text(c, self._noun()) for c in self.picks]
        elif self.steer == "turns":
            self.requests = list(self.messages)
        elif self.steer == "lm":
            self.requests = [self.rewrite(self.messages[: n + 1])
                             for n in range(len(self.messages))]
        else:
            self.requests = [self.rewrite(self.messages)]
        return self._answer(self.messages[-1])

    def _answer(self, message: str) -> dict[str, Any]:
        from m6rec.recommend import recommend_for_user

        queries = self.queries()
        if self.rank is not None:
            result = self.rank(queries)
        else:
            result = recommend_for_user(self.model, self.dataset, self.user_id, k=self.k,
                                        query=queries, query_weight=self.query_weight,
                                        query_decay=self.query_decay,
                                        query_attributes=self.query_attributes)
        reply = self.reply(message, result["items"])
        request = self.requests[-1]
        if self.steer == "categories":  # what the conversation asks for, in one phrase
            said = " and ".join(dict.fromkeys(spoken(c) for c in self.picks))
            request = f"a {said} {self._noun()}"
        return {"request": request, "queries": queries,
                "strategy": result.get("strategy", ""), **reply, "items": result["items"]}

    def reply(self, message: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        """The LM's reply naming only ``items``, checked (template on failure)."""
        from m6rec.explain.grounded import GroundingChecker, ground, natural_title
        from m6rec.text.generate import GenerationSettings, generate_cached

        ids, titles, cats = self._catalogue()
        if self.checker is None:
            self.checker = GroundingChecker.for_dataset(self.dataset, titles)
        pos = {str(i): n for n, i in enumerate(ids)}
        idx = [pos[it["item_id"]] for it in items if it["item_id"] in pos]
        shown = items[:3]
        names = [natural_title(it["title"]) for it in shown]
        template = (f"Here are picks for you: {_join(names)}." if names
                    else "I found nothing that fits.")
        if not shown:
            return {"reply": template, "reply_raw": "", "replaced": 0, "violations": []}
        listing = "\n".join(
            f"- {natural_title(it['title'])} ({', '.join(c for c in cats[pos[it['item_id']]] if c != 'unknown')})"
            for it in shown)
        prompt = (f'The user said: "{message}"\nThe recommender found these movies:\n{listing}\n'
                  "Write a short friendly reply that recommends them.")
        settings = GenerationSettings(max_tokens=60, system=REPLY_SYSTEM)
        (raw,), _ = generate_cached(self.generator, [prompt], settings, self.cache)
        evidence = {"items": idx, "categories": sorted({c for i in idx for c in cats[i]}),
                    "roles": [], "numbers": [str(len(shown))]}
        ph = ground(raw, template, self.checker, evidence, words=self.messages)
        return {"reply": ph.text, "reply_raw": ph.raw, "replaced": ph.replaced,
                "violations": [v for c in ph.checks for v in c.violations]}


def _message(message: Any, n: int) -> str:
    if not isinstance(message, str):
        raise ValueError(f"messages[{n}]: must be a string, got {type(message).__name__}")
    if not message.strip():
        raise ValueError(f"messages[{n}]: an empty message")
    return message.strip()


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
