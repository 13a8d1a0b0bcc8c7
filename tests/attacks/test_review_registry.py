"""Attacks on registry rules the review found without an attacker's test, over HTTP with the participant check on.
Every refusal changes nothing: no campaign row, no model passport, no message queued in the outbox.

| attack | answer |
|---|---|
| MOTIE, an OEM, a recycler or a manufacturer registers a recall campaign | 403 `not-molit` |
| MOTIE's token claims to be MOLIT's ministry | 401 `participant-role-mismatch` |
| no token; a token of an unregistered org claiming MOLIT | 401 |
| another campaign under an ID MOLIT registered (by an admin, by MOLIT itself) | 409 `duplicate-campaign`, the first stays |
| a campaign with an unordered range, ranges of two lengths, an odd ID, an unknown field | 422 |
| a 300 KB campaign | 413, unread |
| reading campaigns without a token | 401 |
| another manufacturer, a ministry or an OEM declares a model's passport data | 403 |
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.events_helpers import BOOTSTRAP_ADMIN, CHECKED, Stack, stack
from tests.factories import participant

CAMPAIGN: dict[str, Any] = {
    "id": "MOLIT-2026-901",
    "title": "Cell swelling risk",
    "maker": "LGES",
    "models": ["NCM-PACK-77"],
    "serial_ranges": [{"first": "SN00000000", "last": "SN00099999"}],
    "vin_ranges": [],
    "opened_on": "2026-11-20",
}
MODEL = "NCM-PACK-77"
DECLARATION = {"batterypass": {"generalProductInformation": {"warrentyPeriod": "--08"}}}


@pytest.fixture
async def s(make_settings, token) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    async with stack(make_settings, token, register_orgs=True, **CHECKED) as st:
        admin = token(BOOTSTRAP_ADMIN, "admin")
        await participant(st.registry, admin, "MOTIE", "ministry")
        await participant(st.registry, admin, "SDI", "manufacturer", gs1_company_prefixes=["8809999"])
        yield st


async def registry_rows(s: Stack) -> tuple[Any, ...]:
    """The campaigns, the models' passports and the outbox as they are in the registry's database."""
    async with s.registry.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        campaigns = (await conn.execute(text("SELECT * FROM registry.recall_campaigns ORDER BY id"))).all()
        passports = (await conn.execute(text("SELECT id, passport FROM registry.battery_models ORDER BY id"))).all()
        outbox = (await conn.execute(text("SELECT id, topic, key, payload FROM registry.outbox ORDER BY id"))).all()
    return campaigns, passports, outbox


def refused(r: Any, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    if code is not None:
        assert r.json()["code"] == code, r.text


# ---- recall campaigns ----


async def test_only_molit_or_an_admin_registers_a_recall_campaign(s: Stack) -> None:
    before = await registry_rows(s)
    for headers in (
        s.as_role("ministry", "MOTIE"),
        s.as_role("oem"),
        s.as_role("recycler"),
        s.as_role("manufacturer"),  # the maker itself does not open a campaign on its own batteries
        s.token("SDI", "manufacturer"),
    ):
        refused(await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=headers), 403, "not-molit")
    # MOTIE's participant holds MOTIE's ministry: a token of it naming MOLIT's is not MOTIE's
    forged = s.token("MOTIE", "ministry", ministry="MOLIT")
    refused(await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=forged), 401, "participant-role-mismatch")
    stranger = s.token("NOT-REGISTERED", "ministry", ministry="MOLIT")
    refused(await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=stranger), 401, "unknown-participant")
    refused(await s.registry.post("/v1/recalls", json=CAMPAIGN), 401)
    assert await registry_rows(s) == before


async def test_a_campaign_id_taken_cannot_be_given_other_facts(s: Stack) -> None:
    molit = s.as_role("ministry")
    r = await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=molit)
    assert r.status_code == 201, r.text
    first = r.json()
    after_first = await registry_rows(s)
    for headers, other in (
        (s.token(BOOTSTRAP_ADMIN, "admin"), {"title": "Nothing to see"}),
        (molit, {"maker": "SDI"}),
        (molit, {"serial_ranges": []}),  # widening it to every battery of the model
    ):
        refused(await s.registry.post("/v1/recalls", json=CAMPAIGN | other, headers=headers), 409, "duplicate-campaign")
    # the same facts again are a retry: answered with the first, nothing queued twice
    again = await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=s.token(BOOTSTRAP_ADMIN, "admin"))
    assert (again.status_code, again.json()) == (200, first), again.text
    assert await registry_rows(s) == after_first
    shown = await s.registry.get(f"/v1/recalls/{CAMPAIGN['id']}", headers=s.as_role("oem"))
    assert shown.json() == first


@pytest.mark.parametrize(
    "odd",
    [
        {"serial_ranges": [{"first": "SN00099999", "last": "SN00000000"}]},  # last before first
        {"serial_ranges": [{"first": "SN0", "last": "SN00099999"}]},  # two lengths: would cover SN1, SN2, ...
        {"vin_ranges": [{"first": "", "last": "KMHEM41AP6A199999"}]},
        {"id": "molit-2026-901"},
        {"id": "MOLIT/../2026"},
        {"id": "M" * 41},
        {"registered_by": "MOTIE"},  # who registered it is the caller, never the body
        {"title": ""},
        {"opened_on": "2026-02-30"},
        {"models": ["x"] * 201},
    ],
)
async def test_an_odd_campaign_is_refused_and_changes_nothing(s: Stack, odd: dict[str, Any]) -> None:
    before = await registry_rows(s)
    r = await s.registry.post("/v1/recalls", json=CAMPAIGN | odd, headers=s.as_role("ministry"))
    refused(r, 422, "validation-error")
    assert await registry_rows(s) == before


async def test_a_huge_campaign_is_refused_unread(s: Stack) -> None:
    before = await registry_rows(s)
    huge = CAMPAIGN | {"models": ["M" * 64] * 4_700}  # ~300 KB, over twice the 64 KiB the route declares
    refused(await s.registry.post("/v1/recalls", json=huge, headers=s.as_role("ministry")), 413, "payload-too-large")
    assert await registry_rows(s) == before


async def test_campaigns_are_read_only_by_those_signed_in(s: Stack) -> None:
    assert (await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=s.as_role("ministry"))).status_code == 201
    refused(await s.registry.get("/v1/recalls"), 401)
    refused(await s.registry.get(f"/v1/recalls/{CAMPAIGN['id']}"), 401)
    refused(await s.registry.get("/v1/recalls", headers={"authorization": "Bearer not.a.token"}), 401)


# ---- model passport declarations ----


async def test_only_the_models_manufacturer_declares_its_passport_data(s: Stack) -> None:
    before = await registry_rows(s)
    url = f"/v1/models/{MODEL}/passport"
    refused(
        await s.registry.put(url, json=DECLARATION, headers=s.token("SDI", "manufacturer")), 403, "not-the-manufacturer"
    )
    refused(await s.registry.put(url, json=DECLARATION, headers=s.as_role("ministry")), 403, "forbidden")
    refused(await s.registry.put(url, json=DECLARATION, headers=s.as_role("oem")), 403, "forbidden")
    refused(await s.registry.put(url, json=DECLARATION), 401)
    assert await registry_rows(s) == before
    r = await s.registry.put(url, json=DECLARATION, headers=s.as_role("manufacturer"))
    assert r.status_code == 200, r.text  # the rule refused the others, not the declaration
