"""The generative LM in the service: ``explain=true&phrasing=lm`` and
``POST /users/{id}/conversation``, with the tiny stand-in generator (a real, randomly
initialised causal LM) and, where a fixed text is needed to test the check, a scripted one."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from m6rec.explain.grounded import evidence_of, natural_title
from m6rec.serve.app import create_app
from m6rec.serve.generative import LazyGenerator
from m6rec.serve.settings import ServeSettings
from m6rec.text.generate import tiny_model

KEY, READ = {"X-API-Key": "secret"}, {"X-API-Key": "r-key"}
KITCHEN_TITLE = "pasta recipes kitchen"  # an item of the kitchen topic (tests/serve/conftest.py)
SPACE_TITLE = "rocket launch to mars"


class Scripted:
    """Fixed texts: a rewrite prompt gets ``request``; an explanation prompt gets a sentence
    naming its recommended item, then ``extra``; any other prompt gets ``reply``."""

    def __init__(self, request="", reply="", extra="", likes=None):
        self.request, self.reply, self.extra, self.likes = request, reply, extra, likes
        self.name = f"scripted:{request}:{reply}:{extra}:{likes}"

    def loglikelihood(self, contexts, continuations, **kw):
        """Likes the category ``likes`` after any message but the neutral request."""
        if self.likes is None:
            raise NotImplementedError
        return [(0.0 if f" {self.likes} " in x and '"something"' not in c else -5.0, 4)
                for c, x in zip(contexts, continuations, strict=True)]

    def generate(self, prompts, **kw):
        out = []
        for p in prompts:
            m = re.search(r"^Recommended \w+: (.+?)(?: \(.*\))?$", p, re.M)
            if m:
                out.append(f"You may like {m.group(1)}. {self.extra}".strip())
            else:
                out.append(self.request if "kind of movie" in p else self.reply)
        return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("gen") / "tiny")


def make(model_dir, tmp_path, generator, **kw) -> TestClient:
    s = ServeSettings(model_dir=model_dir, db=f"sqlite:///{tmp_path}/events.db", data=None,
                      api_key="secret", read_key="r-key", generator=str(generator),
                      generation_cache=str(tmp_path / "texts"), **kw)
    return TestClient(create_app(s))


@pytest.fixture(scope="module")
def client(m6_dir, tiny_dir, tmp_path_factory):
    with make(m6_dir, tmp_path_factory.mktemp("gensrv"), tiny_dir) as c:
        yield c


def recs(client, user, **params):
    r = client.get(f"/users/{user}/recommendations", params=params, headers=KEY)
    assert r.status_code == 200, r.text
    return r.json()


def evidence(engine, item):
    """What the explanation of a returned item may name (`m6rec.explain.grounded`)."""
    from m6rec.explain.explanation import Explanation

    ex = Explanation(item["item_id"], item["title"], 0.0, item["method"], item["history"],
                     item.get("categories") or [], item.get("relations") or [])
    ids, _, cats = engine.catalogue_lists()
    return evidence_of(ex, {i: n for n, i in enumerate(ids)}, cats)


def grounded(engine, text, ev):
    return engine.grounding_checker().check(text, ev["items"], ev["categories"], ev["roles"],
                                            ev["numbers"])


def sentences_counted(client, use, outcome):
    body = client.get("/metrics").text
    m = re.search(rf'm6rec_generated_sentences_total{{outcome="{outcome}",use="{use}"}} (\S+)',
                  body)
    return float(m.group(1)) if m else 0.0


def test_lm_phrasing_keeps_the_ranking_and_names_only_evidence(client):
    engine = client.app.state.engine
    assert client.app.state.generator._generator is None  # nothing loaded before it is asked
    before = sentences_counted(client, "explain", "replaced")
    plain = recs(client, "u0", k=5, explain="true")
    lm = recs(client, "u0", k=5, explain="true", phrasing="lm")
    assert [(i["item_id"], i["score"]) for i in lm["items"]] == [
        (i["item_id"], i["score"]) for i in plain["items"]]
    phrased = [it for it in lm["items"] if "lm" in it]
    assert len(phrased) == lm["phrasing"]["phrased"] == sum(bool(i["history"]) for i in
                                                            plain["items"]) > 0
    assert lm["phrasing"]["generator"] == client.app.state.generator.name
    assert lm["phrasing"]["replaced"] == sum(it["lm"]["replaced"] for it in phrased)
    for it in phrased:  # whatever the LM wrote, what is sent names only the evidence
        check = grounded(engine, it["because"], evidence(engine, it))
        assert check.ok, (it["because"], check.violations)
    assert sentences_counted(client, "explain", "replaced") - before == lm["phrasing"]["replaced"]
    loaded = client.app.state.generator.get()
    recs(client, "u0", k=3, explain="true", phrasing="lm")
    assert client.app.state.generator.get() is loaded  # loaded once per app


def test_a_sentence_outside_the_evidence_is_replaced_and_counted(client):
    engine = client.app.state.engine
    gen = client.app.state.generator
    client.app.state.generator = LazyGenerator(Scripted(extra=f"Also try {KITCHEN_TITLE}."),
                                               cache_dir=gen.cache_dir)
    try:
        before = sentences_counted(client, "explain", "replaced")
        got = recs(client, "u0", k=4, explain="true", phrasing="lm")
        steered = recs(client, "u0", k=2, explain="true", phrasing="lm", query="stars")
    finally:
        client.app.state.generator = gen
    assert got["phrasing"]["phrased"] == 4  # a space user: every item cites space history
    kitchen = engine.titles.index(KITCHEN_TITLE)
    for it in got["items"]:
        assert kitchen not in evidence(engine, it)["items"]
        kept, template = it["because"].split(". ", 1)
        assert kept == f"You may like {natural_title(it['title'])}"  # grounded: kept
        assert template.startswith("Because you ") and KITCHEN_TITLE not in it["because"]
        assert it["lm"]["replaced"] == 1 and KITCHEN_TITLE in it["lm"]["violations"][0]
        assert it["lm"]["raw"].endswith(f"Also try {KITCHEN_TITLE}.")
    assert got["phrasing"]["replaced"] == got["phrasing"]["templated"] == 4
    assert steered["phrasing"]["replaced"] == steered["phrasing"]["phrased"]
    assert sentences_counted(client, "explain", "replaced") - before == (
        4 + steered["phrasing"]["replaced"])
    for it in steered["items"]:  # the request's sentence follows the phrased one
        assert it["because"].endswith('; matches your request "stars".')


@pytest.mark.parametrize("params,why", [
    ({"phrasing": "lm"}, "explain=true"),
    ({"phrasing": "poetry", "explain": "true"}, "phrasing"),
    ({"phrasing": "lm", "explain": "true", "k": 21}, "k must be <= 20"),
])
def test_bad_phrasing_requests_are_422(client, params, why):
    r = client.get("/users/u0/recommendations", params=params, headers=KEY)
    assert r.status_code == 422 and why in r.text, r.text


def test_conversation_reply_names_only_returned_items(client):
    engine = client.app.state.engine
    r = client.post("/users/u0/conversation", json={"messages": ["baking bread recipes"],
                                                    "k": 4}, headers=READ)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["queries"][0] == "baking bread recipes" and out["queries"][-1] == out["request"]
    assert out["strategy"] == "history+query" and len(out["items"]) == 4
    s = client.app.state.settings
    ref = engine.recommend("u0", 4, query=out["queries"], query_weight=s.conversation_weight,
                           query_decay=s.conversation_decay,
                           query_attributes=s.conversation_attributes)  # the model ranks
    assert [(i["item_id"], i["score"]) for i in out["items"]] == [
        (i["item_id"], i["score"]) for i in ref["items"]]
    returned = [engine.item_index(i["item_id"]) for i in out["items"]]
    cats = sorted({c for i in returned for c in engine.categories[i]})
    check = engine.grounding_checker().check(out["reply"], returned, cats, (), ["3"],
                                             out["queries"])
    assert check.ok, (out["reply"], check.violations)
    assert out["generator"] == client.app.state.generator.name


def test_conversation_turns_steer_and_bad_replies_fall_back(client):
    gen = client.app.state.generator
    client.app.state.generator = LazyGenerator(
        Scripted(request="baking bread cake recipes", reply=f"Try {SPACE_TITLE} tonight.",
                 likes="cooking"), cache_dir=gen.cache_dir)
    try:
        first = client.post("/users/nobody/conversation",
                            json={"messages": ["something for the weekend"], "k": 3},
                            headers=KEY).json()
        two = client.post("/users/nobody/conversation",
                          json={"messages": ["something for the weekend", "with cake"]},
                          headers=KEY).json()
    finally:
        client.app.state.generator = gen
    # each message, then the category the LM reads in it (here: cooking)
    assert first["queries"] == ["something for the weekend", "a cooking item"]
    assert first["strategy"] == "query" and first["request"] == "a cooking item"
    assert all(i["item_id"].startswith("k") for i in first["items"])  # the category steered
    assert first["replaced"] == 1 and SPACE_TITLE in first["violations"][0]
    names = [natural_title(i["title"]) for i in first["items"]]
    assert first["reply"] == f"Here are picks for you: {names[0]}, {names[1]} and {names[2]}."
    assert two["queries"] == ["something for the weekend", "a cooking item", "with cake",
                              "a cooking item"] and len(two["items"]) == 10


def test_conversation_through_the_lm_rewrite(client):
    from m6rec.serve.generative import converse

    engine = client.app.state.engine
    lm = LazyGenerator(Scripted(request="baking bread cake recipes",
                                reply="Enjoy these kitchen picks."),
                       cache_dir=client.app.state.generator.cache_dir)
    out = converse(engine, "nobody", ["something for the weekend"], 3, lm, steer="both")
    assert out["queries"] == ["something for the weekend", "baking bread cake recipes"]
    assert out["request"] == "baking bread cake recipes"
    assert out["reply"] == "Enjoy these kitchen picks."
    assert all(i["item_id"].startswith("k") for i in out["items"])  # the rewrite steered


@pytest.mark.parametrize("body", [
    {}, {"messages": []}, {"messages": [""]}, {"messages": ["   "]}, {"messages": [7]},
    {"messages": "just a string"}, {"messages": ["x"] * 21}, {"messages": ["x" * 501]},
    {"messages": ["a\x00b"]}, {"messages": ["ok"], "k": 0}, {"messages": ["ok"], "k": 101},
    {"messages": ["ok"], "extra": 1}, None,
])
def test_bad_turns_are_422(client, body):
    r = client.post("/users/u0/conversation", json=body, headers=KEY)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid request"


def test_conversation_needs_a_key_and_a_valid_id(client):
    body = {"messages": ["stars"]}
    assert client.post("/users/u0/conversation", json=body).status_code == 401
    assert client.post("/users/u0/conversation", json=body,
                       headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/users/.hidden/conversation", json=body, headers=KEY).status_code == 422


def test_id_models_and_missing_generators_are_not_5xx(ease_dir, m6_dir, tmp_path):
    with make(ease_dir, tmp_path / "e", tmp_path / "none") as c:
        r = c.post("/users/u0/conversation", json={"messages": ["stars"]}, headers=KEY)
        assert r.status_code == 422 and "text model" in r.json()["detail"], r.text
    with make(m6_dir, tmp_path / "m", tmp_path / "no-such-model") as c:
        assert recs(c, "u0", k=2, explain="true")["items"]  # the LM is not needed here
        r = c.get("/users/u0/recommendations", params={"explain": "true", "phrasing": "lm"},
                  headers=KEY)
        assert r.status_code == 503 and "no-such-model" in r.json()["detail"], r.text
        r = c.post("/users/u0/conversation", json={"messages": ["stars"]}, headers=KEY)
        assert r.status_code == 503, r.text
