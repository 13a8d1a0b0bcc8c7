"""SIGTERM under load: in-flight requests finish, the relay finishes its batch, nothing is lost and
nothing is applied twice (the events service as a real process)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx

from devtools.embedded import free_port
from shared.contract.streams import TOPIC_LIFECYCLE
from shared.db import asyncpg_dsn
from shared.roles import service_url
from tests.conftest import eventually, read_topic
from tests.factories import battery_body, create_models


def start(module: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            module,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "20",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_healthy(url: str) -> None:
    async def ok() -> bool:
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(url + "/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(ok, timeout_s=30)


async def test_sigterm_under_load_loses_nothing(infra, db_url, topic_prefix, token) -> None:
    rport, eport = free_port(), free_port()
    env = dict(os.environ)
    for prefix in ("BT_REGISTRY_", "BT_EVENTS_"):
        env |= {
            f"{prefix}DATABASE_URL": service_url(db_url, prefix.removeprefix("BT_").rstrip("_").lower()),
            f"{prefix}KAFKA_BOOTSTRAP_SERVERS": infra.kafka.bootstrap,
            f"{prefix}KAFKA_TOPIC_PREFIX": topic_prefix,
            f"{prefix}JWT_PUBLIC_KEY_FILE": str(infra.public_key),
            f"{prefix}KAFKA_SESSION_TIMEOUT_MS": "2000",
            f"{prefix}KAFKA_HEARTBEAT_INTERVAL_MS": "300",
            f"{prefix}LOG_LEVEL": "WARNING",
        }
    env["BT_EVENTS_REGISTRY_URL"] = f"http://127.0.0.1:{rport}"
    registry = start("services.registry.app:app", rport, env)
    events = start("services.events.app:app", eport, env)
    accepted: list[str] = []
    try:
        await wait_healthy(f"http://127.0.0.1:{rport}")
        await wait_healthy(f"http://127.0.0.1:{eport}")
        from tests.system import register_at

        await register_at(
            f"http://127.0.0.1:{rport}",
            f"http://127.0.0.1:{eport}",
            token,
            [("LGES", "manufacturer"), ("KOTSA", "inspector")],
        )
        maker = token("LGES", "manufacturer")
        inspector = token("KOTSA", "inspector")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rport}", timeout=30) as reg:
            await create_models(reg, maker, "NCM-PACK-77")
            ids = [f"KR-GS-{i:03d}" for i in range(8)]
            r = await reg.post(
                "/v1/batteries/bulk", json={"batteries": [battery_body(battery_id=b) for b in ids]}, headers=maker
            )
            assert r.status_code == 201, r.text

        stop = asyncio.Event()

        async def client(bid: str) -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{eport}", timeout=30) as c:
                while not stop.is_set():
                    eid = str(uuid.uuid4())
                    body = {
                        "event_id": eid,
                        "battery_id": bid,
                        "type": "INCIDENT",
                        "occurred_at": datetime.now(UTC).isoformat(),
                        "data": {"kind": "swelling", "severity": "low"},
                    }
                    try:
                        resp = await c.post("/v1/events", json=body, headers=inspector)
                    except httpx.HTTPError:
                        return  # the server has stopped accepting connections
                    if resp.status_code == 201:
                        accepted.append(eid)

        tasks = [asyncio.create_task(client(b)) for b in ids]
        await eventually(lambda: len(accepted) >= 200, timeout_s=60)
        events.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(events.wait, 40)
        stop.set()
        await asyncio.gather(*tasks)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status says why it stopped.
        assert code in (0, -signal.SIGTERM), code
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            stored = {
                str(r["event_id"])
                for r in await conn.fetch("SELECT event_id FROM events.ledger WHERE type = 'INCIDENT'")
            }
        finally:
            await conn.close()
        assert set(accepted) <= stored, "every 201 is in the ledger"
        # Restart: whatever the relay had not sent yet goes out now; nothing is lost.
        events = start("services.events.app:app", eport, env)
        await wait_healthy(f"http://127.0.0.1:{eport}")

        async def drained() -> bool:
            async with httpx.AsyncClient() as c:
                return (await c.get(f"http://127.0.0.1:{eport}/v1/ops/outbox")).json()["backlog"] == 0

        await eventually(drained, timeout_s=30)
        msgs = await read_topic(infra.kafka.bootstrap, topic_prefix + TOPIC_LIFECYCLE, at_least=len(stored))
        published = {m["value"]["id"] for m in msgs if m["value"]["data"]["type"] == "INCIDENT"}
        assert published == stored, "every stored event reached Kafka"
    finally:
        for p in (events, registry):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
