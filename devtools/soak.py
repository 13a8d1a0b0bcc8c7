"""`make soak`: the fault matrix many times in a row, then a long mixed load with one fault every two minutes,
reconciled at the end. Everything runs on this machine (embedded PostgreSQL and broker, the services as real
processes on loopback); it stops by itself.

    python -m devtools.soak [--runs 50] [--minutes 20] [--fault-every 120] [--chain-length 200]
                            [--report soak-report.json]

Part 1 runs `tests/test_faults.py` `--runs` times (each run a fresh pytest process) and counts the runs that
failed. Part 2 starts the system as deploy/ splits it where it matters (the portal's consumer is its own
process), puts a mixed load on it (event posts retried with their event ID until 201, 8 batteries at a time,
each taking `--chain-length` events before the next takes its place, and reads of the registry, the events
service and the portal) and every `--fault-every` seconds applies the next fault of:
broker killed (restarted empty, then the runbook: republish from the system of record), PostgreSQL restarted,
a service SIGKILLed (events and registry in turn), the portal consumer SIGKILLed. At the end it reconciles:
every 201 in the ledger, every ledger event on battery.lifecycle.v1 and in the portal exactly once, and no 5xx
other than a 503 with Retry-After. The RSS of every service process is sampled every 10 s; the report gives
each process's life (a restarted service is a new one) its slope (MiB per minute, least squares) over the whole
life, after the first two minutes and over the last half, its steps (a rise of 2 MiB or more within a minute: a
republish, a catch-up, the ledger verifier's sweep, each named by what it came after) and its drift (growth
outside the steps), and says in words what the last half of its life did: flat, rising in steps, or growing
outside steps. The JSON report is written to
`--report`; the exit code is 0 only if everything reconciled.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import TopicPartition

from devtools.dev import SERVICES, service_command
from devtools.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from shared.auth import generate_keypair, mint_token
from shared.contract.streams import TOPIC_LIFECYCLE
from shared.db import asyncpg_dsn, make_engine
from shared.kafka import make_consumer
from shared.migrate import upgrade_head

ROOT = Path(__file__).resolve().parent.parent
BATTERIES = [f"KR-SOAK-{i:03d}" for i in range(24)]
#: Events the posters send to one battery before each moves on to a fresh one (0: each keeps to its own).
CHAIN_LENGTH = 200
#: Posted events per second that the spare batteries are registered for (on the 2 shared cores the load reached
#: 30 to 100, as busy as the machine was).
MAX_POST_RATE = 150
#: Batteries per bulk registration (the registry takes up to 10,000).
BULK = 5_000
FAULTS = ("broker", "postgres", "service", "portal-consumer")
MODEL = {
    "id": "NCM-PACK-77",
    "kind": "pack",
    "chemistry": "NCM",
    "rated_capacity_ah": 222,
    "nominal_voltage_v": 350,
    "rated_energy_kwh": 77.4,
    "mass_kg": 477,
}


def say(message: str) -> None:
    print(f"[soak {datetime.now(UTC).strftime('%H:%M:%S')}] {message}", flush=True)


# ---- part 1: the fault matrix, again and again ----


def fault_matrix(runs: int) -> dict[str, Any]:
    passed = failed = 0
    failures: list[dict[str, Any]] = []
    faults: list[str] = []
    started = time.monotonic()
    for i in range(1, runs + 1):
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_faults.py", "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        ok = proc.returncode == 0
        passed, failed = passed + ok, failed + (not ok)
        faults += [line[6:] for line in proc.stdout.splitlines() if line.startswith("FAULT ")]
        if not ok:
            failures.append({"run": i, "tail": proc.stdout[-6000:]})
        say(f"fault matrix run {i}/{runs}: {'passed' if ok else 'FAILED'} in {time.monotonic() - t0:.0f} s")
        if not ok:
            for line in proc.stdout.splitlines():
                if line.startswith(("FAILED", "ERROR", "E   ")):
                    say(f"  {line[:300]}")
    return {
        "runs": runs,
        "passed": passed,
        "failed": failed,
        "seconds": round(time.monotonic() - started, 1),
        "failures": failures,
        "fault_reports": faults,
    }


# ---- part 2: the mixed load with faults ----


@dataclass(frozen=True)
class Sample:
    """One look at a service process: seconds since the load began, its pid, and MiB of its RSS, of that its
    anonymous memory (heap, arenas, stacks: where a leak grows) and its file-backed pages, and its threads."""

    t: float
    pid: int
    rss: float
    anon: float
    file: float
    threads: int


#: Seconds between two RSS samples of every process.
SAMPLE_EVERY_S = 10.0


@dataclass
class Soak:
    base: Path
    minutes: float
    fault_every_s: float
    #: A battery's history is tens of events, not the whole load's: with every event on 8 batteries, what the
    #: services read whole per battery (the ledger verifier's chains, the portal's refolded timelines) grows with
    #: the run, and their RSS with it, a working set that looks like a leak.
    chain_length: int = CHAIN_LENGTH
    spare: list[str] = field(init=False)
    pg: EmbeddedPostgres = field(init=False)
    kafka: EmbeddedKafka = field(init=False)
    db_url: str = field(init=False)
    private_key: bytes = field(init=False)
    public_key: Path = field(init=False)
    prefix: str = field(default_factory=lambda: f"soak{uuid.uuid4().hex[:6]}.")
    ports: dict[str, int] = field(default_factory=lambda: {n: free_port() for n in SERVICES})
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    healthy: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    rss: dict[str, list[Sample]] = field(default_factory=dict)  # by process name, every life of it
    t0: float = field(default_factory=time.monotonic)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        wanted = int(self.minutes * 60 * MAX_POST_RATE / self.chain_length) if self.chain_length else 0
        self.spare = [f"KR-SOAK-{i:03d}" for i in range(len(BATTERIES), len(BATTERIES) + wanted)]

    # -- the system --

    def start_infra(self) -> None:
        self.pg = EmbeddedPostgres(self.base / "pg", ephemeral=True)
        self.pg.start()
        self.pg.create_database_sync("soak")
        self.db_url = self.pg.url("soak")
        upgrade_head(self.db_url)
        self.kafka = EmbeddedKafka(free_port(), log_path=self.base / "kafka.log")
        self.kafka.start()
        priv, self.public_key = generate_keypair(self.base / "keys")
        self.private_key = priv.read_bytes()

    def env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        for _, p in SERVICES.values():
            env |= {
                f"{p}DATABASE_URL": self.db_url,
                f"{p}KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
                f"{p}KAFKA_TOPIC_PREFIX": self.prefix,
                f"{p}JWT_PUBLIC_KEY_FILE": str(self.public_key),
                f"{p}KAFKA_SESSION_TIMEOUT_MS": "3000",
                f"{p}KAFKA_HEARTBEAT_INTERVAL_MS": "500",
                f"{p}LOG_LEVEL": "ERROR",
            }
        env["BT_EVENTS_REGISTRY_URL"] = self.url("registry")
        env["BT_PORTAL_EVENTS_URL"] = self.url("events")
        env["BT_PORTAL_REGISTRY_URL"] = self.url("registry")
        env["BT_PORTAL_SELF_URL"] = self.url("portal")
        # The portal's consumer runs in its own process (as deploy/ runs it), so it can be killed on its own.
        env["BT_PORTAL_CONSUMERS_ENABLED"] = "true" if name == "portal-consumer" else "false"
        return env

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    async def start(self, name: str) -> None:
        service = "portal" if name == "portal-consumer" else name
        self.ports.setdefault(name, free_port())
        log = (self.base / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            service_command(service, "127.0.0.1", self.ports[name]), env=self.env(name), stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient(timeout=2) as c:
            while time.monotonic() < deadline:
                try:
                    if (await c.get(self.url(name) + "/healthz")).status_code == 200:
                        self.healthy.add(name)  # its RSS is sampled from now on, not while it imports
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{name} did not become healthy; see {self.base / (name + '.log')}")

    def kill(self, name: str) -> None:
        self.healthy.discard(name)
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def shutdown(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
        self.kafka.stop()
        self.pg.stop()

    def token(self, org: str, role: str, ministry: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.private_key, org=org, role=role, ministry=ministry)}"}

    async def seed(self) -> None:
        admin = self.token("BT-ADMIN", "admin")
        async with httpx.AsyncClient(base_url=self.url("registry"), timeout=30) as reg:
            for org, role, extra in (
                ("LGES", "manufacturer", {"gs1_company_prefixes": ["8801234"]}),
                ("KOTSA", "inspector", {}),
                ("MOLIT", "ministry", {"ministry": "MOLIT"}),
            ):
                r = await reg.post(
                    "/v1/participants", json={"id": org, "name": org, "role": role, **extra}, headers=admin
                )
                assert r.status_code in (201, 409), r.text
            maker = self.token("LGES", "manufacturer")
            r = await reg.post("/v1/models", json=MODEL, headers=maker)
            assert r.status_code in (201, 409), r.text
            batteries = [
                {
                    "id": b,
                    "model_id": MODEL["id"],
                    "serial_number": f"SN{i:08d}",
                    "manufactured_at": "2026-01-15T09:00:00+09:00",
                    "manufacturing_site": "Ochang, KR",
                    "materials_kg": {"lithium": 8.0, "nickel": 40.0},
                    "recycled_content_pct": {"lithium": 6},
                }
                for i, b in enumerate(BATTERIES + self.spare)
            ]
            for start in range(0, len(batteries), BULK):
                r = await reg.post(
                    "/v1/batteries/bulk", json={"batteries": batteries[start : start + BULK]}, headers=maker
                )
                assert r.status_code == 201, r.text
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient(timeout=10) as c:
            while time.monotonic() < deadline:
                last = (BATTERIES + self.spare)[-1]  # the participants admitted, and every battery known
                r = await c.get(
                    self.url("events") + f"/v1/batteries/{last}/state", headers=self.token("KOTSA", "inspector")
                )
                if r.status_code not in (401, 404, 503):
                    return
                await asyncio.sleep(0.5)
        raise RuntimeError("the events service never admitted the seeded participants and batteries")

    # -- the load --

    def _record(self, where: str, r: httpx.Response) -> None:
        self.statuses[f"{where} {r.status_code}"] += 1
        if r.status_code >= 500 and not (r.status_code == 503 and r.headers.get("retry-after")):
            self.bad.append(f"{where} {r.status_code}: {r.text[:300]}")

    async def poster(self, battery: str) -> None:
        """Posts events to `battery`, and after `chain_length` of them to the next spare battery (while any is
        left)."""
        headers = self.token("KOTSA", "inspector")
        posted = 0
        async with httpx.AsyncClient(base_url=self.url("events"), timeout=10) as c:
            while not self.stop.is_set():
                if self.chain_length and posted >= self.chain_length and self.spare:
                    battery, posted = self.spare.pop(0), 0
                event_id = str(uuid.uuid4())
                body = {
                    "event_id": event_id,
                    "battery_id": battery,
                    "type": "INCIDENT",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "data": {"kind": "leak", "severity": "low"},
                }
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:  # retried with the same event ID: safe by design
                    try:
                        r = await c.post("/v1/events", json=body, headers=headers)
                        self._record("post /v1/events", r)
                        if r.status_code == 201:
                            self.accepted.add(event_id)
                            posted += 1
                            break
                    except httpx.HTTPError as exc:
                        self.statuses[f"post {exc.__class__.__name__}"] += 1
                    await asyncio.sleep(0.25)
                await asyncio.sleep(0.05)

    async def reader(self, name: str, path: str, headers: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=self.url(name), timeout=10) as c:
            while not self.stop.is_set():
                try:
                    self._record(f"get {name}", await c.get(path, headers=headers))
                except httpx.HTTPError as exc:
                    self.statuses[f"get {name} {exc.__class__.__name__}"] += 1
                await asyncio.sleep(0.1)

    async def sample_rss(self) -> None:
        while not self.stop.is_set():
            for name, proc in list(self.procs.items()):
                if name not in self.healthy:
                    continue
                try:
                    text = Path(f"/proc/{proc.pid}/status").read_text()  # noqa: ASYNC240 - procfs, no disk
                except OSError:
                    continue
                found = dict(re.findall(r"^(VmRSS|RssAnon|RssFile|Threads):\s+(\d+)", text, re.MULTILINE))
                if "VmRSS" in found:
                    kib = {k: int(v) / 1024 for k, v in found.items() if k != "Threads"}
                    self.rss.setdefault(name, []).append(
                        Sample(
                            self.elapsed(),
                            proc.pid,
                            kib["VmRSS"],
                            kib.get("RssAnon", 0.0),
                            kib.get("RssFile", 0.0),
                            int(found.get("Threads", 0)),
                        )
                    )
            try:
                await asyncio.wait_for(self.stop.wait(), SAMPLE_EVERY_S)
            except TimeoutError:
                pass

    def elapsed(self) -> float:
        """Seconds since the load began: the time axis of the RSS samples and the faults."""
        return round(time.monotonic() - self.t0, 1)

    # -- the faults --

    async def fault(self, index: int) -> None:
        kind = FAULTS[index % len(FAULTS)]
        t0 = time.monotonic()
        detail = ""
        if kind == "broker":
            self.kafka.stop(kill=True)
            await asyncio.sleep(3)
            self.kafka.start()  # memory-only: topics, messages and group offsets are gone
            await asyncio.sleep(3)
            detail = await self.republish()
        elif kind == "postgres":
            await asyncio.to_thread(self.pg.pg_ctl, "-w", "-m", "fast", "restart")
        elif kind == "service":
            victim = ("events", "registry")[(index // len(FAULTS)) % 2]
            self.kill(victim)
            await asyncio.sleep(1)
            await self.start(victim)
            detail = victim
        else:
            self.kill("portal-consumer")
            await asyncio.sleep(1)
            await self.start("portal-consumer")
        self.faults.append(
            {
                "fault": kind,
                "detail": detail,
                "at_s": round(t0 - self.t0, 1),
                "seconds": round(time.monotonic() - t0, 1),
            }
        )
        say(f"fault {index + 1}: {kind} {detail} (recovered in {time.monotonic() - t0:.1f} s); {self.summary()}")

    async def republish(self) -> str:
        """The runbook after a broker lost its data: republish from the system of record."""
        from services.events.republish import republish as republish_events
        from services.registry.republish import republish as republish_registry

        engine = make_engine(self.db_url, pool_size=2)
        try:
            registry = await republish_registry(engine)
            events = await republish_events(engine)
        finally:
            await engine.dispose()
        return f"republished {sum(registry.values())} registry and {events} lifecycle messages"

    def summary(self) -> str:
        return f"{len(self.accepted)} events accepted, {len(self.bad)} bad answers"

    # -- the end --

    async def reconcile(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as c:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    if (await c.get(self.url("events") + "/v1/ops/outbox")).json()["backlog"] == 0:
                        break
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                await asyncio.sleep(1)
        conn = await asyncpg.connect(asyncpg_dsn(self.db_url))
        try:
            ledger = {str(r[0]) for r in await conn.fetch("SELECT event_id FROM events.ledger WHERE type='INCIDENT'")}
            deadline = time.monotonic() + 180
            portal_rows: list[str] = []
            while time.monotonic() < deadline:
                portal_rows = [
                    str(r[0]) for r in await conn.fetch("SELECT event_id FROM portal.events WHERE type='INCIDENT'")
                ]
                if len(set(portal_rows)) >= len(ledger):
                    break
                await asyncio.sleep(1)
        finally:
            await conn.close()
        async with httpx.AsyncClient(timeout=10) as c:
            molit = (
                await c.get(self.url("portal") + "/v1/views/molit", headers=self.token("MOLIT", "ministry", "MOLIT"))
            ).json()
        on_topic = await self.topic_ids(len(ledger))
        lost = len(self.accepted - ledger) + len(ledger - on_topic) + len(ledger - set(portal_rows))
        duplicated = (len(portal_rows) - len(set(portal_rows))) + abs(molit["incidents"]["incidents"] - len(ledger))
        return {
            "accepted": len(self.accepted),
            "ledger": len(ledger),
            "on_topic": len(on_topic & ledger),
            "portal": len(set(portal_rows)),
            "lost": lost,
            "duplicated": duplicated,
            "bad_answers": len(self.bad),
            "bad_examples": self.bad[:5],
            "statuses": dict(self.statuses),
        }

    async def topic_ids(self, expected: int) -> set[str]:
        topic = self.prefix + TOPIC_LIFECYCLE
        consumer = make_consumer(self.kafka.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        ids: set[str] = set()
        try:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return ids
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                for recs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                    for r in recs:
                        value = orjson.loads(r.value)
                        if value.get("data", {}).get("type") == "INCIDENT":
                            ids.add(value["id"])
                if all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                    break
        finally:
            await consumer.stop()
        return ids


#: Seconds of a process's life left out of its "after warm-up" figures.
WARM_UP_S = 120.0
#: A rise of at least this within a minute, every sample rising by `STEP_RATE_MIB` or more, is a step: a burst's
#: working set (a republish, a catch-up, the ledger verifier's sweep) that the allocator keeps for the next burst,
#: not drift.
STEP_MIB = 2.0
STEP_RATE_MIB = 0.5
STEP_MAX_S = 60.0
#: Growth outside steps at most this (MiB per minute, over the last half of a life): flat.
FLAT_MIB_PER_MIN = 0.25
#: Minutes in the last half of a life below which a process's plateau cannot be told from a slope.
MIN_VERDICT_MIN = 3.0


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per minute."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mm = sum(m for _, m in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return round(sum((t - mt) * (m - mm) for t, m in points) / var * 60, 3) if var else 0.0


def _sweeps(name: str, start: float, end: float) -> list[float]:
    """When the events service's ledger verifier sweeps (at start, then every `verify_interval_s`; each sweep
    reads the chains of 500 batteries at a time: with the soak's 24 batteries, the whole ledger at once)."""
    if name != "events":
        return []
    from services.events.settings import EventsSettings

    every = float(
        os.environ.get("BT_EVENTS_VERIFY_INTERVAL_S", EventsSettings.model_fields["verify_interval_s"].default)
    )
    return [start + k * every for k in range(int((end - start) // every) + 1)]


def _cause(t: float, faults: list[dict[str, Any]], sweeps: list[float]) -> str:
    """What a step at `t` came after: a fault (within a minute of its recovery), a ledger sweep (within a minute of
    its start), or both."""
    causes = [
        f"fault {f['fault']} {f['detail']}".strip() for f in faults if f["at_s"] <= t <= f["at_s"] + f["seconds"] + 60
    ]
    causes += ["ledger sweep"] if any(s <= t <= s + 60 for s in sweeps) else []
    return " + ".join(causes) or "?"


def _drift(points: list[tuple[float, float]], steps: list[dict[str, Any]]) -> tuple[float | None, float]:
    """(MiB per minute that `points` rose outside the steps, minutes they span)."""
    minutes = (points[-1][0] - points[0][0]) / 60 if len(points) >= 2 else 0.0
    if not minutes:
        return None, 0.0
    stepped = sum(s["mib"] for s in steps if points[0][0] < s["at_s"] <= points[-1][0])
    return round((points[-1][1] - points[0][1] - stepped) / minutes, 3), minutes


def _steps(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(when it began, MiB) of each step: a run of rises of at least `STEP_RATE_MIB` per sample, over at most
    `STEP_MAX_S`, adding up to `STEP_MIB` or more (a burst's working set comes within a minute; a leak as fast as
    that never stops rising, so it is no step)."""
    out: list[tuple[float, float]] = []
    run: list[tuple[float, float]] = []  # (t, rise) of the current run

    def close() -> None:
        if run and sum(d for _, d in run) >= STEP_MIB and run[-1][0] - run[0][0] <= STEP_MAX_S:
            out.append((run[0][0], round(sum(d for _, d in run), 1)))
        run.clear()

    for (_, prev), (t, m) in itertools.pairwise(points):
        if m - prev >= STEP_RATE_MIB:
            run.append((t, m - prev))
        else:
            close()
    close()
    return out


def growth(name: str, samples: list[Sample], faults: list[dict[str, Any]]) -> dict[str, Any]:
    """One process's RSS over its life: first, last, max; the least-squares slope over the whole life, after the
    warm-up and over the last half; the steps (rises of `STEP_MIB` or more between two samples) with what they came
    after; and the drift: the growth outside the steps, per minute, after the warm-up and over the last half. The
    verdict rests on the last half (caches and pools fill for several minutes, longer than the warm-up): flat there
    (steps before it, if any, were bursts' working sets the allocator kept for the next one, which added nothing);
    rising in steps (flat between bursts, each adding: a working set that grows with the data, or the next
    burst would have reused it); or growing outside steps (a leak, or caches still filling)."""
    points = [(s.t, s.rss) for s in samples]
    t0, t1 = points[0][0], points[-1][0]
    warm = [(t, m) for t, m in points if t >= t0 + WARM_UP_S]
    half = [(t, m) for t, m in points if t >= (t0 + t1) / 2]
    sweeps = _sweeps(name, t0, t1)
    steps: list[dict[str, Any]] = [
        {"at_s": t, "mib": mib, "after": _cause(t, faults, sweeps)} for t, mib in _steps(points)
    ]
    warm_drift, _ = _drift(warm, steps)
    drift, minutes = _drift(half, steps)
    if drift is None or minutes < MIN_VERDICT_MIN:
        verdict = f"too short to tell ({minutes:.1f} min in the last half)"
    elif drift <= FLAT_MIB_PER_MIN:
        late = [s for s in steps if s["at_s"] > half[0][0]]
        early = [s for s in steps if s not in late]

        def causes(found: list[dict[str, Any]]) -> str:
            return f"+{sum(s['mib'] for s in found):.1f} MiB at {len(found)}: " + ", ".join(
                sorted({s["after"] for s in found})
            )

        if late:  # flat between bursts, but the bursts still add: a plateau only if the next ones add nothing
            verdict = f"rising in steps over the last half ({causes(late)}), flat between them"
        else:
            verdict = "flat over the last half" + (f" (after steps earlier, {causes(early)})" if early else "")
    else:
        verdict = f"growing {drift} MiB/min over the last half, outside steps"
    first, last = samples[0], samples[-1]
    return {
        "samples": len(points),
        "from_s": t0,
        "minutes": round((t1 - t0) / 60, 1),
        "rss_first_mib": round(first.rss, 1),
        "rss_last_mib": round(last.rss, 1),
        "rss_max_mib": round(max(m for _, m in points), 1),
        "anon_first_mib": round(first.anon, 1),
        "anon_last_mib": round(last.anon, 1),
        "file_first_mib": round(first.file, 1),
        "file_last_mib": round(last.file, 1),
        "threads_first": first.threads,
        "threads_last": last.threads,
        "slope_mib_per_min": _slope(points),
        "slope_after_warm_up_mib_per_min": _slope(warm) if len(warm) >= 3 else None,
        "slope_last_half_mib_per_min": _slope(half) if len(half) >= 3 else None,
        "steps": steps,
        "drift_after_warm_up_mib_per_min": warm_drift,
        "drift_last_half_mib_per_min": drift,
        "verdict": verdict,
    }


def slopes(rss: dict[str, list[Sample]], faults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per process (a service restarted by a fault is a new process): `growth` of its RSS."""
    out: dict[str, Any] = {}
    for name, samples in rss.items():
        for pid in dict.fromkeys(s.pid for s in samples):
            mine = [s for s in samples if s.pid == pid]
            if len(mine) >= 3:
                out[f"{name}:{pid}"] = growth(name, mine, faults or [])
    return out


async def mixed_load(minutes: float, fault_every_s: float, chain_length: int = CHAIN_LENGTH) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="bt-soak-"))
    soak = Soak(base, minutes, fault_every_s, chain_length)
    registered = len(BATTERIES) + len(soak.spare)
    say(f"starting PostgreSQL, the broker and the services (logs in {base})")
    await asyncio.to_thread(soak.start_infra)  # blocking set-up (migrations run their own event loop)
    tasks: list[asyncio.Task[None]] = []
    try:
        for name in ("registry", "events", "portal", "portal-consumer"):
            await soak.start(name)
        await soak.seed()
        maker = soak.token("LGES", "manufacturer")
        ministry = soak.token("MOLIT", "ministry", "MOLIT")
        tasks = [asyncio.create_task(soak.poster(b)) for b in BATTERIES[:8]]
        tasks += [
            asyncio.create_task(soak.reader("registry", f"/v1/batteries/{BATTERIES[1]}", maker)),
            asyncio.create_task(soak.reader("events", f"/v1/batteries/{BATTERIES[2]}/events", maker)),
            asyncio.create_task(soak.reader("portal", "/v1/views/molit", ministry)),
            asyncio.create_task(soak.sample_rss()),
        ]
        say(f"mixed load for {minutes} min, one fault every {fault_every_s:.0f} s")
        soak.t0 = time.monotonic()
        end = time.monotonic() + minutes * 60
        index = 0
        next_fault = time.monotonic() + fault_every_s
        while time.monotonic() < end:
            await asyncio.sleep(min(5.0, max(0.0, end - time.monotonic())))
            if time.monotonic() >= next_fault and time.monotonic() < end - 20:
                await soak.fault(index)
                index += 1
                next_fault += fault_every_s
            elif int(end - time.monotonic()) % 30 < 5:
                say(f"{(end - time.monotonic()) / 60:.1f} min left; {soak.summary()}")
        say("load done; reconciling")
        soak.stop.set()
        await asyncio.gather(*tasks)
        result = await soak.reconcile()
        result |= {
            "minutes": minutes,
            "chain_length": chain_length,
            "batteries_posted_to": 8 + registered - len(BATTERIES) - len(soak.spare),
            "faults": soak.faults,
            "rss": slopes(soak.rss, soak.faults),
        }
        return result
    finally:
        soak.stop.set()
        for t in tasks:
            t.cancel()
        soak.shutdown()
        shutil.rmtree(base / "pg", ignore_errors=True)


def describe(proc: str, r: dict[str, Any]) -> str:
    """One process's RSS in a line: the verdict first, then the figures it rests on."""
    steps = ", ".join(f"+{s['mib']} at {s['at_s']:.0f} s ({s['after']})" for s in r["steps"]) or "none"
    return (
        f"RSS {proc}: {r['verdict']}. {r['rss_first_mib']} -> {r['rss_last_mib']} MiB (max {r['rss_max_mib']}; "
        f"anon {r['anon_first_mib']} -> {r['anon_last_mib']}, threads {r['threads_first']} -> {r['threads_last']}) "
        f"over {r['minutes']} min from {r['from_s']:.0f} s; slope {r['slope_mib_per_min']} MiB/min, "
        f"{r['slope_after_warm_up_mib_per_min']} after warm-up, {r['slope_last_half_mib_per_min']} over the last half; "
        f"drift outside steps {r['drift_after_warm_up_mib_per_min']} MiB/min after warm-up, "
        f"{r['drift_last_half_mib_per_min']} over the last half; steps: {steps}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50, help="fault-matrix runs in a row (0: skip; default 50)")
    parser.add_argument("--minutes", type=float, default=20.0, help="mixed load duration (0: skip; default 20)")
    parser.add_argument("--fault-every", type=float, default=120.0, help="seconds between faults (default 120)")
    parser.add_argument(
        "--chain-length",
        type=int,
        default=CHAIN_LENGTH,
        help=f"events per battery before a poster moves to a fresh one (0: 8 batteries take every event; "
        f"default {CHAIN_LENGTH})",
    )
    parser.add_argument("--report", type=Path, default=Path("soak-report.json"), help="where to write the JSON report")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat()}
    if args.runs > 0:
        say(f"part 1: the fault matrix {args.runs} times")
        report["fault_matrix"] = fault_matrix(args.runs)
    if args.minutes > 0:
        say("part 2: mixed load with faults")
        report["mixed_load"] = asyncio.run(mixed_load(args.minutes, args.fault_every, args.chain_length))
    report["finished_at"] = datetime.now(UTC).isoformat()
    matrix = report.get("fault_matrix", {"failed": 0})
    load = report.get("mixed_load", {"lost": 0, "duplicated": 0, "bad_answers": 0})
    report["ok"] = matrix["failed"] == 0 and load["lost"] == 0 and load["duplicated"] == 0 and load["bad_answers"] == 0
    args.report.write_text(json.dumps(report, indent=2, default=str))
    say(f"report written to {args.report}: {'OK' if report['ok'] else 'NOT OK'}")
    if "mixed_load" in report:
        m = report["mixed_load"]
        say(f"lost {m['lost']}, duplicated {m['duplicated']}, bad answers {m['bad_answers']}, accepted {m['accepted']}")
        for proc, r in m["rss"].items():
            say(describe(proc, r))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
