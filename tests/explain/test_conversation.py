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


@pytest.mark.parametrize("steer", ["both", "lm", "turns"])
def test_turns_steer_the_ranking_like_text_queries(tiny_m6, checkerboard, steer, tmp_path):
    conv = Conversation(tiny_m6, checkerboard, "u0", Scripted("odd items", "Here you go."),
                        k=5, steer=steer, cache=GenerationCache(tmp_path))
    conv.ask("an even item")
    turn = conv.ask("now something odd")
    expected = {"both": ["an even item", "now something odd", "odd items"],
                "lm": ["odd items", "odd items"],
                "turns": ["an even item", "now something odd"]}[steer]
    assert turn["queries"] == expected
    ref = recommend_for_user(tiny_m6, checkerboard, "u0", k=5, query=expected,
                             query_decay=conv.query_decay)
    assert [it["item_id"] for it in turn["items"]] == [it["item_id"] for it in ref["items"]]


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
        assert len(turn["items"]) == 4 and len(turn["queries"]) == n + 1
        assert turn["queries"][:n] == conv.messages
