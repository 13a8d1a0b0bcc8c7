"""Participants are real; aliases are owned (issue 12, items 5 (suspension), 6 and 7). All with the participant
check on: the services run as in production, the participants come from the registry through Kafka.

| attack | before | now |
|---|---|---|
| a validly signed token for an org nobody registered | accepted everywhere | 401 `unknown-participant` (registry, events, portal) |
| a token claiming another role than the org's registered one | accepted, the claimed role's rights | 401 `participant-role-mismatch` |
| a suspended participant keeps using its tokens | no suspension existed | 401 `participant-suspended` in every service within the cache TTL (through Kafka) |
| TRANSFERRED to a participant that does not exist | accepted; custody stranded | 422 `data.to` `registered-participant`, custody and ledger unchanged |
| TRANSFERRED to a suspended participant | accepted | 422 `data.to` `active-participant` |
| TRANSFERRED to a role that may not hold the battery in its state | accepted | 422 `data.to` `may-hold` |
| an EPC / Digital Link alias under another company's GS1 prefix | first come, first served | 403 `foreign-gs1-prefix`, alias not resolvable |
| a Digital Link whose GTIN check digit is wrong | accepted | 422 `gtin-check-digit` |
| a free VIN alias by an OEM that never held the battery | accepted | 422 `vin-by-installed` (INSTALLED attaches VINs) |
| registering a participant with a bad business number | no business number | 422 (check digit) |
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import eventually
from tests.events_helpers import BOOTSTRAP_ADMIN, CHECKED, ORGS, Stack, projected, stack
from tests.factories import MODELS, battery_body, participant
from tests.portal_helpers import portal_app, portal_settings


@pytest.fixture
async def s(make_settings, token) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    async with stack(make_settings, token, streams=True, register_orgs=True, **CHECKED) as st:
        for org in [*ORGS.values(), "MOLIT"]:
            await eventually(lambda org=org: projected(st, org))
        yield st


def admin(s: Stack) -> dict[str, str]:
    return s.token(BOOTSTRAP_ADMIN, "admin")


async def _ledger(s: Stack, bid: str) -> tuple[int, str]:
    st = await s.state(bid)
    return st["sequence"], st["custodian"]


async def test_a_token_for_an_unregistered_org_is_refused_everywhere(s: Stack, make_settings) -> None:  # type: ignore[no-untyped-def]
    forged = s.token("GHOST-CORP", "manufacturer")
    r = await s.registry.post("/v1/models", json={"id": "GHOST-1", **MODELS["NCM-PACK-77"]}, headers=forged)
    assert r.status_code == 401 and r.json()["code"] == "unknown-participant"
    r = await s.registry.post("/v1/batteries", json=battery_body("KR-GHOST-1"), headers=forged)
    assert r.status_code == 401 and r.json()["code"] == "unknown-participant"
    assert (await s.registry.get("/v1/batteries/KR-GHOST-1")).status_code == 404
    bid = await s.battery()
    before = await _ledger(s, bid)
    r = await s.post(bid, "INCIDENT", "collector", org="GHOST-CORP")
    assert r.status_code == 401 and r.json()["code"] == "unknown-participant"
    assert await _ledger(s, bid) == before
    async with portal_app(portal_settings(make_settings, **CHECKED)) as portal:
        r = await portal.get("/v1/batteries", headers=forged)
        assert r.status_code == 401 and r.json()["code"] == "unknown-participant"


async def test_a_token_claiming_another_role_is_refused(s: Stack) -> None:
    # the registered collector mints itself a manufacturer token (or the issuer is tricked into it)
    claimed = s.token(ORGS["collector"], "manufacturer")
    r = await s.registry.post("/v1/batteries", json=battery_body("KR-ROLE-1"), headers=claimed)
    assert r.status_code == 401 and r.json()["code"] == "participant-role-mismatch"
    bid = await s.battery()
    before = await _ledger(s, bid)
    r = await s.post(bid, "TRANSFERRED", "manufacturer", org=ORGS["collector"], data={"to": ORGS["recycler"]})
    assert r.status_code == 401 and r.json()["code"] == "participant-role-mismatch"
    r = await s.events.get(f"/v1/batteries/{bid}/state", headers=s.token(ORGS["recycler"], "admin"))
    assert r.status_code == 401 and r.json()["code"] == "participant-role-mismatch"
    assert await _ledger(s, bid) == before


async def test_a_suspended_participants_tokens_stop_working_in_every_service(s: Stack, make_settings) -> None:  # type: ignore[no-untyped-def]
    oem = s.as_role("oem")
    bid, other = await s.battery(), await s.battery()
    await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})  # the OEM holds it: may read it
    async with portal_app(portal_settings(make_settings, **CHECKED)) as portal:
        await eventually(lambda: _portal_status(portal, oem, 200))
        assert (await s.events.get(f"/v1/batteries/{bid}/state", headers=oem)).status_code == 200
        from tests.test_ui_pages import cookie

        ui = await cookie(portal, ORGS["oem"], "oem")  # an open UI session of the same participant
        assert (await portal.get(f"/ui/batteries/{bid}", headers=ui)).status_code == 200
        r = await s.registry.post(f"/v1/participants/{ORGS['oem']}/suspend", headers=admin(s))
        assert r.status_code == 200 and r.json()["status"] == "suspended"
        # the registry at once; the events service and the portal once the suspension arrived through Kafka
        r = await s.registry.get("/v1/participants", headers=oem)
        assert r.status_code == 401 and r.json()["code"] == "participant-suspended"
        await eventually(lambda: projected(s, ORGS["oem"], "suspended"))
        await eventually(lambda: _events_status(s, bid, oem, 401), timeout_s=5)
        r = await s.events.get(f"/v1/batteries/{bid}/state", headers=oem)
        assert r.json()["code"] == "participant-suspended"
        await eventually(lambda: _portal_status(portal, oem, 401), timeout_s=10)
        # its open UI session is signed out too (the page asks it to sign in)
        page = await portal.get(f"/ui/batteries/{bid}", headers=ui)
        assert page.status_code in (302, 303, 401), page.status_code
        # a suspended participant may not receive custody either
        before = await _ledger(s, other)
        _refused_receiver(
            await s.post(other, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]}), "active-participant"
        )
        assert await _ledger(s, other) == before
        # reactivated: its tokens work again
        r = await s.registry.post(f"/v1/participants/{ORGS['oem']}/reactivate", headers=admin(s))
        assert r.status_code == 200 and r.json()["status"] == "active"
        await eventually(lambda: _events_status(s, bid, oem, 200), timeout_s=10)
        await eventually(lambda: _portal_status(portal, oem, 200), timeout_s=10)


async def _events_status(s: Stack, bid: str, headers: dict[str, str], status: int) -> bool:
    return (await s.events.get(f"/v1/batteries/{bid}/state", headers=headers)).status_code == status


async def _portal_status(portal: httpx.AsyncClient, headers: dict[str, str], status: int) -> bool:
    return (await portal.get("/v1/batteries", headers=headers)).status_code == status


async def test_only_admins_suspend(s: Stack) -> None:
    r = await s.registry.post(f"/v1/participants/{ORGS['oem']}/suspend", headers=s.as_role("manufacturer"))
    assert r.status_code == 403
    assert (await s.registry.get(f"/v1/participants/{ORGS['oem']}", headers=admin(s))).json()["status"] == "active"
    assert (await s.registry.post("/v1/participants/NOBODY/suspend", headers=admin(s))).status_code == 404


def _refused_receiver(r: httpx.Response, rule: str) -> None:
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert (err["field"], err["rule"]) == ("data.to", rule)


@pytest.mark.parametrize(
    ("receiver", "rule"),
    [
        ("NO-SUCH-CORP", "registered-participant"),
        (ORGS["collector"], "may-hold"),  # a collector holds removed and collected batteries, not new ones
        (ORGS["inspector"], "may-hold"),  # inspectors never hold batteries
        ("MOLIT", "may-hold"),
    ],
)
async def test_transferred_to_a_receiver_that_may_not_hold_it_is_refused(s: Stack, receiver: str, rule: str) -> None:
    bid = await s.battery()
    before = await _ledger(s, bid)
    _refused_receiver(await s.post(bid, "TRANSFERRED", "manufacturer", data={"to": receiver}), rule)
    assert await _ledger(s, bid) == before
    # in a batch too: nothing of the batch is stored
    ev = {
        "event_id": str(uuid.uuid4()),
        "battery_id": bid,
        "type": "TRANSFERRED",
        "occurred_at": datetime.now(UTC).isoformat(),
        "location": {"site": "test site", "region": "KR-11"},
        "data": {"to": receiver},
    }
    r = await s.events.post("/v1/events/batch", json={"events": [ev]}, headers=s.as_role("manufacturer"))
    assert r.status_code == 422 and await _ledger(s, bid) == before


async def test_transferred_to_a_suspended_participant_is_refused(s: Stack) -> None:
    bid = await s.battery()
    assert (await s.registry.post(f"/v1/participants/{ORGS['oem']}/suspend", headers=admin(s))).status_code == 200
    await eventually(lambda: projected(s, ORGS["oem"], "suspended"))

    async def refused() -> bool:
        r = await s.post(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
        return r.status_code == 422 and r.json()["errors"][0]["rule"] == "active-participant"

    before = await _ledger(s, bid)
    await eventually(refused, timeout_s=5)
    assert await _ledger(s, bid) == before


async def test_transferred_to_an_active_participant_that_may_hold_it_moves_custody(s: Stack) -> None:
    bid = await s.battery()
    await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    assert (await _ledger(s, bid))[1] == ORGS["oem"]


async def _resolves(s: Stack, value: str) -> int:
    return (await s.registry.get("/v1/resolve", params={"alias": value})).status_code


async def test_an_alias_under_another_companys_gs1_prefix_is_refused(s: Stack) -> None:
    await participant(s.registry, admin(s), "SDI", "manufacturer", gs1_company_prefixes=["8809999"])
    bid = await s.battery()
    maker = s.as_role("manufacturer")
    for scheme, value in (
        ("epc", f"urn:epc:id:sgtin:8809999.012345.{bid}"),
        ("gs1_digital_link", "https://id.example.kr/01/08809999000013/21/X1"),
    ):
        r = await s.registry.post(
            f"/v1/batteries/{bid}/aliases", json={"scheme": scheme, "value": value}, headers=maker
        )
        assert r.status_code == 403 and r.json()["code"] == "foreign-gs1-prefix", r.text
        assert r.json()["errors"][0]["field"] == "value"
        assert await _resolves(s, value) == 404
    # its own prefix works
    own = f"urn:epc:id:sgtin:8801234.056789.{bid}"
    r = await s.registry.post(f"/v1/batteries/{bid}/aliases", json={"scheme": "epc", "value": own}, headers=maker)
    assert r.status_code == 201 and await _resolves(s, own) == 200
    # and SDI cannot name LGES's battery under its own prefix either: not its battery
    r = await s.registry.post(
        f"/v1/batteries/{bid}/aliases",
        json={"scheme": "epc", "value": f"urn:epc:id:sgtin:8809999.012345.{bid}"},
        headers=s.token("SDI", "manufacturer"),
    )
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("scheme", "value", "rule"),
    [
        ("gs1_digital_link", "https://id.example.kr/01/08801234567890/21/X1", "gtin-check-digit"),
        ("gs1_digital_link", "https://id.example.kr/01/0880123456789/21/X1", "gtin-check-digit"),
        ("epc", "urn:epc:id:sgtin:8801234.05678.X1", "sgtin-urn"),  # 12 digits, not 13
        ("epc", "urn:epc:id:giai:8801234.X1", "sgtin-urn"),
    ],
)
async def test_a_gs1_key_with_a_bad_check_digit_or_shape_is_refused(
    s: Stack, scheme: str, value: str, rule: str
) -> None:
    bid = await s.battery()
    r = await s.registry.post(
        f"/v1/batteries/{bid}/aliases", json={"scheme": scheme, "value": value}, headers=s.as_role("manufacturer")
    )
    assert r.status_code == 422, r.text
    assert (r.json()["errors"][0]["field"], r.json()["errors"][0]["rule"]) == ("value", rule)
    assert await _resolves(s, value) == 404


async def test_a_free_vin_alias_is_refused_and_installed_attaches_the_vin(s: Stack) -> None:
    bid = await s.battery()
    vin = "KMHEM41AP6A777777"
    for who in (s.as_role("oem"), s.as_role("manufacturer")):
        r = await s.registry.post(f"/v1/batteries/{bid}/aliases", json={"scheme": "vin", "value": vin}, headers=who)
        assert r.status_code == 422 and r.json()["code"] == "vin-by-installed"
        assert r.json()["errors"][0]["field"] == "scheme"
    assert await _resolves(s, vin) == 404
    record = (await s.registry.get(f"/v1/batteries/{bid}", headers=admin(s))).json()
    assert record["aliases"] == []
    await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    installed = await s.ok(bid, "INSTALLED", "oem", data={"vin": vin})
    assert installed["state"] == "in_service"


@pytest.mark.parametrize("number", ["1248100997", "124810099", "12481009980", "abcdefghij"])
async def test_a_participant_with_a_bad_business_number_is_refused(s: Stack, number: str) -> None:
    body: dict[str, Any] = {"id": "BAD-BRN", "name": "Bad", "role": "recycler", "business_number": number}
    r = await s.registry.post("/v1/participants", json=body, headers=admin(s))
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("business_number")
    assert (await s.registry.get("/v1/participants/BAD-BRN", headers=admin(s))).status_code == 404
    ok = await s.registry.post("/v1/participants", json=body | {"business_number": "124-81-00998"}, headers=admin(s))
    assert ok.status_code == 201 and ok.json()["business_number"] == "1248100998"


async def test_gs1_prefixes_belong_to_manufacturers_only(s: Stack) -> None:
    body = {"id": "REC-X", "name": "Rec", "role": "recycler", "gs1_company_prefixes": ["8801234"]}
    r = await s.registry.post("/v1/participants", json=body, headers=admin(s))
    assert r.status_code == 422


async def test_an_unregistered_or_role_forging_participants_write_is_refused_before_its_body_is_read(
    s: Stack,
) -> None:
    """A validly signed token is not enough to make the service read a body: the org it names must be a
    registered, active participant with that role, checked from the headers (issue 12: identity first)."""
    from tests.attacks.test_edge import CountingBody

    cases = [
        (s.token("NOBODY-CO", "inspector"), "unknown-participant"),
        (s.token(ORGS["manufacturer"], "recycler"), "participant-role-mismatch"),
    ]
    for headers, code in cases:
        for client, path in ((s.events, "/v1/events/batch"), (s.registry, "/v1/batteries/bulk")):
            body = CountingBody(chunks=200)  # 12.5 MiB, never pulled
            r = await client.post(path, content=body, headers=headers | {"content-type": "application/json"})
            assert r.status_code == 401 and r.json()["code"] == code, (path, r.text[:300])
            assert body.pulled == 0, (path, body.pulled)
