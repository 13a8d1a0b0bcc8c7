"""Reading from a peer service over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

#: What a pooled keep-alive connection the peer closed meanwhile raises on its next use, before any byte of a
#: response: the request never reached the peer, so sending it again on a fresh connection is safe.
STALE_CONNECTION = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


async def get(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    """GET (idempotent), sent once more when the pooled connection it went out on had been closed by the peer
    (its keep-alive timeout racing our reuse); any other failure, or a second one, is the caller's."""
    try:
        return await client.get(url, **kwargs)
    except STALE_CONNECTION:
        return await client.get(url, **kwargs)
