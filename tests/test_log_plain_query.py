"""The public proofs answered without FastAPI's per-request machinery (services/events/log/router.PlainQueryRoute)
change nothing a client sees: a query the lean way takes ("plain") has exactly the values FastAPI's declared
parameters take from it, every other query goes the declared way (FastAPI's own validation problems), and a
proof, a refusal or a problem raised by the service reads the same either way — against a real log, including
a newer checkpoint signed while the app runs and a tree size no checkpoint has."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.events.app import create_app
from services.events.log import repository as repo
from services.events.log import tree
from services.events.log.router import (
    MAX_SEQUENCE,
    MAX_TREE_SIZE,
    ConsistencyRoute,
    InclusionRoute,
    PlainQueryRoute,
)
from services.events.log.router import router as log_router
from services.events.settings import EventsSettings
from shared.app import add_routes
from shared.contract import tlog
from shared.db import asyncpg_dsn
from shared.problems import install_problem_handlers
from shared.responses import DirectJSON
from tests.conftest import serve
from tests.log_helpers import copy_log

INCLUSION, CONSISTENCY = "/v1/log/proof/inclusion", "/v1/log/proof/consistency"


async def _get(app: FastAPI, path: str, query: bytes) -> tuple[int, dict[str, str], bytes]:
    """One GET straight over ASGI, the query string as these bytes (no client re-encodes it)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


class _NoStatements:
    """A statement pool for the echo below, whose answer sends no statement: a connection of nothing."""

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[None]:
        yield None


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> tuple[FastAPI, dict[str, PlainQueryRoute]]:
    """The log's routes, every request the declared way, answering with the parameters FastAPI validated; and the
    routes, to ask what they take as plain."""

    async def answer(app: FastAPI, conn: Any, params: dict[str, Any]) -> DirectJSON:
        return DirectJSON(params)

    monkeypatch.setattr(PlainQueryRoute, "handle", APIRoute.handle)
    monkeypatch.setattr(InclusionRoute, "answer", staticmethod(answer))
    monkeypatch.setattr(ConsistencyRoute, "answer", staticmethod(answer))
    app = FastAPI()
    install_problem_handlers(app)
    add_routes(app, log_router)
    app.state.statement_pool = _NoStatements()
    routes = {r.path: r for r in app.routes if isinstance(r, PlainQueryRoute)}
    assert set(routes) == {INCLUSION, CONSISTENCY}
    return app, routes


PLAIN_INCLUSION = [
    b"battery_id=KR-1&sequence=1",
    b"sequence=7&battery_id=ABC",
    b"battery_id=KR-LGES-P000001&sequence=3&tree_size=1024",
    b"battery_id=" + b"A" * 24 + b"&sequence=%d&tree_size=%d" % (MAX_SEQUENCE, MAX_TREE_SIZE),
]
DECLARED_INCLUSION = [
    b"battery_id=KR-1&sequence=%d" % (MAX_SEQUENCE + 1),
    b"battery_id=KR-1&sequence=1&tree_size=%d" % (MAX_TREE_SIZE + 1),
    b"battery_id=KR-1&sequence=01",
    b"battery_id=KR-1&sequence=+1",
    b"battery_id=KR-1&sequence=%31",
    b"battery_id=KR-1&sequence=1_0",
    b"battery_id=KR-1&sequence=%201",
    b"battery_id=KR-1&sequence=1.0",
    b"battery_id=KR-1&sequence=-1",
    b"battery_id=KR-1&sequence=0",
    b"battery_id=kr-1&sequence=1",
    b"battery_id=KR%2D1&sequence=1",
    b"battery_id=" + b"A" * 25 + b"&sequence=1",
    b"battery_id=A&battery_id=B&sequence=1",
    b"battery_id=A&sequence=1&sequence=2",
    b"battery_id=A&sequence=1&other=1",
    b"battery_id=A",
    b"sequence=1",
    b"",
    b"battery_id=A&&sequence=1",
    b"battery_id=A&sequence=1&tree_size=",
    b"battery_id=A&sequence=1&tree_size",
    b"battery_id=A&sequence=1&tree_size=0",
    b"battery_id=A;sequence=1",
]
PLAIN_CONSISTENCY = [b"first=1&second=2", b"second=5&first=9", b"first=%d&second=%d" % (MAX_TREE_SIZE, MAX_TREE_SIZE)]
DECLARED_CONSISTENCY = [
    b"first=0&second=2",
    b"first=1",
    b"first=1&second=%d" % (MAX_TREE_SIZE + 1),
    b"first=1&second=2&first=3",
    b"first=1&second=2&x=",
    b"first=1&second=02",
]


async def _same_as_declared(app: FastAPI, route: PlainQueryRoute, query: bytes) -> dict[str, Any] | None:
    """What the route takes as plain from the query, checked against what FastAPI's declared parameters take."""
    plain = route.plain(query)
    status, headers, body = await _get(app, route.path, query)
    if plain is not None:
        assert status == 200 and orjson.loads(body) == plain, (query, status, body)
    elif status != 200:
        assert status == 422 and headers["content-type"] == "application/problem+json", (query, status, body)
    return plain


async def test_a_plain_query_takes_the_values_fastapi_takes_and_nothing_else_is_plain(
    echo: tuple[FastAPI, dict[str, PlainQueryRoute]],
) -> None:
    app, routes = echo
    for path, plain, declared in (
        (INCLUSION, PLAIN_INCLUSION, DECLARED_INCLUSION),
        (CONSISTENCY, PLAIN_CONSISTENCY, DECLARED_CONSISTENCY),
    ):
        for query in plain:
            assert await _same_as_declared(app, routes[path], query) is not None, query
        for query in declared:
            assert await _same_as_declared(app, routes[path], query) is None, query


_NAMES = st.sampled_from(["battery_id", "sequence", "tree_size", "first", "second", "other", ""])
_VALUES = st.one_of(
    st.sampled_from(["1", "7", "KR-1", str(MAX_SEQUENCE), str(MAX_SEQUENCE + 1), str(MAX_TREE_SIZE), "A" * 25]),
    st.text(alphabet="AZaz09-+%_. ;=", max_size=26),
    st.integers(min_value=0, max_value=2**64).map(str),
)
_PARTS = st.lists(st.tuples(_NAMES, st.sampled_from(["=", ""]), _VALUES), max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=_PARTS, path=st.sampled_from([INCLUSION, CONSISTENCY]))
async def test_any_query_is_either_taken_as_fastapi_takes_it_or_left_to_fastapi(
    echo: tuple[FastAPI, dict[str, PlainQueryRoute]], parts: list[tuple[str, str, str]], path: str
) -> None:
    app, routes = echo
    await _same_as_declared(app, routes[path], "&".join(n + eq + v for n, eq, v in parts).encode())


# ---- against a real log ----
SIZE, OLDER = 300, 200  # with 4 levels held, proofs read 5 levels (4 in the older tree) from the store
LOG = tlog.Signer.generate("batterytrace.test/log")
LEAVES = [tlog.leaf_hash(hashlib.sha256(i.to_bytes(8, "big")).digest()) for i in range(SIZE)]


def _battery(i: int) -> str:
    return f"PLAIN-{i:05d}"


async def _sign(conn: asyncpg.Connection, size: int) -> None:
    root = tlog.root_from_leaves(LEAVES[:size])
    note = tlog.sign_note(tlog.Checkpoint(LOG.name, size, root).body(), [LOG]).encode()
    await repo.insert_checkpoint(conn, repo.StoredCheckpoint(size, root, note, LOG.verifier().encode()))


@pytest.fixture
async def owner(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A log of SIZE leaves whose only checkpoint so far is of OLDER leaves."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    await copy_log(conn, LEAVES, tlog.compact_nodes(0, LEAVES, tlog.getter({})), _battery)
    await _sign(conn, OLDER)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def events(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """The events service (no workers: the test signs the checkpoints), and the paths of the proof requests that
    went the declared way."""
    monkeypatch.setattr(tree, "UPPER_LEVELS", 4)
    declared: list[str] = []
    handle = APIRoute.handle

    async def counted(self: APIRoute, scope: Any, receive: Any, send: Any) -> None:
        if isinstance(self, PlainQueryRoute):
            declared.append(self.path)
        await handle(self, scope, receive, send)

    monkeypatch.setattr(APIRoute, "handle", counted)
    settings = make_settings(
        EventsSettings, relay_enabled=False, consumers_enabled=False, log_enabled=False, verifier_enabled=False
    )
    async with serve(create_app(settings)) as client:
        yield client, declared


async def _both_ways(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, url: str) -> tuple[int, str, Any]:
    """The answer to `url`, which must be the same the declared way."""
    answer = await client.get(url)
    with monkeypatch.context() as mp:
        mp.setattr(PlainQueryRoute, "handle", APIRoute.handle)
        declared = await client.get(url)
    seen = (answer.status_code, answer.headers["content-type"], answer.json())
    assert seen == (declared.status_code, declared.headers["content-type"], declared.json()), url
    return seen


async def test_proofs_refusals_and_problems_read_the_same_the_lean_way_and_the_declared_way(
    owner: asyncpg.Connection,
    events: tuple[httpx.AsyncClient, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, declared = events
    for i in (0, 5, 127, OLDER - 1):  # the default size: the newest checkpoint (OLDER)
        status, _, body = await _both_ways(client, monkeypatch, f"{INCLUSION}?battery_id={_battery(i)}&sequence=1")
        assert status == 200 and body["tree_size"] == OLDER and body["leaf_index"] == i
        root = tlog.root_from_leaves(LEAVES[:OLDER])
        tlog.verify_inclusion(LEAVES[i], i, OLDER, tlog.unhex(body["audit_path"]), root)
    # A tree size no checkpoint has (below the newest): answered, unchecked by a signed root, as before.
    status, _, body = await _both_ways(
        client, monkeypatch, f"{INCLUSION}?battery_id={_battery(9)}&sequence=1&tree_size=150"
    )
    assert status == 200 and body["tree_size"] == 150
    tlog.verify_inclusion(LEAVES[9], 9, 150, tlog.unhex(body["audit_path"]), tlog.root_from_leaves(LEAVES[:150]))
    refusals = {
        f"{INCLUSION}?battery_id={_battery(250)}&sequence=1": (404, "not-in-log"),  # not in the newest tree yet
        f"{INCLUSION}?battery_id={_battery(1)}&sequence=1&tree_size={SIZE}": (422, "validation-error"),  # beyond
        f"{INCLUSION}?battery_id=PLAIN-NONE&sequence=1": (404, "not-in-log"),
        f"{INCLUSION}?battery_id={_battery(1)}&sequence=2": (404, "not-in-log"),
        f"{CONSISTENCY}?first=5&second={SIZE}": (422, "validation-error"),
        f"{CONSISTENCY}?first=9&second=5": (422, "validation-error"),
    }
    for url, (status, code) in refusals.items():
        got, content_type, body = await _both_ways(client, monkeypatch, url)
        assert (got, body["code"], content_type) == (status, code, "application/problem+json"), (url, body)
    status, _, body = await _both_ways(client, monkeypatch, f"{CONSISTENCY}?first=150&second={OLDER}")
    assert status == 200
    old, new = tlog.root_from_leaves(LEAVES[:150]), tlog.root_from_leaves(LEAVES[:OLDER])
    tlog.verify_consistency(150, OLDER, tlog.unhex(body["proof"]), old, new)
    # Each of those went the lean way once (and the declared way once, by the test's hand) ...
    lean = 4 + 1 + len(refusals) + 1
    assert len(declared) == lean
    # ... and a query that is not plain goes the declared way, answered the same.
    declared.clear()
    status, _, body = await _both_ways(client, monkeypatch, f"{INCLUSION}?battery_id={_battery(5)}&sequence=01")
    assert status == 200 and body["leaf_index"] == 5 and declared == [INCLUSION, INCLUSION]
    status, _, body = await _both_ways(client, monkeypatch, f"{INCLUSION}?battery_id={_battery(5)}&sequence=0")
    assert status == 422 and body["errors"][0]["field"] == "query.sequence"


async def test_a_newer_checkpoint_is_used_the_lean_way_once_it_is_signed(
    owner: asyncpg.Connection, events: tuple[httpx.AsyncClient, list[str]]
) -> None:
    client, declared = events
    url = f"{INCLUSION}?battery_id={_battery(250)}&sequence=1"
    assert (await client.get(url)).status_code == 404  # leaf 250 is beyond the newest checkpoint (OLDER)
    await _sign(owner, SIZE)
    answer = await client.get(url)
    assert answer.status_code == 200 and answer.json()["tree_size"] == SIZE
    proof = tlog.unhex(answer.json()["audit_path"])
    tlog.verify_inclusion(LEAVES[250], 250, SIZE, proof, tlog.root_from_leaves(LEAVES))
    older = await client.get(f"{INCLUSION}?battery_id={_battery(3)}&sequence=1&tree_size={OLDER}")
    assert older.status_code == 200 and older.json()["tree_size"] == OLDER
    assert declared == []  # all the lean way
