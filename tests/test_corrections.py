"""Corrections correct (issue 13 item 4): an ERROR_DECLARED takes the declared event's effects out of the
battery's state and custody, recomputed by folding the machine over the ledger without it. Unit level on the pure
machine (`fold_state`, `correct`), then through HTTP and the database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.events.lifecycle.machine import (
    BatteryState,
    Corrections,
    DeclaredEvent,
    Dependent,
    Event,
    LedgerRow,
    Poster,
    Refusal,
    Transition,
    apply,
    fold_state,
    genesis,
)
from shared.access import Role
from shared.contract.corrections import declared_sequences
from shared.contract.lifecycle import EventType, State
from tests.events_helpers import DATA, ORGS, Stack, stack

T0 = datetime(2026, 3, 1, tzinfo=UTC)
E = EventType


class Life:
    """One battery's ledger grown through the machine, as the service grows it."""

    def __init__(self) -> None:
        first = genesis(
            battery_id="KR-P1",
            kind="pack",
            model_id="NCM-PACK-77",
            manufacturer="LGES",
            manufactured_at=T0,
            site="Ochang",
            recorded_at=T0,
        )
        self.state: BatteryState = first.state
        self.ledger: list[LedgerRow] = [first.row]
        self.clock = T0

    def post(
        self, etype: EventType, org: str, role: Role, data: dict[str, Any] | None = None, *, authority: bool = False
    ) -> Transition | Refusal:
        self.clock += timedelta(hours=1)
        data = dict(DATA.get(etype.value, {}) if data is None else data)
        ev = Event(etype, str(uuid.uuid4()), "KR-P1", self.clock, {"region": "KR-11"}, data)
        declared = None
        if etype is E.ERROR_DECLARED:
            row = next(r for r in self.ledger if r.event_id == data["declared_event_id"])
            declared = DeclaredEvent(row.event_id, row.battery_id, row.type, row.actor)
        out = apply(
            self.state,
            Poster(org, role, authority),
            ev,
            recorded_at=self.clock,
            declared=declared,
            corrections=Corrections(tuple(self.ledger)),
        )
        if isinstance(out, Transition):
            self.state = out.state
            self.ledger.append(out.row)
        return out

    def ok(self, etype: EventType, org: str, role: Role, data: dict[str, Any] | None = None, **kw: Any) -> LedgerRow:
        out = self.post(etype, org, role, data, **kw)
        assert isinstance(out, Transition), out
        return out.row

    def declare(self, row: LedgerRow, org: str, role: Role, **kw: Any) -> Transition | Refusal:
        return self.post(E.ERROR_DECLARED, org, role, {"declared_event_id": row.event_id, "reason": "x"}, **kw)


def to_recycling(life: Life) -> dict[str, Any]:
    """LGES → HMC installs → removed → collected → graded recycle → at REC-1; the states along the way."""
    seen: dict[str, Any] = {}
    life.ok(E.TRANSFERRED, "LGES", Role.manufacturer, {"to": "HMC"})
    life.ok(E.INSTALLED, "HMC", Role.oem)
    life.ok(E.REMOVED, "DISM-1", Role.dismantler)
    life.ok(E.COLLECTED, "COL-1", Role.collector)
    life.ok(E.TRANSFERRED, "COL-1", Role.collector, {"to": "ASSESS-1"})
    life.ok(E.GRADED, "ASSESS-1", Role.assessor)
    life.ok(E.TRANSFERRED, "ASSESS-1", Role.assessor, {"to": "REC-1"})
    seen["before_recycled"] = life.state
    return seen


def without_chain(state: BatteryState) -> tuple[Any, ...]:
    """A state's lifecycle facts (the chain head aside)."""
    return (state.state, state.custodian, state.grade, state.parent_id, state.consignee, state.safety_inspection)


# ---- the pure fold ----
def test_the_fold_without_declarations_is_the_live_state() -> None:
    life = Life()
    to_recycling(life)
    life.ok(E.RECYCLED, "REC-1", Role.recycler)
    folded = fold_state(life.ledger, set())
    assert isinstance(folded, BatteryState)
    assert folded == life.state  # the same function, the same events: the same state, clock and chain head


def test_a_mistaken_recycled_declared_by_its_poster_brings_the_battery_back() -> None:
    life = Life()
    before = to_recycling(life)["before_recycled"]
    recycled = life.ok(E.RECYCLED, "REC-1", Role.recycler)
    assert life.state.state is State.recycled
    out = life.declare(recycled, "REC-1", Role.recycler)
    assert isinstance(out, Transition)
    assert without_chain(out.state) == without_chain(before)
    assert out.state.last_event_at == before.last_event_at  # the corrected history's clock
    assert (out.row.state_after, out.row.custodian_after) == (State.graded, "REC-1")
    assert out.state.sequence == out.row.sequence == recycled.sequence + 1 and out.state.last_hash == out.row.hash
    assert declared_sequences(life.ledger) == {recycled.sequence: out.row.sequence}
    # The battery goes on as if the RECYCLED never happened: the correct one may be posted.
    again = life.ok(E.RECYCLED, "REC-1", Role.recycler)
    assert life.state.state is State.recycled and again.sequence == out.row.sequence + 1


def test_a_mistaken_transfer_declared_gives_custody_back() -> None:
    life = Life()
    moved = life.ok(E.TRANSFERRED, "LGES", Role.manufacturer, {"to": "HMC"})
    assert life.state.custodian == "HMC"
    out = life.declare(moved, "LGES", Role.manufacturer)
    assert isinstance(out, Transition) and out.state.custodian == "LGES" and out.row.custodian_after == "LGES"
    # HMC, no longer the custodian, cannot install it.
    refused = life.post(E.INSTALLED, "HMC", Role.oem)
    assert isinstance(refused, Refusal) and refused.code == "not-custodian"


def test_a_final_event_after_the_window_only_an_authority_declares() -> None:
    life = Life()
    to_recycling(life)
    recycled = life.ok(E.RECYCLED, "REC-1", Role.recycler)
    life.clock += timedelta(days=30, hours=1)
    late = life.declare(recycled, "REC-1", Role.recycler)
    assert isinstance(late, Refusal) and (late.status, late.code) == (403, "correction-window-closed")
    assert late.errors[0]["rule"] == "final-event-window"
    assert life.state.state is State.recycled
    by_ministry = life.declare(recycled, "MCEE", Role.ministry, authority=True)
    assert isinstance(by_ministry, Transition) and by_ministry.state.state is State.graded


def test_an_event_is_declared_once() -> None:
    life = Life()
    wrong = life.ok(E.INCIDENT, "HMC", Role.oem)
    first = life.declare(wrong, "HMC", Role.oem)
    assert isinstance(first, Transition)
    twice = life.declare(wrong, "MOLIT", Role.ministry, authority=True)
    assert isinstance(twice, Refusal) and (twice.status, twice.code) == (409, "already-declared")
    assert twice.extra["declared_by_sequence"] == first.row.sequence


def test_an_event_later_ones_depend_on_is_refused_until_they_are_declared() -> None:
    life = Life()
    life.ok(E.TRANSFERRED, "LGES", Role.manufacturer, {"to": "HMC"})
    life.ok(E.INSTALLED, "HMC", Role.oem)
    removed = life.ok(E.REMOVED, "DISM-1", Role.dismantler)
    collected = life.ok(E.COLLECTED, "COL-1", Role.collector)
    inspected_later = life.ok(E.INCIDENT, "COL-1", Role.collector)
    head = life.state
    out = life.declare(removed, "DISM-1", Role.dismantler)
    assert isinstance(out, Refusal) and (out.status, out.code) == (409, "later-events-depend")
    assert out.extra["dependent_event"] == {
        "sequence": collected.sequence,
        "event_id": collected.event_id,
        "type": "COLLECTED",
    }
    assert life.state == head and len(life.ledger) == inspected_later.sequence
    # Latest first: the COLLECTED, then the REMOVED; the battery is back in service at the OEM's.
    assert isinstance(life.declare(collected, "COL-1", Role.collector), Transition)
    assert life.state.state is State.removed and life.state.custodian == "DISM-1"
    assert isinstance(life.declare(removed, "DISM-1", Role.dismantler), Transition)
    assert (life.state.state, life.state.custodian, life.state.consignee) == (State.in_service, "HMC", None)


def test_the_registration_is_amended_not_declared() -> None:
    life = Life()
    out = life.declare(life.ledger[0], "LGES", Role.manufacturer)
    assert isinstance(out, Refusal) and out.status == 422 and out.errors[0]["rule"] == "not-the-registration"


def test_a_dependent_is_reported_by_the_fold() -> None:
    life = Life()
    moved = life.ok(E.TRANSFERRED, "LGES", Role.manufacturer, {"to": "HMC"})
    installed = life.ok(E.INSTALLED, "HMC", Role.oem)
    dep = fold_state(life.ledger, {moved.sequence})
    assert isinstance(dep, Dependent) and dep.row == installed and dep.refusal.code == "not-custodian"


# ---- through HTTP and the database ----
@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st:
        yield st


async def walk_to_recycling(s: Stack) -> str:
    bid = await s.battery()
    await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "REMOVED", "dismantler")
    await s.ok(bid, "COLLECTED", "collector")
    await s.ok(bid, "TRANSFERRED", "collector", data={"to": ORGS["assessor"]})
    await s.ok(bid, "GRADED", "assessor")
    await s.ok(bid, "TRANSFERRED", "assessor", data={"to": ORGS["recycler"]})
    return bid


def declaring(event: dict[str, Any]) -> dict[str, Any]:
    return {"declared_event_id": event["event_id"], "reason": "did_not_occur"}


async def test_declaring_a_mistaken_recycled_restores_state_and_allowed_events(s: Stack) -> None:
    bid = await walk_to_recycling(s)
    before = await s.state(bid)
    recycled = await s.ok(bid, "RECYCLED", "recycler")
    assert (await s.state(bid))["allowed_events"] == []
    out = await s.ok(bid, "ERROR_DECLARED", "recycler", data=declaring(recycled))
    assert (out["state"], out["custodian"], out["sequence"]) == ("graded", ORGS["recycler"], recycled["sequence"] + 1)
    after = await s.state(bid)
    for key in ("state", "custodian", "grade", "allowed_events"):
        assert after[key] == before[key], key
    assert (await s.events.get(f"/v1/batteries/{bid}/verify")).json()["valid"]
    again = await s.ok(bid, "RECYCLED", "recycler")
    assert again["state"] == "recycled"


async def test_the_window_is_a_setting(make_settings, token) -> None:
    async with stack(make_settings, token, correction_window_days=0.5 / 86_400) as s:
        bid = await walk_to_recycling(s)
        recycled = await s.ok(bid, "RECYCLED", "recycler")
        await asyncio.sleep(0.7)
        r = await s.post(bid, "ERROR_DECLARED", "recycler", data=declaring(recycled))
        assert (r.status_code, r.json()["code"]) == (403, "correction-window-closed"), r.text
        assert (await s.state(bid))["state"] == "recycled"
        ok = await s.ok(bid, "ERROR_DECLARED", "ministry", data=declaring(recycled))
        assert ok["state"] == "graded"


async def test_a_batch_declares_an_event_posted_earlier_in_it(s: Stack) -> None:
    bid = await s.battery()
    eid = str(uuid.uuid4())
    now = datetime.now(UTC)
    body = {
        "events": [
            {
                "event_id": eid,
                "battery_id": bid,
                "type": "TRANSFERRED",
                "occurred_at": now.isoformat(),
                "data": {"to": ORGS["oem"]},
            },
            {
                "event_id": str(uuid.uuid4()),
                "battery_id": bid,
                "type": "ERROR_DECLARED",
                "occurred_at": now.isoformat(),
                "data": {"declared_event_id": eid, "reason": "incorrect_data"},
            },
        ]
    }
    r = await s.events.post("/v1/events/batch", json=body, headers=s.as_role("manufacturer"))
    assert r.status_code == 201, r.text
    assert [x["custodian"] for x in r.json()["results"]] == [ORGS["oem"], ORGS["manufacturer"]]
    assert (await s.state(bid))["custodian"] == ORGS["manufacturer"]


# ---- every projection of the portal, through the real services and Kafka ----
@pytest.fixture
async def world(make_settings, token):
    from tests.portal_helpers import portal_app, portal_settings

    async with stack(make_settings, token, streams=True) as st, portal_app(portal_settings(make_settings)) as portal:
        yield st, portal


MINISTRIES = ("motie", "molit", "mcee", "kats")


async def figures(portal: Any, admin: dict[str, str]) -> dict[str, Any]:
    out = {}
    for m in MINISTRIES:
        r = await portal.get(f"/v1/views/{m}", headers=admin)
        assert r.status_code == 200, r.text
        out[m] = r.json()
    return out


async def applied(s: Stack, portal: Any, admin: dict[str, str], *bids: str) -> None:
    """Wait until the portal holds every event the ledger has for these batteries."""
    from tests.portal_helpers import wait_sequence

    for bid in bids:
        await wait_sequence(portal, admin, bid, (await s.state(bid))["sequence"])


async def test_every_ministry_figure_after_a_correction_equals_the_figure_without_the_event(world, token) -> None:
    s, portal = world
    admin = token("ops", "admin")
    # The world without the mistakes: one battery of each kind of situation the mistakes start from.
    to_recycle = await walk_to_recycling(s)  # graded recycle, at the recycler
    in_service = await s.battery()
    await s.ok(in_service, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    await s.ok(in_service, "INSTALLED", "oem")
    fresh = await s.battery()
    await s.ok(fresh, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    collected = await s.battery()
    for etype, role in (("TRANSFERRED", "manufacturer"), ("INSTALLED", "oem"), ("REMOVED", "dismantler")):
        await s.ok(collected, etype, role, data={"to": ORGS["oem"]} if etype == "TRANSFERRED" else None)
    await s.ok(collected, "COLLECTED", "collector")
    to_grade = await s.battery()
    for etype, role in (("TRANSFERRED", "manufacturer"), ("INSTALLED", "oem"), ("REMOVED", "dismantler")):
        await s.ok(to_grade, etype, role, data={"to": ORGS["oem"]} if etype == "TRANSFERRED" else None)
    await s.ok(to_grade, "COLLECTED", "collector")
    await s.ok(to_grade, "TRANSFERRED", "collector", data={"to": ORGS["assessor"]})
    to_reuse = await s.battery()
    for etype, role in (("TRANSFERRED", "manufacturer"), ("INSTALLED", "oem"), ("REMOVED", "dismantler")):
        await s.ok(to_reuse, etype, role, data={"to": ORGS["oem"]} if etype == "TRANSFERRED" else None)
    await s.ok(to_reuse, "COLLECTED", "collector")
    await s.ok(to_reuse, "TRANSFERRED", "collector", data={"to": ORGS["assessor"]})
    await s.ok(to_reuse, "GRADED", "assessor", data={"soh_pct": 81.0, "grade": "reuse"})
    await s.ok(to_reuse, "TRANSFERRED", "assessor", data={"to": ORGS["repurposer"]})
    everything = (to_recycle, in_service, fresh, collected, to_grade, to_reuse)
    await applied(s, portal, admin, *everything)
    without = await figures(portal, admin)

    # The mistakes: every kind of event a ministry figure counts.
    mistakes: list[tuple[str, str, dict[str, Any]]] = []  # (battery, declaring role, event), in posting order

    async def mistake(bid: str, etype: str, role: str, data: dict[str, Any] | None = None) -> None:
        mistakes.append((bid, role, await s.ok(bid, etype, role, data=data)))

    await mistake(to_recycle, "RECYCLED", "recycler")
    await mistake(in_service, "INSPECTED", "inspector")
    await mistake(in_service, "INCIDENT", "inspector", {"kind": "fire", "severity": "high"})
    await mistake(in_service, "REMOVED", "dismantler")
    await mistake(in_service, "COLLECTED", "collector", {"centre": "BUSAN-03", "region": "KR-26"})
    await mistake(fresh, "INSTALLED", "oem", {"ess_site_id": "ESS-9"})
    await mistake(collected, "DISPOSED", "collector")
    await mistake(to_grade, "GRADED", "assessor", {"soh_pct": 55.0, "grade": "recycle"})
    await mistake(to_reuse, "REPURPOSED", "repurposer")
    await mistake(to_reuse, "SAFETY_INSPECTED", "certifier")
    await mistake(to_reuse, "INCIDENT", "repurposer", {"kind": "swelling", "severity": "low"})
    await applied(s, portal, admin, *everything)
    mistaken = await figures(portal, admin)
    for m in MINISTRIES:
        assert mistaken[m] != without[m], m  # every ministry's figures moved with the mistakes

    # The corrections, latest first (a later event on the same battery may depend on an earlier one).
    for bid, role, event in reversed(mistakes):
        await s.ok(bid, "ERROR_DECLARED", role, data=declaring(event))
    await applied(s, portal, admin, *everything)
    corrected = await figures(portal, admin)
    for m in MINISTRIES:
        assert corrected[m] == without[m], m

    # The histories keep the mistakes, marked, and everything else is as before them.
    history = (await portal.get(f"/v1/batteries/{in_service}/history", headers=admin)).json()
    marked = [e for e in history["timeline"] if e["declared_in_error"]]
    assert [e["type"] for e in marked] == ["INSPECTED", "INCIDENT", "REMOVED", "COLLECTED"]
    assert all(e["declared_in_error"]["reason"] == "did_not_occur" for e in marked)
    assert (history["current"]["state"], history["current"]["custodian"]) == ("in_service", ORGS["oem"])
    assert history["current"]["soh_pct"] is None
    reused = (await portal.get(f"/v1/batteries/{to_reuse}/history", headers=admin)).json()
    assert [p["status"] for p in reused["passports"]] == ["Original"]
    recycled = (await portal.get(f"/v1/batteries/{to_recycle}/history", headers=admin)).json()
    assert recycled["current"]["state"] == "graded" and recycled["current"]["passport_status"] == "original"
    passport = (await portal.get(f"/v1/passports/{to_recycle}", headers=admin)).json()
    assert passport["status"] == "Original"


# ---- the portal's pure projection of a correction ----
def _tl(seq: int, kind: str, state: str, day: int, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    from services.portal.ingest.projection import TimelineEvent

    when = T0 + timedelta(days=day)
    return TimelineEvent(
        sequence=seq,
        event_id=kw.pop("event_id", f"00000000-0000-4000-8000-{seq:012d}"),
        type=kind,
        occurred_at=when,
        recorded_at=when,
        state_after=state,
        custodian_after=kw.pop("custodian", "REC-1"),
        location=kw.pop("location", {"region": "KR-41"}),
        data=data or {},
        actor=kw.pop("actor", "REC-1"),
    )


def test_a_declaration_takes_back_exactly_what_its_event_added_whatever_the_batching() -> None:
    from services.portal.ingest.projection import Battery, Facts, Flows, advance, contribution, corrected, fold

    facts = Facts(
        registered=True,
        manufacturer="LGES",
        chemistry="NCM",
        kind="pack",
        manufactured_at=T0,
        materials_kg={"lithium": 8.0},
        model={"rated_energy_kwh": 77.4},
    )
    recycled = {"process": "hydro", "input_mass_kg": 450.0, "black_mass_kg": 180.0, "recovered_kg": {"lithium": 4.0}}
    base = [
        _tl(1, "MANUFACTURED", "manufactured", 0, custodian="LGES", actor="LGES"),
        _tl(2, "INSTALLED", "in_service", 1, {"vin": "KMHEM41AP6A000009"}, custodian="HMC", actor="HMC"),
        _tl(3, "REMOVED", "removed", 2, {"reason": "end_of_life"}, custodian="DISM-1", actor="DISM-1"),
        _tl(4, "COLLECTED", "collected", 3, {"centre": "C-1", "region": "KR-41"}),
    ]
    mistake = _tl(5, "RECYCLED", "recycled", 4, recycled)
    declaration = _tl(6, "ERROR_DECLARED", "collected", 5, {"declared_event_id": mistake.event_id, "reason": "x"})
    full = [*base, mistake, declaration]
    assert [e.sequence for e in corrected(full)] == [1, 2, 3, 4, 6]
    assert fold(full).state == "collected" and fold(full).recycled_month is None
    b = Battery("P1", facts=facts, head=fold(full))
    without = contribution(Battery("P1", facts=facts, head=fold(base)), base)
    assert contribution(b, full).rows == without.rows
    # One event per batch, or all at once: the figures added are the battery's contribution either way (its
    # registration was counted when it arrived, before these batches).
    events_only = {k: v for k, v in without.changes().items() if k[0] != "registered"}
    for batches in ([full], [[e] for e in full], [full[:5], full[5:]]):
        flows, battery, seen = Flows(), Battery("P1", facts=facts), []
        for batch in batches:
            seen += batch
            inserted = {("P1", e.sequence) for e in batch}
            battery = advance(battery, None, seen, None, inserted, flows)
        assert flows.changes() == events_only, batches


async def test_a_mistaken_assembly_declared_takes_the_cell_out_again(s: Stack) -> None:
    module = await s.battery(model_id="NCM-MOD-8")
    cell = await s.battery(model_id="NCM-CELL-60")
    assembled = await s.ok(cell, "ASSEMBLED", "manufacturer", data={"parent_id": module})
    await s.ok(cell, "INCIDENT", "manufacturer")
    assert (await s.state(cell))["parent_id"] == module
    out = await s.ok(cell, "ERROR_DECLARED", "manufacturer", data=declaring(assembled))
    st = await s.state(cell)
    assert (out["state"], st["state"], st["parent_id"]) == ("manufactured", "manufactured", None)
    # The replay of an assembly checks this battery's history, not the parent's present (now held elsewhere).
    other = await s.battery(model_id="NCM-CELL-60")
    again = await s.ok(other, "ASSEMBLED", "manufacturer", data={"parent_id": module})
    incident = await s.ok(other, "INCIDENT", "manufacturer")
    await s.ok(module, "TRANSFERRED", "manufacturer", data={"to": ORGS["recycler"]})
    await s.ok(other, "ERROR_DECLARED", "manufacturer", data=declaring(incident))
    assert (await s.state(other))["parent_id"] == module and again["state"] == "assembled"
