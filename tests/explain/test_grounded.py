"""LM-phrased explanations, pitches and the evidence checker."""

from __future__ import annotations

import numpy as np
import pytest

from m6rec.explain import Explainer
from m6rec.explain.grounded import (
    GroundingChecker,
    describe_item,
    ground,
    natural_title,
    phrase_explanations,
    split_sentences,
)
from m6rec.text.generate import GenerationCache, TransformersGenerator, tiny_model


@pytest.fixture(scope="module")
def checker(ml100k):
    return GroundingChecker.for_dataset(ml100k)


@pytest.fixture(scope="module")
def ix(ml100k):
    return {t: i for i, t in enumerate(ml100k.titles())}


@pytest.fixture(scope="module")
def tiny_gen(tmp_path_factory):
    return TransformersGenerator(tiny_model(tmp_path_factory.mktemp("g") / "tiny"))


def test_natural_title():
    assert natural_title("Shawshank Redemption, The") == "The Shawshank Redemption"
    assert natural_title("Apollo 13") == "Apollo 13"


@pytest.mark.parametrize("text, ok, why", [
    ("Because you loved Apollo 13 and Forrest Gump, E.T. the Extra-Terrestrial is a drama "
     "for you.", True, ""),
    ("E.T. shares an actor with Dead Poets Society, like The Shawshank Redemption.", True, ""),
    ("You watched Apollo 13 (4%), so try this.", True, ""),
    ("You watched Apollo 13, so you may like Titanic too.", False, "title"),
    ("Since you enjoyed Star Wars, this is a great pick.", False, "title"),
    ("It was directed by Steven Spielberg.", False, "relation"),
    ("A film by Steven Spielberg.", False, "name"),
    ("It came out in 1982.", False, "number"),
    ("This heartwarming comedy is perfect for you.", False, "category"),
    ("Psycho fans will like it.", False, "title"),
    ("Psycho's fans will like it.", False, "title"),
    ("Apollo 13's crew made Forrest Gump's fans cheer.", True, ""),
    ("I'm sure this Drama suits you.", True, ""),
    ("A War film for you.", False, "category"),  # the genre, not the film "War, The"
])
def test_checker_flags_what_is_outside_the_evidence(checker, ix, text, ok, why):
    ev = [ix[t] for t in ("E.T. the Extra-Terrestrial", "Apollo 13", "Forrest Gump",
                          "Dead Poets Society", "Shawshank Redemption, The")]
    r = checker.check(text, ev, ["Drama", "Children's"], ["actor"], ["4", "3"])
    assert r.ok is ok, r.violations
    if not ok:
        assert any(v.startswith(why) for v in r.violations), r.violations


def test_ground_replaces_failing_sentences_and_counts(checker, ix):
    ev = {"items": [ix["Apollo 13"]], "categories": ["Drama"], "roles": [], "numbers": []}
    ph = ground("You liked Apollo 13. You will love Titanic too.", "TEMPLATE.", checker, ev)
    assert ph.replaced == 1 and ph.text == "You liked Apollo 13. TEMPLATE."
    assert not ph.grounded_raw and "Titanic" in ph.raw
    ph = ground("", "TEMPLATE.", checker, ev)
    assert ph.replaced == 1 and ph.text == "TEMPLATE."
    assert split_sentences("Sure! E.T. is a fine film. You watched it. Third.") == [
        "E.T. is a fine film.", "You watched it."]
    assert split_sentences("You watched it. And then Sunset Bl") == ["You watched it."]


class Scripted:
    """A test double: answers every prompt with the same text (to drive the check's branches)."""

    def __init__(self, text):
        self.text = text
        self.name = f"scripted:{text}"  # equal names must mean equal texts (the cache key)

    def generate(self, prompts, **kw):
        return [self.text for _ in prompts]


@pytest.fixture(scope="module")
def ease_ml(ml100k):
    from m6rec.registry import build_model

    return build_model("ease").fit(ml100k)


def test_phrase_explanations_only_names_the_evidence(ml100k, ease_ml, checker, tiny_gen, tmp_path):
    h = ml100k.histories(np.array([0]))
    ids, _ = ease_ml.recommend(h, k=4)
    exps = Explainer(ease_ml, ml100k).explain(h.row(0), ids[0])
    cache = GenerationCache(tmp_path)
    # a generator that names a film outside every evidence: all replaced by the template
    bad = phrase_explanations(exps, Scripted("You will love Nadja. And try Crumb too."), ml100k,
                              checker, cache)
    assert all(p.text == p.template == e.sentence for p, e in zip(bad, exps, strict=True))
    assert all(p.replaced == 2 for p in bad)
    # one that names the recommended item only: kept
    good = phrase_explanations(exps[:1], Scripted(f"You may enjoy {exps[0].title} next."),
                               ml100k, checker, cache)
    assert good[0].replaced == 0 and good[0].text == f"You may enjoy {exps[0].title} next."
    # the tiny real model: whatever it writes, a sentence kept passes the check
    out = phrase_explanations(exps, tiny_gen, ml100k, checker, cache)
    for p in out:
        assert p.text.count(p.template) <= 1
        assert p.replaced == sum(not c.ok for c in p.checks) or (not p.checks and p.replaced == 1)
        for c in p.checks:
            assert (c.text in p.text) is c.ok or c.text == p.template


def test_describe_item_pitch_is_checked(ml100k, ease_ml):
    uid, item = str(ml100k.user_ids[0]), str(ml100k.item_ids[49])
    res = describe_item(ease_ml, ml100k, uid, item, Scripted("Watch Titanic now."))
    assert res["replaced"] == 1 and "Titanic" not in res["pitch"]
    assert res["pitch"].startswith(natural_title(res["title"]))
    title = natural_title(res["title"])
    res = describe_item(ease_ml, ml100k, uid, item, Scripted(f"You should watch {title} tonight."))
    assert res["replaced"] == 0 and res["pitch"] == f"You should watch {title} tonight."
    with pytest.raises(ValueError):
        describe_item(ease_ml, ml100k, uid, "no-such-item", Scripted("x"))
