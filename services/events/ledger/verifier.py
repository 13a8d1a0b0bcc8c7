"""The periodic verifier: re-checks every battery's hash chain in the background, round-robin, and raises
a metric and an error log line for each chain that does not verify (tamper evidence without a caller)."""

from __future__ import annotations

import asyncio
import logging
import time
from itertools import groupby
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.events.ledger import repository as repo
from shared.contract.lifecycle import verify_chain
from shared.metrics import LEDGER_VERIFY_FAILURES

log = logging.getLogger("batterytrace.verifier")

#: The slowest a paced sweep goes (events per second), however small the ledger and long the period.
MIN_RATE_PER_S = 500.0


class ChainVerifier:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        interval_s: float = 60.0,
        chunk: int = 500,
        max_rows: int = 5_000,
        rate_per_s: float | None = None,
        period_s: float | None = None,
        min_rate_per_s: float = MIN_RATE_PER_S,
        slice_s: float = 0.002,
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.chunk = chunk
        # A chunk's chains are held in memory at once: bounded by events, not only batteries, so a few long chains
        # (the soak's 24 batteries hold its whole ledger) do not make the sweep's working set the ledger's size.
        self.max_rows = max_rows
        # The sweep shares the event loop with the requests: it re-hashes for at most `slice_s` at a time and
        # then lets them run, so no request waits behind a whole chunk (500 chains, a thousand events or more:
        # tens of milliseconds of hashing: a stall of that size for whatever request is waiting).
        self.slice_s = slice_s
        # A sweep re-hashes every event; unpaced, at a million batteries it took whole cores for minutes
        # and the requests next to it waited (measured: 3.3 ms of events-service CPU per posted event
        # during a sweep, 1.9 ms without). Paced, it is a bounded background share.
        self.rate_per_s = rate_per_s
        # What a sweep needs is to go through the ledger once per period, not as fast as it may: paced to the
        # ledger's size, a sweep of a million events over an hour re-hashes some 300 a second (the floor: 500),
        # a quarter of the cap's share of the cores (measured: half the events service's CPU during the history
        # phase of a 1 M run was the sweep at 2,000 a second); `rate_per_s` stays the most it may take. The
        # estimate sets only the speed: every battery is swept whatever it says.
        self.period_s = period_s
        self.min_rate_per_s = min_rate_per_s
        self.pace: float | None = rate_per_s  # the current sweep's events per second
        self.broken: dict[str, str] = {}
        self.sweeps = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-verifier")

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("ledger verifier sweep failed", exc_info=True)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            except TimeoutError:
                pass

    async def sweep(self) -> dict[str, str]:
        """Verify every battery once. Returns {battery_id: reason} of the chains that do not verify."""
        broken: dict[str, str] = {}
        after = ""
        while True:
            started = time.monotonic()
            async with self.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                db: Any = raw.driver_connection
                if not after and self.period_s is not None:  # the sweep's first chunk: its pace
                    size = await repo.ledger_size_estimate(db)
                    self.pace = sweep_rate(size, self.period_s, self.rate_per_s, self.min_rate_per_s)
                # The heads and their chains from one snapshot: an event committed between two autocommit reads
                # would make a chain one longer than the head just read, an alarm with nothing tampered.
                async with db.transaction(isolation="repeatable_read", readonly=True):
                    heads = _within(await repo.heads_after(db, after, self.chunk), self.max_rows)
                    rows = await repo.chains_of(db, [h["battery_id"] for h in heads]) if heads else []
                if not heads:
                    break
            chains: dict[str, list[dict[str, Any]]] = {
                bid: list(group) for bid, group in groupby(rows, key=lambda r: r["battery_id"])
            }
            since = time.perf_counter()
            for head in heads:
                if time.perf_counter() - since >= self.slice_s:
                    await asyncio.sleep(0)
                    since = time.perf_counter()
                bid = head["battery_id"]
                chain = chains.get(bid, [])
                valid, at, reason, count, last = verify_chain(chain)
                if not valid:
                    broken[bid] = f"sequence {at}: {reason}"
                elif count != head["sequence"] or last != head["last_hash"]:
                    broken[bid] = f"the ledger ends at {count} but the battery's head is at {head['sequence']}"
            after = heads[-1]["battery_id"]
            if self.pace:
                # sleep off the rest of the time this chunk's events are allowed at the sweep's pace
                await asyncio.sleep(max(0.0, len(rows) / self.pace - (time.monotonic() - started)))
        for bid, why in broken.items():
            if bid not in self.broken:
                log.error(
                    "ledger chain broken for battery %s: %s",
                    bid,
                    why,
                    extra={"fields": {"battery_id": bid, "alert": "ledger-tamper"}},
                )
        self.broken = broken
        self.sweeps += 1
        LEDGER_VERIFY_FAILURES.labels("events").set(len(broken))
        return broken


def sweep_rate(events: int | None, period_s: float, cap: float | None, floor: float) -> float | None:
    """Events per second for a sweep to go through a ledger of about `events` in `period_s`: never below `floor`
    (a small ledger is swept quickly, not spread over the period) nor above `cap` (None: no cap). An unknown size
    (never analysed yet) sweeps at the cap."""
    if events is None:
        return cap
    rate = max(floor, events / period_s)
    return rate if cap is None else min(cap, rate)


def _within(heads: list[dict[str, Any]], max_rows: int) -> list[dict[str, Any]]:
    """The first heads whose chains (a head's sequence is its chain's length) add up to at most `max_rows` events;
    at least one, however long its chain."""
    total = 0
    for i, head in enumerate(heads):
        total += head["sequence"]
        if total > max_rows and i:
            return heads[:i]
    return heads
