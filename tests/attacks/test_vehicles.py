"""Attacks on vehicles and VINs, over HTTP with the participant check on, the way a hostile participant would.

| attack | now |
|---|---|
| another company (an unrelated OEM, a recycler, an operator) asks for a VIN's batteries | 404 `unknown-vehicle`, the same answer as for a VIN nobody knows; by pseudonym too; the history resolver answers 404 `unknown-alias` (never 403), search by VIN finds nothing; an operator's history of the battery shows no VIN |
| an OEM installs its own battery, with an ID chosen to sort first, into someone else's VIN | it sees its own battery only; the VIN still answers the pack installed first |
| the VIN registered as an alias of the replacement (or any other) pack | 422 `vin-by-installed`; the registry never holds a VIN; look-ups still follow the relation |
| odd VINs at the edge: lower case, 16/18 characters, I/O/Q, full-width letters, NUL, blanks, a wrong North American check digit, a pseudonym posted as a VIN | 422 naming `data.vin`; nothing stored (state, ledger, events.vins unchanged) |
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text

from tests.conftest import eventually
from tests.events_helpers import BOOTSTRAP_ADMIN, CHECKED, ORGS, Stack, projected, stack
from tests.factories import participant
from tests.portal_helpers import portal_app, portal_settings

VIN = "KMHEM41AP6A777777"
OTHER_OEM = "KIA"


@pytest.fixture
async def world(make_settings, token) -> AsyncIterator[tuple[Stack, Any]]:  # type: ignore[no-untyped-def]
    async with (
        stack(make_settings, token, streams=True, register_orgs=True, **CHECKED) as st,
        portal_app(portal_settings(make_settings, **CHECKED)) as portal,
    ):
        await participant(st.registry, st.token(BOOTSTRAP_ADMIN, "admin"), OTHER_OEM, "oem")
        await participant(st.registry, st.token(BOOTSTRAP_ADMIN, "admin"), "OPS-1", "operator")
        for org in [*ORGS.values(), "MOLIT", OTHER_OEM, "OPS-1"]:
            await eventually(lambda org=org: projected(st, org))

        async def portal_knows(org: str, role: str) -> bool:
            r = await portal.get(
                "/v1/vehicles/KMHEM41AP6A000000",
                headers=st.token(org, role, ministry="MOLIT") if role == "ministry" else st.token(org, role),
            )
            return r.status_code != 401

        for org, role in [
            ("MOLIT", "ministry"),
            (OTHER_OEM, "oem"),
            ("OPS-1", "operator"),
            *((o, r) for r, o in ORGS.items()),
        ]:
            await eventually(lambda org=org, role=role: portal_knows(org, role), timeout_s=30)
        yield st, portal


async def installed(s: Stack, portal: Any, vin: str = VIN) -> str:
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem", data={"vin": vin})

    async def seen() -> Any:
        r = await portal.get(f"/v1/vehicles/{vin}", headers=s.as_role("ministry"))
        return r.json() if r.status_code == 200 and bid in r.json()["batteries"] else None

    await eventually(seen, timeout_s=30)
    return bid


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keep = ("status", "code", "title", "type")
    return {k: a.get(k) for k in keep} == {k: b.get(k) for k in keep}


async def test_another_company_learns_nothing_of_a_vehicle(world) -> None:  # type: ignore[no-untyped-def]
    s, portal = world
    bid = await installed(s, portal)
    pseudonym = (await portal.get(f"/v1/vehicles/{VIN}", headers=s.as_role("ministry"))).json()["vin_pseudonym"]
    unknown = (await portal.get("/v1/vehicles/KMHEM41AP6A000000", headers=s.as_role("ministry"))).json()
    assert unknown["code"] == "unknown-vehicle"
    strangers = [s.token(OTHER_OEM, "oem"), s.as_role("recycler"), s.token("OPS-1", "operator")]
    for headers in strangers:
        for q in (VIN, pseudonym):
            r = await portal.get(f"/v1/vehicles/{q}", headers=headers)
            assert r.status_code == 404 and _same(r.json(), unknown), r.text
            assert (
                bid not in r.text
                and VIN not in r.text.replace(q, "")
                and pseudonym not in r.json()["detail"].replace(q, "")
            )
        r = await portal.get("/v1/batteries/-/history", params={"alias": VIN}, headers=headers)
        assert r.status_code == 404 and r.json()["code"] == "unknown-alias", r.text
        found = (await portal.get("/v1/batteries", params={"vin": VIN}, headers=headers)).json()
        assert found["items"] == []
    assert (await portal.get(f"/v1/vehicles/{VIN}")).status_code == 401
    # the operator reads the battery's history (audited), but not its vehicle: no VIN in it
    h = (await portal.get(f"/v1/batteries/{bid}/history", headers=s.token("OPS-1", "operator"))).json()
    assert h["current"]["vin"] is None and VIN not in str(h)


async def test_an_installer_into_someone_elses_vin_sees_only_its_own_battery_and_never_displaces_the_pack(
    world,
) -> None:  # type: ignore[no-untyped-def]
    s, portal = world
    original = await installed(s, portal)
    # KIA gets a pack whose ID it could have asked for so it sorts first, and installs it into HMC's customer's VIN
    intruder = await s.battery("AAAA-FIRST-1")
    await s.ok(intruder, "TRANSFERRED", "manufacturer", data={"to": OTHER_OEM})
    await s.ok(intruder, "INSTALLED", "oem", org=OTHER_OEM, data={"vin": VIN})
    molit = s.as_role("ministry")

    async def both() -> Any:
        r = await portal.get(f"/v1/vehicles/{VIN}", headers=molit)
        return r.json() if len(r.json().get("batteries", [])) == 2 else None

    await eventually(both, timeout_s=30)
    kia = (await portal.get(f"/v1/vehicles/{VIN}", headers=s.token(OTHER_OEM, "oem"))).json()
    assert kia["batteries"] == [intruder] and [h["battery_id"] for h in kia["history"]] == [intruder]
    hmc = (await portal.get(f"/v1/vehicles/{VIN}", headers=s.as_role("oem"))).json()
    assert hmc["batteries"] == [original]
    r = await portal.get("/v1/batteries/-/history", params={"alias": VIN}, headers=molit)
    assert r.json()["battery_id"] == original


async def test_a_vin_never_becomes_another_batterys_alias(world) -> None:  # type: ignore[no-untyped-def]
    s, portal = world
    old = await installed(s, portal)
    await s.ok(old, "REMOVED", "oem", data={"reason": "replacement"})
    new = await s.battery()
    for who in (s.as_role("manufacturer"), s.token(BOOTSTRAP_ADMIN, "admin"), s.as_role("oem")):
        r = await s.registry.post(f"/v1/batteries/{new}/aliases", json={"scheme": "vin", "value": VIN}, headers=who)
        assert r.status_code in (403, 422), r.text
        if r.status_code == 422:
            assert r.json()["code"] == "vin-by-installed"
    r = await s.registry.get(f"/v1/resolve/{VIN}", headers=s.as_role("manufacturer"))
    assert r.status_code == 404  # the registry never holds a VIN
    r = await portal.get("/v1/batteries/-/history", params={"alias": VIN}, headers=s.as_role("ministry"))
    assert r.json()["battery_id"] == old  # out of the car, not replaced: the look-up answers the last pack


ODD_VINS = [
    VIN.lower(),
    VIN[:16],
    VIN + "7",
    "KMHEM41AP6A77777I",
    "KMHEM41AP6A77777O",
    "KMHEQ41AP6A777777",
    "\uff2b\uff2d\uff28\uff25\uff2d41AP6A777777",  # full-width KMHEM
    "KMHEM41AP6A7777\x007",
    " KMHEM41AP6A77777",
    "KMHEM41AP6A77777\n",
    "1M8GDM9A1KP042788",  # North American WMI, wrong check digit (X is right)
    "ab" * 32,  # a pseudonym posted as if it were a VIN
]


@pytest.mark.parametrize("odd", ODD_VINS)
async def test_odd_vins_are_refused_at_the_edge_and_change_nothing(world, odd: str) -> None:  # type: ignore[no-untyped-def]
    s, portal = world
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    before = await s.state(bid)
    r = await s.post(bid, "INSTALLED", "oem", data={"vin": odd})
    assert r.status_code == 422, r.text
    assert any(e["field"] == "data.vin" for e in r.json()["errors"]), r.json()
    assert await s.state(bid) == before
    async with s.events.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        assert (await conn.execute(text("SELECT count(*) FROM events.vins"))).scalar() == 0
    r = await portal.get(f"/v1/vehicles/{quote(odd, safe='')}", headers=s.as_role("ministry"))
    assert r.status_code in (404, 422), r.text
    if odd.strip().upper() != VIN and r.status_code == 422:
        assert r.json()["code"] in ("invalid-vin", "validation-failed", "invalid-request")
