"""Test harness: one embedded PostgreSQL and one embedded broker per session (under pytest-xdist, `make test`: per
worker); every test gets its own database (cloned from a migrated template) and its own topic prefix, so tests
never see each other."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from devtools.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from services.events.settings import EventsSettings
from services.portal.settings import PortalSettings
from services.registry.settings import RegistrySettings
from shared.auth import generate_keypair, mint_token
from shared.migrate import upgrade_head
from shared.roles import SERVICE_ROLES, service_url
from shared.settings import ServiceSettings

TEMPLATE_DB = "bt_template"
#: The user property under which a fault test records its reconciliation (tests/test_faults.py).
FAULT_REPORT = "fault_report"


#: The longest tests (seconds in a full run on 3 workers), handed out first under pytest-xdist (`make test`): one
#: started last would run on alone after the rest has finished. The order of the others is unchanged.
LONG_TESTS = {
    "test_gs1_openapi_conformance": 220,
    "test_fuzz_every_service": 195,
    "test_quick_bench_reports_every_figure_with_a_number": 125,
    "test_services_sigkilled_mid_batch": 75,
    "test_webhook_and_websocket_subscribers_see_every_readable_event_once_within_1s": 70,
    "test_backup_restores_every_chain_and_the_log_and_an_older_backup_is_detected": 57,
    "test_dev_starts_everything_and_stops_cleanly": 47,
    "test_authorization_matrix": 45,
    "test_measure_server_time_and_page_weight": 40,
    "test_postgres_restarted": 38,
    "test_the_demo_walks_through_a_pack_replacement_under_a_recall": 38,
    "test_broker_killed_and_restarted_empty": 36,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: every worker sorts alike, as xdist requires
        items.sort(key=lambda item: -LONG_TESTS.get(getattr(item, "originalname", item.name), 0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault report: one line per fault test that reconciled, passed or failed, after the run."""
    rows = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == FAULT_REPORT
    ]
    if rows:
        terminalreporter.section("fault report")
        for row in rows:
            terminalreporter.write_line(f"FAULT {row}")


@dataclass
class Infra:
    pg: EmbeddedPostgres
    kafka: EmbeddedKafka
    private_key: bytes
    public_key: Path


@pytest.fixture(scope="session")
def infra() -> Any:
    # Not tmp_path_factory: concurrent pytest runs prune each other's numbered temp dirs.
    base = Path(tempfile.mkdtemp(prefix="bt-infra-"))
    pg = EmbeddedPostgres(base / "pg", ephemeral=True)
    pg.start()
    kafka = EmbeddedKafka(free_port(), log_path=base / "kafka.log")
    try:
        pg.create_database_sync(TEMPLATE_DB)  # also makes the roles (once: they are cluster-wide)
        upgrade_head(pg.owner_url(TEMPLATE_DB))  # as in production: the owner migrates
        kafka.start()
        priv, pub = generate_keypair(base / "keys")
        yield Infra(pg=pg, kafka=kafka, private_key=priv.read_bytes(), public_key=pub)
    finally:
        kafka.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def db_url(infra: Infra) -> AsyncIterator[str]:
    """The test's own database, as the superuser (what a test inspects or tampers with); the services
    connect to it as their own roles (`make_settings`, `service_db_url`)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    await infra.pg.create_database(name, template=TEMPLATE_DB)
    try:
        yield infra.pg.url(name)
    finally:
        await infra.pg.drop_database(name)


def service_db_url(db_url: str, settings_cls: type[ServiceSettings]) -> str:
    """`db_url` as the role of the service whose settings class this is (bt_registry, bt_events, bt_portal)."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    service = prefix.removeprefix("BT_").removesuffix("_").lower()
    return service_url(db_url, service) if service in SERVICE_ROLES else db_url


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def make_settings(infra: Infra, db_url: str, topic_prefix: str) -> Callable[..., Any]:
    def make(cls: type[ServiceSettings], **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "database_url": service_db_url(db_url, cls),
            "kafka_bootstrap_servers": infra.kafka.bootstrap,
            "kafka_topic_prefix": topic_prefix,
            "kafka_partitions": 2,
            "jwt_public_key_file": infra.public_key,
            "relay_idle_sleep_s": 0.01,
            "kafka_session_timeout_ms": 2000,
            "kafka_heartbeat_interval_ms": 300,
            "log_json": False,
            "log_level": "WARNING",
            # Unit-level fixtures mint tokens for orgs they never registered; the attack tests (tests/attacks/)
            # and the system tests run with the participant check on (pass False).
            "participants_unchecked_for_unit_tests": True,
        }
        values.update(overrides)
        return cls(**values)

    return make


@pytest.fixture
def token(infra: Infra) -> Callable[..., dict[str, str]]:
    """token(org, role, ministry=None) -> Authorization headers."""

    def make(org: str, role: str, ministry: str | None = None, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(infra.private_key, org=org, role=role, ministry=ministry, **kw)}"}

    return make


class RetryPending(httpx.AsyncBaseTransport):
    """What a well-behaved client does with 503 `registration-pending` (the events service has not received the
    battery's registration yet): wait the Retry-After and send the same request again, for up to `limit_s`. A
    streamed body is sent once as it is (never read ahead). Tests of that answer itself talk to `client.app` over
    a plain ASGITransport."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limit_s: float = 30.0) -> None:
        self.inner, self.limit_s = inner, limit_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.ByteStream):  # a streamed body (tests of reading it): sent once
            return await self.inner.handle_async_request(request)
        deadline = asyncio.get_running_loop().time() + self.limit_s
        while True:
            response = await self.inner.handle_async_request(request)
            if response.status_code != 503 or asyncio.get_running_loop().time() > deadline:
                return response
            body = await response.aread()
            if b'"registration-pending"' not in body:
                return response
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (engine, relay, consumers) and talk to it over ASGI (retrying as `RetryPending`)."""
    async with app.router.lifespan_context(app):
        transport = RetryPending(httpx.ASGITransport(app=app))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def registry(make_settings: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    from services.registry.app import create_app

    async with serve(create_app(make_settings(RegistrySettings))) as client:
        yield client


async def read_topic(
    bootstrap: str, topic: str, *, at_least: int, timeout_s: float = 20.0, settle_s: float = 0.5
) -> list[dict[str, Any]]:
    """Every message on a topic (all partitions, from the start): waits until `at_least` arrived, then a
    little longer so that duplicates would show."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        parts: set[int] | None = None
        while parts is None and loop.time() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                parts = None
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
        if parts is None:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        settle_until = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            for recs in batch.values():
                for r in recs:
                    out.append(
                        {
                            "key": r.key.decode() if r.key else None,
                            "value": orjson.loads(r.value),
                            "partition": r.partition,
                            "offset": r.offset,
                        }
                    )
            if len(out) >= at_least:
                settle_until = settle_until or loop.time() + settle_s
                if loop.time() >= settle_until:
                    break
        return out
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Any], timeout_s: float = 15.0, interval_s: float = 0.05) -> Any:
    """Poll an async or sync check until it returns a truthy value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: Any = None
    while loop.time() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last: {last!r})")


__all__ = ["EventsSettings", "Infra", "PortalSettings", "RegistrySettings", "eventually", "read_topic", "serve"]


@pytest.fixture
def own_broker(tmp_path: Path) -> Any:
    """A broker of the test's own (a test that stops, stalls or restarts its broker, or measures what a broker
    holds, must not share the session's), stopped after the test; its log in the test's tmp_path."""
    kafka = EmbeddedKafka(free_port(), log_path=tmp_path / "kafka.log")
    kafka.start()
    yield kafka
    kafka.stop()
