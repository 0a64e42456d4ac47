"""Conversational recommendation: a generative LM talks, the recommender ranks.

Each user message goes through a `m6rec.text.generate.Generator` that rewrites the conversation
so far into one short request ("a scary horror film that is not too long"); the requests steer
the user's ranking exactly as text queries do (`m6rec.recommend.recommend_for_user` with
``query``: the model's LM reads each request against the item texts and categories, the latest
turn weighted most). The LM then phrases a reply from the returned items only, and the reply is
checked like an LM explanation (`m6rec.explain.grounded`): a sentence that names a title,
category, number or name that is not among the returned items is replaced by a template.

``steer``: what steers the ranking. ``both`` (default): the user's own messages, then the LM's
rewrite of the whole conversation as the latest turn; ``lm``: the rewrites only; ``turns``: the
messages only (no LM in the ranking).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from m6rec.data.dataset import Dataset

STEER = ("both", "lm", "turns")

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
    query_weight, query_decay : as in `m6rec.recommend.recommend_for_user`; the decay defaults
        to 1 (all turns weigh alike): a follow-up usually adds to the request, and on the
        genre benchmark 1 beats 0.5 on the combined request (docs/experiments/generative.md)
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
    steer: str = "both"
    query_weight: float = 1.0
    query_decay: float = 1.0
    cache: Any = None
    rank: Callable[[list[str]], dict[str, Any]] | None = None
    catalogue: tuple[Sequence[str], Sequence[str], Sequence[Sequence[str]]] | None = None
    checker: Any = None
    messages: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.steer not in STEER:
            raise ValueError(f"steer must be one of {', '.join(STEER)}, got {self.steer!r}")

    def queries(self) -> list[str]:
        """The texts that steer the ranking now, oldest first."""
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
        self.requests.append(self.rewrite(self.messages) if self.steer != "turns" else message)
        return self._answer(message)

    def answer(self, messages: Sequence[str]) -> dict[str, Any]:
        """The reply to a whole conversation given at once (the user's messages, oldest
        first), as `ask` would give after the last of them: the service keeps no state
        between requests. Only the rewrites the steering reads are generated (``lm``: one per
        turn, cached; ``both``: the last one)."""
        if isinstance(messages, str) or not len(messages):
            raise ValueError("messages: give at least one message (a list of strings)")
        self.messages = [_message(m, n) for n, m in enumerate(messages)]
        if self.steer == "turns":
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
                                        query_decay=self.query_decay)
        reply = self.reply(message, result["items"])
        return {"request": self.requests[-1], "queries": queries,
                "strategy": result.get("strategy", ""), **reply, "items": result["items"]}

    def reply(self, message: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        """The LM's reply naming only ``items``, checked (template on failure)."""
        from m6rec.explain.grounded import GroundingChecker, ground, natural_title
        from m6rec.text.generate import GenerationSettings, generate_cached

        ids, titles, cats = self.catalogue or (self.dataset.item_ids, self.dataset.titles(),
                                               self.dataset.item_categories())
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
