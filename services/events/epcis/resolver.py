"""EPC URNs and GS1 Digital Link URIs → battery IDs, read through the registry's public resolve endpoint
(the events service never reads the registry's tables). Aliases never move to another battery, so hits are
cached for the process; misses are not (a battery registered a moment ago must resolve at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import httpx

from shared import peers
from shared.contract.epcis import BATTERY
from shared.problems import Unavailable

#: Only these can be battery aliases (registry: scheme epc | gs1_digital_link); class-level EPCs never are.
ALIAS_PREFIXES = ("urn:epc:id:", "http://", "https://")


class AliasResolver:
    def __init__(
        self,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int = 16,
        cache_size: int = 200_000,
    ) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=5.0)
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size
        self._limit = asyncio.Semaphore(concurrency)

    async def resolve_many(self, values: Iterable[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        ask: list[str] = []
        for v in set(values):
            if v.startswith(BATTERY):
                out[v] = v[len(BATTERY) :]
            elif v in self._cache:
                out[v] = self._cache[v]
            elif v.startswith(ALIAS_PREFIXES):
                ask.append(v)
            else:
                out[v] = None
        for v, found in zip(ask, await asyncio.gather(*(self._one(v) for v in ask)), strict=True):
            out[v] = found
            if found is not None and len(self._cache) < self._cache_size:
                self._cache[v] = found
        return out

    async def _one(self, value: str) -> str | None:
        async with self._limit:
            try:
                r = await peers.get(self._client, "/v1/resolve", params={"alias": value})
            except httpx.HTTPError as exc:
                raise Unavailable(f"The registry is unreachable ({exc.__class__.__name__}); retry shortly.") from None
        if r.status_code in (404, 422):
            return None
        if r.status_code != 200:
            raise Unavailable(f"The registry answered {r.status_code}; retry shortly.")
        body: dict[str, Any] = r.json()
        return str(body["battery_id"])

    async def close(self) -> None:
        await self._client.aclose()
