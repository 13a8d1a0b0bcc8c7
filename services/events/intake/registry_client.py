"""Read-through to the registry: a battery the registry has answered 201 for is usable here at once,
even before its registration arrives on battery.registry.v1."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from shared import peers
from shared.problems import Unavailable


class RegistryClient:
    def __init__(self, base_url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=5.0)

    async def battery(self, battery_id: str) -> dict[str, Any] | None:
        try:
            # Encoded, so that an ID holding '?', '#' or control characters names that ID and nothing else.
            r = await peers.get(self._client, f"/v1/batteries/{quote(battery_id, safe='')}")
        except httpx.HTTPError as exc:
            raise Unavailable(f"The registry is unreachable ({exc.__class__.__name__}); retry shortly.") from None
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise Unavailable(f"The registry answered {r.status_code}; retry shortly.")
        body: dict[str, Any] = r.json()
        return body

    async def close(self) -> None:
        await self._client.aclose()
