"""Fault matrix: under a steady load of event posts, each fault ends with a reconciliation that counts
every accepted event in the ledger, on battery.lifecycle.v1 and in the portal: 0 lost, 0 applied twice.

The services run as real processes; the broker is the test's own (so killing it touches nothing else). Each
fault records its reconciliation (`record_property`), which tests/conftest.py prints after the run."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from devtools.embedded import EmbeddedKafka, free_port
from shared.contract.streams import TOPIC_LIFECYCLE
from shared.db import asyncpg_dsn, make_engine
from shared.outbox import requeue
from tests.conftest import FAULT_REPORT, eventually, read_topic
from tests.events_helpers import BOOTSTRAP_ADMIN
from tests.factories import battery_body, create_models, participant
from tests.system import System

BATTERIES = [f"KR-FAULT-{i:03d}" for i in range(12)]


@pytest.fixture
def own_broker():
    kafka = EmbeddedKafka(free_port())
    kafka.start()
    yield kafka
    kafka.stop()


@pytest.fixture
async def system(infra, db_url, topic_prefix, own_broker, token):
    sut = System(db_url, own_broker.bootstrap, topic_prefix, str(infra.public_key))
    await sut.start()
    try:
        async with httpx.AsyncClient(base_url=sut.url("registry"), timeout=30) as reg:
            # The services run as in production: only registered participants' tokens work.
            admin = token(BOOTSTRAP_ADMIN, "admin")
            for org, role in (("LGES", "manufacturer"), ("KOTSA", "inspector"), ("MOLIT", "ministry")):
                await participant(reg, admin, org, role)
            maker = token("LGES", "manufacturer")
            await create_models(reg, maker, "NCM-PACK-77")
            body = {"batteries": [battery_body(battery_id=b) for b in BATTERIES]}
            assert (await reg.post("/v1/batteries/bulk", json=body, headers=maker)).status_code == 201
        async with httpx.AsyncClient(timeout=10) as c:  # the events service and the portal learnt them from Kafka

            async def admitted() -> bool:
                inspector, ministry = token("KOTSA", "inspector"), token("MOLIT", "ministry", ministry="MOLIT")
                events = await sut.probe(c, "events", f"/v1/batteries/{BATTERIES[0]}/state", inspector)
                portal = await sut.probe(c, "portal", "/v1/views/molit", ministry)
                return events not in (None, 401) and portal not in (None, 401)

            await eventually(admitted, timeout_s=60)
        yield sut
    finally:
        sut.stop()


@dataclass
class Load:
    """Clients posting INCIDENT events (always legal), retrying each with the same event ID until 201."""

    url: str
    headers: dict[str, str]
    accepted: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, clients: int = 6) -> None:
        self.tasks = [asyncio.create_task(self._client(BATTERIES[i % len(BATTERIES)])) for i in range(clients)]

    async def _client(self, bid: str) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as c:
            while not self.stop.is_set():
                body = {
                    "event_id": str(uuid.uuid4()),
                    "battery_id": bid,
                    "type": "INCIDENT",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "data": {"kind": "leak", "severity": "low"},
                }
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:  # a retry keeps the event ID: safe by design
                    try:
                        r = await c.post("/v1/events", json=body, headers=self.headers)
                        self.statuses[str(r.status_code)] += 1
                        if r.status_code == 201:
                            self.accepted.add(body["event_id"])
                            break
                        if r.status_code >= 500 and r.status_code != 503:
                            self.errors.append(r.text)
                        if r.status_code == 503:
                            assert r.headers.get("retry-after"), "503 must say when to retry"
                    except httpx.HTTPError as exc:
                        self.statuses[exc.__class__.__name__] += 1
                    await asyncio.sleep(0.2)
                await asyncio.sleep(0.01)

    async def run_for(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def finish(self, sut: System) -> None:
        """Stops the clients; no answer may have been a 5xx other than 503 (which says when to retry)."""
        self.stop.set()
        await asyncio.gather(*self.tasks)
        assert not self.errors, f"{self.statuses}\n{self.errors[:3]}\nevents log:\n{sut.log_tail('events')}"


async def reconcile(sut: System, accepted: set[str], token, bootstrap: str) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=10) as c:

        async def drained() -> bool:
            r = await c.get(sut.url("events") + "/v1/ops/outbox")
            return r.status_code == 200 and r.json()["backlog"] == 0

        await eventually(drained, timeout_s=90)
        conn = await asyncpg.connect(asyncpg_dsn(sut.db_url))
        try:
            ledger = {str(r[0]) for r in await conn.fetch("SELECT event_id FROM events.ledger WHERE type='INCIDENT'")}

            async def portal_has_all() -> bool:
                n = await conn.fetchval("SELECT count(*) FROM portal.events WHERE type = 'INCIDENT'")
                return n >= len(ledger)

            await eventually(portal_has_all, timeout_s=90)
            portal_rows = [
                str(r[0]) for r in await conn.fetch("SELECT event_id FROM portal.events WHERE type='INCIDENT'")
            ]
        finally:
            await conn.close()
        molit = (
            await c.get(sut.url("portal") + "/v1/views/molit", headers=token("MOLIT", "ministry", ministry="MOLIT"))
        ).json()
    msgs = await read_topic(bootstrap, sut.topic_prefix + TOPIC_LIFECYCLE, at_least=len(ledger), timeout_s=30)
    on_topic = {m["value"]["id"] for m in msgs if m["value"]["data"]["type"] == "INCIDENT"}
    result = {
        "accepted": len(accepted),
        "ledger": len(ledger),
        "lost": len(accepted - ledger) + len(ledger - on_topic) + len(ledger - set(portal_rows)),
        "duplicated": (len(portal_rows) - len(set(portal_rows))) + (molit["incidents"]["incidents"] - len(ledger)),
    }
    assert accepted <= ledger, "every 201 is in the ledger"
    assert ledger <= on_topic, "every ledger event is on battery.lifecycle.v1"
    assert set(portal_rows) == ledger and len(portal_rows) == len(ledger), "the portal has each event once"
    assert molit["incidents"]["incidents"] == len(ledger), "each event counted once in the ministry figures"
    return result


async def test_broker_killed_and_restarted_empty(system, own_broker, token, record_property) -> None:
    load = Load(system.url("events"), token("KOTSA", "inspector"))
    load.start()
    await eventually(lambda: len(load.accepted) >= 30, timeout_s=60)
    own_broker.stop(kill=True)
    await load.run_for(2)
    own_broker.start()  # memory-only: topics, messages and group offsets are gone
    await load.run_for(2)
    await load.finish(system)
    # Recovery runbook for a broker that lost its data: re-publish from the outboxes (consumers dedupe).
    engine = make_engine(system.db_url)
    try:
        await requeue(engine, "registry")
        await requeue(engine, "events")
    finally:
        await engine.dispose()
    result = await reconcile(system, load.accepted, token, own_broker.bootstrap)
    record_property(FAULT_REPORT, {"fault": "broker killed and restarted (empty)", **result})
    assert result["lost"] == 0 and result["duplicated"] == 0


async def test_postgres_restarted(system, infra, own_broker, token, record_property) -> None:
    maker = token("LGES", "manufacturer")
    async with httpx.AsyncClient(base_url=system.url("registry"), timeout=10) as reg:
        warm = [reg.get(f"/v1/batteries/{b}", headers=maker) for b in BATTERIES]  # fills the statement pool
        assert {r.status_code for r in await asyncio.gather(*warm)} == {200}
    load = Load(system.url("events"), token("KOTSA", "inspector"))
    load.start()
    await eventually(lambda: len(load.accepted) >= 30, timeout_s=60)
    await asyncio.to_thread(infra.pg.pg_ctl, "-w", "-m", "fast", "restart")
    await load.run_for(3)
    await load.finish(system)
    # The reads on the statement pool (no pre-ping) recover too: pooled connections the server closed
    # are dropped; a read meanwhile is 200 or a 503 that says when to retry, never a 500.
    reads: Counter[int] = Counter()
    async with httpx.AsyncClient(timeout=10) as c:
        for _ in range(40):
            r = await c.get(system.url("registry") + f"/v1/batteries/{BATTERIES[0]}", headers=maker)
            reads[r.status_code] += 1
    assert set(reads) <= {200, 503} and reads[200] >= 30, (reads, system.log_tail("registry"))
    result = await reconcile(system, load.accepted, token, own_broker.bootstrap)
    record_property(FAULT_REPORT, {"fault": "PostgreSQL restarted", **result, "statuses": dict(load.statuses)})
    assert result["lost"] == 0 and result["duplicated"] == 0


async def test_services_sigkilled_mid_batch(system, own_broker, token, record_property) -> None:
    """A batch in flight when its service dies is wholly in or wholly out; so is a bulk registration."""
    inspector = token("KOTSA", "inspector")
    batches: list[list[str]] = []

    async def post_batch(c: httpx.AsyncClient) -> None:
        events = [
            {
                "event_id": str(uuid.uuid4()),
                "battery_id": BATTERIES[i % len(BATTERIES)],
                "type": "INCIDENT",
                "occurred_at": datetime.now(UTC).isoformat(),
                "data": {"kind": "leak", "severity": "low"},
            }
            for i in range(500)
        ]
        batches.append([e["event_id"] for e in events])
        try:
            await c.post("/v1/events/batch", json={"events": events}, headers=inspector)
        except httpx.HTTPError:
            pass

    async with httpx.AsyncClient(base_url=system.url("events"), timeout=30) as c:
        tasks = [asyncio.create_task(post_batch(c)) for _ in range(6)]
        await asyncio.sleep(0.7)  # some batches committed, some in flight
        system.kill("events")
        await asyncio.gather(*tasks)
    maker = token("LGES", "manufacturer")
    bulk_ids = [f"KR-KILL-{i:05d}" for i in range(5000)]
    async with httpx.AsyncClient(base_url=system.url("registry"), timeout=30) as c:
        task = asyncio.create_task(
            c.post(
                "/v1/batteries/bulk", json={"batteries": [battery_body(battery_id=b) for b in bulk_ids]}, headers=maker
            )
        )
        await asyncio.sleep(0.2)
        system.kill("registry")
        try:
            await task
        except httpx.HTTPError:
            pass
    await system.start("registry", "events")
    conn = await asyncpg.connect(asyncpg_dsn(system.db_url))
    try:
        stored = {str(r[0]) for r in await conn.fetch("SELECT event_id FROM events.ledger WHERE type='INCIDENT'")}
        registered = await conn.fetchval("SELECT count(*) FROM registry.batteries WHERE id LIKE 'KR-KILL-%'")
    finally:
        await conn.close()
    for ids in batches:
        assert len(stored & set(ids)) in (0, len(ids)), "a batch is all or nothing"
    assert registered in (0, len(bulk_ids))
    # The portal dies mid-apply too; after restart it resumes from its committed offsets.
    load = Load(system.url("events"), inspector)
    load.start()
    await eventually(lambda: len(load.accepted) >= 20, timeout_s=60)
    system.kill("portal")
    await load.run_for(1.5)
    await system.start("portal")
    await load.run_for(1.5)
    await load.finish(system)
    whole_batches = {i for ids in batches if set(ids) <= stored for i in ids}
    result = await reconcile(system, load.accepted | whole_batches, token, own_broker.bootstrap)
    record_property(
        FAULT_REPORT,
        {
            "fault": "events, registry and portal SIGKILLed mid-batch",
            **result,
            "batches_in": sum(1 for ids in batches if set(ids) <= stored),
            "batches_out": sum(1 for ids in batches if not set(ids) & stored),
            "bulk_registered": registered,
        },
    )
    assert result["lost"] == 0 and result["duplicated"] == 0


class LateClosingProxy:
    """A Unix-socket proxy in front of PostgreSQL that passes every byte at once but, when the server closes
    a connection, closes the client's side only `hold_s` later: what a busy host shows between the server's
    last message ("terminating connection", FATAL 57P01) and the socket's close. It makes the window in
    which a PostgreSQL restart answered 500, about once in 30-60 restarts, as wide as a test needs."""

    def __init__(self, upstream_socket: str, hold_s: float) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="bt-pgproxy-")
        self.upstream = upstream_socket
        self.hold_s = hold_s
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, path=f"{self.dir}/.s.PGSQL.5432")

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.dir}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: float) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            await asyncio.sleep(hold)
            dst.close()

        await asyncio.gather(pump(reader, up_writer, 0), pump(up_reader, writer, self.hold_s))


async def test_connections_the_server_terminated_answer_503_not_500_and_are_not_reused(
    infra, db_url, make_settings, token
) -> None:
    """The cause of the rare 500 during a PostgreSQL restart, made deterministic: the server ends every
    connection (pg_terminate_backend, as a restart does); asyncpg reads the FATAL message on an idle pooled
    connection, is out of step from then on ("cannot switch to state N; another operation (2) is in
    progress", an InternalClientError) and the socket closes late. A read on the statement pool meanwhile
    answers 503 with Retry-After and the connection is dropped (the next read gets a fresh one, long before
    the old socket closes); a write through the ORM session pool is not even disturbed (the pre-ping counts
    the out-of-step connection as disconnected and the pool reconnects)."""
    from services.registry.app import create_app
    from services.registry.settings import RegistrySettings
    from tests.conftest import serve

    socket_path = f"{infra.pg.socket_dir}/.s.PGSQL.5432"
    proxy = LateClosingProxy(socket_path, hold_s=4.0)
    await proxy.start()
    from sqlalchemy.engine import make_url

    database = make_url(db_url).database
    assert database
    settings = make_settings(RegistrySettings, database_url=proxy.url(database), relay_enabled=False)
    maker = token("LGES", "manufacturer")
    try:
        async with serve(create_app(settings)) as lifespan:
            # As a server would: an exception that escapes is whatever the app answered, not raised to the test.
            transport = httpx.ASGITransport(app=lifespan.app, raise_app_exceptions=False)  # type: ignore[attr-defined]
            reg = httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30)
            await create_models(reg, maker, "NCM-PACK-77")
            assert (
                await reg.post("/v1/batteries", json=battery_body(battery_id="KR-LATE-1"), headers=maker)
            ).status_code == 201
            warm = await asyncio.gather(*(reg.get("/v1/batteries/KR-LATE-1", headers=maker) for _ in range(6)))
            assert {r.status_code for r in warm} == {200}
            conn = await asyncpg.connect(asyncpg_dsn(db_url))
            try:
                ended = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await conn.close()
            assert ended >= 2
            await asyncio.sleep(0.3)  # the FATAL messages have arrived; the sockets stay open for 4 s
            started = time.monotonic()
            reads: Counter[int] = Counter()
            while time.monotonic() - started < 3.0:
                r = await reg.get("/v1/batteries/KR-LATE-1", headers=maker)
                reads[r.status_code] += 1
                assert r.status_code in (200, 503), (r.status_code, r.text)
                if r.status_code == 503:
                    assert r.headers.get("retry-after"), "503 says when to retry"
                else:
                    break
            assert reads[200] == 1, f"a fresh connection answered before the old sockets closed: {reads}"
            assert reads[503] >= 1, f"the out-of-step connection was handed out (the path under test): {reads}"
            write = await reg.post("/v1/batteries", json=battery_body(battery_id="KR-LATE-2"), headers=maker)
            assert write.status_code == 201, write.text
            assert time.monotonic() - started < 4.0, "all within the window in which the old sockets were open"
    finally:
        await proxy.stop()
