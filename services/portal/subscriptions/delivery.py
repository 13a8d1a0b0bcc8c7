"""Webhook delivery of EPCIS subscriptions, at least once: a dispatcher in each portal process claims due
subscriptions (a lease, `FOR UPDATE SKIP LOCKED`, so processes share the work and never deliver one subscription
twice at once), POSTs each the next EPCISQueryDocument after its watermark, and moves the watermark only when the
subscriber answered 2xx; otherwise it retries with exponential backoff. The watermark lives in PostgreSQL, so a
restart resumes where delivery stopped (the batch in flight is sent again: subscribers dedupe by eventID).

Streaming subscriptions wake on PostgreSQL NOTIFY (`bt_epcis_events`, sent by the EPCIS view's consumer in the
transaction that stores events, so it arrives after they are visible), from whichever portal process stored
them; a slow poll covers a lost notification. Every delivery is filtered by the owner's read rights as they are
at delivery time, and a suspended owner gets nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.portal.models import SCHEMA
from services.portal.settings import PortalSettings
from services.portal.subscriptions import repository as repo
from services.portal.subscriptions import rules, service
from shared.db import asyncpg_dsn
from shared.participants import TableDirectory
from shared.problems import Problem

log = logging.getLogger("batterytrace.portal.subscriptions")
USER_AGENT = "batterytrace-epcis-subscriptions/1"


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(i[4][0]) for i in infos})


async def check_public(dest: str) -> None:
    """Production: refuse a destination whose host resolves to a loopback, private or reserved address."""
    parts = urlsplit(dest)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(parts.hostname or "", port)
    except OSError:
        addresses = []
    rules.refuse_unless_public(addresses)


class Dispatcher:
    def __init__(self, settings: PortalSettings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]):
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.wake = asyncio.Event()
        #: Replaced at each notification after being set: WebSocket subscriptions of this process wait on it.
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._held: set[str] = set()  # subscriptions this process has leased and is delivering
        self._inflight: set[asyncio.Task[None]] = set()
        self._woken = False
        self._listener: Any = None
        self._client: httpx.AsyncClient | None = None
        self._participants = (
            None
            if settings.participants_unchecked_for_unit_tests
            else TableDirectory(engine, SCHEMA, ttl_s=settings.participants_ttl_s)
        )

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.subscription_timeout_s),
            follow_redirects=False,  # a redirect could point anywhere (SSRF): not followed
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._tasks = [
            asyncio.create_task(self._listen(), name="subscriptions-listen"),
            asyncio.create_task(self._run(), name="subscriptions-dispatch"),
        ]

    async def stop(self) -> None:
        held = sorted(self._held)  # before the cancelled deliveries forget them
        tasks = [*self._tasks, *self._inflight]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._client is not None:
            await self._client.aclose()
        if held:  # a batch cut short is sent again by whichever process claims it next, at once
            with contextlib.suppress(Exception):
                async with self.sessionmaker() as session, session.begin():
                    await repo.release(session, held)

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; reconnects after a PostgreSQL restart."""
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(asyncpg_dsn(self.settings.database_url))
                await conn.add_listener(repo.CHANNEL, lambda *_: self.notified())
                self.notified()  # events may have arrived while not listening
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("subscriptions: LISTEN failed (%r); retrying", exc)
                await asyncio.sleep(1)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()

    def notified(self) -> None:
        self._woken = True
        self.wake.set()
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def _run(self) -> None:
        """Claim what is due and deliver each subscription in a task of its own (a slow subscriber delays
        no other); look again when notified, when a delivery ends, or after the poll interval."""
        idle = self.settings.subscription_poll_s
        while True:
            self.wake.clear()
            try:
                if self._woken:
                    self._woken = False
                    async with self.sessionmaker() as session, session.begin():
                        await repo.wake_streams(session, datetime.now(UTC))
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a round that failed (database down) is tried again
                log.exception("subscriptions: dispatch round failed")
                await asyncio.sleep(1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), idle)

    async def _round(self) -> None:
        room = self.settings.subscription_claim - len(self._inflight)
        if room <= 0:
            return
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=self.settings.subscription_lease_s)
        async with self.sessionmaker() as session, session.begin():
            claimed = await repo.claim_due(session, now, lease, room)
        for row in claimed:
            self._held.add(str(row["id"]))
            task = asyncio.create_task(self._deliver_held(row))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _deliver_held(self, sub: dict[str, Any]) -> None:
        try:
            await self._deliver(sub)
        except Exception:  # the lease runs out and it is tried again
            log.exception("subscription %s: delivery failed unexpectedly", sub["id"])
        finally:
            self._held.discard(str(sub["id"]))
            self.wake.set()  # it may be due again at once (more events)

    async def _deliver(self, sub: dict[str, Any]) -> None:
        """One batch for one subscription, then the watermark moves (2xx) or a retry is scheduled."""
        now = datetime.now(UTC)
        try:
            owner = service.owner_of(sub)
            if self._participants is not None:
                facts = await self._participants.get(owner.org)
                if facts is None or not facts.active:
                    raise DeliveryError("the subscription's owner is not an active participant")
            scheduled = not sub["stream"]
            async with self.sessionmaker() as session, session.begin():
                stored = await repo.query(session, sub["owner"], sub["query_name"])
                if stored is None:
                    return  # deleted meanwhile (its subscriptions went with it)
                seen = await repo.last_seq(session)
                page = await service.next_page(
                    session,
                    owner,
                    stored,
                    after_seq=int(sub["after_seq"]),
                    initial_record_time=sub["initial_record_time"],
                    batch=self.settings.subscription_batch,
                )
            watermark = int(page.last_seq or 0) if page.more else max(int(page.last_seq or 0), seen)
            notified = None
            if page.rows or (scheduled and sub["report_if_empty"]):
                document = page.document
                document["epcisBody"]["queryResults"]["subscriptionID"] = sub["id"]
                await self._post(sub, document)
                notified = datetime.now(UTC)
            last = page.rows[-1] if page.rows else None
            if page.more:
                due, next_run = now, sub["next_run_at"]
            elif scheduled:
                next_run = rules.next_run(sub["schedule"], now)
                due = next_run
            else:
                due, next_run = now + timedelta(seconds=self.settings.subscription_stream_idle_s), None
            async with self.sessionmaker() as session, session.begin():
                await repo.delivered(
                    session,
                    sub["id"],
                    after_seq=watermark,
                    last_record_time=last["record_time"] if last else None,
                    last_event_id=last["event_id"] if last else None,
                    notified_at=notified,
                    due_at=due,
                    next_run_at=next_run,
                    claimed_due=sub["due_at"],
                )
        except (DeliveryError, Problem, httpx.HTTPError, OSError) as exc:
            attempts = int(sub["attempts"]) + 1
            wait = rules.backoff_s(
                attempts, self.settings.subscription_retry_base_s, self.settings.subscription_retry_cap_s
            )
            reason = exc.detail if isinstance(exc, Problem) else f"{exc.__class__.__name__}: {exc}"
            log.info("subscription %s: delivery %d failed (%s); retry in %.1f s", sub["id"], attempts, reason, wait)
            async with self.sessionmaker() as session, session.begin():
                await repo.failed(
                    session, sub["id"], attempts=attempts, error=reason, due_at=now + timedelta(seconds=wait)
                )

    async def _post(self, sub: dict[str, Any], document: dict[str, Any]) -> None:
        assert self._client is not None
        if not self.settings.subscription_allow_private_dest:
            await check_public(sub["dest"])
        body = orjson.dumps(document)
        headers = {
            "Content-Type": "application/ld+json",
            "GS1-EPCIS-Version": "2.0.0",
            "GS1-CBV-Version": "2.0.0",
            "GS1-Subscription-ID": sub["id"],
            "GS1-Delivery-Attempt": str(int(sub["attempts"]) + 1),
        }
        if sub["signature_token"]:
            headers["GS1-Signature"] = rules.signature(sub["signature_token"], body)
        answer = await self._client.post(sub["dest"], content=body, headers=headers)
        if not 200 <= answer.status_code < 300:
            raise DeliveryError(f"the subscriber answered {answer.status_code}")


class DeliveryError(Exception):
    pass
