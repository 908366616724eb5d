"""The HTTP plumbing of the service: strict request models, time parsing, the JSON error shape, the
body-size limit and the request metrics (plain ASGI middleware)."""

from __future__ import annotations

import time
from datetime import datetime

from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict

from cmdrec.data.derived import utc_time
from cmdrec.errors import RequestError


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class RecommendRequest(_Strict):
    history: list[str]
    timestamps: list[str] | None = None  # ISO 8601, one per history event
    attributes: dict[str, str] | None = None
    k: int = 10
    exclude_seen: bool = False


class BatchRequest(_Strict):
    requests: list[RecommendRequest]


class EventsRequest(_Strict):
    commands: list[str]
    timestamps: list[str] | None = None
    attributes: dict[str, str] | None = None
    k: int = 10
    exclude_seen: bool = False


class FeedbackRequest(_Strict):
    command: str
    accepted: bool


def parse_times(stamps: list, field: str) -> list[datetime]:
    """ISO 8601 strings as times, offsets kept (a live session's held times are parsed already)."""
    times = []
    for index, stamp in enumerate(stamps):
        try:
            if not isinstance(stamp, datetime):
                # Python 3.10's fromisoformat does not read a trailing Z
                stamp = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith("Z") else stamp)
            utc_time(stamp)  # in range
            times.append(stamp)
        except (ValueError, OverflowError):
            raise RequestError(f"{field}[{index}]", f"not an ISO 8601 time this service can use: {stamp!r}") from None
    return times


def error_response(status: int, field: str | None, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "message": message}}, status_code=status, headers=headers)


def field_name(location: tuple) -> str:
    parts = [p for p in location if p != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413), whether or not they declare their length."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await error_response(413, "body", f"the body is over {self.limit} bytes")(scope, receive, send)
        # read the body here, up to the limit, then hand it on: a chunked body declares no length
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await error_response(413, "body", f"the body is over {self.limit} bytes")(scope, receive, send)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class Measured:
    """Request counts by endpoint and status, and latency (plain ASGI: no per-request task as in
    Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app, requests: Counter, latency: Histogram):
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def sent(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")
            endpoint = route.path if route is not None else "other"
            self.requests.labels(endpoint, str(status)).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - started)
