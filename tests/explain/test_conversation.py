"""Conversational recommendation: the LM's requests steer the model's ranking; replies are
checked against the returned items."""

from __future__ import annotations

import pytest

from m6rec.conversation import Conversation, clean_request, rewrite_prompt
from m6rec.recommend import recommend_for_user
from m6rec.text.generate import GenerationCache, TransformersGenerator, tiny_model


class Scripted:
    """A test double: the rewrite prompt gets ``request``, any other prompt ``reply``."""

    def __init__(self, request, reply):
        self.request, self.reply = request, reply
        self.name = f"scripted:{request}:{reply}"

    def generate(self, prompts, **kw):
        return [self.request if "kind of movie" in p else self.reply for p in prompts]


@pytest.fixture(scope="module")
def tiny_gen(tmp_path_factory):
    return TransformersGenerator(tiny_model(tmp_path_factory.mktemp("g") / "tiny"))


def test_prompts_and_cleaning():
    assert '"a" Then they say: "b"' in rewrite_prompt(["a", "b"])
    assert clean_request('Request: "odd items"\nmore', "x") == "odd items"
    assert clean_request('A user asks for "odd items".', "x") == "odd items"
    assert clean_request("  \n", "fallback") == "fallback"


@pytest.mark.parametrize("steer", ["categories", "both", "lm", "turns"])
def test_turns_steer_the_ranking_like_text_queries(tiny_m6, checkerboard, steer, tmp_path):
    conv = Conversation(tiny_m6, checkerboard, "u0", Scripted("odd items", "Here you go."),
                        k=5, steer=steer, cache=GenerationCache(tmp_path))
    conv.ask("an even item")
    turn = conv.ask("now something odd")
    from m6rec.conversation import category_text

    expected = {"both": ["an even item", "now something odd", "odd items"],
                "lm": ["odd items", "odd items"],
                "turns": ["an even item", "now something odd"],
                # each message, then its category as a text
                "categories": ["an even item", *(category_text(c, "item") for c in
                                                 conv.picks[:1]),
                               "now something odd", *(category_text(c, "item") for c in
                                                      conv.picks[1:])]}[steer]
    assert len(conv.picks) == (2 if steer == "categories" else 0)
    assert turn["queries"] == expected
    ref = recommend_for_user(tiny_m6, checkerboard, "u0", k=5, query=expected,
                             query_decay=conv.query_decay, query_weight=conv.query_weight,
                             query_attributes=conv.query_attributes)
    assert [it["item_id"] for it in turn["items"]] == [it["item_id"] for it in ref["items"]]
    again = Conversation(tiny_m6, checkerboard, "u0", conv.generator, k=5, steer=steer,
                         cache=conv.cache).answer(conv.messages)  # stateless: same answer
    assert again["queries"] == expected and again["items"] == turn["items"]


class Likes(Scripted):
    """Scores "They want a <name> ..." by whether the message holds ``word`` and the name
    is ``name`` (a stand-in whose preference is known)."""

    def __init__(self, word, name):
        super().__init__("", "Here you go.")
        self.word, self.category, self.name = word, name, f"likes:{word}:{name}"

    def loglikelihood(self, contexts, continuations, **kw):
        return [(0.0 if (self.word in c and f" {self.category} " in x) else -5.0, 5)
                for c, x in zip(contexts, continuations, strict=True)]


def test_the_lm_likelihood_picks_the_category(tiny_m6, checkerboard, tmp_path):
    import numpy as np

    from m6rec.conversation import pick_categories, spoken

    enc = lambda t: tiny_m6.encode_texts(t, space="lm")  # noqa: E731
    names = ["even", "odd", "red", "green", "blue"]
    v = enc(names + ["zz please"])
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos = v[:-1] @ v[-1]
    z = lambda a: (a - a.mean()) / a.std()  # noqa: E731
    # no loglikelihood: the text encoder's closest category
    assert pick_categories(["zz please"], names, Scripted("", ""), enc) == [
        names[int(np.argmax(cos))]]
    picks = []
    for want in names:  # an LM preferring ``want`` after "zz" (not after the neutral request)
        lm = np.array([0.0 if n == want else -5.0 for n in names]) + 5.0
        got = pick_categories(["zz please"], names, Likes("zz", want), enc)[0]
        assert got == names[int(np.argmax(z(cos) + z(lm)))]
        picks.append(got)
    assert sum(p == w for p, w in zip(picks, names, strict=True)) >= 4  # the LM mostly decides
    assert spoken("Sci-Fi") == "science fiction" and spoken("Film-Noir") == "film noir"
    conv = Conversation(tiny_m6, checkerboard, None, Likes("zz", "odd"), k=6,
                        cache=GenerationCache(tmp_path))
    turn = conv.ask("zz please")
    assert conv.picks == ["odd"] and turn["queries"] == ["zz please", "a odd item"]
    assert turn["request"] == "a odd item"


def test_reply_names_only_returned_items(tiny_m6, checkerboard, tmp_path):
    cache = GenerationCache(tmp_path)
    bad = Conversation(tiny_m6, checkerboard, "u0", Scripted("odd", "Try Titanic tonight."),
                       cache=cache, k=3)
    turn = bad.ask("something odd")
    assert turn["replaced"] == 1 and turn["reply"].startswith("Here are picks for you:")
    good = Conversation(tiny_m6, checkerboard, "u0", Scripted("odd", "These odd items suit you."),
                        cache=cache, k=3)
    assert good.ask("something odd")["reply"] == "These odd items suit you."
    with pytest.raises(ValueError):
        good.ask("   ")
    with pytest.raises(ValueError):
        Conversation(tiny_m6, checkerboard, "u0", good.generator, steer="nope")


def test_multi_turn_with_the_tiny_model(tiny_m6, checkerboard, tiny_gen, tmp_path):
    conv = Conversation(tiny_m6, checkerboard, None, tiny_gen, k=4,
                        cache=GenerationCache(tmp_path))
    for n, msg in enumerate(["an odd item", "but even", "odd again"], 1):
        turn = conv.ask(msg)
        assert len(turn["items"]) == 4 and len(turn["queries"]) == 2 * n
        assert turn["queries"][::2] == conv.messages  # each message, then its category
