"""Abuse limits: request body size, and per-participant rate limits (429 with Retry-After).

The rate limiter is a token bucket per (participant org, route class) kept in process memory: each
replica enforces its own share, which bounds a flooding client without a shared store. Behind a load
balancer with N replicas the effective limit is N times the setting."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import Problem, send_problem


class BodySizeLimit:
    """Refuses bodies over `max_bytes` with 413, by Content-Length up front or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length" and v.isdigit() and int(v) > self.max_bytes:
                await send_problem(
                    send,
                    Problem(
                        f"The request body is larger than {self.max_bytes} bytes.",
                        status=413,
                        code="payload-too-large",
                        title="Payload too large",
                    ),
                )
                return
        received = 0
        started = responded = False

        async def limited_receive() -> Message:
            nonlocal received, responded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now and make the app see a disconnect; whatever it answers is dropped.
                    if not started and not responded:
                        responded = True
                        await send_problem(
                            send,
                            Problem(
                                f"The request body is larger than {self.max_bytes} bytes.",
                                status=413,
                                code="payload-too-large",
                                title="Payload too large",
                            ),
                        )
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if responded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if not responded:
                raise


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets: `rate` requests per second sustained, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, cost: float = 1.0) -> float:
        """0 if allowed, else the seconds to wait."""
        now = time.monotonic()
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.updated) * self.rate)
        b.updated = now
        if b.tokens >= cost:
            b.tokens -= cost
            return 0.0
        if len(self._buckets) > 100_000:  # bound memory under many distinct callers
            self._buckets.clear()
        return (cost - b.tokens) / self.rate


class RateLimit:
    """Per-participant limits. The key is the token's `org` claim (decoded without verifying — the
    endpoint still verifies; a forged org only spends the forger's own bucket), else the client address."""

    def __init__(self, app: ASGIApp, rate: float, burst: float) -> None:
        self.app = app
        self.limiter = RateLimiter(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in ("/healthz", "/readyz", "/metrics"):
            await self.app(scope, receive, send)
            return
        key = _caller(scope)
        wait = self.limiter.take(key)
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            await send_problem(
                send,
                Problem(
                    f"Rate limit exceeded for {key}; retry after {retry} s.",
                    status=429,
                    code="too-many-requests",
                    title="Too many requests",
                    headers={"Retry-After": retry},
                ),
            )
            return
        await self.app(scope, receive, send)


def _caller(scope: Scope) -> str:
    import base64

    for k, v in scope.get("headers", ()):
        if k == b"authorization" and v[:7].lower() == b"bearer ":
            parts = v[7:].split(b".")
            if len(parts) == 3:
                try:
                    claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)))
                    return f"org:{claims.get('org')}"
                except Exception:
                    break
    client = scope.get("client") or ("unknown", 0)
    return f"ip:{client[0]}"
