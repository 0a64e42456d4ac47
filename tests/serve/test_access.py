"""Who may read and write: the API key, the read-only key, public endpoints; and the one id
rule, checked by writing ids drawn from it and reading them back through the HTTP API."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m6rec.serve.app import create_app
from m6rec.serve.schemas import ID_MAX_LENGTH, ID_PATTERN
from m6rec.serve.settings import ServeSettings

WRITE, READ = {"X-API-Key": "w-key"}, {"X-API-Key": "r-key"}
READS = ["/users/u0/recommendations", "/users/u0/recommendations?explain=true",
         "/users/u0/history", "/users/u0/similar", "/items/s1/similar", "/users"]


def app_client(model_dir, tmp_path, **kw) -> TestClient:
    s = ServeSettings(model_dir=model_dir, db=f"sqlite:///{tmp_path}/events.db", data=None, **kw)
    return TestClient(create_app(s))


@pytest.fixture(scope="module")
def keyed(m6_dir, tmp_path_factory):
    with app_client(m6_dir, tmp_path_factory.mktemp("keyed"), api_key="w-key",
                    read_key="r-key") as c:
        yield c


@pytest.mark.parametrize("path", READS)
def test_every_data_read_needs_a_key(keyed, path):
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = keyed.get(path, headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "unauthorized" and "X-API-Key" in r.json()["detail"]
    assert keyed.get(path, headers=READ).status_code == 200
    assert keyed.get(path, headers=WRITE).status_code == 200


def test_read_only_key_cannot_write(keyed):
    writes = [("post", "/events", {"user_id": "u0", "item_id": "s1"}),
              ("post", "/items", {"item_id": "x1", "title": "galaxy"}),
              ("put", "/users/u0/profile", {"profile": {"job": "chef"}}),
              ("post", "/admin/reload", None)]
    for method, path, body in writes:
        r = keyed.request(method, path, json=body, headers=READ)
        assert r.status_code == 403 and "read-only" in r.json()["detail"], (path, r.text)
        assert keyed.request(method, path, json=body).status_code == 401
    assert keyed.post("/events", json={"user_id": "u0", "item_id": "s1"},
                      headers=WRITE).status_code == 201


def test_public_endpoints_and_health_without_paths(keyed, m6_dir):
    for path in ("/health", "/metrics", "/docs", "/redoc", "/openapi.json", "/dashboard",
                 "/favicon.ico", "/static/api-docs/swagger-ui-bundle.js"):
        assert keyed.get(path).status_code == 200, path
    h = keyed.get("/health")
    assert str(m6_dir) not in h.text and "model_dir" not in h.json()
    assert h.json()["reads_need_key"] is True
    assert keyed.get("/favicon.ico").headers["content-type"] == "image/x-icon"


def test_metrics_can_be_keyed_and_label_every_route(m6_dir, tmp_path):
    with app_client(m6_dir, tmp_path, api_key="w-key", read_key="r-key",
                    keyed_metrics=True) as c:
        assert c.get("/metrics").status_code == 401
        for path in ("/docs", "/openapi.json", "/dashboard", "/favicon.ico",
                     "/static/api-docs/swagger-ui.css", "/no/such/page"):
            c.get(path)
        text = c.get("/metrics", headers=READ).text
    routes = set(re.findall(r'm6rec_http_requests_total\{method="GET",route="([^"]+)"', text))
    assert {"/docs", "/openapi.json", "/dashboard", "/favicon.ico", "/static/api-docs",
            "unmatched"} <= routes
    assert "/no/such/page" not in routes


def test_open_reads_when_no_key_is_configured(m6_dir, tmp_path):
    with app_client(m6_dir, tmp_path, api_key=None, read_key=None) as c:
        assert c.get("/users/u0/history").status_code == 200
        assert c.get("/health").json()["reads_need_key"] is False
        r = c.post("/events", json={"user_id": "u0", "item_id": "s1"})
        assert r.status_code == 403


def test_openapi_documents_keys_k_and_the_id_rule(keyed):
    spec = keyed.get("/openapi.json").json()
    rec = spec["paths"]["/users/{user_id}/recommendations"]["get"]
    params = {p["name"]: p for p in rec["parameters"]}
    assert params["k"]["schema"]["maximum"] == 100 and params["k"]["schema"]["minimum"] == 1
    assert params["user_id"]["schema"]["pattern"] == ID_PATTERN
    assert params["user_id"]["schema"]["maxLength"] == ID_MAX_LENGTH
    assert rec["security"] == [{"APIKeyHeader": []}] and "401" in rec["responses"]
    event = spec["components"]["schemas"]["EventIn"]["properties"]
    assert event["user_id"]["pattern"] == event["item_id"]["pattern"] == ID_PATTERN
    assert spec["components"]["schemas"]["ItemIn"]["properties"]["item_id"]["pattern"] == ID_PATTERN
    sim = spec["paths"]["/items/{item_id}/similar"]["get"]
    assert {p["name"]: p for p in sim["parameters"]}["item_id"]["schema"]["pattern"] == ID_PATTERN


@pytest.mark.parametrize("bad", ["a/b", "../../etc/passwd", " ", " a", "a ", ".", "..", ".x",
                                 "a,b", "a\nb", "x" * (ID_MAX_LENGTH + 1), ""])
def test_ids_outside_the_rule_are_refused_at_every_write(keyed, bad):
    for body, path in (({"item_id": bad, "title": "galaxy"}, "/items"),
                       ({"user_id": bad, "item_id": "s1"}, "/events"),
                       ({"user_id": "u0", "item_id": bad}, "/events")):
        r = keyed.post(path, json=body, headers=WRITE)
        assert r.status_code == 422, (path, bad, r.text)
    if bad and "/" not in bad and bad not in (".", ".."):
        r = keyed.put(f"/users/{quote(bad, safe='')}/profile", json={"profile": {"a": "b"}},
                      headers=WRITE)
        assert r.status_code == 422, (bad, r.text)


def test_nan_timestamp_is_named(keyed):
    r = keyed.post("/events", content=b'{"user_id": "u0", "item_id": "s1", "timestamp": NaN}',
                   headers={**WRITE, "content-type": "application/json"})
    assert r.status_code == 422
    assert any("timestamp must be a finite number" in d["msg"] for d in r.json()["detail"])


ids = st.from_regex(ID_PATTERN, fullmatch=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(item_id=ids, user_id=ids)
def test_every_id_the_rule_allows_reads_back(keyed, item_id, user_id):
    assert re.fullmatch(ID_PATTERN, item_id) and len(item_id) <= ID_MAX_LENGTH
    r = keyed.post("/items", json={"item_id": item_id, "title": "galaxy rocket stars"},
                   headers=WRITE)
    assert r.status_code == 201, r.text
    r = keyed.post("/events", json={"user_id": user_id, "item_id": item_id}, headers=WRITE)
    assert r.status_code == 201, r.text
    u, i = quote(user_id, safe=""), quote(item_id, safe="")
    hist = keyed.get(f"/users/{u}/history", params={"limit": 1}, headers=READ)
    assert hist.status_code == 200, hist.text
    assert hist.json()["user_id"] == user_id and hist.json()["items"][0]["item_id"] == item_id
    sim = keyed.get(f"/items/{i}/similar", params={"k": 2}, headers=READ)
    assert sim.status_code == 200 and sim.json()["item_id"] == item_id, sim.text
    rec = keyed.get(f"/users/{u}/recommendations", params={"k": 3, "exclude": item_id},
                    headers=READ)
    assert rec.status_code == 200 and rec.json()["user_id"] == user_id
    assert item_id not in [it["item_id"] for it in rec.json()["items"]]
    prof = keyed.put(f"/users/{u}/profile", json={"profile": {"job": "astronomer"}},
                     headers=WRITE)
    assert prof.status_code == 204, prof.text
