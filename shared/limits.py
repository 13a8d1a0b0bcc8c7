"""Abuse limits, all decided from a request's headers before any of its body is read: identity first
(a write's bearer token is verified, 401 otherwise), body size per endpoint (413 as soon as a route's limit is
passed), a bound on large bodies in flight, and per-participant rate limits (429 with Retry-After).

Each write route declares its largest legal body with `body_limit(...)` in its `openapi_extra` (shown in the
OpenAPI document as `x-largest-legal-body`); the limit enforced is twice that, never above `max_body_bytes`.
Routes that declare nothing get `default_body_bytes`.

The rate limiter is a token bucket per verified participant (the client address when a request carries no
valid token) kept in process memory: each replica enforces its own share, which bounds a flooding client
without a shared store. Behind a load balancer with N replicas the effective limit is N times the setting."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.types import DecoratedCallable
from starlette.requests import HTTPConnection
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import IDENTITY, Principal, TokenVerifier, admit, optional_principal, require_principal
from shared.problems import Problem, Unauthorized, Unavailable, send_problem

LARGEST_LEGAL_BODY = "x-largest-legal-body"
#: The limit enforced is this many times a route's largest legal body.
BODY_LIMIT_FACTOR = 2
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNLIMITED_PATHS = ("/healthz", "/readyz", "/metrics")


def body_limit(largest_legal_bytes: int) -> dict[str, Any]:
    """`openapi_extra` for a write route: the size of its largest legal body (derived from its schema's
    limits). Requests are refused with 413 above twice that."""
    too_large = {
        "description": f"The body is larger than {BODY_LIMIT_FACTOR * largest_legal_bytes} bytes",
        "content": {"application/problem+json": {"schema": {"type": "object"}}},
    }
    return {LARGEST_LEGAL_BODY: largest_legal_bytes, "responses": {"413": too_large}}


def create_route(
    router: APIRouter, path: str, response_model: Any, summary: str, *, limit: int, **extra: Any
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A POST that creates: 201 with `response_model`, its largest legal body `limit` declared (`body_limit`)."""
    return router.post(
        path,
        status_code=201,
        response_model=response_model,
        summary=summary,
        openapi_extra=body_limit(limit),
        **extra,
    )


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What a route needs decided before its body is read."""

    max_body: int
    principal: Literal["required", "optional", "none"]


def _calls(dependant: Dependant) -> set[Any]:
    calls = {dependant.call}
    for sub in dependant.dependencies:
        calls |= _calls(sub)
    return calls


#: Where a request's policy is kept in its scope once decided (IdentityFirst and BodySizeLimit both need it).
_POLICY = "bt_route_policy"
#: Policies by (method, path) kept, at most (then forgotten all at once: paths holding IDs are many).
POLICY_CACHE_SIZE = 4096


def route_policy(scope: Scope) -> RoutePolicy:
    """The policy of the route that will answer this request (decided once per route, and once per request)."""
    found: RoutePolicy | None = scope.get(_POLICY)
    if found is None:
        app = scope["app"]
        cache: dict[tuple[str, str], RoutePolicy] | None = getattr(app.state, "route_policy_cache", None)
        if cache is None or len(cache) >= POLICY_CACHE_SIZE:
            cache = app.state.route_policy_cache = {}
        key = (scope.get("method", ""), scope.get("path", ""))
        found = cache.get(key)
        if found is None:
            found = cache[key] = _route_policy(scope)
        scope[_POLICY] = found
    return found


def _route_policy(scope: Scope) -> RoutePolicy:
    app = scope["app"]
    settings = app.state.settings
    policies: list[tuple[Any, RoutePolicy]] | None = getattr(app.state, "route_policies", None)
    if policies is None:  # every route is included before the first request
        policies = app.state.route_policies = [
            (ctx, _policy(ctx.original_route, settings))
            for ctx in iter_route_contexts(app.router.routes)
            if isinstance(ctx.original_route, APIRoute)
        ]
    for ctx, policy in policies:
        if ctx.matches(scope)[0] is Match.FULL:
            return policy
    return RoutePolicy(max_body=min(settings.default_body_bytes, settings.max_body_bytes), principal="none")


def _policy(route: APIRoute, settings: Any) -> RoutePolicy:
    calls = _calls(route.dependant)
    largest = (route.openapi_extra or {}).get(LARGEST_LEGAL_BODY)
    declared = BODY_LIMIT_FACTOR * int(largest) if largest else settings.default_body_bytes
    needs: Literal["required", "optional", "none"] = (
        "required" if require_principal in calls else "optional" if optional_principal in calls else "none"
    )
    return RoutePolicy(max_body=min(declared, settings.max_body_bytes), principal=needs)


def _has_body(scope: Scope) -> bool:
    if scope.get("method") in BODY_METHODS:
        return True
    for k, v in scope.get("headers", ()):
        if k == b"transfer-encoding" or (k == b"content-length" and v not in (b"0", b"")):
            return True
    return False


def _too_large(limit: int) -> Problem:
    return Problem(
        f"The request body is larger than {limit} bytes (this endpoint's limit).",
        status=413,
        code="payload-too-large",
        title="Payload too large",
        limit=limit,
    )


# ---- identity first ----


def _bearer(scope: Scope) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k == b"authorization":
            return bytes(v)
    return None


class IdentityFirst:
    """Verifies the bearer token from the headers of every request that carries one, and that its org is a
    registered, active participant with that role (shared.participants), before any byte of its body is received; a request with a body to a route that needs a principal is answered 401 at once
    when it has no valid token (its body is never read). The outcome is kept for `optional_principal` and
    the rate limiter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = _bearer(scope)
        outcome: Principal | Problem | None = None
        admitted = False
        if header is not None:
            token = ""
            if header[:7].lower() == b"bearer " and header[7:].strip():
                token = header[7:].strip().decode("latin-1")
                verifier: TokenVerifier | None = getattr(scope["app"].state, "verifier", None)
                if verifier is None:
                    outcome = Unauthorized("This service has no token verification key configured.", code="no-key")
                else:
                    try:
                        outcome = await verifier.verify(token)
                    except Problem as problem:
                        outcome = problem
                    else:  # ...and the participant it names is registered and active (before any body byte too)
                        try:
                            await admit(HTTPConnection(scope), outcome)
                            admitted = True
                        except Problem as problem:
                            outcome = problem
                        except Exception:  # the directory is unreachable: the dependency asks again (503)
                            pass
            else:
                outcome = Unauthorized(
                    "The Authorization header must be 'Bearer <token>'.", code="invalid-token", reason="malformed"
                )
            scope.setdefault("state", {})[IDENTITY] = (token, outcome, admitted)
        if _has_body(scope):
            policy = route_policy(scope)
            if policy.principal != "none":
                if isinstance(outcome, Problem):
                    await send_problem(send, outcome, scope)
                    return
                if outcome is None and policy.principal == "required":
                    await send_problem(send, Unauthorized("This endpoint needs a bearer token."), scope)
                    return
        await self.app(scope, receive, send)


def verified_principal(scope: Scope) -> Principal | None:
    """The principal `IdentityFirst` verified for this request, if any."""
    outcome = scope.get("state", {}).get(IDENTITY, (None, None))[1]
    return outcome if isinstance(outcome, Principal) else None


# ---- body size ----


class BodySizeLimit:
    """Refuses bodies over the route's limit with 413, by Content-Length up front or while streaming (the
    answer leaves as soon as the limit is passed; no more than the limit is ever buffered). Requests to
    routes whose limit is above `large_body_bytes` wait for one of `large_bodies` slots before their body is
    read (503 after `large_body_wait_s`), which bounds the memory large bodies can take at once."""

    def __init__(self, app: ASGIApp, *, large_body_bytes: int, large_bodies: int, large_body_wait_s: float) -> None:
        self.app = app
        self.large_body_bytes = large_body_bytes
        self.large_body_wait_s = large_body_wait_s
        self._slots = asyncio.Semaphore(large_bodies)

    @contextlib.asynccontextmanager
    async def _slot(self, large: bool) -> AsyncIterator[bool]:
        if not large:
            yield True
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self.large_body_wait_s)
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            self._slots.release()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in UNLIMITED_PATHS or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        limit = route_policy(scope).max_body
        for k, v in scope.get("headers", ()):
            if k == b"content-length" and (not v.isdigit() or int(v) > limit):
                await send_problem(send, _too_large(limit), scope)
                return
        async with self._slot(limit > self.large_body_bytes) as admitted:
            if not admitted:
                await send_problem(
                    send, Unavailable("Too many large requests in progress; retry shortly.", code="busy"), scope
                )
                return
            await self._limited(scope, receive, send, limit)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = responded = False

        async def limited_receive() -> Message:
            nonlocal received, responded
            if responded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now and make the app see a disconnect; whatever it answers is dropped.
                    if not started:
                        await send_problem(send, _too_large(limit), scope)
                    responded = True
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


# ---- rate limits ----


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets: `rate` requests per second sustained, bursts up to `burst`. At most `max_keys` buckets
    are kept: the least recently used is evicted (a returning caller starts with a full bucket), never all.

    A bucket refills by the time that passed on `clock` (seconds, monotonic) between two takes, so a burst
    that arrives over T seconds is allowed `burst + rate * T` requests; tests pass a clock they move by hand."""

    def __init__(
        self, rate: float, burst: float, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, cost: float = 1.0) -> float:
        """0 if allowed, else the seconds to wait."""
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(self.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        b.tokens = min(self.burst, b.tokens + (now - b.updated) * self.rate)
        b.updated = now
        if b.tokens >= cost:
            b.tokens -= cost
            return 0.0
        return (cost - b.tokens) / self.rate


class RateLimit:
    """Per-participant limits keyed on the identity `IdentityFirst` verified (the org), else the client
    address: a forged or invalid token spends its sender's address's budget, never the named org's. The
    app factory keeps the limiter on `app.state.rate_limiter`."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        key = caller(scope)
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
                scope,
            )
            return
        await self.app(scope, receive, send)


def caller(scope: Scope) -> str:
    """The rate limit key: the verified org, else the client address."""
    principal = verified_principal(scope)
    if principal is not None:
        return f"org:{principal.org}"
    client = scope.get("client") or ("unknown", 0)
    return f"ip:{client[0]}"
