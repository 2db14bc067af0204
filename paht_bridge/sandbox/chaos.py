"""Chaos for any stand-in: an ASGI layer that injects faults at given rates.

Each stand-in also has its own targeted faults (``/_sandbox/faults``: one HTML page, one
entity bomb...). This layer is for the statistical ones the delivery guarantees are proven
against: a share of requests answered 503 before the app sees them, a share answered only
after a stall long enough for the client to give up *after the app committed*, added
latency, and a whole outage. Control endpoints (``/_sandbox``) are never disturbed.
Settings are plain attributes, switched per test; counters say what was injected.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ChaosSettings:
    error_rate: float = 0.0  # answered 503 without reaching the app (nothing happened)
    timeout_after_commit_rate: float = 0.0  # the app does the work, the answer comes after `stall_seconds`
    stall_seconds: float = 2.0
    latency: float = 0.0  # seconds added before every answer
    down: bool = False  # every request 503 (an outage behind a proxy)
    seed: int | None = None


@dataclass
class Chaos:
    """ASGI middleware around one stand-in app."""

    app: Any
    settings: ChaosSettings = field(default_factory=ChaosSettings)
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.settings.seed)
        self._lock = threading.Lock()

    def configure(self, **changes: Any) -> None:
        for key, value in changes.items():
            if not hasattr(self.settings, key):
                raise AttributeError(f"no chaos setting {key!r}")
            setattr(self.settings, key, value)
        if "seed" in changes:
            self._random = random.Random(self.settings.seed)

    def calm(self) -> None:
        """Back to normal (counters kept)."""
        self.configure(error_rate=0.0, timeout_after_commit_rate=0.0, latency=0.0, down=False)

    def _draw(self) -> str:
        s = self.settings
        with self._lock:
            self.counts["requests"] += 1
            if s.down:
                self.counts["down"] += 1
                return "down"
            roll = self._random.random()
            if roll < s.error_rate:
                self.counts["errors"] += 1
                return "error"
            if roll < s.error_rate + s.timeout_after_commit_rate:
                self.counts["stalls"] += 1
                return "stall"
            return "pass"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        fate = self._draw()
        if self.settings.latency:
            await asyncio.sleep(self.settings.latency)
        if fate in ("down", "error"):
            await _plain(send, 503, b"<html><body><h1>503 Service Unavailable</h1></body></html>")
            return
        if fate == "pass":
            await self.app(scope, receive, send)
            return
        # Let the app commit, hold the answer back until the client has given up.
        held: list[dict] = []

        async def hold(message: dict) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        await asyncio.sleep(self.settings.stall_seconds)
        try:
            for message in held:
                await send(message)
        except Exception:  # the client left long ago; that is the point
            pass


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
