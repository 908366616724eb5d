"""The HTTP service through FastAPI's test client: answers equal the predictor's (itself tested
equal to evaluation), every malformed request gets a 4xx naming its field, live sessions, metrics,
reload."""

import polars as pl
import pytest
from fastapi.testclient import TestClient

from cmdrec.artifacts.bundle import BUNDLE_FORMAT_VERSION, export_bundle
from cmdrec.config import ServingConfig
from cmdrec.serving import Predictor
from cmdrec.serving.service import create_app
from cmdrec.training.loop import train
from tests.conftest import tiny_run


@pytest.fixture(scope="module")
def bundle(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    train(tiny_run(tiny_data, root, "gpt2", training={"epochs": 2}), show_progress=False)
    return export_bundle(root / "gpt2", root / "bundle")


@pytest.fixture
def client(bundle):
    config = ServingConfig(max_history=50, session_events=50, max_body_bytes=20_000)
    with TestClient(create_app(bundle, config)) as client:
        yield client


def test_test_histories_get_the_predictors_suggestions_single_and_batched(client, bundle, tiny_data):
    names = pl.read_parquet(tiny_data / "items.parquet").sort("command")["name"].to_list()
    histories = [[names[i] for i in s[:-1]][-40:] for s in pl.read_parquet(tiny_data / "test.parquet")["command"]]
    expected = Predictor(bundle).recommend_many(histories, k=5)
    for history, answer in zip(histories, expected, strict=True):
        response = client.post("/v1/recommend", json={"history": history, "k": 5})
        assert response.status_code == 200
        body = response.json()
        assert [s["command"] for s in body["suggestions"]] == answer.commands
        assert [s["probability"] for s in body["suggestions"]] == pytest.approx(answer.probabilities, rel=1e-6)
        assert set(body["suggestions"][0]) == {"command", "probability", "score", "category", "description"}
        assert body["model"]["name"] == "gpt2" and len(body["model"]["version"]) == 12
    batch = client.post("/v1/recommend/batch", json={"requests": [{"history": h, "k": 5} for h in histories]})
    assert [[s["command"] for s in r["suggestions"]] for r in batch.json()["results"]] == [a.commands for a in expected]


BAD_REQUESTS = [
    ({"history": ["Wall"], "k": -1}, "k"),
    ({"history": ["Wall"], "k": 0}, "k"),
    ({"history": ["Wall"], "k": "5"}, "k"),
    ({"history": ["Wall"], "k": 2.5}, "k"),
    ({"history": ["Wall"], "k": True}, "k"),
    ({"history": ["Wall"], "k": [3]}, "k"),
    ({"history": ["Wall"], "k": 5000}, "k"),
    ({"history": []}, "history"),
    ({"history": "Wall"}, "history"),
    ({"history": ["Wall", 3]}, "history[1]"),
    ({"history": [["Wall"]]}, "history[0]"),
    ({"history": None}, "history"),
    ({}, "history"),
    ({"history": ["Wall"] * 51}, "history"),
    ({"history": ["Wall", "Door"], "timestamps": ["2025-01-01T10:00:00"]}, "timestamps"),
    ({"history": ["Wall", "Door"], "timestamps": ["2025-01-01T10:00:00", "yesterday"]}, "timestamps[1]"),
    ({"history": ["Wall", "Door"], "timestamps": ["2025-01-01T10:05:00", "2025-01-01T10:00:00"]}, "timestamps[1]"),
    ({"history": ["Wall", "Door"], "timestamps": ["2025-01-01T10:00:00", None]}, "timestamps[1]"),
    ({"history": ["Wall"], "timestamps": "2025-01-01T10:00:00"}, "timestamps"),
    ({"history": ["Wall"], "attributes": {"developer": "1"}}, "attributes.developer"),
    ({"history": ["Wall"], "attributes": {"developer": 1}}, "attributes.developer"),
    ({"history": ["Wall"], "exclude_seen": "yes"}, "exclude_seen"),
    ({"history": ["Wall"], "top_k": 3}, "top_k"),
    ({"history": ["Window.Focus"]}, "history"),  # nothing left once the noise is dropped
]


def test_a_battery_of_malformed_requests_each_gets_a_4xx_naming_the_field(client):
    for body, field in BAD_REQUESTS:
        response = client.post("/v1/recommend", json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["field"] == field, (body, error)
        assert error["message"]
        assert client.post("/v1/recommend", json={"history": ["Wall", "Door"]}).status_code == 200
    not_json = client.post("/v1/recommend", content=b"{history", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"]["message"] == "the body is not valid JSON"
    too_big = client.post("/v1/recommend", json={"history": ["Wall"] * 5000})
    assert too_big.status_code == 413 and too_big.json()["error"]["field"] == "body"
    batch = client.post(
        "/v1/recommend/batch", json={"requests": [{"history": ["Wall"]}, {"history": ["Wall"], "k": 0}]}
    )
    assert batch.status_code == 422 and batch.json()["error"]["field"] == "requests[1].k"
    assert client.post("/v1/recommend/batch", json={"requests": []}).json()["error"]["field"] == "requests"


def test_a_live_session_gets_what_its_whole_history_gets_and_is_measured_online(client):
    events = ["Open", "Wall", "Door", "Wall", "Window"]
    for index, command in enumerate(events):
        live = client.post("/v1/sessions/s1/events", json={"commands": [command], "k": 10})
        assert live.status_code == 200
        whole = client.post("/v1/recommend", json={"history": events[: index + 1], "k": 10})
        assert live.json()["suggestions"] == whole.json()["suggestions"]
    state = client.get("/v1/sessions/s1").json()
    assert state["recent"] == events and len(state["suggestions"]) == 10
    assert client.post("/v1/sessions/s1/feedback", json={"command": "Door", "accepted": True}).json() == {
        "recorded": True
    }
    assert client.get("/v1/sessions/nobody").status_code == 404
    assert client.post("/v1/sessions/s1/events", json={"commands": []}).json()["error"]["field"] == "commands"
    metrics = client.get("/metrics").text
    assert "cmdrec_live_checked_total 4.0" in metrics  # every event after the first was checked
    assert 'cmdrec_live_hit_rate{k="10"}' in metrics and "cmdrec_sessions 1.0" in metrics
    assert 'cmdrec_feedback_total{outcome="accepted"} 1.0' in metrics
    assert 'cmdrec_requests_total{endpoint="/v1/recommend",status="200"}' in metrics
    assert "cmdrec_request_seconds_bucket" in metrics and "cmdrec_batch_size_count" in metrics


def test_health_model_description_vocabulary_and_demo_page(client, bundle):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    model = client.get("/v1/model").json()
    assert model["backbone"] == "gpt2" and model["vocabulary_size"] > 10 and model["requires"]["attributes"] == []
    assert "Window.Focus" in model["cleaning"]["noise_commands"]
    assert model["bundle"]["format_version"] == BUNDLE_FORMAT_VERSION
    walls = client.get("/v1/commands?prefix=wall").json()["commands"]
    assert {"command": "Wall", "category": Predictor(bundle).describe("Wall")[0]} in walls
    assert all("wa" in c["command"].lower() for c in client.get("/v1/commands?prefix=wa").json()["commands"])
    page = client.get("/")
    assert page.status_code == 200 and "/v1/sessions/" in page.text and "<script" in page.text
    assert client.get("/openapi.json").json()["paths"]["/v1/recommend"]


def test_reload_needs_the_token_and_keeps_the_sessions(bundle, monkeypatch):
    with TestClient(create_app(bundle)) as client:
        client.post("/v1/sessions/kept/events", json={"commands": ["Wall"]})
        assert client.post("/v1/admin/reload").status_code == 403  # no token configured: disabled
        monkeypatch.setenv("CMDREC_ADMIN_TOKEN", "secret")
        assert client.post("/v1/admin/reload", headers={"authorization": "Bearer wrong"}).status_code == 401
        reloaded = client.post("/v1/admin/reload", headers={"authorization": "Bearer secret"})
        assert reloaded.status_code == 200 and reloaded.json()["reloaded"]["name"] == "gpt2"
        assert client.get("/v1/sessions/kept").json()["recent"] == ["Wall"]
        assert 'cmdrec_reloads_total{status="ok"} 1.0' in client.get("/metrics").text


def test_a_refused_append_leaves_the_session_as_it_was_and_odd_times_get_a_4xx(client):
    ok = client.post("/v1/sessions/t/events", json={"commands": ["Wall"], "timestamps": ["2025-03-06T09:00:00Z"]})
    assert ok.status_code == 200
    plain = client.post("/v1/sessions/t/events", json={"commands": ["Door"], "timestamps": ["2025-03-06T09:01:00"]})
    assert plain.status_code == 200  # a time without a zone after one with a zone: both read as UTC
    earlier = client.post("/v1/sessions/t/events", json={"commands": ["Undo"], "timestamps": ["2025-03-06T08:00:00"]})
    assert earlier.status_code == 422 and earlier.json()["error"]["field"] == "timestamps[0]"
    assert client.get("/v1/sessions/t").json()["recent"] == ["Wall", "Door"]  # the refused event is not held
    later = client.post("/v1/sessions/t/events", json={"commands": ["Window"], "timestamps": ["2025-03-06T09:02:00"]})
    assert later.status_code == 200
    ancient = client.post("/v1/recommend", json={"history": ["Wall"], "timestamps": ["0001-01-01T00:00:00+05:00"]})
    assert ancient.status_code == 422 and ancient.json()["error"]["field"] == "timestamps[0]"


def test_a_chunked_body_over_the_limit_gets_413(client):
    def chunks():
        for _ in range(30):
            yield b" " * 1000

    response = client.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["field"] == "body"
