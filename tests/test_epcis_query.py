"""EPCIS end to end: capture (events) → Kafka → the portal's EPCIS query. A battery's life captured as EPCIS
only gives the same state, history and ministry figures as the same life posted natively; query answers
validate against the official EPCIS JSON Schema."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.conftest import eventually
from tests.events_helpers import ORGS, Stack, stack
from tests.portal_helpers import portal_app, portal_settings, wait_sequence
from tests.test_epcis_capture import EXAMPLE_BODIES, battery, capture, doc, obj, sensors, transfer

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "services" / "events" / "epcis" / "EPCIS-JSON-Schema.json"
VALIDATOR = jsonschema.Draft7Validator(json.loads(SCHEMA_PATH.read_text()))
VIN = "KMHEM41AP6A123456"
RECOVERED = {"lithium": 5.1, "nickel": 30.2, "cobalt": 3.9, "manganese": 3.1}


def assert_valid(document: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)]
    assert not errors, errors[:5]


@dataclass
class World:
    s: Stack
    portal: httpx.AsyncClient

    @property
    def admin(self) -> dict[str, str]:
        return self.s.token("ops", "admin")

    async def query(self, **params: Any) -> tuple[dict[str, Any], httpx.Response]:
        r = await self.portal.get("/epcis/events", params=params, headers=self.admin)
        assert r.status_code == 200, r.text
        body = r.json()
        assert_valid(body)
        return body, r


def events_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body["epcisBody"]["queryResults"]["resultsBody"]["eventList"])


@pytest.fixture
async def world(make_settings, token) -> AsyncIterator[World]:
    async with stack(make_settings, token, streams=True) as s, portal_app(portal_settings(make_settings)) as portal:
        yield World(s, portal)


def at(day: str) -> str:
    return f"2026-{day}T10:00:00+09:00"


async def native_life(s: Stack, bid: str, region: str) -> None:
    loc = {"location": {"site": "test site", "region": region}}

    async def post(etype: str, role: str, when: str, data: dict[str, Any]) -> dict[str, Any]:
        body = {
            "event_id": str(uuid.uuid4()),
            "battery_id": bid,
            "type": etype,
            "occurred_at": at(when),
            "data": data,
            **loc,
        }
        r = await s.events.post("/v1/events", json=body, headers=s.as_role(role))
        assert r.status_code == 201, r.text
        return dict(r.json())

    await post("TRANSFERRED", "manufacturer", "02-01", {"to": ORGS["oem"]})
    await post("INSTALLED", "oem", "02-02", {"vin": VIN})
    wrong = await post("INSPECTED", "inspector", "05-02", {"soh_pct": 19.5, "cycle_count": 42})
    await post(
        "ERROR_DECLARED", "inspector", "05-03", {"declared_event_id": wrong["event_id"], "reason": "incorrect_data"}
    )
    await post("INSPECTED", "inspector", "05-04", {"soh_pct": 91.5, "cycle_count": 420})
    await post("REMOVED", "dismantler", "06-01", {"reason": "end_of_life"})
    # Handed over by TRANSFERRED (EPCIS: a destination), not by REMOVED's consignee, which EPCIS does not carry yet.
    await post("TRANSFERRED", "dismantler", "06-02", {"to": ORGS["collector"]})
    await post("COLLECTED", "collector", "06-05", {"centre": "SIHEUNG-01", "region": region})
    await post("TRANSFERRED", "collector", "06-06", {"to": ORGS["assessor"]})
    await post("GRADED", "assessor", "06-07", {"soh_pct": 62.0, "grade": "recycle"})
    await post("TRANSFERRED", "assessor", "06-08", {"to": ORGS["recycler"]})
    await post(
        "RECYCLED",
        "recycler",
        "06-10",
        {"process": "hydrometallurgy", "input_mass_kg": 450.0, "black_mass_kg": 180.0, "recovered_kg": RECOVERED},
    )


async def epcis_life(s: Stack, epc: str, region: str) -> None:
    ext = {"bt:region": region}

    async def send(role: str, *events: dict[str, Any]) -> None:
        job = await capture(s, doc(*events), role)
        assert job["success"], job

    await send("manufacturer", transfer([epc], ORGS["oem"], at("02-01")) | ext)
    await send("oem", obj([epc], "installing", at("02-02"), **{"bt:vin": VIN}) | ext)
    wrong = obj([epc], "inspecting", at("05-02"), sensorElementList=sensors(soh=19.5, cycles=42)) | ext
    await send("inspector", wrong)
    declared = wrong | {"errorDeclaration": {"declarationTime": at("05-03"), "reason": "incorrect_data"}}
    await send(
        "inspector",
        declared,
        obj([epc], "inspecting", at("05-04"), sensorElementList=sensors(soh=91.5, cycles=420)) | ext,
    )
    await send(
        "dismantler", obj([epc], "removing", at("06-01")) | ext, transfer([epc], ORGS["collector"], at("06-02")) | ext
    )
    await send(
        "collector",
        obj([epc], "collecting", at("06-05"), **{"bt:centre": "SIHEUNG-01"}) | ext,
        transfer([epc], ORGS["assessor"], at("06-06")) | ext,
    )
    await send(
        "assessor",
        obj(
            [epc],
            "https://batterytrace.kr/voc/bizstep/grading",
            at("06-07"),
            disposition="https://batterytrace.kr/voc/disp/grade_recycle",
            sensorElementList=sensors(soh=62.0),
        )
        | ext,
        transfer([epc], ORGS["recycler"], at("06-08")) | ext,
    )
    outputs = [{"epcClass": "https://batterytrace.kr/material/black_mass", "quantity": 180.0, "uom": "KGM"}]
    outputs += [
        {"epcClass": f"https://batterytrace.kr/material/{m}", "quantity": kg, "uom": "KGM"}
        for m, kg in RECOVERED.items()
    ]
    recycling = {
        "type": "TransformationEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "eventTime": at("06-10"),
        "eventTimeZoneOffset": "+09:00",
        "bizStep": "https://batterytrace.kr/voc/bizstep/recycling",
        "inputEPCList": [epc],
        "outputQuantityList": outputs,
        "bizLocation": {"id": "https://batterytrace.kr/site/test%20site"},
        "bt:process": "hydrometallurgy",
        "bt:inputMassKg": 450.0,
    } | ext
    await send("recycler", recycling)


def _normal(e: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in e["data"].items() if k != "declared_event_id"}
    return {
        k: e[k]
        for k in (
            "sequence",
            "type",
            "occurred_at",
            "actor",
            "actor_role",
            "location",
            "state_after",
            "custodian_after",
        )
    } | {"data": data}


async def test_a_life_captured_as_epcis_equals_the_native_one(world: World) -> None:
    s, admin = world.s, world.admin
    native, captured = await s.battery(), await s.battery()
    epc = f"urn:epc:id:sgtin:8801234.056789.{captured}"
    r = await s.registry.post(
        f"/v1/batteries/{captured}/aliases", json={"scheme": "epc", "value": epc}, headers=s.as_role("manufacturer")
    )
    assert r.status_code in (200, 201), r.text
    await native_life(s, native, "KR-11")
    await epcis_life(s, epc, "KR-26")

    # the events service: the same state and the same ledger
    a, b = await s.state(native), await s.state(captured)
    assert {**a, "battery_id": ""} == {**b, "battery_id": ""}
    assert a["state"] == "recycled" and a["sequence"] == 13

    # the portal: the same history and the same ministry figures (region for region)
    ha = await wait_sequence(world.portal, admin, native, 13)
    hb = await wait_sequence(world.portal, admin, captured, 13)
    swap = {"KR-26": "KR-11"}
    assert [_normal(e) for e in ha["timeline"]] == json.loads(
        _swap(json.dumps([_normal(e) for e in hb["timeline"]]), swap)
    )
    assert ha["current"] | {"battery_id": ""} == json.loads(_swap(json.dumps(hb["current"] | {"battery_id": ""}), swap))
    for ministry in ("MOTIE", "MOLIT", "MCEE", "KATS"):
        h = s.token(ministry, "ministry", ministry=ministry)
        va = (await world.portal.get(f"/v1/views/{ministry.lower()}", params={"region": "KR-11"}, headers=h)).json()
        vb = (await world.portal.get(f"/v1/views/{ministry.lower()}", params={"region": "KR-26"}, headers=h)).json()
        assert va == json.loads(_swap(json.dumps(vb), swap)), ministry

    # the EPCIS query: both lives, every event, schema-valid; the wrong inspection is marked
    for bid, label in ((native, "native"), (captured, "captured")):

        async def arrived(bid: str = bid) -> Any:
            body, _ = await world.query(MATCH_epc=battery(bid), perPage=100)
            return body if len(events_of(body)) == 12 else None

        body = await eventually(arrived, timeout_s=30)
        evs = events_of(body)
        steps = [e.get("bizStep") for e in evs]
        assert steps.count("inspecting") == 2 and "https://batterytrace.kr/voc/bizstep/grading" in steps, label
        declared = [e for e in evs if "errorDeclaration" in e]
        assert len(declared) == 1 and declared[0]["errorDeclaration"]["reason"] == "incorrect_data", label
        # Results come in record-time order; a battery first seen in a capture has its MANUFACTURED recorded
        # during that capture, so compare by event time: the earliest event is the commissioning one.
        first = min(evs, key=lambda e: datetime.fromisoformat(e["eventTime"]))
        assert first.get("bizStep") == "commissioning", label
    # the captured battery is named by its EPC alias, and MATCH_epc finds it by that alias too
    body, _ = await world.query(MATCH_epc=epc, eventType="TransformationEvent")
    (recycled,) = events_of(body)
    assert recycled["inputEPCList"] == [epc]
    body, _ = await world.query(MATCH_epc=battery(native), eventType="TransformationEvent")
    (native_recycled,) = events_of(body)
    assert native_recycled["eventID"].startswith("urn:uuid:") and native_recycled["bt:inputMassKg"] == 450.0


def _epcs(e: dict[str, Any]) -> list[str]:
    return [v for k in ("epcList", "childEPCs", "inputEPCList", "outputEPCList") for v in e.get(k, [])]


def _swap(text: str, pairs: dict[str, str]) -> str:
    for a, b in pairs.items():
        text = re.sub(re.escape(a), b, text)
    return text


async def test_standard_examples_are_queryable_and_valid(world: World) -> None:
    for body in EXAMPLE_BODIES.values():
        job = await capture(world.s, body, "manufacturer")
        assert job["success"], job
    # object_event_all_possible_fields reuses the eventID of ErrorDeclarationAndCorrectiveEvent's first event, with
    # an errorDeclaration: captured after it, it declares that event in error (EPCIS matches by eventID).
    total = len({e["eventID"] for b in EXAMPLE_BODIES.values() for e in b["epcisBody"]["eventList"]})

    async def all_there() -> Any:
        body, _ = await world.query(
            perPage=1000,
            eventType=[
                "ObjectEvent",
                "AggregationEvent",
                "TransformationEvent",
                "TransactionEvent",
                "AssociationEvent",
            ],
        )
        return body if len(events_of(body)) >= total else None

    everything = events_of(await eventually(all_there, timeout_s=30))
    ids = {e["eventID"] for e in everything}
    assert "ni:///sha-256;df7bb3c352fef055578554f09f5e2aa41782150ced7bd0b8af24dd3ccb30ba69?ver=CBV2.0" in ids
    # the example's ErrorDeclaration is kept with the event
    r = await world.portal.get("/epcis/events/urn:uuid:374d95fc-9457-4a51-bd6a-0bba133845a8", headers=world.admin)
    assert r.status_code == 200
    assert_valid(r.json())
    (one,) = events_of(r.json())
    assert one["errorDeclaration"]["reason"] == "incorrect_data"

    # filters
    body, _ = await world.query(EQ_bizStep="receiving", MATCH_epc="urn:epc:id:sgtin:0614141.107346.2018")
    found = events_of(body)
    assert "ni:///sha-256;00e1e6eba3a7cc6125be4793a631f0af50f8322e0ab5f2c0bab994a11cec1d79?ver=CBV2.0" in {
        e["eventID"] for e in found
    }
    epc = "urn:epc:id:sgtin:0614141.107346.2018"
    assert all(e["bizStep"] == "receiving" and epc in e.get("epcList", []) + e.get("childEPCs", []) for e in found)
    sscc = "urn:epc:id:sscc:0614141.1234567890"
    agg = "ni:///sha-256;87b5f18a69993f0052046d4687dfacdf48f7c988cfabda2819688c86b4066a49?ver=CBV2.0"
    body, _ = await world.query(MATCH_anyEPC=sscc)
    assert agg in {e["eventID"] for e in events_of(body)}
    assert all(sscc in [e.get("parentID"), *_epcs(e)] for e in events_of(body))
    body, _ = await world.query(MATCH_epc=sscc)  # parentID does not count for MATCH_epc
    assert agg not in {e["eventID"] for e in events_of(body)} and all(sscc in _epcs(e) for e in events_of(body))
    body, _ = await world.query(EQ_bizLocation="urn:epc:id:sgln:0012345.11111.0", EQ_disposition="in_progress")
    assert events_of(body) and all(
        e["bizLocation"]["id"] == "urn:epc:id:sgln:0012345.11111.0" and e["disposition"] == "in_progress"
        for e in events_of(body)
    )
    body, _ = await world.query(EQ_readPoint="urn:epc:id:sgln:0614141.07346.1234", eventType="ObjectEvent")
    assert events_of(body) and all(
        e["readPoint"]["id"] == "urn:epc:id:sgln:0614141.07346.1234" and e["type"] == "ObjectEvent"
        for e in events_of(body)
    )
    body, _ = await world.query(GE_eventTime="2013-01-01T00:00:00Z", LT_eventTime="2014-01-01T00:00:00Z")
    assert {e["eventTime"][:4] for e in events_of(body)} == {"2013"}
    body, _ = await world.query(GE_recordTime="2099-01-01T00:00:00Z")
    assert events_of(body) == []
    body, _ = await world.query(EQ_bizStep="https://ref.gs1.org/cbv/BizStep-shipping")
    assert len(events_of(body)) >= 1

    # paging: perPage and nextPageToken through the Link header
    seen: list[str] = []
    params: dict[str, Any] = {"perPage": 3}
    while True:
        body, r = await world.query(**params)
        seen += [e["eventID"] for e in events_of(body)]
        link = r.headers.get("link")
        if not link:
            break
        token = re.search(r"nextPageToken=([^&>]+)", link)
        assert token is not None
        params = {"perPage": 3, "nextPageToken": httpx.QueryParams(f"t={token.group(1)}")["t"]}
    assert len(seen) == len(set(seen)) and set(seen) == {e["eventID"] for e in everything}


async def test_query_access_and_errors(world: World) -> None:
    s = world.s
    bid = await s.battery()
    await capture(s, doc(transfer([battery(bid)], ORGS["oem"], at("02-01"))), "manufacturer")
    plain = obj(["urn:epc:id:sgtin:0614141.107346.9"], "shipping", at("02-01"))
    await capture(s, doc(plain), "recycler")

    async def ready() -> Any:
        body, _ = await world.query()
        return len(events_of(body)) >= 3 or None

    await eventually(ready, timeout_s=30)
    assert (await world.portal.get("/epcis/events")).status_code == 401
    mine = (await world.portal.get("/epcis/events", headers=s.as_role("recycler"))).json()
    assert [e["eventID"] for e in events_of(mine)] == [plain["eventID"]]
    lges = events_of((await world.portal.get("/epcis/events", headers=s.as_role("manufacturer"))).json())
    assert {e.get("bizStep") for e in lges} == {"commissioning", None} and len(lges) == 2
    # the standard's exception (GS1 REST binding): 400 QueryParameterException, not 422
    r = await world.portal.get("/epcis/events", params={"eventType": "Nope"}, headers=world.admin)
    assert r.status_code == 400 and r.json()["type"] == "epcisException:QueryParameterException"
    r = await world.portal.get("/epcis/events", params={"nextPageToken": "zz"}, headers=world.admin)
    assert r.status_code == 400 and r.json()["type"] == "epcisException:QueryParameterException"
    r = await world.portal.get(f"/epcis/events/{plain['eventID']}", headers=s.as_role("collector"))
    assert r.status_code == 404
