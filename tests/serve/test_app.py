"""The service end to end through FastAPI's TestClient (in-process, no network)."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from m6rec.serve.app import create_app
from m6rec.serve.settings import ServeSettings
from m6rec.storage import open_store

KEY = {"X-API-Key": "secret"}


def make_client(model_dir, tmp_path, **kw) -> TestClient:
    settings = ServeSettings(model_dir=model_dir, db=f"sqlite:///{tmp_path}/events.db",
                             api_key=kw.pop("api_key", "secret"), data=None, **kw)
    return TestClient(create_app(settings))


@pytest.fixture
def client(m6_dir, tmp_path):
    with make_client(m6_dir, tmp_path) as c:
        yield c


def recs(client, user, **params):
    r = client.get(f"/users/{user}/recommendations", params=params, headers=KEY)
    assert r.status_code == 200, r.text
    return r.json()


def ids(result):
    return [it["item_id"] for it in result["items"]]


def test_read_your_writes(client):
    before = recs(client, "u0", k=5)
    top = before["items"][0]["item_id"]
    r = client.post("/events", json={"user_id": "u0", "item_id": top, "type": "click"},
                    headers=KEY)
    assert r.status_code == 201 and r.json()["stored"] == 1
    after = recs(client, "u0", k=5)
    assert top not in ids(after)  # the very next answer excludes it ...
    assert after["items"][0]["score"] != before["items"][1]["score"]  # ... and reflects it
    hist = client.get("/users/u0/history", params={"limit": 1}, headers=KEY).json()
    assert hist["items"][0]["item_id"] == top


def test_new_user_events_make_history_recommendations(client):
    assert recs(client, "fresh", k=3)["strategy"] == "popular"
    client.post("/events", json=[{"user_id": "fresh", "item_id": f"k{j}"} for j in range(3)],
                headers=KEY)
    got = recs(client, "fresh", k=3)
    assert got["strategy"] == "history"
    assert not {"k0", "k1", "k2"} & set(ids(got))
    assert all(i.startswith("k") for i in ids(got))  # a kitchen history gets kitchen items


def test_new_item_is_recommended_to_a_matching_user(client):
    space_user, kitchen_user = "u0", "u1"
    r = client.post("/items", json={"item_id": "new-space", "title": "galaxy rocket stars voyage",
                                    "categories": ["Sci-Fi"]}, headers=KEY)
    assert r.status_code == 201, r.text
    assert r.json()["created"] and r.json()["indexed"]
    assert "new-space" in ids(recs(client, space_user, k=3))
    assert "new-space" not in ids(recs(client, kitchen_user, k=3))
    similar = client.get("/items/new-space/similar", params={"k": 3}, headers=KEY).json()
    assert all(i.startswith("s") for i in ids(similar))


def test_query_steers_and_cold_start(client):
    cold = recs(client, "nobody", k=4, query="baking bread cake recipes")
    assert cold["strategy"] == "query"
    assert all(i.startswith("k") for i in ids(cold))
    steered = recs(client, "u0", k=3, query="baking bread cake recipes kitchen soup")
    assert steered["strategy"] == "history+query"
    assert ids(steered) != ids(recs(client, "u0", k=3))


def test_conversation_latest_turn_weighs_most(client):
    baking, space = "baking bread cake recipes", "galaxy rocket stars planets"
    assert all(i.startswith("s") for i in ids(recs(client, "nobody", k=4,
                                                   query=[baking, space])))
    assert all(i.startswith("k") for i in ids(recs(client, "nobody", k=4,
                                                   query=[space, baking])))
    # a space fan: the conversation ending in baking brings more baking than the reverse
    got = recs(client, "u0", k=6, query=[space, baking], explain="true")
    other = recs(client, "u0", k=6, query=[baking, space])
    assert got["strategy"] == "history+query"
    n_k = sum(i.startswith("k") for i in ids(got))
    assert n_k > sum(i.startswith("k") for i in ids(other)), (ids(got), ids(other))
    for it in got["items"]:
        assert f'matches your request "{baking}"' in it["because"]
        assert isinstance(it["query_match"], float)
    r = client.get("/users/u0/recommendations", params={"query": ["x"] * 11},
                   headers=KEY)
    assert r.status_code == 422, r.text  # at most 10 turns


def test_explanations_are_measured_on_the_model(client):
    got = recs(client, "u0", k=3, explain="true")
    seen = {h["item_id"] for h in client.get("/users/u0/history", headers=KEY).json()["items"]}
    for it in got["items"]:
        assert it["method"] == "leave-one-out"
        cited = it["history"]
        assert cited and {h["item_id"] for h in cited} <= seen
        assert all(h["delta"] > 0 for h in cited)  # removing a cited item lowers the score
        assert [h["delta"] for h in cited] == sorted((h["delta"] for h in cited), reverse=True)
        assert it["because"].startswith("Because you ")
        assert cited[0]["title"] in it["because"]
    # a posted item (outside the dataset the explainer was built on) is explained too
    r = client.post("/items", json={"item_id": "new-x", "title": "galaxy rocket voyage stars",
                                    "categories": ["Sci-Fi"]}, headers=KEY)
    assert r.status_code == 201, r.text
    got = recs(client, "u0", k=5, explain="true")
    assert "new-x" in ids(got)
    assert all(it["because"] for it in got["items"])


def test_profile_cold_start(client):
    r = client.put("/users/newchef/profile", json={"profile": {"occupation": "kitchen baking"}},
                   headers=KEY)
    assert r.status_code == 204
    got = recs(client, "newchef", k=3)
    assert got["strategy"] == "profile"
    assert all(i.startswith("k") for i in ids(got))


def test_exclude_and_explain(client):
    first = ids(recs(client, "u0", k=2))
    got = recs(client, "u0", k=2, exclude=",".join(first), explain="true")
    assert not set(first) & set(ids(got))
    seen = {h["item_id"] for h in client.get("/users/u0/history", headers=KEY).json()["items"]}
    for it in got["items"]:
        assert it["because"]
        assert {h["item_id"] for h in it["history"]} <= seen


def test_similar_users(client):
    got = client.get("/users/u0/similar", params={"k": 5}, headers=KEY).json()
    assert len(got["users"]) == 5
    assert all(int(u["user_id"][1:]) % 2 == 0 for u in got["users"])  # space users
    assert client.get("/users/ghost/similar", headers=KEY).status_code == 404


@pytest.mark.parametrize("case", [
    ("post", "/events", {"user_id": "u0", "item_id": "s1"}, {}, 401),
    ("post", "/events", {"user_id": "u0", "item_id": "s1"}, {"X-API-Key": "nope"}, 401),
    ("post", "/events", {"user_id": "u0"}, KEY, 422),
    ("post", "/events", {"user_id": "u0", "item_id": "s1", "extra": 1}, KEY, 422),
    ("post", "/events", {"user_id": "", "item_id": "s1"}, KEY, 422),
    ("post", "/events", [], KEY, 422),
    ("post", "/events", {"user_id": "u0", "item_id": "nope"}, KEY, 404),
    ("post", "/items", {"item_id": "x"}, KEY, 422),
    ("post", "/items", {"item_id": "x", "title": "t"}, {}, 401),
    ("get", "/users/u0/recommendations?k=0", None, KEY, 422),
    ("get", "/users/u0/recommendations?k=101", None, KEY, 422),
    ("get", "/users/u0/recommendations?k=abc", None, KEY, 422),
    ("get", "/items/none/similar", None, KEY, 404),
    ("get", "/no/such/route", None, {}, 404),
    ("delete", "/events", None, KEY, 405),
    ("post", "/admin/reload", None, {}, 401),
])
def test_client_errors_are_json(client, case):
    method, url, body, headers, status = case
    r = client.request(method, url, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "detail"} and r.json()["error"]


def test_limits(m6_dir, tmp_path):
    with make_client(m6_dir, tmp_path, max_batch=5, max_body_bytes=2000) as c:
        batch = [{"user_id": "u", "item_id": "s1"}] * 6
        assert c.post("/events", json=batch, headers=KEY).status_code == 413
        r = c.post("/events", content=b"[" + b" " * 3000 + b"]", headers=KEY)
        assert r.status_code == 413 and r.json()["error"] == "payload too large"
        r = c.post("/events", content=b"{not json", headers={**KEY, "content-type":
                                                                  "application/json"})
        assert r.status_code == 422


def test_batch_is_all_or_nothing(client, tmp_path):
    r = client.post("/events", json=[{"user_id": "u9", "item_id": "s1"},
                                     {"user_id": "u9", "item_id": "missing"}], headers=KEY)
    assert r.status_code == 404 and "events[1]" in r.json()["detail"]
    with open_store(f"sqlite:///{tmp_path}/events.db") as s:
        assert s.count_events() == 0


def test_writes_refused_without_a_configured_key(m6_dir, tmp_path):
    with make_client(m6_dir, tmp_path, api_key=None) as c:
        r = c.post("/events", json={"user_id": "u0", "item_id": "s1"}, headers=KEY)
        assert r.status_code == 403 and "api-key" in r.json()["detail"]


def test_pseudonymised_ids_are_never_stored(m6_dir, tmp_path):
    with make_client(m6_dir, tmp_path, pseudonymise_key="k3y") as c:
        c.post("/events", json={"user_id": "alice@example.org", "item_id": "s1"}, headers=KEY)
        assert "s1" not in ids(recs(c, "alice@example.org", k=10))  # still read-your-writes
    with open_store(f"sqlite:///{tmp_path}/events.db") as s:
        stored = [e.user_id for e in s.iter_events()]
    assert len(stored) == 1 and "alice" not in stored[0] and stored[0].startswith("p_")


def test_health_metrics_openapi(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "m6" and h["index"] == "exact"
    recs(client, "u0")
    m = client.get("/metrics").text
    assert 'm6rec_http_requests_total{method="GET",route="/users/{user_id}/recommendations"' in m
    spec = client.get("/openapi.json").json()
    assert {"/events", "/items", "/users/{user_id}/recommendations", "/items/{item_id}/similar",
            "/users/{user_id}/similar", "/health", "/admin/reload"} <= set(spec["paths"])
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]
    assert client.get("/dashboard").text.startswith("<!doctype html>")


def test_id_model_path(ease_dir, tmp_path):
    with make_client(ease_dir, tmp_path) as c:
        got = recs(c, "u0", k=2, explain="true")  # u0 has two unseen space items
        assert all(i.startswith("s") for i in ids(got)) and got["items"][0]["because"]
        assert [it["score"] for it in got["items"]] == [
            it["score"] for it in recs(c, "u0", k=2)["items"]]  # explain keeps the score
        r = c.post("/items", json={"item_id": "zz", "title": "galaxy"}, headers=KEY)
        assert r.status_code == 201 and r.json()["indexed"] is False
        r = c.get("/users/u0/recommendations", params={"query": "galaxy"}, headers=KEY)
        assert r.status_code == 422 and "text model" in r.json()["detail"]
        assert c.get("/items/s1/similar", params={"k": 2}, headers=KEY).status_code == 200


def test_hot_reload_keeps_answering(client, ease_dir):
    errors: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = client.get("/users/u0/recommendations", params={"k": 3}, headers=KEY)
            if r.status_code != 200:
                errors.append(r.status_code)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        r = client.post("/admin/reload", json={"model_dir": str(ease_dir)}, headers=KEY)
    finally:
        stop.set()
        t.join()
    assert r.status_code == 200 and r.json()["model"] == "ease"
    assert errors == []
    assert client.get("/health").json()["model"] == "ease"
    bad = client.post("/admin/reload", json={"model_dir": "/no/such/dir"}, headers=KEY)
    assert bad.status_code == 422 and client.get("/health").json()["model"] == "ease"


@pytest.mark.parametrize("user,params", [("u0", {}), ("u1", {"query": "baking bread"}),
                                         ("nobody", {}), ("nobody", {"query": "galaxy"})])
def test_explain_keeps_the_ranking_score(client, user, params):
    plain = recs(client, user, k=8, **params)["items"]
    explained = recs(client, user, k=8, explain="true", **params)["items"]
    assert [(it["item_id"], it["score"]) for it in explained] == [
        (it["item_id"], it["score"]) for it in plain]
    scores = [it["score"] for it in explained]
    assert scores == sorted(scores, reverse=True)
    assert all(it["because"] for it in explained)


def test_explained_deltas_are_the_score_drops_of_the_shorter_history(client):
    """A cited item's delta is what the score loses when the item is left out: measured
    against a second user whose history is the same minus that item."""
    hist = ["s0", "s1", "s2", "s3", "s4"]
    post = [{"user_id": "full", "item_id": i, "timestamp": 2_000_000 + 60 * t}
            for t, i in enumerate(hist)]
    assert client.post("/events", json=post, headers=KEY).status_code == 201
    got = recs(client, "full", k=3, explain="true")
    top = got["items"][0]
    assert top["explained_score"] == pytest.approx(top["score"], abs=1e-4)
    cited = top["history"][0]
    assert cited["item_id"] in hist and cited["delta"] > 0
    less = [e for e in post if e["item_id"] != cited["item_id"]]
    for e in less:
        e["user_id"] = "less"
    assert client.post("/events", json=less, headers=KEY).status_code == 201
    other = recs(client, "less", k=16)
    score = {it["item_id"]: it["score"] for it in other["items"]}[top["item_id"]]
    assert top["score"] - score == pytest.approx(cited["delta"], abs=1e-4)
    # and the cached explanation follows a new event (the history changed)
    client.post("/events", json={"user_id": "full", "item_id": "s5",
                                 "timestamp": 2_000_000 + 600}, headers=KEY)
    again = recs(client, "full", k=3, explain="true")
    assert [it["score"] for it in again["items"]] == [
        it["score"] for it in recs(client, "full", k=3)["items"]]
    assert again["items"] != got["items"]
