"""The HTTP service: `cmdrec serve BUNDLE_OR_RUN`, one asynchronous process (FastAPI + uvicorn).

Endpoints: `POST /v1/recommend`, `POST /v1/recommend/batch`, live sessions
(`POST /v1/sessions/{id}/events`, `GET /v1/sessions/{id}`, `POST /v1/sessions/{id}/feedback`),
`POST /v1/workflows` (next runs of commands, for a model with workflow tokens),
`GET /healthz`, `GET /readyz`, `GET /v1/model`, `GET /v1/commands` (the vocabulary, for
autocomplete), `GET /metrics` (Prometheus), `POST /v1/admin/reload`, and the demo page at `/`.
Requests are validated by strict pydantic models (no silent coercion of "5" into 5) and by the
predictor; every refusal is a 4xx `{"error": {"field", "message"}}`. Concurrent requests share
forward passes through the dynamic batcher; reloading swaps the model between batches and keeps
the live sessions."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cmdrec.config import ServingConfig
from cmdrec.data.derived import utc_time
from cmdrec.errors import InputError, RequestError
from cmdrec.serving.batching import DynamicBatcher, QueueFull
from cmdrec.serving.http import (
    BatchRequest,
    BodyLimit,
    EventsRequest,
    FeedbackRequest,
    Measured,
    RecommendRequest,
    error_response,
    field_name,
    parse_times,
)
from cmdrec.serving.predict import Predictor, Recommendation, check_k
from cmdrec.serving.sessions import HIT_KS, SessionStore

log = logging.getLogger(__name__)


class Service:
    """What the endpoints share: the loaded predictor, the batcher, the sessions and the metrics."""

    def __init__(self, path: str | Path, config: ServingConfig, predictor: Predictor | None = None):
        self.path, self.config = Path(path), config
        self.predictor = predictor or Predictor(path, config.device)
        self.sessions = SessionStore(config.session_events, config.session_ttl_seconds, config.max_sessions)
        self.registry = CollectorRegistry()
        self.requests = Counter("cmdrec_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "cmdrec_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=self.registry,
        )
        self.batch_sizes = Histogram(
            "cmdrec_batch_size", "histories per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )  # fmt: skip
        self.feedback = Counter("cmdrec_feedback", "explicit feedback", ["outcome"], registry=self.registry)
        self.reloads = Counter("cmdrec_reloads", "model reloads", ["status"], registry=self.registry)
        self.registry.register(_StateCollector(self))
        self.batcher = DynamicBatcher(
            self._score, config.batch_size, config.batch_wait_ms, config.queue_size, self.batch_sizes.observe,
            workers=config.model_workers,
        )  # fmt: skip

    def _score(self, items: list, k: int, exclude_seen: bool) -> list[Recommendation]:
        """Score (predictor, prepared history) pairs; after a reload a batch may hold both models' requests."""
        answers: list = [None] * len(items)
        for predictor in {id(p): p for p, _ in items}.values():
            rows = [i for i, (p, _) in enumerate(items) if p is predictor]
            for row, answer in zip(rows, predictor.score([items[i][1] for i in rows], k, exclude_seen), strict=True):
                answers[row] = answer
        return answers

    def check_k(self, k, field: str = "k") -> None:
        try:
            check_k(k)
        except RequestError as error:
            raise RequestError(field, error.message) from None
        if k > self.config.max_k:
            raise RequestError(field, f"at most {self.config.max_k}, got {k}")

    async def recommend(self, histories: list[tuple], k: int, exclude_seen: bool, prefix=lambda i: "") -> list[dict]:
        """`histories`: (commands, timestamps, attributes) each; prepared here, scored in a shared batch."""
        self.check_k(k)
        predictor = self.predictor
        prepared = []
        for index, (commands, stamps, attributes) in enumerate(histories):
            if len(commands) > self.config.max_history:
                raise RequestError(
                    f"{prefix(index)}history", f"{len(commands)} events; at most {self.config.max_history} are accepted"
                )
            times = None if stamps is None else parse_times(stamps, f"{prefix(index)}timestamps")
            prepared.append(predictor.prepare(commands, times, attributes, prefix(index)))
        return await self.score(predictor, prepared, k, exclude_seen)

    async def score(self, predictor: Predictor, prepared: list, k: int, exclude_seen: bool) -> list[dict]:
        """Histories `predictor` prepared, scored in a shared batch and answered by that predictor."""
        answers = await self.batcher.submit([(predictor, p) for p in prepared], k, exclude_seen)
        return [self.response(answer, k, predictor) for answer, k in answers]

    def response(self, answer: Recommendation, k: int, predictor: Predictor) -> dict:
        suggestions = []
        for command, probability, score in list(zip(answer.commands, answer.probabilities, answer.scores, strict=True))[
            :k
        ]:
            category, description = predictor.describe(command)
            suggestions.append({"command": command, "probability": probability, "score": score,
                                "category": category, "description": description})  # fmt: skip
        return {
            "suggestions": suggestions,
            "unknown_commands": answer.unknown_commands,
            "removed": answer.removed,
            "model": self.model_identity(predictor),
        }

    def model_identity(self, predictor: Predictor | None = None) -> dict:
        predictor = predictor or self.predictor
        info = predictor.info
        return {
            "name": predictor.config.name,
            "version": info["data_fingerprint"][:12] if info else "run",
            "created": info["created"] if info else None,
        }

    async def reload(self, path: str | Path | None = None) -> dict:
        """Load the model again (or another one) and swap it in between batches; sessions are kept."""
        target = Path(path) if path else self.path
        try:
            predictor = await asyncio.to_thread(Predictor, target, self.config.device)
        except Exception:
            self.reloads.labels("failed").inc()
            raise
        self.predictor, self.path = predictor, target
        self.reloads.labels("ok").inc()
        log.info("reloaded %s", target)
        return self.model_identity()


class _StateCollector:
    """Metrics read from the service's state at each scrape: sessions, evictions, online accuracy, queue."""

    def __init__(self, service: Service):
        self.service = service

    def collect(self):
        store = self.service.sessions
        yield GaugeMetricFamily("cmdrec_sessions", "live sessions held", value=len(store))
        evicted = CounterMetricFamily("cmdrec_sessions_evicted", "sessions forgotten", labels=["reason"])
        for reason, count in store.evicted.items():
            evicted.add_metric([reason], count)
        yield evicted
        yield CounterMetricFamily("cmdrec_live_checked", "next events checked against the last suggestions",
                                  value=store.accuracy.checked)  # fmt: skip
        hits = CounterMetricFamily("cmdrec_live_hits", "next events among the last top-k suggestions", labels=["k"])
        rates = GaugeMetricFamily("cmdrec_live_hit_rate", "online hit rate at k", labels=["k"])
        for k in HIT_KS:
            hits.add_metric([str(k)], store.accuracy.hits[k])
            rates.add_metric([str(k)], store.accuracy.rates()[k])
        yield hits
        yield rates
        yield GaugeMetricFamily("cmdrec_queue_depth", "histories waiting", value=self.service.batcher.queue.qsize())


def create_app(path: str | Path, config: ServingConfig | None = None, predictor: Predictor | None = None) -> FastAPI:
    config = config or ServingConfig()
    service = Service(path, config, predictor)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        loop = asyncio.get_running_loop()
        try:  # SIGHUP reloads, as daemons do; only the main thread can install it
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload_logged(service)))
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        yield
        await service.batcher.stop()  # in-flight requests finish first

    app = FastAPI(title="cmdrec", summary="next-command suggestions", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(Measured, requests=service.requests, latency=service.latency)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        message = first["msg"] if first.get("type") != "json_invalid" else "the body is not valid JSON"
        return error_response(422, field_name(tuple(first.get("loc", ()))), message)

    @app.exception_handler(InputError)
    async def refused(request: Request, error: InputError):
        if isinstance(error, RequestError):
            return error_response(422, error.field, error.message)
        return error_response(422, None, str(error))

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, None, f"internal error ({type(error).__name__}); the server log has the details")

    @app.exception_handler(QueueFull)
    async def overloaded(request: Request, error: QueueFull):
        return error_response(503, None, "the scoring queue is full; retry shortly", {"Retry-After": "1"})

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        return {"ready": True, "model": service.model_identity()}

    @app.get("/v1/model")
    async def model():
        predictor = service.predictor
        model_config = predictor.config.model
        return {
            **service.model_identity(),
            "path": str(service.path),
            "backbone": model_config.backbone,
            "vocabulary_size": len(predictor.vocabulary),
            "features": predictor.columns,
            "events_read": predictor.max_events,
            "requires": {"timestamps": bool(predictor.needs_time), "attributes": predictor.needs_attributes},
            "cleaning": None if predictor.processing is None else {
                "session_gap_minutes": predictor.processing.session_gap_minutes,
                "noise_commands": sorted(predictor.noise),
                "collapse_repeats": predictor.processing.collapse_repeats,
            },
            "limits": {"max_history": config.max_history, "max_k": config.max_k,
                       "max_batch_histories": config.max_batch_histories},
            "bundle": predictor.info and {k: predictor.info[k] for k in ("format_version", "data_fingerprint",
                                                                          "libraries", "personal_data")},
        }  # fmt: skip

    @app.get("/v1/commands")
    async def commands(prefix: str = "", limit: int = 20):
        predictor, needle = service.predictor, prefix.lower()
        found = [c for c in predictor.vocabulary if needle in c.lower()][: max(0, min(limit, 1000))]
        return {"commands": [{"command": c, "category": predictor.describe(c)[0]} for c in found]}

    @app.post("/v1/recommend")
    async def recommend(body: RecommendRequest):
        (answer,) = await service.recommend(
            [(body.history, body.timestamps, body.attributes)], body.k, body.exclude_seen
        )
        return JSONResponse(answer)  # plain JSON types already: skip FastAPI's per-field encoder

    @app.post("/v1/recommend/batch")
    async def recommend_batch(body: BatchRequest):
        if not body.requests:
            raise RequestError("requests", "expected at least one request")
        if len(body.requests) > config.max_batch_histories:
            raise RequestError("requests", f"{len(body.requests)} requests; at most {config.max_batch_histories}")
        groups: dict[tuple, list[int]] = {}
        for index, item in enumerate(body.requests):
            service.check_k(item.k, f"requests[{index}].k")
            groups.setdefault((item.k, item.exclude_seen), []).append(index)
        results: list = [None] * len(body.requests)
        for (k, exclude), rows in groups.items():
            histories = [(body.requests[i].history, body.requests[i].timestamps, body.requests[i].attributes)
                         for i in rows]  # fmt: skip
            answers = await service.recommend(
                histories, k, exclude, prefix=lambda i, rows=rows: f"requests[{rows[i]}]."
            )
            for row, answer in zip(rows, answers, strict=True):
                results[row] = answer
        return JSONResponse({"results": results})

    @app.post("/v1/workflows")
    async def workflows(body: RecommendRequest):
        """The likeliest next tokens of a model with workflow tokens: whole runs of commands among them."""
        service.check_k(body.k)
        if len(body.history) > config.max_history:
            raise RequestError("history", f"{len(body.history)} events; at most {config.max_history} are accepted")
        times = None if body.timestamps is None else parse_times(body.timestamps, "timestamps")
        found = await asyncio.to_thread(
            service.predictor.recommend_workflows, body.history, body.k, times, body.attributes
        )
        return JSONResponse(
            {"workflows": [{"name": " > ".join(run), "commands": run, "probability": p} for run, p in found]}
        )

    @app.post("/v1/sessions/{session_id}/events")
    async def session_events(session_id: str, body: EventsRequest):
        if not body.commands:
            raise RequestError("commands", "expected at least one command")
        if body.timestamps is not None:
            if len(body.timestamps) != len(body.commands):
                raise RequestError("timestamps", f"{len(body.commands)} commands but {len(body.timestamps)} timestamps")
            times = parse_times(body.timestamps, "timestamps")
        else:
            times = None
        predictor = service.predictor
        unknown = sorted(set(body.attributes or {}) - set(predictor.attributes))
        if unknown:
            raise RequestError(f"attributes.{unknown[0]}", f"unknown event attribute; this model's data has "
                               f"{predictor.attributes or 'none'}")  # fmt: skip
        existing = service.sessions.get(session_id)
        if (
            existing is not None
            and times is not None
            and existing.timestamps
            and utc_time(times[0]) < utc_time(existing.timestamps[-1])
        ):
            raise RequestError("timestamps[0]", "earlier than the session's last event; send events in order")
        # the history as the session would hold it, checked before the session changes, so a refused
        # request leaves it as it was
        new_events = list(zip(body.commands, times or [None] * len(body.commands), strict=True))
        held = ([] if existing is None else list(existing.events)) + new_events
        held = held[-config.session_events :]
        held_times = [t for _, t in held]
        attributes = {**({} if existing is None else existing.attributes), **(body.attributes or {})}
        service.check_k(body.k)
        prepared = predictor.prepare([c for c, _ in held], None if None in held_times else held_times, attributes)
        session = service.sessions.append(
            session_id, body.commands, times, body.attributes, is_noise=lambda c: c in predictor.noise
        )
        # the history just validated is the one the session now holds: score it, without preparing it again
        (answer,) = await service.score(predictor, [prepared], body.k, body.exclude_seen)
        session.suggestions, session.shown = [s["command"] for s in answer["suggestions"]], answer["suggestions"]
        return JSONResponse({"session_id": session_id, "events_held": len(session.events), **answer})

    @app.get("/v1/sessions/{session_id}")
    async def session_state(session_id: str, last: int = 50):
        session = service.sessions.get(session_id)
        if session is None:
            return error_response(
                404, "session_id", f"no live session {session_id!r} (never seen, or idle past its TTL)"
            )
        return {"session_id": session_id, "recent": session.commands[-max(1, last):],
                "events_held": len(session.events), "suggestions": session.shown}  # fmt: skip

    @app.post("/v1/sessions/{session_id}/feedback")
    async def session_feedback(session_id: str, body: FeedbackRequest):
        if service.sessions.get(session_id) is None:
            return error_response(404, "session_id", f"no live session {session_id!r}")
        service.feedback.labels("accepted" if body.accepted else "ignored").inc()
        return {"recorded": True}

    @app.post("/v1/admin/reload")
    async def admin_reload(request: Request):
        token = os.environ.get(config.admin_token_env)
        if not token:
            return error_response(
                403, None, f"reload over HTTP is disabled: set {config.admin_token_env} (or send SIGHUP)"
            )
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return error_response(401, "authorization", "a valid 'Authorization: Bearer <token>' header is required")
        return {"reloaded": await service.reload()}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def demo():
        return resources.files("cmdrec.serving").joinpath("static/index.html").read_text()

    return app


async def _reload_logged(service: Service) -> None:
    try:
        await service.reload()
    except Exception:  # noqa: BLE001 - a failed reload keeps the loaded model serving
        log.exception("reload of %s failed; still serving the previous model", service.path)


def serve(path: str | Path, config: ServingConfig) -> None:
    import torch
    import uvicorn

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    app = create_app(path, config)
    print(f"serving {path} on http://{config.host}:{config.port} (demo page at /, API docs at /docs)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=30)
