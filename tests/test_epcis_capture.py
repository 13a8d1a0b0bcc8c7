"""EPCIS capture (events service): schema validation, mapping onto the lifecycle, rollback/proceed, error
declarations, plain (non-battery) EPCIS events, the standard examples."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from shared.vin import is_pseudonym
from tests.events_helpers import ORGS, Stack, stack
from tests.standards import standard_files

EXAMPLES = standard_files("epcis/examples", "*")  # fails the module, naming the folder, when it is missing
EXAMPLE_BODIES = {p.name: orjson.loads(p.read_bytes()) for p in EXAMPLES}
BT = "https://batterytrace.kr/voc/"
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"bt": BT}]


def doc(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-02T10:30:00+09:00",
        "epcisBody": {"eventList": list(events)},
    }


def battery(bid: str) -> str:
    return f"https://batterytrace.kr/battery/{bid}"


def participant(org: str) -> str:
    return f"https://batterytrace.kr/participant/{org}"


def obj(epcs: list[str], step: str | None, when: str, **extra: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "action": "OBSERVE",
        "epcList": epcs,
        "eventTime": when,
        "eventTimeZoneOffset": "+09:00",
        "bizLocation": {"id": "https://batterytrace.kr/site/test%20site"},
        "bt:region": "KR-11",
    }
    if step:
        ev["bizStep"] = step
    ev.update(extra)
    return ev


def transfer(epcs: list[str], to: str, when: str) -> dict[str, Any]:
    return obj(epcs, None, when, destinationList=[{"type": "possessing_party", "destination": participant(to)}])


def sensors(**values: float) -> list[dict[str, Any]]:
    names = {"soh": "StateOfHealth", "cycles": "CycleCount"}
    return [{"sensorReport": [{"type": f"{BT}measurement/{names[k]}", "value": v} for k, v in values.items()]}]


async def capture(
    s: Stack, body: dict[str, Any], role: str, *, org: str | None = None, behaviour: str | None = None
) -> dict[str, Any]:
    headers = s.as_role(role, org) | {"content-type": "application/ld+json"}
    if behaviour:
        headers["GS1-Capture-Error-Behaviour"] = behaviour
    r = await s.events.post("/epcis/capture", content=orjson.dumps(body), headers=headers)
    assert r.status_code == 202, r.text
    loc = r.headers["location"]
    job = await s.events.get(loc, headers=s.as_role(role, org))
    assert job.status_code == 200, job.text
    assert job.json() == r.json()
    return dict(job.json())


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st:
        yield st


@pytest.mark.parametrize("name", sorted(EXAMPLE_BODIES))
async def test_every_standard_example_is_captured(s: Stack, name: str) -> None:
    """Their identifiers are no batteries here: every event is stored as a plain EPCIS event."""
    body = EXAMPLE_BODIES[name]
    job = await capture(s, body, "manufacturer")
    assert job["success"] and job["status"] == "success", job
    assert job["storedCount"] == len(body["epcisBody"]["eventList"])
    again = await capture(s, body, "manufacturer")  # the same document again: harmless
    assert again["success"], again


async def test_schema_errors_list_the_failing_paths(s: Stack) -> None:
    bad = doc(obj([battery("X")], "inspecting", "2026-11-02T10:30:00+09:00"))
    bad["epcisBody"]["eventList"][0]["action"] = "LOOK"
    bad["epcisBody"]["eventList"][0]["eventTime"] = "yesterday"
    del bad["schemaVersion"]
    r = await s.events.post("/epcis/capture", json=bad, headers=s.as_role("inspector"))
    # the standard's exception (GS1 REST binding: 400 ValidationException), not 422
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "epcis-schema" and body["type"] == "epcisException:ValidationException"
    fields = {e["field"] for e in body["errors"]}
    assert {"/epcisBody/eventList/0/action", "/epcisBody/eventList/0/eventTime", "/"} <= fields, fields
    assert all(e["rule"].startswith("/") for e in body["errors"])


async def test_capture_needs_a_token(s: Stack) -> None:
    r = await s.events.post("/epcis/capture", json=doc())
    assert r.status_code == 401


async def test_battery_steps_drive_the_state_machine(s: Stack) -> None:
    bid = await s.battery()
    alias = f"urn:epc:id:sgtin:8801234.056789.{bid}"
    r = await s.registry.post(
        f"/v1/batteries/{bid}/aliases", json={"scheme": "epc", "value": alias}, headers=s.as_role("manufacturer")
    )
    assert r.status_code in (200, 201), r.text
    await capture(s, doc(transfer([alias], ORGS["oem"], "2026-02-01T10:00:00+09:00")), "manufacturer")
    await capture(
        s, doc(obj([alias], "installing", "2026-02-02T10:00:00+09:00", **{"bt:vin": "KMHEM41AP6A123456"})), "oem"
    )
    job = await capture(
        s,
        doc(obj([alias], "inspecting", "2026-05-02T10:00:00+09:00", sensorElementList=sensors(soh=91.5, cycles=420))),
        "inspector",
    )
    assert job["success"], job
    st = await s.state(bid)
    assert st["state"] == "in_service" and st["sequence"] == 4
    timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()["items"]
    assert [e["type"] for e in timeline] == ["MANUFACTURED", "TRANSFERRED", "INSTALLED", "INSPECTED"]
    assert timeline[3]["data"] == {"soh_pct": 91.5, "cycle_count": 420}
    assert timeline[3]["location"] == {"site": "test site", "region": "KR-11"}
    assert timeline[3]["actor"] == ORGS["inspector"]


async def test_rollback_stores_nothing_when_one_event_is_illegal(s: Stack) -> None:
    bid = await s.battery()
    other = await s.battery()
    body = doc(
        transfer([battery(other)], ORGS["oem"], "2026-02-01T10:00:00+09:00"),
        obj([battery(bid)], "removing", "2026-02-02T10:00:00+09:00"),  # manufactured → REMOVED: illegal
        obj(["urn:epc:id:sgtin:0614141.107346.2017"], "shipping", "2026-02-03T10:00:00+09:00"),
    )
    job = await capture(s, body, "manufacturer")
    assert job["status"] == "failure" and not job["success"] and job["storedCount"] == 0
    (err,) = job["errors"]
    assert err["eventIndex"] == 1 and err["batteryID"] == bid and err["status"] in (403, 409), err
    assert (await s.state(other))["custodian"] == ORGS["manufacturer"]  # nothing stored


async def test_illegal_transition_is_that_events_error(s: Stack) -> None:
    bid = await s.battery()
    job = await capture(s, doc(obj([battery(bid)], "removing", "2026-02-02T10:00:00+09:00")), "dismantler")
    (err,) = job["errors"]
    assert err["code"] == "illegal-transition" and err["current_state"] == "manufactured"
    assert err["lifecycleType"] == "REMOVED"


async def test_proceed_stores_the_valid_events_and_lists_the_failures(s: Stack) -> None:
    bid = await s.battery()
    other = await s.battery()
    body = doc(
        transfer([battery(other)], ORGS["oem"], "2026-02-01T10:00:00+09:00"),
        obj(
            [battery("KR-NOT-REGISTERED")],
            "inspecting",
            "2026-02-02T10:00:00+09:00",
            sensorElementList=sensors(soh=90, cycles=1),
        ),
        transfer([battery(bid)], ORGS["collector"], "2026-02-03T10:00:00+09:00"),
    )
    job = await capture(s, body, "manufacturer", behaviour="proceed")
    assert job["status"] == "failure" and job["storedCount"] == 2
    (err,) = job["errors"]
    assert err["eventIndex"] == 1 and err["status"] in (403, 404)
    assert (await s.state(other))["custodian"] == ORGS["oem"]
    assert (await s.state(bid))["custodian"] == ORGS["collector"]


async def test_unknown_parent_fails_assembly(s: Stack) -> None:
    cell = await s.battery(model_id="NCM-CELL-60")
    agg = {
        "type": "AggregationEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "action": "ADD",
        "bizStep": "assembling",
        "parentID": "urn:epc:id:sscc:0614141.1234567890",
        "childEPCs": [battery(cell)],
        "eventTime": "2026-02-02T10:00:00+09:00",
        "eventTimeZoneOffset": "+09:00",
    }
    job = await capture(s, doc(agg), "manufacturer")
    (err,) = job["errors"]
    assert err["code"] == "unknown-parent" and err["status"] == 404
    agg2 = {**agg, "eventID": f"urn:uuid:{uuid.uuid4()}", "parentID": battery("KR-NO-SUCH-PARENT")}
    job = await capture(s, doc(agg2), "manufacturer")
    (err,) = job["errors"]
    assert err["code"] == "unknown-battery" and err["status"] == 404
    assert (await s.state(cell))["state"] == "manufactured"


async def test_aggregation_assembles_and_disassembles(s: Stack) -> None:
    module = await s.battery(model_id="NCM-MOD-8")
    cells = [await s.battery(model_id="NCM-CELL-60") for _ in range(3)]
    add = {
        "type": "AggregationEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "action": "ADD",
        "bizStep": "assembling",
        "parentID": battery(module),
        "childEPCs": [battery(c) for c in cells],
        "eventTime": "2026-02-02T10:00:00+09:00",
        "eventTimeZoneOffset": "+09:00",
    }
    assert (await capture(s, doc(add), "manufacturer"))["success"]
    assert {(await s.state(c))["parent_id"] for c in cells} == {module}
    delete = {
        **add,
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "action": "DELETE",
        "bizStep": "disassembling",
        "childEPCs": [battery(cells[0])],
        "eventTime": "2026-03-02T10:00:00+09:00",
    }
    assert (await capture(s, doc(delete), "manufacturer"))["success"]
    st = await s.state(cells[0])
    assert st["state"] == "removed" and st["parent_id"] is None


async def test_error_declaration_adds_a_correcting_event(s: Stack) -> None:
    bid = await s.battery()
    ev = transfer([battery(bid)], ORGS["oem"], "2026-02-01T10:00:00+09:00")
    assert (await capture(s, doc(ev), "manufacturer"))["success"]
    declared = {
        **ev,
        "errorDeclaration": {
            "declarationTime": "2026-02-05T10:00:00+09:00",
            "reason": "incorrect_data",
            "correctiveEventIDs": ["urn:uuid:404d95fc-9457-4a51-bd6a-0bba133845a8"],
        },
    }
    # only the original's actor (or an authority) may declare it in error
    job = await capture(s, doc(declared), "oem")
    assert job["errors"][0]["status"] == 403, job
    job = await capture(s, doc(declared), "manufacturer")
    assert job["success"], job
    timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()["items"]
    assert [e["type"] for e in timeline] == ["MANUFACTURED", "TRANSFERRED", "ERROR_DECLARED"]
    assert timeline[2]["data"]["declared_event_id"] == timeline[1]["event_id"]
    assert timeline[2]["data"]["reason"] == "incorrect_data"
    # The correction takes the transfer out: custody is back at the manufacturer.
    assert timeline[2]["state_after"] == "manufactured" and timeline[2]["custodian_after"] == ORGS["manufacturer"]
    assert (await s.events.get(f"/v1/batteries/{bid}/verify")).json()["valid"]


async def test_native_error_declaration_rules(s: Stack) -> None:
    bid = await s.battery()
    first = await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    other = await s.battery()
    r = await s.post(
        other,
        "ERROR_DECLARED",
        "manufacturer",
        data={"declared_event_id": first["event_id"], "reason": "incorrect_data"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "same-battery", r.text
    r = await s.post(
        bid, "ERROR_DECLARED", "manufacturer", data={"declared_event_id": str(uuid.uuid4()), "reason": "did_not_occur"}
    )
    assert r.status_code == 404 and r.json()["code"] == "unknown-event"
    r = await s.post(
        bid, "ERROR_DECLARED", "collector", data={"declared_event_id": first["event_id"], "reason": "did_not_occur"}
    )
    assert r.status_code == 403
    ok = await s.ok(
        bid, "ERROR_DECLARED", "ministry", data={"declared_event_id": first["event_id"], "reason": "did_not_occur"}
    )
    assert ok["state"] == "manufactured" and ok["sequence"] == 3
    r = await s.post(
        bid, "ERROR_DECLARED", "ministry", data={"declared_event_id": ok["event_id"], "reason": "did_not_occur"}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "not-a-declaration"


async def test_context_is_served(s: Stack) -> None:
    r = await s.events.get("/epcis/context/batterytrace.jsonld")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")
    ctx = r.json()["@context"]
    assert ctx["grading"]["@id"] == "btbizstep:grading" and ctx["bt"] == BT


async def test_capture_job_is_private_to_its_poster(s: Stack) -> None:
    r = await s.events.post("/epcis/capture", json=doc(), headers=s.as_role("recycler"))
    assert r.status_code == 202
    loc = r.headers["location"]
    assert (await s.events.get(loc, headers=s.as_role("collector"))).status_code == 404
    assert (await s.events.get(loc, headers=s.as_role("ministry"))).status_code == 200
    assert (await s.events.get("/epcis/capture/nope", headers=s.as_role("recycler"))).status_code == 404


async def test_an_event_without_event_id_is_named_by_its_event_hash_and_recognised_when_resent(s: Stack) -> None:
    """CBV 2.0 event hash: the same event sent again, however serialised and under whatever eventID, is a
    harmless retry: stored once, applied to the lifecycle once."""
    from services.events.epcis.event_hash import event_hash

    bid = await s.battery()
    ev = transfer([battery(bid)], ORGS["oem"], "2026-02-01T10:00:00+09:00")
    del ev["eventID"]
    first = await capture(s, doc(ev), "manufacturer")
    assert first["success"] and first["storedCount"] == 1, first
    assert (await s.state(bid))["sequence"] == 2

    async def stored() -> list[tuple[str, str]]:
        async with s.events.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
            rows = await session.execute(text("SELECT event_id, event_hash FROM events.epcis_events ORDER BY 1"))
        return [(r[0], r[1]) for r in rows]

    assert await stored() == [(event_hash(ev, CONTEXT), event_hash(ev, CONTEXT))]
    again = dict(reversed(list(ev.items())))
    again["eventTime"] = "2026-02-01T01:00:00.000Z"  # the same instant
    for resent in (ev, again, {**ev, "eventID": f"urn:uuid:{uuid.uuid4()}"}):
        job = await capture(s, doc(resent), "manufacturer")
        assert job["success"] and not job["errors"], job
    assert (await s.state(bid))["sequence"] == 2  # never transferred twice
    assert len(await stored()) == 1
    plain = obj(["urn:epc:id:sgtin:0614141.107346.2017"], "shipping", "2026-02-03T10:00:00+09:00")
    twins = [{k: v for k, v in plain.items() if k != "eventID"}, plain]  # one without an eventID, one with
    job = await capture(s, doc(*twins), "manufacturer")
    assert job["success"], job
    assert len(await stored()) == 2  # the twins once


def association(action: str, parent: str, children: list[str], when: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "AssociationEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "action": action,
        "bizStep": "installing" if action == "ADD" else "removing",
        "parentID": parent,
        "childEPCs": children,
        "eventTime": when,
        "eventTimeZoneOffset": "+09:00",
        **extra,
    }


def ownership(epcs: list[str], to: str, when: str, party: str = "owning_party") -> dict[str, Any]:
    return {
        "type": "TransactionEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "action": "ADD",
        "bizStep": "retail_selling",
        "bizTransactionList": [{"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:8801234000009:PO-1"}],
        "epcList": epcs,
        "destinationList": [{"type": party, "destination": participant(to)}],
        "eventTime": when,
        "eventTimeZoneOffset": "+09:00",
    }


VIN = "KMHEM41AP6A123456"


async def test_association_with_a_vehicle_installs_and_removes(s: Stack) -> None:
    bid = await s.battery()
    await capture(s, doc(transfer([battery(bid)], ORGS["oem"], "2026-02-01T10:00:00+09:00")), "manufacturer")
    add = association("ADD", f"https://batterytrace.kr/vehicle/{VIN}", [battery(bid)], "2026-02-02T10:00:00+09:00")
    assert (await capture(s, doc(add), "oem"))["success"]
    st = await s.state(bid)
    assert st["state"] == "in_service", st
    timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()["items"]
    # The VIN is personal data: the ledger holds its keyed pseudonym (README "Vehicles, recalls and personal data").
    installed = timeline[-1]
    assert installed["type"] == "INSTALLED" and set(installed["data"]) == {"vin"}, installed
    assert is_pseudonym(installed["data"]["vin"]) and VIN not in json.dumps(installed)
    delete = association("DELETE", f"urn:vin:{VIN}", [battery(bid)], "2026-05-02T10:00:00+09:00", disposition="damaged")
    assert (await capture(s, doc(delete), "oem"))["success"]
    timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()["items"]
    assert timeline[-1]["type"] == "REMOVED" and timeline[-1]["data"]["reason"] == "accident"
    assert (await s.state(bid))["state"] == "removed"


async def test_association_with_an_ess_site_installs(s: Stack) -> None:
    bid = await s.battery()
    await capture(s, doc(transfer([battery(bid)], ORGS["oem"], "2026-02-01T10:00:00+09:00")), "manufacturer")
    add = association(
        "ADD",
        "urn:epc:id:sgln:8801234.00001.0",
        [battery(bid)],
        "2026-02-02T10:00:00+09:00",
        **{"bt:essSiteId": "ESS-7"},
    )
    assert (await capture(s, doc(add), "oem"))["success"]
    timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()["items"]
    assert timeline[-1]["type"] == "INSTALLED" and timeline[-1]["data"] == {"ess_site_id": "ESS-7"}


async def test_association_with_something_else_is_stored_only(s: Stack) -> None:
    bid = await s.battery()
    add = association("ADD", "urn:epc:id:grai:4012345.55555.987", [battery(bid)], "2026-02-02T10:00:00+09:00")
    job = await capture(s, doc(add), "manufacturer")
    assert job["success"], job
    assert (await s.state(bid))["sequence"] == 1


async def test_association_follows_the_lifecycle_rules(s: Stack) -> None:
    """An installation by a participant who does not hold the battery is refused, as natively; nothing changes."""
    bid = await s.battery()
    add = association("ADD", f"https://batterytrace.kr/vehicle/{VIN}", [battery(bid)], "2026-02-02T10:00:00+09:00")
    job = await capture(s, doc(add), "oem")
    (err,) = job["errors"]
    assert err["lifecycleType"] == "INSTALLED" and err["status"] in (403, 409), err
    st = await s.state(bid)
    assert st["state"] == "manufactured" and st["sequence"] == 1
    # removing what was never installed: an illegal transition
    job = await capture(
        s, doc(association("DELETE", f"urn:vin:{VIN}", [battery(bid)], "2026-02-03T10:00:00+09:00")), "manufacturer"
    )
    (err,) = job["errors"]
    assert err["lifecycleType"] == "REMOVED" and err["status"] in (403, 409), err


async def test_transaction_with_a_change_of_ownership_transfers(s: Stack) -> None:
    bid = await s.battery()
    job = await capture(s, doc(ownership([battery(bid)], ORGS["oem"], "2026-02-01T10:00:00+09:00")), "manufacturer")
    assert job["success"], job
    assert (await s.state(bid))["custodian"] == ORGS["oem"]
    # a seller who does not hold the battery cannot sell it
    job = await capture(s, doc(ownership([battery(bid)], ORGS["recycler"], "2026-02-02T10:00:00+09:00")), "collector")
    (err,) = job["errors"]
    assert err["lifecycleType"] == "TRANSFERRED" and err["status"] in (403, 409), err
    assert (await s.state(bid))["custodian"] == ORGS["oem"]
    # a possessing party alone is no change of ownership: stored, no lifecycle step
    job = await capture(
        s, doc(ownership([battery(bid)], ORGS["collector"], "2026-02-03T10:00:00+09:00", "possessing_party")), "oem"
    )
    assert job["success"] and (await s.state(bid))["custodian"] == ORGS["oem"]


async def test_epcis_capture_keeps_the_services_capture_settings(make_settings, token) -> None:
    """EPCIS capture decides by the same settings as the native API (here the clock skew `occurred_at_max_ahead_s`;
    the plausibility margins, the KC 10031 bodies and the correction window travel with it): it used to apply the
    rules' defaults whatever the service was configured with."""
    ahead = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    async with stack(make_settings, token) as default:
        bid = await default.battery()
        job = await capture(default, doc(transfer([battery(bid)], ORGS["oem"], ahead)), "manufacturer")
        (err,) = job["errors"]
        assert err["status"] == 422 and "future" in orjson.dumps(err).decode(), err
    async with stack(make_settings, token, occurred_at_max_ahead_s=90.0) as wide:
        bid = await wide.battery()
        job = await capture(wide, doc(transfer([battery(bid)], ORGS["oem"], ahead)), "manufacturer")
        assert job["success"], job
        assert (await wide.state(bid))["custodian"] == ORGS["oem"]
