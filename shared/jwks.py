"""A JSON Web Key Set fetched from an identity provider, off the request path.

Fetched with httpx's AsyncClient, kept in memory and refreshed in the background (every `refresh_s` by a
task started with the app, or, without one, by a fetch a request starts but does not wait for). While the
provider does not answer, the keys last fetched keep verifying for `stale_s` after that fetch; beyond the
bound they are refused (`KeysUnavailable`, a 401 naming its reason) rather than trusted for ever: a key the
provider withdrew during its outage must stop working at some point. A token naming a key ID the set does
not hold makes the cache fetch again at most every `min_refetch_s` (a provider rotating its keys), so no
caller can make the service hammer its provider with made-up key IDs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx

from shared.problems import Unauthorized

log = logging.getLogger("batterytrace.jwks")

K = TypeVar("K")

#: Least seconds between two fetches a request waits for, once no usable keys are held (a provider down).
RETRY_S = 1.0


class KeysUnavailable(Unauthorized):
    """No key set is held that may still verify tokens: never fetched, or older than the stale bound."""

    code, title = "keys-unavailable", "Token signing keys unavailable"


class JwksFetchError(Exception):
    pass


class JwksCache(Generic[K]):
    """One provider's key set, as `parse` makes it from the JWKS document (a PyJWT or joserfc key set)."""

    def __init__(
        self,
        url: str,
        parse: Callable[[dict[str, Any]], K],
        *,
        refresh_s: float = 300.0,
        stale_s: float = 3600.0,
        timeout_s: float = 5.0,
        min_refetch_s: float = 30.0,
    ) -> None:
        self.url = url
        self.parse = parse
        self.refresh_s = refresh_s
        self.stale_s = stale_s
        self.timeout_s = timeout_s
        self.min_refetch_s = min_refetch_s
        self._keys: K | None = None
        self._fetched_at = -math.inf  # monotonic time of the last successful fetch
        self._attempted_at = -math.inf  # ...of the last attempt, successful or not
        self._inflight: asyncio.Task[bool] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._document: str | None = None
        #: Bumped whenever a fetch brings a different key set: what was verified with the old one is stale.
        self.generation = 0
        self.fetches = 0
        self.failures = 0
        self.last_error: str | None = None

    # ---- lifecycle (optional: without it, requests start the refreshes) ----

    async def start(self) -> None:
        """Fetch once (without failing if the provider is down) and refresh every `refresh_s` from now on."""
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever(), name=f"jwks:{self.url}")

    async def close(self) -> None:
        for task in (self._refresher, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._refresher = self._inflight = None

    async def _refresh_forever(self) -> None:
        backoff = RETRY_S
        delay = self.refresh_s if self._keys is not None else min(backoff, self.refresh_s)
        while True:
            await asyncio.sleep(delay)
            if await self.refresh():
                backoff, delay = RETRY_S, self.refresh_s
            else:  # the provider is down: try again soon, then less and less often
                backoff = min(backoff * 2, self.refresh_s)
                delay = min(backoff, self.refresh_s)

    # ---- state ----

    @property
    def age_s(self) -> float:
        """Seconds since the last successful fetch (infinite before the first)."""
        return time.monotonic() - self._fetched_at

    def usable(self) -> bool:
        """Whether the keys held may still verify tokens (fetched, and within the stale bound)."""
        return self._keys is not None and self.age_s <= self.stale_s

    # ---- fetching ----

    async def refresh(self) -> bool:
        """Fetch the set now (one fetch at a time: a caller arriving during one shares it). True on success."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._fetch())
        return await asyncio.shield(self._inflight)

    async def _fetch(self) -> bool:
        self._attempted_at = time.monotonic()
        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                r = await http.get(self.url, headers={"accept": "application/json"})
                r.raise_for_status()
                body = r.json()
            if not isinstance(body, dict):
                raise JwksFetchError("the JWKS is not a JSON object")
            keys = self.parse(body)
            document = json.dumps(body, sort_keys=True)
        except Exception as exc:  # any failure leaves the keys held as they were
            self.failures += 1
            self.last_error = f"{exc.__class__.__name__}: {exc}"
            log.warning("JWKS %s: fetch failed (%s); keys held are %.0f s old", self.url, self.last_error, self.age_s)
            return False
        if document != self._document:
            self._document, self.generation = document, self.generation + 1
        self._keys, self._fetched_at, self.last_error = keys, time.monotonic(), None
        return True

    def _since_attempt(self) -> float:
        return time.monotonic() - self._attempted_at

    async def keys(self) -> K:
        """The keys to verify with now: the set held while within the stale bound (a refresh due starts in the
        background); else a fetch now, at most every RETRY_S; else `KeysUnavailable`."""
        if self.usable():
            if self.age_s > self.refresh_s and self._refresher is None and self._since_attempt() >= RETRY_S:
                if self._inflight is None or self._inflight.done():
                    self._inflight = asyncio.create_task(self._fetch())  # stale while revalidating
            assert self._keys is not None
            return self._keys
        if self._since_attempt() >= RETRY_S or (self._inflight is not None and not self._inflight.done()):
            await self.refresh()
        if self.usable():
            assert self._keys is not None
            return self._keys
        raise self.unavailable()

    async def refetched(self) -> K | None:
        """A newer set for a key ID the set held does not have, if a fetch is allowed now (`min_refetch_s`)."""
        if self._since_attempt() < self.min_refetch_s:
            return None
        await self.refresh()
        return self._keys if self.usable() else None

    def unavailable(self) -> KeysUnavailable:
        if self._keys is None:
            detail = "The token signing keys have not been fetched yet and the identity provider does not answer"
            reason = "keys-never-fetched"
        else:
            detail = (
                f"The token signing keys were last fetched {self.age_s:.0f} s ago, beyond the {self.stale_s:.0f} s "
                "they may be used while the identity provider does not answer"
            )
            reason = "keys-stale"
        return KeysUnavailable(f"{detail}; tokens cannot be verified.", reason=reason)


__all__ = ["JwksCache", "KeysUnavailable"]
