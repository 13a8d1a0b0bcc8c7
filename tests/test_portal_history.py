"""Portal histories and search, fed by the real registry (through Kafka) and lifecycle envelopes on the
real broker."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.conftest import RegistrySettings, serve
from tests.factories import create_models, register
from tests.portal_helpers import Lifecycle, at, portal_app, portal_settings, topics, wait_registered, wait_sequence

VIN = "KMHEM41AP6A123456"


@pytest.fixture
async def world(make_settings, token, infra, topic_prefix):
    """Registry and portal running; a pack P1 made of module M1 made of cells C1, C2 by LGES."""
    from services.registry.app import create_app

    async with (
        serve(create_app(make_settings(RegistrySettings))) as registry,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        maker = token("LGES", "manufacturer")
        await create_models(registry, maker, "NCM-PACK-77", "NCM-MOD-8", "NCM-CELL-60")
        await register(registry, maker, battery_id="P1", model_id="NCM-PACK-77")
        await register(registry, maker, battery_id="M1", model_id="NCM-MOD-8")
        for c in ("C1", "C2"):
            await register(registry, maker, battery_id=c, model_id="NCM-CELL-60")
        # no VIN alias: a VIN is attached by INSTALLED (the registry refuses VIN aliases)
        life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
        yield registry, portal, life


async def _build_pack(life: Lifecycle) -> list[dict]:
    out = [
        life.manufactured(b, "LGES", at("2026-01-10"), kind=k)
        for b, k in (("P1", "pack"), ("M1", "module"), ("C1", "cell"), ("C2", "cell"))
    ]
    out += [
        life.event(c, "ASSEMBLED", "LGES", "manufacturer", at("2026-01-20"), {"parent_id": "M1"}) for c in ("C1", "C2")
    ]
    out.append(life.event("M1", "ASSEMBLED", "LGES", "manufacturer", at("2026-01-21"), {"parent_id": "P1"}))
    out.append(life.event("P1", "TRANSFERRED", "LGES", "manufacturer", at("2026-01-25"), {"to": "HMC"}))
    out.append(life.event("P1", "INSTALLED", "HMC", "oem", at("2026-02-01"), {"vin": VIN}, region="KR-31"))
    out.append(
        life.event(
            "P1",
            "INSPECTED",
            "KTS",
            "inspector",
            at("2026-05-01"),
            {"soh_pct": 96.5, "cycle_count": 120},
            region="KR-31",
        )
    )
    out.append(
        life.event("P1", "REMOVED", "DISM-1", "dismantler", at("2026-08-01"), {"reason": "accident"}, region="KR-41")
    )
    out.append(life.event("P1", "TRANSFERRED", "DISM-1", "dismantler", at("2026-08-05"), {"to": "LGES"}))
    out.append(life.event("M1", "DISASSEMBLED", "LGES", "manufacturer", at("2026-08-10"), {"parent_id": "P1"}))
    return out


async def test_history_shows_the_whole_life_in_order(world, token) -> None:
    _registry, portal, life = world
    await life.publish(await _build_pack(life))
    ministry = token("MOLIT", "ministry", "MOLIT")
    await wait_sequence(portal, ministry, "P1", 6)
    await wait_registered(portal, ministry, "P1")
    h = (await portal.get("/v1/batteries/P1/history", headers=ministry)).json()
    assert [e["type"] for e in h["timeline"]] == [
        "MANUFACTURED",
        "TRANSFERRED",
        "INSTALLED",
        "INSPECTED",
        "REMOVED",
        "TRANSFERRED",
    ]
    assert [e["sequence"] for e in h["timeline"]] == [1, 2, 3, 4, 5, 6]
    assert [e["actor"] for e in h["timeline"]] == ["LGES", "LGES", "HMC", "KTS", "DISM-1", "DISM-1"]
    cur = h["current"]
    assert (cur["state"], cur["custodian"], cur["region"], cur["soh_pct"]) == ("removed", "LGES", "KR-41", 96.5)
    assert h["registry"]["manufacturer"] == "LGES" and h["registry"]["model"]["rated_energy_kwh"] == 77.4
    assert h["aliases"] == [] and cur["vin"] == VIN  # the VIN comes from INSTALLED, never from a free alias
    assert h["chain"]["status"] == "valid" and h["chain"]["events"] == 6
    assert h["as_of"]["sequence"] == 6 and h["as_of"]["event_id"] == h["timeline"][-1]["event_id"]
    assert [p["status"] for p in h["passports"]] == ["Original"]


async def test_history_json_is_exactly_what_its_response_model_would_write(world, token) -> None:
    """The history is serialised directly (no validation pass through `History` on the hot path), so the
    bytes must already be the model's own rendering: same keys, "Z" UTC times, floats where it says float."""
    from services.portal.history.schemas import History

    _registry, portal, life = world
    await life.publish(await _build_pack(life))
    admin = token("ops", "admin")
    await wait_sequence(portal, admin, "P1", 6)
    await wait_registered(portal, admin, "P1")
    for bid, params in (
        ("P1", {}),
        ("P1", {"at": at("2026-03-01").isoformat()}),
        ("C1", {"at": "2026-03-01T09:00:00+09:00"}),
        ("M1", {}),
    ):
        r = await portal.get(f"/v1/batteries/{bid}/history", params=params, headers=admin)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
        assert History.model_validate_json(r.content).model_dump(mode="json") == r.json()
        assert r.json()["timeline"][0]["recorded_at"].endswith("Z")


async def test_composition_at_a_past_time(world, token) -> None:
    _registry, portal, life = world
    await life.publish(await _build_pack(life))
    admin = token("ops", "admin")
    await wait_sequence(portal, admin, "M1", 3)

    async def tree(bid: str, when: str | None) -> dict:
        params = {"at": at(when).isoformat()} if when else {}
        r = await portal.get(f"/v1/batteries/{bid}/history", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return r.json()["composition"]

    in_service = await tree("P1", "2026-03-01")
    assert [(m["id"], [c["id"] for c in m["components"]]) for m in in_service["components"]] == [("M1", ["C1", "C2"])]
    assert in_service["components"][0]["kind"] == "module"
    assert (await tree("P1", "2026-01-20T12:00"))["components"] == []  # cells in M1, M1 not yet in P1
    assert (await tree("P1", None))["components"] == []  # M1 taken out on 2026-08-10
    cell = await tree("C1", "2026-03-01")
    assert cell["parent_id"] == "M1" and cell["ancestors"] == ["M1", "P1"]
    cell_now = await tree("C1", None)
    assert cell_now["ancestors"] == ["M1"]


async def test_history_by_vin_alias(world, token) -> None:
    _registry, portal, life = world
    await life.publish(await _build_pack(life))
    admin = token("ops", "admin")
    await wait_sequence(portal, admin, "P1", 3)
    r = await portal.get("/v1/batteries/-/history", params={"alias": VIN}, headers=admin)
    assert r.status_code == 200 and r.json()["battery_id"] == "P1"
    r = await portal.get("/v1/batteries/-/history", params={"alias": "NOPE"}, headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "unknown-alias"


async def test_history_access_needs_a_token_and_a_handled_battery(world, token) -> None:
    _registry, portal, life = world
    await life.publish(await _build_pack(life))
    await wait_sequence(portal, token("ops", "admin"), "P1", 6)
    assert (await portal.get("/v1/batteries/P1/history")).status_code == 401
    for who in (
        token("LGES", "manufacturer"),
        token("HMC", "oem"),
        token("DISM-1", "dismantler"),
        token("MCEE", "ministry", "MCEE"),
        token("ops", "operator"),
    ):
        assert (await portal.get("/v1/batteries/P1/history", headers=who)).status_code == 200
    r = await portal.get("/v1/batteries/P1/history", headers=token("SDI", "manufacturer"))
    assert r.status_code == 403 and r.json()["code"] == "not-handled"
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_search_filters_and_cursor(world, token) -> None:
    _registry, portal, life = world
    await life.publish(await _build_pack(life))
    admin = token("ops", "admin")
    await wait_sequence(portal, admin, "M1", 3)
    await wait_registered(portal, admin, "C2")
    r = await portal.get("/v1/batteries", params={"manufacturer": "LGES", "limit": 3}, headers=admin)
    page1 = r.json()
    assert [b["id"] for b in page1["items"]] == ["C1", "C2", "M1"] and page1["next_cursor"]
    page2 = (
        await portal.get(
            "/v1/batteries", params={"manufacturer": "LGES", "limit": 3, "cursor": page1["next_cursor"]}, headers=admin
        )
    ).json()
    assert [b["id"] for b in page2["items"]] == ["P1"] and page2["next_cursor"] is None
    by_vin = (await portal.get("/v1/batteries", params={"vin": VIN}, headers=admin)).json()
    assert [b["id"] for b in by_vin["items"]] == ["P1"]
    removed = (await portal.get("/v1/batteries", params={"state": "removed", "region": "KR-41"}, headers=admin)).json()
    assert [b["id"] for b in removed["items"]] == ["P1"]
    cells = (await portal.get("/v1/batteries", params={"chemistry": "NCM", "state": "assembled"}, headers=admin)).json()
    assert [b["id"] for b in cells["items"]] == ["C1", "C2"]
    # a dismantler finds only what it handled
    mine = (await portal.get("/v1/batteries", headers=token("DISM-1", "dismantler"))).json()
    assert [b["id"] for b in mine["items"]] == ["P1"]


async def test_state_at_a_past_time(world, token) -> None:
    _registry, portal, life = world
    await life.publish(await _build_pack(life))
    admin = token("ops", "admin")
    await wait_sequence(portal, admin, "P1", 6)

    async def state_at(when: str) -> dict | None:
        r = await portal.get("/v1/batteries/P1/history", params={"at": at(when).isoformat()}, headers=admin)
        assert r.status_code == 200, r.text
        state: dict | None = r.json()["state_at"]
        return state

    assert await state_at("2026-03-01") == {"sequence": 3, "state_after": "in_service", "custodian_after": "HMC"}
    assert await state_at("2026-08-03") == {"sequence": 5, "state_after": "removed", "custodian_after": "DISM-1"}
    assert await state_at("2026-01-01") is None  # before it was made
    r = await portal.get("/v1/batteries/P1/history", headers=admin)
    assert r.json()["state_at"] is None  # asked only with ?at=


async def test_the_history_is_one_indexed_statement_and_its_parent_the_timeline_s(world, token, db_url) -> None:
    """`repository.HISTORY` reads the battery, its timeline, aliases and amendments on their indexes (EXPLAINed
    with sequential scans priced out), and the parent a battery was in, read from its own timeline
    (`service.parent_in`), is the one `repository.parent_at` reads from the table, at every moment."""
    import asyncpg
    import orjson

    from services.portal.history import repository as repo
    from services.portal.history.service import parent_in
    from shared.db import asyncpg_dsn

    _registry, portal, life = world
    pack = await _build_pack(life)
    await life.publish(pack)
    admin = token("ops", "admin")
    for bid, seq in (("P1", 6), ("M1", 3), ("C1", 2)):
        await wait_sequence(portal, admin, bid, seq)
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute("SET enable_seqscan = off")
        (plan,) = orjson.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {repo.HISTORY}", "P1"))
        nodes, scans = [plan["Plan"]], []
        while nodes:
            node = nodes.pop()
            nodes += node.get("Plans", [])
            if node["Node Type"] == "Seq Scan" or (
                node["Node Type"].endswith("Index Scan") and "Index Cond" not in node
            ):
                scans.append(node.get("Relation Name") or node.get("Index Name"))
        assert scans == []
        for event in pack:
            bid = event["data"]["battery_id"]
            read = await repo.history_of(conn, bid)
            assert read is not None
            t = datetime.fromisoformat(event["data"]["occurred_at"].replace("Z", "+00:00"))
            for moment in (t - timedelta(seconds=1), t, t + timedelta(seconds=1)):
                assert parent_in(read.timeline, moment) == await repo.parent_at(conn, bid, moment), (bid, moment)
    finally:
        await conn.close()
