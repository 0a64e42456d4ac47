"""The service's generative LM (no FastAPI here): loaded once per app on first use, and the two
things it writes there: explanations phrased from the explainer's evidence
(``explain=true&phrasing=lm``) and conversation replies (``POST /users/{id}/conversation``).

Every generated sentence is checked against its evidence (`m6rec.explain.grounded`); a sentence
naming anything else is replaced by the template sentence, and each replacement is counted.
The model always ranks: the LM only turns a conversation into the request text that steers the
ranking, and phrases what the ranking returned.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from m6rec.serve.engine import Engine, Unsupported


class GeneratorUnavailable(RuntimeError):
    """The configured generator cannot be loaded (503)."""


class LazyGenerator:
    """The app's `m6rec.text.generate.Generator`, loaded on first use, once.

    Parameters
    ----------
    spec : a spec for `m6rec.text.generate.load_generator` (``smollm2``, a GGUF file, a model
        directory) or a ready generator object
    cache_dir : folder of the generation cache (None: ``M6REC_CACHE_DIR/generations``)
    threads : torch threads while generating (None: torch's setting)

    Generation runs one call at a time (a CPU model gains nothing from two at once, and the
    backend loads its weights on the first call).
    """

    def __init__(self, spec: Any, cache_dir: str | None = None, threads: int | None = None):
        self.spec, self.cache_dir, self.threads = spec, cache_dir, threads
        self._generator: Any = None if isinstance(spec, str) else spec
        self._cache: Any = None
        self._load_lock = threading.Lock()
        self._use_lock = threading.Lock()

    def get(self) -> Any:
        if self._generator is None:
            with self._load_lock:
                if self._generator is None:
                    from m6rec.text.generate import load_generator

                    kwargs = {"threads": self.threads} if self.threads else {}
                    try:
                        self._generator = load_generator(self.spec, **kwargs)
                    except (FileNotFoundError, ValueError, OSError) as e:
                        raise GeneratorUnavailable(f"generator {self.spec!r}: {e}") from None
        return self._generator

    @property
    def name(self) -> str:
        return self.get().name

    @property
    def cache(self) -> Any:
        if self._cache is None:
            from m6rec.text.generate import GenerationCache

            self._cache = GenerationCache(self.cache_dir)
        return self._cache

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str],
                      system: str | None = None, chat: bool = True) -> list[tuple[float, int]]:
        """The generator's `m6rec.text.generate.Scorer` method (NotImplementedError when it
        has none)."""
        generator = self.get()
        score = getattr(generator, "loglikelihood", None)
        if score is None:
            raise NotImplementedError(f"generator {generator.name!r} cannot score text")
        with self._use_lock:
            return score(contexts, continuations, system=system, chat=chat)

    def generate(self, prompts: Sequence[str], max_tokens: int = 64, temperature: float = 0.0,
                 seed: int = 0, system: str | None = None) -> list[str]:
        generator = self.get()
        with self._use_lock:
            try:
                return generator.generate(prompts, max_tokens=max_tokens,
                                          temperature=temperature, seed=seed, system=system)
            except (FileNotFoundError, OSError) as e:  # weights missing or unreadable
                raise GeneratorUnavailable(f"generator {self.spec!r}: {e}") from None


def phrase_result(engine: Engine, result: dict[str, Any], turns: Sequence[str],
                  generator: LazyGenerator) -> dict[str, Any]:
    """Rewrite the ``because`` of every explained item of ``result`` (what `Engine.recommend`
    returned with ``explain=True``) by the LM, checked against the item's evidence.

    Items with cited history items are phrased (all in one batched, cached call); the others
    (popular, profile, a request alone) keep their sentence. Each phrased item gets ``lm``:
    ``{"raw", "replaced", "violations"}``; the result gets ``phrasing``: ``{"generator",
    "phrased", "replaced", "templated"}`` (sentences replaced by the template, items whose
    text holds a template sentence). With a request, its sentence follows as with templates.
    """
    from m6rec.explain.explanation import Explanation, sentence
    from m6rec.explain.grounded import phrase_explanations
    from m6rec.recommend import request_sentence

    items = result["items"]
    todo = [n for n, it in enumerate(items) if it.get("history")]
    verb = engine.explainer.verb
    exps = []
    for n in todo:
        it = items[n]
        ex = Explanation(it["item_id"], it["title"], float(it.get("explained_score", it["score"])),
                         it.get("method", "leave-one-out"), list(it.get("history") or []),
                         list(it.get("categories") or []), list(it.get("relations") or []))
        ex.sentence = sentence(ex, verb)
        exps.append(ex)
    ids, titles, cats = engine.catalogue_lists()
    phrased = phrase_explanations(exps, generator, engine.dataset, engine.grounding_checker(),
                                  generator.cache, item_ids=ids, titles=titles,
                                  categories=cats) if exps else []
    replaced = templated = 0
    last = turns[-1] if turns else None
    for n, ph in zip(todo, phrased, strict=True):
        it = items[n]
        text = ph.text if last is None else request_sentence(ph.text, last, True)
        it["because"] = it["sentence"] = text
        it["lm"] = {"raw": ph.raw, "replaced": ph.replaced,
                    "violations": [v for c in ph.checks for v in c.violations]}
        replaced += ph.replaced
        templated += ph.template in ph.text
    result["phrasing"] = {"generator": generator.name, "phrased": len(todo),
                          "replaced": replaced, "templated": templated}
    return result


def converse(engine: Engine, user_id: str, messages: Sequence[str], k: int,
             generator: LazyGenerator, steer: str = "categories", query_weight: float = 2.0,
             query_decay: float = 1.0, query_attributes: float = 0.8) -> dict[str, Any]:
    """The reply to a conversation (the user's messages so far, oldest first) through
    `m6rec.conversation.Conversation`, ranked by ``engine`` (the user's stored events count)
    over its live catalogue: ``{"user_id", "strategy", "request", "queries", "reply",
    "reply_raw", "replaced", "violations", "generator", "items"}``."""
    from m6rec.conversation import Conversation

    if not engine.text_mode:
        raise Unsupported(f"a conversation needs a text model; the loaded model is "
                          f"{engine.model_name!r}")

    def rank(queries: list[str]) -> dict[str, Any]:
        return engine.recommend(user_id, k, query=queries, query_weight=query_weight,
                                query_decay=query_decay, query_attributes=query_attributes)

    conv = Conversation(engine.model, engine.dataset, user_id, generator, k=k, steer=steer,
                        query_weight=query_weight, query_decay=query_decay,
                        query_attributes=query_attributes, cache=generator.cache, rank=rank, catalogue=engine.catalogue_lists(),
                        checker=engine.grounding_checker())
    turn = conv.answer(list(messages))
    return {"user_id": user_id, "generator": generator.name, **turn}
