"""shared.peers.get against a real HTTP peer on loopback that drops a kept-alive connection the way a server's
keep-alive timeout does: it takes the next request's bytes and closes without answering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from shared.peers import get

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@asynccontextmanager
async def peer(answers_per_connection: int) -> AsyncIterator[list[int]]:
    """A server answering `answers_per_connection` requests on each connection (keep-alive), then reading the
    next request and closing without a response. Yields the per-connection counts of requests received."""
    received: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(0)
        me = len(received) - 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                received[me] += 1
                if received[me] > answers_per_connection:
                    break  # the request arrived; the connection closes with no answer
                writer.write(OK)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        received.insert(0, port)  # the port first, then one count per connection
        yield received


async def test_a_get_on_a_connection_the_peer_closed_is_sent_once_more_on_a_fresh_one() -> None:
    async with peer(answers_per_connection=1) as seen:
        port = seen[0]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await get(client, "/v1/batteries/A")
            second = await get(client, "/v1/batteries/B")  # goes out on the kept-alive connection, dropped
    assert first.status_code == second.status_code == 200 and second.text == "ok"
    # connection 1 answered A and swallowed B; connection 2 answered B
    assert seen[1:] == [2, 1]


async def test_a_second_drop_is_the_callers_and_nothing_is_sent_a_third_time() -> None:
    async with peer(answers_per_connection=0) as seen:
        port = seen[0]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await get(client, "/v1/batteries/A")
    assert seen[1:] == [1, 1]  # two connections, one request each


async def test_an_answer_is_never_resent_even_an_error_one() -> None:
    """Only a transport failure before any response is retried: a 5xx is the peer's answer."""
    error = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
    count = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        await reader.readuntil(b"\r\n\r\n")
        count += 1
        writer.write(error)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answer = await get(client, "/x")
    assert answer.status_code == 503 and count == 1
