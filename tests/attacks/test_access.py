"""Issue 12, item 2: reading needs a provable relation. Each test reads the way the attacker would.

| attack | before | now |
|---|---|---|
| inspector posts one INCIDENT, then reads the ledger timeline and state | 200: posting counted as handling | 403 `not-handled` |
| same inspector reads the portal history (serial, material masses) | 200, whole history | 403 `not-handled` |
| same, passport as a legitimate-interest role | `legitimate_interest`, material masses | `public`, no masses |
| same, EPCIS query for the battery | every event of the battery | its own INCIDENT only |
| legitimate-interest custodian reads material masses in the passport | shown | restricted (commercial) |
| custodian reads the history's serial number and material masses | shown | withheld, listed in `restricted` |
| any certifier reads any battery (ledger, history, registry serial) | 200, full record | only what it certified; else 403 / public |
| competitor manufacturer looks for serials (registry, history, passport, EPCIS, UI) | public fields only | still none anywhere |
| custodian's UI battery page / ministry CSV exports show serials | UI page showed the serial | neither shows any commercial fact |

A past custodian still reads; the consignee named in an event reads; the manufacturer and ministries read all.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import pytest

from services.events.ledger import repository as ledger_repo
from shared.access import Custody
from shared.db import asyncpg_dsn
from tests.access_world import BATTERY_URI, access_world, event_list
from tests.events_helpers import ORGS, Stack, stack
from tests.test_events_lifecycle import reach

# ---- the portal and the registry (R1's life as the ledger published it: tests/access_world.py) ----


@pytest.fixture
async def world(make_settings, token, infra, topic_prefix):
    async with access_world(make_settings, token, infra, topic_prefix) as w:
        yield w


async def _history(world: dict[str, Any], headers: dict[str, str]) -> Any:
    return await world["portal"].get("/v1/batteries/R1/history", headers=headers)


async def _epcis(world: dict[str, Any], headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await world["portal"].get("/epcis/events", params={"MATCH_anyEPC": BATTERY_URI + "R1"}, headers=headers)
    assert r.status_code == 200, r.text
    return event_list(r.json())


async def _passport(world: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    r = await world["portal"].get("/v1/passports/R1", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _timeline_length(world: dict[str, Any], token) -> int:
    return len((await _history(world, token("root", "admin"))).json()["timeline"])


async def test_inspector_who_posted_an_incident_reads_nothing_of_it(world, token) -> None:
    before = await _timeline_length(world, token)
    inspector = token("KOTSA", "inspector")
    r = await _history(world, inspector)
    assert r.status_code == 403 and r.json()["code"] == "not-handled"
    assert world["serial"] not in r.text
    # the same organisation with a legitimate-interest role: still no relation, so the public passport
    p = await _passport(world, token("KOTSA", "recycler"))
    assert p["access_level"] == "public" and "batteryMaterials" not in p["aspects"]["materialComposition"]
    assert world["serial"] not in str(p) and p["extensions"] == {}
    # EPCIS: its own INCIDENT comes back, nothing else of the battery
    events = await _epcis(world, inspector)
    assert len(events) == 1 and "KMHEM41AP6A000009" not in str(events)
    assert len(await _epcis(world, token("root", "admin"))) == 10
    assert await _timeline_length(world, token) == before  # nothing changed


async def test_a_past_custodian_still_reads_but_no_commercial_facts(world, token) -> None:
    hmc = token("HMC", "oem")
    r = await _history(world, hmc)
    assert r.status_code == 200, r.text
    h = r.json()
    assert len(h["timeline"]) == 10 and h["current"]["custodian"] == "REP-1"
    assert "serial_number" not in h["registry"] and "materials_kg" not in h["registry"]
    assert h["registry"]["restricted"] == ["materials_kg", "serial_number"]
    assert world["serial"] not in r.text
    assert len(await _epcis(world, hmc)) == 10


async def test_the_consignee_named_in_an_event_reads(world, token) -> None:
    consignee = token("COL-7", "collector")
    r = await _history(world, consignee)
    assert r.status_code == 200 and len(r.json()["timeline"]) == 10
    p = await _passport(world, consignee)
    assert p["access_level"] == "legitimate_interest"
    assert "batteryMaterials" not in p["aspects"]["materialComposition"]  # material masses are commercial
    assert p["restricted"] == {  # the commercial and authority-level fields, in every aspect that has them
        "materialComposition": ["batteryMaterials"],
        "labeling": ["resultOfTestReport"],
        "catenax": ["identification/identification/serial", "materials/composition", "conformity/resultOfTestReport"],
    }
    assert "composition" not in p["catenax"].get("materials", {})
    assert len(await _epcis(world, consignee)) == 10
    # another collector, named nowhere, reads nothing
    other = await _history(world, token("COL-8", "collector"))
    assert other.status_code == 403 and other.json()["code"] == "not-handled"


async def test_a_certifier_reads_only_what_it_certified(world, token) -> None:
    ktl = token("KTL", "certifier")
    r = await _history(world, ktl)
    assert r.status_code == 200, r.text
    h = r.json()
    assert [e["type"] for e in h["timeline"]] == ["SAFETY_INSPECTED"]
    assert h["current"]["state"] == "repurposed" and h["current"]["safety"] == "pass"
    assert (h["current"]["custodian"], h["current"]["vin"], h["current"]["soh_pct"]) == (None, None, None)
    assert all(a["scheme"] != "vin" for a in h["aliases"])
    assert "serial_number" not in h["registry"] and world["serial"] not in r.text
    p = await _passport(world, ktl)
    assert p["access_level"] == "legitimate_interest" and world["serial"] not in str(p)
    reg = (await world["registry"].get("/v1/batteries/R1", headers=ktl)).json()
    assert reg["access_level"] == "public" and "serial_number" not in reg
    # a certifier that certified nothing of R1
    other = token("KCL", "certifier")
    refused = await _history(world, other)
    assert refused.status_code == 403 and refused.json()["code"] == "not-handled"
    assert (await _passport(world, other))["access_level"] == "public"
    assert await _epcis(world, other) == []


async def test_a_competitor_manufacturer_sees_no_serials(world, token) -> None:
    sdi = token("SDI", "manufacturer")
    reg = await world["registry"].get("/v1/batteries/R1", headers=sdi)
    assert reg.status_code == 200 and reg.json()["access_level"] == "public" and world["serial"] not in reg.text
    r = await _history(world, sdi)
    assert r.status_code == 403 and r.json()["code"] == "not-handled"
    p = await _passport(world, sdi)
    assert p["access_level"] == "public" and world["serial"] not in str(p)
    assert await _epcis(world, sdi) == []
    listed = await world["registry"].get("/v1/batteries", params={"manufacturer": "LGES"}, headers=sdi)
    assert listed.status_code == 403
    # the manufacturer itself reads its serial everywhere it is shown
    lges = token("LGES", "manufacturer")
    assert world["serial"] in (await _history(world, lges)).text
    assert world["serial"] in str(await _passport(world, lges))


async def _cookie(portal: Any, org: str, role: str, ministry: str | None = None) -> dict[str, str]:
    """A signed-in UI session (server-side, as the sign-in makes it)."""
    from tests.test_ui_pages import cookie

    return await cookie(portal, org, role, ministry)


async def test_ui_pages_and_csv_exports_leak_no_commercial_facts(world, infra) -> None:
    portal, serial = world["portal"], world["serial"]
    custodian = await portal.get("/ui/batteries/R1?lang=en", headers=await _cookie(portal, "REP-1", "repurposer"))
    assert custodian.status_code == 200 and serial not in custodian.text
    maker = await portal.get("/ui/batteries/R1?lang=en", headers=await _cookie(portal, "LGES", "manufacturer"))
    assert maker.status_code == 200 and serial in maker.text
    poster = await portal.get("/ui/batteries/R1?lang=en", headers=await _cookie(portal, "KOTSA", "inspector"))
    assert poster.status_code == 403 and serial not in poster.text
    exported = 0
    for code in ("MOTIE", "MOLIT", "MCEE", "KATS"):
        ministry = await _cookie(portal, code, "ministry", code)
        page = (await portal.get(f"/ui/ministry/{code}", headers=ministry)).text
        for table in sorted(set(re.findall(rf"/ui/ministry/{code}/csv/(\w+)", page))):
            r = await portal.get(f"/ui/ministry/{code}/csv/{table}", headers=ministry)
            assert r.status_code == 200, (code, table)
            header = r.content.decode("utf-8-sig").splitlines()[0].lower()
            assert serial not in r.text and "serial" not in header and "supplier" not in header, (code, table)
            assert not re.search(r"\bmaterials_kg\b", header), (code, table)
            exported += 1
    assert exported > 0


# ---- the events service's ledger (the real pipeline: events posted through the API) ----


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st:
        yield st


async def _ledger_length(s: Stack, bid: str) -> int:
    r = await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


async def test_inspector_who_posted_an_incident_is_refused_the_ledger(s: Stack) -> None:
    bid = await reach(s, "in_service")
    await s.ok(bid, "INCIDENT", "inspector")
    length = await _ledger_length(s, bid)
    for path in (f"/v1/batteries/{bid}/events", f"/v1/batteries/{bid}/state"):
        r = await s.events.get(path, headers=s.as_role("inspector"))
        assert r.status_code == 403 and r.json()["code"] == "not-handled", path
    assert await _ledger_length(s, bid) == length
    assert (await s.state(bid))["custodian"] == ORGS["oem"]  # nothing changed


async def test_a_past_custodian_still_reads_the_ledger(s: Stack) -> None:
    bid = await reach(s, "removed")  # the OEM held it, the dismantler holds it now
    r = await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("oem"))
    assert r.status_code == 200 and len(r.json()["items"]) == await _ledger_length(s, bid)
    assert (await s.events.get(f"/v1/batteries/{bid}/state", headers=s.as_role("oem"))).status_code == 200


async def test_a_certifier_reads_only_the_certification_it_posted(s: Stack) -> None:
    bid = await reach(s, "repurposed")  # ends with KTL's SAFETY_INSPECTED
    r = await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("certifier"))
    assert r.status_code == 200, r.text
    assert [e["type"] for e in r.json()["items"]] == ["SAFETY_INSPECTED"]
    other = await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("certifier", "KCL"))
    assert other.status_code == 403 and other.json()["code"] == "not-handled"


async def test_the_ledger_proves_a_consignee_from_any_events_data(s: Stack, db_url: str) -> None:
    """`data.consignee` as REMOVED records it (issue 12 item 1): the ledger's proof reads it from any event.
    The row is appended as the lifecycle would append it; the events API's REMOVED schema gains the field
    on the custody branch."""
    bid = await reach(s, "in_service")
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute(
            "INSERT INTO events.ledger (battery_id, sequence, event_id, type, occurred_at, recorded_at, actor, "
            "actor_role, location, data, state_after, custodian_after, prev_hash, hash, request_digest) "
            "SELECT battery_id, sequence + 1, gen_random_uuid(), 'REMOVED', occurred_at, "
            "recorded_at, 'DISM-1', 'dismantler', location, jsonb_build_object('reason', 'end_of_life', "
            "'consignee', 'COL-7'), 'removed', 'DISM-1', hash, hash, request_digest FROM events.ledger "
            "WHERE battery_id = $1 ORDER BY sequence DESC LIMIT 1",
            bid,
        )
    finally:
        await conn.close()
    sessionmaker = s.events.app.state.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        consigned = await ledger_repo.relation_of(session, bid, "COL-7")
        poster = await ledger_repo.relation_of(session, bid, ORGS["inspector"])
        oem = await ledger_repo.relation_of(session, bid, ORGS["oem"])
    assert consigned.consigned and consigned.custody is Custody.none
    assert poster == type(poster)()
    assert oem.custody is Custody.current and not oem.is_manufacturer
    r = await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("collector", "COL-7"))
    assert r.status_code == 200, r.text


async def test_handler_rows_of_mere_posters_are_removed_by_the_migration(world, db_url: str, token) -> None:
    """Rows the old ingest wrote for every poster: downgrade writes them back, upgrade removes them."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from shared.migrate import alembic_config

    config = alembic_config(db_url)
    below = ScriptDirectory.from_config(config).get_revision("9c1e3a5b7d2f").down_revision

    async def handlers() -> set[str]:
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            rows = await conn.fetch("SELECT org FROM portal.handlers WHERE battery_id = 'R1'")
        finally:
            await conn.close()
        return {r["org"] for r in rows}

    proved = {"LGES", "HMC", "COL-7", "COL-1", "REP-1"}
    assert await handlers() == proved
    await asyncio.to_thread(command.downgrade, config, str(below))
    assert await handlers() == proved | {"KOTSA", "KTL"}
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await handlers() == proved
    assert await _epcis(world, token("SDI", "manufacturer")) == []
