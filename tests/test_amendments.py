"""Registry amendments (issue 13 item 4): registry facts change only by an amendment record (who, when, why,
before, after); the battery's row stays as registered, the current value is the latest amendment; the amendment
goes out on Kafka, and the portal's history, passport and ministry figures follow it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.conftest import eventually, read_topic
from tests.events_helpers import ORGS, Stack, stack
from tests.portal_helpers import portal_app, portal_settings, wait_registered, wait_sequence


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st:
        yield st


async def amend(s: Stack, bid: str, changes: dict[str, Any], role: str = "manufacturer", **kw: Any) -> Any:
    body = {"changes": changes, "reason": kw.pop("reason", "entered from the wrong plant's declaration")}
    return await s.registry.post(f"/v1/batteries/{bid}/amendments", json=body, headers=s.as_role(role, **kw))


async def registered_row(s: Stack, bid: str) -> dict[str, Any]:
    """The battery's record as the registry answers it (its facts as last amended)."""
    r = await s.registry.get(f"/v1/batteries/{bid}", headers=s.as_role("manufacturer"))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_an_amendment_is_a_record_and_the_current_value_is_the_latest(s: Stack, db_url: str) -> None:
    bid = await s.battery()
    before = await registered_row(s, bid)
    r = await amend(s, bid, {"manufacturing_site": "Ochang plant 2", "carbon_footprint_kg_co2e_per_kwh": 58.5})
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["number"], first["actor"], first["actor_role"]) == (1, ORGS["manufacturer"], "manufacturer")
    assert first["changes"]["manufacturing_site"] == {"before": before["manufacturing_site"], "after": "Ochang plant 2"}
    assert first["changes"]["carbon_footprint_kg_co2e_per_kwh"]["before"] == before["carbon_footprint_kg_co2e_per_kwh"]
    assert first["reason"] == "entered from the wrong plant's declaration" and first["amended_at"]
    second = (await amend(s, bid, {"manufacturing_site": "Ochang plant 3"}, "ministry")).json()
    assert second["number"] == 2 and second["changes"]["manufacturing_site"]["before"] == "Ochang plant 2"
    assert second["actor"] == "MOLIT"
    now = await registered_row(s, bid)
    assert now["manufacturing_site"] == "Ochang plant 3" and now["carbon_footprint_kg_co2e_per_kwh"] == 58.5
    listed = (await s.registry.get(f"/v1/batteries/{bid}/amendments", headers=s.as_role("manufacturer"))).json()
    assert [a["number"] for a in listed["items"]] == [1, 2]
    # Nothing edited in place: the stored registration still holds what was registered.
    assert (await stored(db_url, bid))["manufacturing_site"] == before["manufacturing_site"]


async def stored(db_url: str, bid: str) -> dict[str, Any]:
    """The battery's registration row as stored."""
    import asyncpg

    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return dict(await conn.fetchrow("SELECT * FROM registry.batteries WHERE id = $1", bid))
    finally:
        await conn.close()


async def test_material_content_is_amended_as_a_whole_and_only_seen_by_who_sees_it(s: Stack) -> None:
    bid = await s.battery()
    materials = {"lithium": 7.5, "nickel": 41.0, "cobalt": 5.0, "manganese": 4.5, "graphite": 50.0}
    r = await amend(s, bid, {"materials_kg": materials})
    assert r.status_code == 201, r.text
    assert r.json()["changes"]["materials_kg"]["after"]["lithium"] == 7.5
    public = (await s.registry.get(f"/v1/batteries/{bid}/amendments")).json()["items"]
    assert public[0]["changes"] == {}  # material content is a commercial fact
    full = await registered_row(s, bid)
    assert full["materials_kg"]["lithium"] == 7.5


async def test_amendments_are_published(make_settings, token, infra, topic_prefix) -> None:
    from shared.contract.streams import BATTERY_AMENDED, TOPIC_REGISTRY

    async with stack(make_settings, token, streams=True) as s:
        bid = await s.battery()
        r = await amend(s, bid, {"manufactured_at": "2026-01-10T09:00:00+09:00"})
        assert r.status_code == 201, r.text
        msgs = await read_topic(infra.kafka.bootstrap, topic_prefix + TOPIC_REGISTRY, at_least=3, settle_s=1.0)
    amended = [m["value"] for m in msgs if m["value"]["type"] == BATTERY_AMENDED]
    assert len(amended) == 1 and amended[0]["id"] == r.json()["id"] and amended[0]["subject"] == bid
    after = amended[0]["data"]["changes"]["manufactured_at"]["after"]
    assert datetime.fromisoformat(after) == datetime.fromisoformat("2026-01-10T09:00:00+09:00")


async def test_the_portal_shows_amendments_and_its_figures_follow_them(make_settings, token) -> None:
    async with stack(make_settings, token, streams=True) as s, portal_app(portal_settings(make_settings)) as portal:
        admin = token("ops", "admin")
        bid = await s.battery()
        await wait_registered(portal, admin, bid)

        async def motie() -> dict[str, Any]:
            return dict((await portal.get("/v1/views/motie", headers=admin)).json())

        registered = await motie()
        [row] = registered["recycled_content_declared"]
        rc = (await registered_row(s, bid))["recycled_content_pct"]
        assert row["avg_pct"]["cobalt"] == rc["cobalt"]
        r = await amend(s, bid, {"recycled_content_pct": {**rc, "cobalt": rc["cobalt"] + 10}})
        assert r.status_code == 201, r.text

        async def moved() -> Any:
            v = await motie()
            return v if v["recycled_content_declared"][0]["avg_pct"]["cobalt"] == rc["cobalt"] + 10 else None

        after = await eventually(moved, timeout_s=30)
        assert after["registrations"] == registered["registrations"]  # still one battery, counted once
        history = (await portal.get(f"/v1/batteries/{bid}/history", headers=admin)).json()
        [a] = history["amendments"]
        assert a["changes"]["recycled_content_pct"]["before"]["cobalt"] == rc["cobalt"]
        assert a["actor"] == ORGS["manufacturer"] and a["reason"]
        assert history["registry"]["recycled_content_pct"]["cobalt"] == rc["cobalt"] + 10
        passport = (await portal.get(f"/v1/passports/{bid}")).json()  # public
        [note] = passport["extensions"]["kr.batterytrace.amendments"]["amendments"]
        assert note["changes"]["recycled_content_pct"]["after"]["cobalt"] == rc["cobalt"] + 10


async def test_the_recovery_denominator_follows_an_amended_material_content(make_settings, token) -> None:
    async with stack(make_settings, token, streams=True) as s, portal_app(portal_settings(make_settings)) as portal:
        admin = token("ops", "admin")
        bid = await s.battery()
        for etype, role, data in (
            ("TRANSFERRED", "manufacturer", {"to": ORGS["oem"]}),
            ("INSTALLED", "oem", None),
            ("REMOVED", "dismantler", None),
            ("COLLECTED", "collector", None),
            ("TRANSFERRED", "collector", {"to": ORGS["recycler"]}),
            ("RECYCLED", "recycler", None),
        ):
            await s.ok(bid, etype, role, data=data)
        await wait_sequence(portal, admin, bid, 7)

        async def lithium() -> dict[str, Any]:
            v = (await portal.get("/v1/views/mcee", headers=admin)).json()
            return dict(next(m for m in v["recovery"] if m["material"] == "lithium"))

        had = (await registered_row(s, bid))["materials_kg"]
        before = await eventually(lithium, timeout_s=30)
        assert before["contained_kg"] == had["lithium"]
        r = await amend(s, bid, {"materials_kg": {**had, "lithium": had["lithium"] * 2}})
        assert r.status_code == 201, r.text

        async def doubled() -> Any:
            now = await lithium()
            return now if now["contained_kg"] == had["lithium"] * 2 else None

        now = await eventually(doubled, timeout_s=30)
        assert now["recovered_kg"] == before["recovered_kg"]
        assert now["rate_pct"] == round(100 * before["recovered_kg"] / (had["lithium"] * 2), 2)
