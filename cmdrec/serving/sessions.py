"""Live sessions held by the service: each one's recent raw events, bounded in count and time.

An application sends only the events a person just ran; the store keeps the last `max_events` of
each session, forgets sessions idle longer than `ttl_seconds`, and holds at most `max_sessions`
(least recently used first out). It also measures online accuracy: when a session's next command
arrives, it is checked against the suggestions the session was last given."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime

HIT_KS = (1, 3, 10)


@dataclass
class LiveSession:
    events: deque  # (command, timestamp or None), oldest first
    attributes: dict[str, str] = field(default_factory=dict)
    suggestions: list[str] = field(default_factory=list)  # what the session was last shown, best first
    shown: list[dict] = field(default_factory=list)  # those suggestions as the service answered them
    last_seen: float = 0.0

    @property
    def commands(self) -> list[str]:
        return [command for command, _ in self.events]

    @property
    def timestamps(self) -> list[datetime] | None:
        """Every event's time, or None when some event came without one."""
        times = [stamp for _, stamp in self.events]
        return None if any(t is None for t in times) else times


@dataclass
class OnlineAccuracy:
    checked: int = 0
    hits: dict[int, int] = field(default_factory=lambda: dict.fromkeys(HIT_KS, 0))

    def record(self, command: str, suggestions: list[str]) -> None:
        self.checked += 1
        for k in HIT_KS:
            self.hits[k] += command in suggestions[:k]

    def rates(self) -> dict[int, float]:
        return {k: self.hits[k] / self.checked if self.checked else 0.0 for k in HIT_KS}


class SessionStore:
    def __init__(self, max_events: int = 1000, ttl_seconds: float = 1800.0, max_sessions: int = 100_000, clock=None):
        self.max_events, self.ttl_seconds, self.max_sessions = max_events, ttl_seconds, max_sessions
        self.clock = clock or time.monotonic
        self.sessions: OrderedDict[str, LiveSession] = OrderedDict()
        self.evicted = {"idle": 0, "capacity": 0}
        self.accuracy = OnlineAccuracy()

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, session_id: str) -> LiveSession | None:
        self._expire()
        return self.sessions.get(session_id)

    def append(
        self,
        session_id: str,
        commands: list[str],
        timestamps: list[datetime] | None,
        attributes: dict[str, str] | None,
        is_noise=lambda command: False,
    ) -> LiveSession:
        """Add a person's new events; the first real command is checked against the last suggestions."""
        self._expire()
        session = self.sessions.pop(session_id, None)
        if session is None:
            session = LiveSession(deque(maxlen=self.max_events))
        first = next((c for c in commands if not is_noise(c)), None)
        if session.suggestions and first is not None:
            self.accuracy.record(first, session.suggestions)
            session.suggestions = []
        session.events.extend(zip(commands, timestamps or [None] * len(commands), strict=True))
        if attributes:
            session.attributes.update(attributes)
        session.last_seen = self.clock()
        self.sessions[session_id] = session
        while len(self.sessions) > self.max_sessions:
            self.sessions.popitem(last=False)
            self.evicted["capacity"] += 1
        return session

    def _expire(self) -> None:
        deadline = self.clock() - self.ttl_seconds
        while self.sessions:
            oldest = next(iter(self.sessions.values()))
            if oldest.last_seen >= deadline:
                break
            self.sessions.popitem(last=False)
            self.evicted["idle"] += 1
