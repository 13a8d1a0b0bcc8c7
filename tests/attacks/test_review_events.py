"""Attacks the review of the events service found without a test (review revA), over HTTP with the participant
check on. Every refusal changes nothing.

| attack | answer |
|---|---|
| another manufacturer, or the receiver of a transfer, lists or opens a company's EPCIS capture jobs | [] / 404 |
| `perPage` of the job list as 0, 1001, -1, `1e3`, a superscript or Arabic-Indic digit, blank | 400 QueryParameterException |
| the OEM that installed a battery reads or erases the plain VIN behind its pseudonym | 403 |
| an admin erases under a pseudonym nobody holds, a plain VIN in its place, an odd body | 404 / 422, nothing erased |
| an EPCIS installation naming a vehicle by another vehicle's pseudonym (bt:vin, parentID) | refused, nothing stored |
| an OEM installs into a recalled VIN and removes for the recall in one batch, naming no campaign | 422 `recall-campaign-required` |
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from shared.vin import is_pseudonym
from tests.conftest import eventually
from tests.events_helpers import BOOTSTRAP_ADMIN, CHECKED, ORGS, Stack, projected, stack
from tests.factories import participant
from tests.test_epcis_capture import association, battery, capture, doc, obj, transfer

VIN = "KMHEM41AP6A123456"


@pytest.fixture
async def s(make_settings, token) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    async with stack(make_settings, token, streams=True, register_orgs=True, **CHECKED) as st:
        await participant(st.registry, token(BOOTSTRAP_ADMIN, "admin"), "SDI", "manufacturer")
        for org in [*ORGS.values(), "MOLIT", "SDI"]:
            await eventually(lambda org=org: projected(st, org))
        yield st


async def _rows(s: Stack, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with s.events.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


def _now() -> str:
    return datetime.now(UTC).isoformat()


# ---- EPCIS capture jobs ----
async def test_no_other_company_lists_or_opens_a_companys_capture_jobs(s: Stack) -> None:
    bid = await s.battery()
    job = await capture(s, doc(transfer([battery(bid)], ORGS["oem"], _now())), "manufacturer")
    assert job["success"], job

    for headers in (s.as_role("manufacturer", "SDI"), s.as_role("oem")):  # a rival; the transfer's receiver
        listed = await s.events.get("/epcis/capture", headers=headers)
        assert listed.status_code == 200 and listed.json() == [], listed.text
        opened = await s.events.get(f"/epcis/capture/{job['captureID']}", headers=headers)
        assert opened.status_code == 404 and opened.json()["type"] == "epcisException:NoSuchNameException"
    own = (await s.events.get("/epcis/capture", headers=s.as_role("manufacturer"))).json()
    assert [j["captureID"] for j in own] == [job["captureID"]]
    every = (await s.events.get("/epcis/capture", headers=s.as_role("ministry"))).json()
    assert job["captureID"] in [j["captureID"] for j in every]


@pytest.mark.parametrize("per_page", ["0", "1001", "-1", "1e3", "\u00b2", "\u0663", " 5", ""])
async def test_an_odd_page_size_of_the_job_list_is_a_query_parameter_exception(s: Stack, per_page: str) -> None:
    r = await s.events.get("/epcis/capture", params={"perPage": per_page}, headers=s.as_role("manufacturer"))
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "epcisException:QueryParameterException"
    assert r.json()["errors"][0]["field"] == "perPage"


# ---- VINs ----
async def _installed(s: Stack) -> tuple[str, str]:
    """A battery HMC installed into the vehicle VIN, and the VIN's pseudonym as HMC reads it in the ledger."""
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    installed = await s.ok(bid, "INSTALLED", "oem", data={"vin": VIN})
    timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("oem"))).json()["items"]
    p = next(e["data"]["vin"] for e in timeline if e["event_id"] == installed["event_id"])
    assert is_pseudonym(p)
    return bid, p


async def _vin_snapshot(s: Stack) -> tuple[Any, ...]:
    return (
        await _rows(s, "SELECT pseudonym, vin, erased_at, erased_by FROM events.vins ORDER BY pseudonym"),
        await _rows(
            s, "SELECT id, topic, key, payload IS NULL FROM events.outbox WHERE topic LIKE '%vins%' ORDER BY id"
        ),
        await _rows(s, "SELECT id FROM events.audit_log WHERE details->>'action' = 'vin-erasure'"),
    )


async def test_the_installer_neither_reads_nor_erases_the_plain_vin_and_odd_erasures_erase_nothing(
    s: Stack, token: Any
) -> None:
    _, p = await _installed(s)
    before = await _vin_snapshot(s)
    assert before[0] == [(p, VIN, None, None)]

    oem = s.as_role("oem")
    assert (await s.events.get(f"/v1/vins/{p}", headers=oem)).status_code == 403
    r = await s.events.post(f"/v1/vins/{p}/erasure", json={"reason": "the owner asked us"}, headers=oem)
    assert r.status_code == 403, r.text

    admin = token(BOOTSTRAP_ADMIN, "admin")
    nobodys = "0" * 64
    r = await s.events.post(f"/v1/vins/{nobodys}/erasure", json={"reason": "PIPA request 1"}, headers=admin)
    assert (r.status_code, r.json()["code"]) == (404, "unknown-vin"), r.text
    for path in (VIN, p.upper(), p[:63], p + "0"):  # the plain VIN, and near-pseudonyms
        r = await s.events.post(f"/v1/vins/{path}/erasure", json={"reason": "PIPA request 1"}, headers=admin)
        assert r.status_code == 422, (path, r.text)
    for body in ({"reason": "x" * 501}, {"reason": "ok"}, {"reason": "PIPA request 1", "vin": VIN}, []):
        r = await s.events.post(f"/v1/vins/{p}/erasure", json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
    assert await _vin_snapshot(s) == before
    assert (await s.events.get(f"/v1/vins/{p}", headers=s.as_role("ministry"))).json()["vin"] == VIN


async def test_an_epcis_installation_cannot_name_a_vehicle_by_another_vehicles_pseudonym(s: Stack) -> None:
    _, p = await _installed(s)
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    before_state = await s.state(bid)
    before_vins = await _vin_snapshot(s)
    before_epcis = await _rows(s, "SELECT event_id FROM events.epcis_events ORDER BY event_id")

    events: list[dict[str, Any]] = [
        obj([battery(bid)], "installing", _now(), **{"bt:vin": p}),
        association("ADD", f"urn:vin:{p}", [battery(bid)], _now()),
        association("ADD", f"https://batterytrace.kr/vehicle/{p}", [battery(bid)], _now()),
    ]
    for ev in events:
        ev["eventID"] = f"urn:uuid:{uuid.uuid4()}"
        job = await capture(s, doc(ev), "oem")
        assert not job["success"] and job["errors"], job
        assert "vin" in orjson.dumps(job["errors"]).decode().lower(), job["errors"]

    assert await s.state(bid) == before_state
    assert await _vin_snapshot(s) == before_vins
    assert await _rows(s, "SELECT event_id FROM events.epcis_events ORDER BY event_id") == before_epcis


# ---- recalls ----
RECALL = {
    "id": "MOLIT-2026-901",
    "title": "Pack connector recall",
    "maker": ORGS["manufacturer"],
    "vin_ranges": [{"first": "KMHEM41AP6A100000", "last": "KMHEM41AP6A199999"}],
    "opened_on": "2026-11-20",
}


def _event(bid: str, etype: str, data: dict[str, Any]) -> dict[str, Any]:
    location = {"site": "test site", "region": "KR-11"}
    return {
        "event_id": str(uuid.uuid4()),
        "battery_id": bid,
        "type": etype,
        "occurred_at": _now(),
        "location": location,
        "data": data,
    }


async def test_a_recall_removal_batched_with_the_installation_into_a_recalled_vin_must_name_the_campaign(
    s: Stack,
) -> None:
    assert (await s.registry.post("/v1/recalls", json=RECALL, headers=s.as_role("ministry"))).status_code == 201
    probe = await s.battery()
    await s.transfer_to(probe, "oem")
    await s.ok(probe, "INSTALLED", "oem", data={"vin": "KMHEM41AP6A100009"})

    async def known() -> Any:  # the events service has the campaign from the stream
        r = await s.post(probe, "REMOVED", "oem", data={"reason": "recall"})
        return r.json() if r.json().get("code") == "recall-campaign-required" else None

    await eventually(known, timeout_s=30)

    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    before = (await s.state(bid), await _vin_snapshot(s))
    install = _event(bid, "INSTALLED", {"vin": "KMHEM41AP6A100001"})  # in the campaign's VIN range
    unnamed = _event(bid, "REMOVED", {"reason": "recall"})
    r = await s.events.post("/v1/events/batch", json={"events": [install, unnamed]}, headers=s.as_role("oem"))
    assert r.status_code == 422, r.text
    assert [(e["index"], e["code"]) for e in r.json()["errors"]] == [(1, "recall-campaign-required")]
    assert (await s.state(bid), await _vin_snapshot(s)) == before

    named = _event(bid, "REMOVED", {"reason": "recall", "recall_campaign": RECALL["id"]})
    r = await s.events.post("/v1/events/batch", json={"events": [install, named]}, headers=s.as_role("oem"))
    assert r.status_code == 201, r.text
    assert (await s.state(bid))["state"] == "removed"
