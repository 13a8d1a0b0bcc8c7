"""Canonical form, as a property (issue: verifiable history, item 4): every event the API accepts, of every type
and with any data shape its schema allows (optional fields present or not, any Unicode, floats at the edges of
what the schema takes, any time zone), verifies after a round trip through PostgreSQL and through Kafka. For each
generated life of a battery: the hash recomputed (shared/contract/lifecycle.py) from the ledger row as PostgreSQL
gives it back, from the public timeline, and from the CloudEvent consumed from the real broker all equal the
ledger's hash; each is linked to the previous one; and the log's leaf of each event is RFC 9162's hash of it.

Hypothesis runs in a worker thread and hands each example to the test's event loop, where the services run, so
the stack (registry, events with its relay and log, one Kafka consumer) starts once for every example."""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.contract.lifecycle import (
    GENESIS,
    MATERIALS,
    IncidentKind,
    RemovalReason,
    Severity,
    event_hash,
    verify_chain,
)
from shared.contract.streams import TOPIC_LIFECYCLE, CloudEvent
from shared.db import asyncpg_dsn
from shared.kafka import ensure_topics
from shared.vin import check_digit
from tests.conftest import eventually
from tests.events_helpers import ORGS, Stack, stack

EXAMPLES = 20
FAST = {"log_checkpoint_interval_s": 0.2, "log_sequencer_interval_s": 0.02}
# Any Unicode JSONB can store: no NUL (PostgreSQL's text has none; the API answers 422), no lone surrogates
# (not UTF-8 at all).
TEXT = st.characters(codec="utf-8", exclude_characters="\x00")
FIRST_EVENT_AFTER = datetime(2026, 1, 16, tzinfo=UTC)  # after every test battery's manufactured_at


def text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(TEXT, min_size=min_size, max_size=max_size)


def number(lo: float, hi: float, *, exclude_min: bool = False) -> st.SearchStrategy[float]:
    """Floats the schema takes (finite, within its bounds): edges, integral values and odd fractions alike."""
    edges = [v for v in (lo, hi, 0.1, 1e-9, 99.99999999999999, 123456789.123456) if lo <= v <= hi]
    kinds = [st.floats(lo, hi, exclude_min=exclude_min, allow_nan=False, allow_infinity=False), st.sampled_from(edges)]
    if math.ceil(lo) <= min(int(hi), 10**6):  # integral values within the bounds (none below lo)
        kinds.append(st.integers(math.ceil(lo), min(int(hi), 10**6)).map(float))
    return st.one_of(*kinds).filter(lambda v: v > lo or (v == lo and not exclude_min)).map(lambda v: v + 0.0)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(None), strategy)


def drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


#: ISO 3779 VINs: 17 characters without I, O, Q; the check digit (9th) right wherever the region requires it.
VIN = st.from_regex(r"\A[A-HJ-NPR-Z0-9]{17}\Z").map(lambda v: v[:8] + check_digit(v) + v[9:])
LOCATION = st.builds(drop_none, site=maybe(text(0, 128)), region=maybe(text(0, 64)))
INSTALLED = st.one_of(st.builds(lambda v: {"vin": v}, VIN), st.builds(lambda s: {"ess_site_id": s}, text(1, 64)))
INSPECTED = st.builds(lambda p, c: {"soh_pct": p, "cycle_count": c}, number(0, 100), st.integers(0, 2**53))
INCIDENT = st.builds(
    drop_none,
    kind=st.sampled_from([k.value for k in IncidentKind]),
    severity=st.sampled_from([v.value for v in Severity]),
    description=maybe(text(0, 200)),
)
COLLECTED = st.builds(lambda c, r: {"centre": c, "region": r}, text(1, 128), text(1, 64))
NOTE = st.builds(drop_none, note=maybe(text(0, 300)))
DISPOSED = st.builds(drop_none, method=maybe(text(1, 64)), note=maybe(text(0, 300)))
REPURPOSED = st.builds(lambda a, c: {"new_application": a, "rated_capacity": c}, text(1, 128), number(0.001, 1))
#: A KC 10031 inspection: a designated body, an edition and a report; a pass names its certificate and validity.
SAFETY = st.builds(
    lambda standard, result, body, edition, report, number: drop_none(
        standard=standard,
        result=result,
        body=body,
        edition=edition,
        report_ref=report,
        certificate_number=number if result == "pass" else None,
        valid_until="2099-12-31" if result == "pass" else None,
    ),
    maybe(text(1, 64)),
    st.sampled_from(["pass", "fail"]),
    st.sampled_from(["KTL", "KTR", "KTC", "KCL"]),
    text(1, 32),
    text(1, 256),
    text(1, 64),
)


@st.composite
def recycled(draw: st.DrawFn) -> dict[str, Any]:
    # Plausible, as the recycler's report must be (DOMAIN, Plausibility): masses as shares of the battery's
    # registered mass (the harness scales them), recovered kg below any registered content (factories: >= 4.5 kg).
    mass = draw(number(0.76, 1.24))
    black = draw(number(0, 1.24).filter(lambda b: b <= mass))
    recovered = draw(st.dictionaries(st.sampled_from(MATERIALS), number(0, 4.0), max_size=len(MATERIALS)))
    return {"process": draw(text(1, 64)), "input_mass_kg": mass, "black_mass_kg": black, "recovered_kg": recovered}


@dataclass
class Step:
    type: str
    role: str
    data: dict[str, Any] | None = None  # None: filled in when posted (needs an earlier event's ID or a parent)
    transfer_to: str | None = None  # the role that must hold the battery first (TRANSFERRED by its custodian)


@dataclass
class Life:
    steps: list[Step]
    assembled: bool  # starts as a cell assembled into a module, then taken out of it
    location: list[dict[str, Any]] = field(default_factory=list)
    offsets: list[timedelta] = field(default_factory=list)
    zones: list[timezone] = field(default_factory=list)


@st.composite
def lives(draw: st.DrawFn) -> Life:
    """A legal life: which types it goes through and with what data is drawn; custody hand-overs are added."""
    steps: list[Step] = []
    assembled = draw(st.booleans())
    incident = st.builds(lambda d: Step("INCIDENT", "inspector", d), INCIDENT)
    inspected = st.builds(lambda d: Step("INSPECTED", "inspector", d), INSPECTED)
    if assembled:
        steps.append(Step("DISASSEMBLED", "manufacturer"))  # ASSEMBLED is posted first, by the harness
        steps.extend(draw(st.lists(incident, max_size=2)))
    else:
        steps.extend(draw(st.lists(incident, max_size=1)))
        steps.append(Step("INSTALLED", "oem", draw(INSTALLED), transfer_to="oem"))
        steps.extend(draw(st.lists(st.one_of(inspected, incident), max_size=2)))
        if draw(st.booleans()):
            # An INCIDENT declared in error by its poster: nothing later depends on it, so the declaration is
            # accepted (declaring the INSTALLED would take the battery back out of service: DOMAIN, Corrections).
            steps.append(draw(incident))
            steps.append(Step("ERROR_DECLARED", "inspector"))
        if not draw(st.integers(0, 4)):  # one life in five stays in service
            return finish(draw, steps, assembled)
        reason = draw(st.sampled_from([r.value for r in RemovalReason]))
        consignee = ORGS["collector"] if draw(st.booleans()) else None
        steps.append(Step("REMOVED", "dismantler", drop_none(reason=reason, consignee=consignee)))
    collected = draw(COLLECTED)
    named = steps[-1].type == "REMOVED" and steps[-1].data and "consignee" in steps[-1].data
    holder = None if named else "collector"  # a consignee collects; else the holder hands it over first
    steps.append(Step("COLLECTED", "collector", collected, transfer_to=holder))
    end = draw(st.sampled_from(["DISPOSED", "REMANUFACTURED", "REPURPOSED", "RECYCLED", "none"]))
    if end == "DISPOSED":
        steps.append(Step("DISPOSED", "collector", draw(DISPOSED)))
    elif end != "none":
        grade = {"REMANUFACTURED": "remanufacture", "REPURPOSED": "reuse", "RECYCLED": "recycle"}[end]
        steps.append(
            Step("GRADED", "assessor", {"soh_pct": draw(number(0, 100)), "grade": grade}, transfer_to="assessor")
        )
        role = {"REMANUFACTURED": "remanufacturer", "REPURPOSED": "repurposer", "RECYCLED": "recycler"}[end]
        data = {"REMANUFACTURED": NOTE, "REPURPOSED": REPURPOSED, "RECYCLED": recycled()}[end]
        steps.append(Step(end, role, draw(data), transfer_to=role))
        if end in ("REPURPOSED", "REMANUFACTURED") and draw(st.booleans()):
            steps.append(Step("SAFETY_INSPECTED", "certifier", draw(SAFETY)))
    return finish(draw, steps, assembled)


def finish(draw: st.DrawFn, steps: list[Step], assembled: bool) -> Life:
    n = len(steps) + 8  # room for the hand-overs and the assembly
    offsets = draw(st.lists(st.integers(0, 10**12).map(lambda us: timedelta(microseconds=us)), min_size=n, max_size=n))
    zones = draw(
        st.lists(st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))), min_size=n, max_size=n)
    )
    locations = draw(st.lists(LOCATION, min_size=n, max_size=n))
    return Life(steps, assembled, locations, offsets, zones)


@dataclass
class Broker:
    """One consumer of the lifecycle topic for the whole test: every record, by battery."""

    consumer: AIOKafkaConsumer
    by_battery: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)

    async def wait_for(self, battery_id: str, sequences: int) -> list[dict[str, Any]]:
        async def arrived() -> bool:
            batch = await self.consumer.getmany(timeout_ms=50)
            for records in batch.values():
                for r in records:
                    ce = CloudEvent.from_bytes(r.value)
                    assert r.key is not None and r.key.decode() == ce.data["battery_id"] == ce.subject
                    self.by_battery.setdefault(ce.data["battery_id"], {})[ce.data["sequence"]] = ce.data
            return len(self.by_battery.get(battery_id, {})) >= sequences

        await eventually(arrived, timeout_s=20, interval_s=0)
        got = self.by_battery[battery_id]
        return [got[s] for s in sorted(got)]


class Clock:
    """Non-decreasing occurred_at times, in drawn time zones, never in the future."""

    def __init__(self, life: Life) -> None:
        self.life, self.i = life, 0
        self.at = FIRST_EVENT_AFTER

    def next(self) -> str:
        i = self.i % len(self.life.offsets)
        self.i += 1
        latest = datetime.now(UTC) - timedelta(minutes=1)
        self.at = min(self.at + self.life.offsets[i], latest)
        return self.at.astimezone(self.life.zones[i]).isoformat()

    def location(self) -> dict[str, Any]:
        return self.life.location[self.i % len(self.life.location)]


async def post(s: Stack, clock: Clock, bid: str, etype: str, role: str, data: dict[str, Any]) -> None:
    await s.ok(bid, etype, role, data=data, occurred_at=clock.next(), location=clock.location())


async def hand_over(s: Stack, clock: Clock, bid: str, role: str) -> None:
    st_ = await s.state(bid)
    if st_["custodian"] != ORGS[role]:
        holder = next(r for r, o in ORGS.items() if o == st_["custodian"])
        await post(s, clock, bid, "TRANSFERRED", holder, {"to": ORGS[role]})


async def live(s: Stack, life: Life) -> str:
    """Post the life's events; every one must be accepted."""
    clock = Clock(life)
    if life.assembled:
        parent = await s.battery(model_id="NCM-MOD-8")
        bid = await s.battery(model_id="NCM-CELL-60")
        await post(s, clock, bid, "ASSEMBLED", "manufacturer", {"parent_id": parent})
    else:
        bid = await s.battery()
    soh: float | None = None
    cycles: int | None = None
    for step in life.steps:
        if step.transfer_to:
            await hand_over(s, clock, bid, step.transfer_to)
        data = step.data or {}
        if step.type == "DISASSEMBLED":
            data = {"parent_id": (await s.state(bid))["parent_id"]}
        elif step.type == "RECYCLED":  # the masses are shares of the registered mass (`recycled`)
            found = (await s.registry.get(f"/v1/batteries/{bid}", headers=s.as_role("manufacturer"))).json()
            scale = (await s.registry.get(f"/v1/models/{found['model_id']}")).json()["mass_kg"]
            data = {
                **data,
                "input_mass_kg": data["input_mass_kg"] * scale,
                "black_mass_kg": data["black_mass_kg"] * scale,
            }
        elif step.type == "REPURPOSED":  # the capacity is a share of the original rated energy (DOMAIN, Plausibility)
            found = (await s.registry.get(f"/v1/batteries/{bid}", headers=s.as_role("manufacturer"))).json()
            energy = (await s.registry.get(f"/v1/models/{found['model_id']}")).json()["rated_energy_kwh"]
            data = {**data, "rated_capacity": data["rated_capacity"] * energy}
        elif step.type in ("INSPECTED", "GRADED"):  # readings never improve, cycles never fall (Plausibility)
            if "soh_pct" in data and soh is not None:
                data = {**data, "soh_pct": min(data["soh_pct"], soh)}
            if "cycle_count" in data and cycles is not None:
                data = {**data, "cycle_count": max(data["cycle_count"], cycles)}
            soh = data.get("soh_pct", soh)
            cycles = data.get("cycle_count", cycles)
        elif step.type == "ERROR_DECLARED":
            timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()
            incident = [e for e in timeline["items"] if e["type"] == "INCIDENT"][-1]
            data = {"declared_event_id": incident["event_id"], "reason": "incorrect_data"}
        await post(s, clock, bid, step.type, step.role, data or {})
    return bid


def leaf_hash(ledger_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(ledger_hash)).digest()


async def check(s: Stack, broker: Broker, db_url: str, life: Life) -> None:
    bid = await live(s, life)
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        rows = [
            dict(r)
            for r in await conn.fetch("SELECT * FROM events.ledger WHERE battery_id = $1 ORDER BY sequence", bid)
        ]

        async def logged() -> dict[int, bytes] | None:
            leaves = await conn.fetch("SELECT sequence, leaf_hash FROM events.log_leaves WHERE battery_id = $1", bid)
            return {r["sequence"]: bytes(r["leaf_hash"]) for r in leaves} if len(leaves) == len(rows) else None

        leaves = await eventually(logged, timeout_s=20)
    finally:
        await conn.close()
    for row in rows:
        row["location"], row["data"] = orjson.loads(row["location"]), orjson.loads(row["data"])
    timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()["items"]
    streamed = await broker.wait_for(bid, len(rows))
    assert [e["sequence"] for e in timeline] == [e["sequence"] for e in streamed] == [r["sequence"] for r in rows]
    prev = GENESIS
    for row, shown, record in zip(rows, timeline, streamed, strict=True):
        assert row["prev_hash"] == prev
        for seen in (row, shown, record):  # the hash from the canonical content, as each reader has it
            assert event_hash(prev, seen) == row["hash"], (row["type"], seen)
        assert record["data"] == shown["data"] == row["data"] and record["hash"] == shown["hash"] == row["hash"]
        assert leaves[row["sequence"]] == leaf_hash(row["hash"])
        prev = row["hash"]
    for chain in (rows, timeline, streamed):
        assert verify_chain(chain).valid
    assert (await s.events.get(f"/v1/batteries/{bid}/verify")).json()["valid"] is True


def fixed(steps: list[Step], assembled: bool = False) -> Life:
    n = len(steps) + 8
    zones = [timezone(timedelta(hours=9)), UTC, timezone(timedelta(hours=-3, minutes=-30))] * n
    return Life(steps, assembled, [{"site": "시흥 수집센터 ✓", "region": "KR-41"}, {}] * n, [timedelta(0)] * n, zones)


#: Lives that together post every type a client may post (MANUFACTURED is the registry's), whatever is drawn.
EVERY_TYPE = [
    fixed(
        [
            Step("INCIDENT", "inspector", {"kind": "leak", "severity": "low", "description": '"quoted" \\ \n\t 누액'}),
            Step("INSTALLED", "oem", {"vin": "KMHEM41AP6A123456"}, transfer_to="oem"),
            Step("INSPECTED", "inspector", {"soh_pct": 99.99999999999999, "cycle_count": 2**53}),
            Step("ERROR_DECLARED", "inspector"),  # the INCIDENT above
            Step("REMOVED", "dismantler", {"reason": "end_of_life", "consignee": ORGS["collector"]}),
            Step("COLLECTED", "collector", {"centre": "SIHEUNG-01", "region": "KR-41"}),
            Step("GRADED", "assessor", {"soh_pct": 0.0, "grade": "reuse"}, transfer_to="assessor"),
            Step("REPURPOSED", "repurposer", {"new_application": "ESS", "rated_capacity": 1.0}, "repurposer"),
            Step(
                "SAFETY_INSPECTED",
                "certifier",
                {
                    "result": "pass",
                    "body": "KTL",
                    "edition": "2024",
                    "report_ref": "KTL-R-1",
                    "certificate_number": "KC-10031-0001",
                    "valid_until": "2099-12-31",
                },
            ),
        ]
    ),
    fixed(
        [
            Step("DISASSEMBLED", "manufacturer"),
            Step("COLLECTED", "collector", {"centre": "c", "region": "r"}, transfer_to="collector"),
            Step("GRADED", "assessor", {"soh_pct": 12.5, "grade": "recycle"}, transfer_to="assessor"),
            Step(
                "RECYCLED",
                "recycler",
                {"process": "hydro", "input_mass_kg": 1.0, "black_mass_kg": 0.1, "recovered_kg": {"lithium": 1e-9}},
                transfer_to="recycler",
            ),
        ],
        assembled=True,
    ),
    fixed(
        [
            Step("INSTALLED", "oem", {"ess_site_id": "ESS-🔋-1"}, transfer_to="oem"),
            Step("REMOVED", "dismantler", {"reason": "accident"}),
            Step("COLLECTED", "collector", {"centre": "c", "region": "r"}, transfer_to="collector"),
            Step("GRADED", "assessor", {"soh_pct": 100.0, "grade": "remanufacture"}, transfer_to="assessor"),
            Step("REMANUFACTURED", "remanufacturer", {}, transfer_to="remanufacturer"),
            Step(
                "SAFETY_INSPECTED",
                "certifier",
                {"standard": "UL 1974", "result": "fail", "body": "KTR", "edition": "2018", "report_ref": "R-2"},
            ),
            Step("DISPOSED", "recycler", {"method": "landfill-hazardous"}, transfer_to="recycler"),
        ]
    ),
]


# Hypothesis warns when the global `random` state moves while it draws: here the services and the Kafka clients,
# running on the test's event loop in another thread, move it (retry jitter); nothing the strategies use.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
async def test_every_accepted_event_verifies_after_the_database_and_kafka(
    make_settings: Callable[..., Any], token: Callable[..., dict[str, str]], db_url: str, topic_prefix: str, infra: Any
) -> None:
    async with stack(make_settings, token, streams=True, **FAST) as s:
        topic = topic_prefix + TOPIC_LIFECYCLE
        await ensure_topics(infra.kafka.bootstrap, [topic], partitions=2)  # as the relay would, on its first send
        consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:

            async def partitions() -> set[int] | None:
                await consumer._client.force_metadata_update()
                return consumer.partitions_for_topic(topic) or None

            parts = await eventually(partitions)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            broker = Broker(consumer)
            loop = asyncio.get_running_loop()

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,  # the same examples every run: CI answers for the code, not for the draw
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(lives())
            @example(EVERY_TYPE[0])
            @example(EVERY_TYPE[1])
            @example(EVERY_TYPE[2])
            def prop(life: Life) -> None:
                asyncio.run_coroutine_threadsafe(check(s, broker, db_url, life), loop).result(timeout=120)
                checked.append(len(life.steps))

            checked: list[int] = []
            await asyncio.to_thread(prop)
            assert len(checked) >= EXAMPLES + len(EVERY_TYPE)
            assert len(broker.by_battery) >= len(checked)  # every life's battery came through the broker
        finally:
            await consumer.stop()
