"""Attacks on EPCIS capture and on the public endpoints (issue 12, items 3, 11 and 12).

| attack | before | now |
|---|---|---|
| capture an event whose body carries `bt:actor`/`bt:hash`/`bt:sequence` | stored as sent: the portal's EPCIS view showed another participant as its actor | the event fails 422 `server-owned-field` naming each field; nothing is stored, the ledger does not move |
| declare another participant's plain EPCIS event in error | marked declared | 403 `not-capturer`; the event is unmarked (an authority may declare it) |
| capture a plain event whose eventID is a ledger event's (`urn:uuid:<id>`) | replaced the ledger-made event in the EPCIS view | both are kept: the ledger-made one unchanged (its poster, hash and sequence), the plain one shown with its capturer |
| reuse another participant's eventID with other content | 409 for the second participant, or its content under the first one's ID | a separate event of its own capturer; the first one's event unchanged; the first capturer's re-send stays a harmless retry |
| flood `/verify` of a long chain | every request re-hashed the whole chain | each answer re-hashes one page (`limit` ≤ 1000 from `from_sequence`); pages chain to the full verdict |
| anonymous flood of `/verify`, `/ui/dl`, `/ui/passport` | charged to the client address, 429 past the burst | the same, now tested (public paths are not exempt from the limiter) |
| resolver with `%`, `_`, very long input | leading-wildcard LIKE over every alias (`%` / `_` matched by pattern) | exact look-ups on indexed keys: 404, no pattern; over-long input answered without a query |
| public paths' statements on a large table | LIKE `%/<path>` scanned `portal.aliases` | EXPLAIN of every statement the resolver, `/verify` and the public passport issue shows no Seq Scan |
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from services.events.ledger import repository as ledger_repo
from services.portal.history import repository as history_repo
from services.portal.ui import repository as ui_repo
from shared.db import asyncpg_dsn
from tests.conftest import eventually
from tests.events_helpers import ORGS, Stack, stack
from tests.portal_helpers import portal_app, portal_settings
from tests.test_epcis_capture import battery, doc, obj, sensors

PLAIN_EPC = "urn:epc:id:sgtin:0614141.107346.{}"


async def post_capture(s: Stack, body: dict[str, Any], role: str, org: str | None = None) -> dict[str, Any]:
    headers = s.as_role(role, org) | {"content-type": "application/ld+json"}
    r = await s.events.post("/epcis/capture", content=orjson.dumps(body), headers=headers)
    assert r.status_code == 202, r.text
    return dict(r.json())


async def stored(db_url: str, event_id: str) -> list[dict[str, Any]]:
    """The events service's rows for an eventID, by capturer."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        rows = await conn.fetch(
            "SELECT actor, digest, error_declaration, body FROM events.epcis_events WHERE event_id = $1 ORDER BY actor",
            event_id,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def now(offset_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def plain(event_id: str, **extra: Any) -> dict[str, Any]:
    return obj([PLAIN_EPC.format(uuid.uuid4().int % 10**9)], "receiving", "2026-03-01T10:00:00+09:00") | {
        "eventID": event_id,
        **extra,
    }


@pytest.fixture
async def s(make_settings, token) -> AsyncIterator[Stack]:
    async with stack(make_settings, token) as st:
        yield st


@pytest.mark.parametrize(
    "spoof",
    [
        {"bt:actor": "MOTIE"},
        {"bt:hash": "0" * 64},
        {"bt:sequence": 1},
        {"https://batterytrace.kr/voc/actor": "MOTIE"},
    ],
)
async def test_spoofed_server_owned_fields_are_refused(s: Stack, db_url: str, spoof: dict[str, Any]) -> None:
    bid = await s.battery()
    before = await s.state(bid)
    eid = f"urn:uuid:{uuid.uuid4()}"
    battery_eid = f"urn:uuid:{uuid.uuid4()}"
    readings = {"sensorElementList": sensors(soh=91.5, cycles=420)}
    inspection = obj([battery(bid)], "inspecting", now(-60), **readings)
    inspection |= {"eventID": battery_eid} | spoof
    for event in (plain(eid) | spoof, inspection):
        job = await post_capture(s, doc(event), "manufacturer")
        assert job["success"] is False and job["storedCount"] == 0
        (err,) = job["errors"]
        assert err["status"] == 422 and err["code"] == "server-owned-field"
        assert [e["rule"] for e in err["errors"]] == ["server-owned"]
        assert err["errors"][0]["field"].endswith(next(iter(spoof)))
    assert await stored(db_url, eid) == [] and await stored(db_url, battery_eid) == []
    assert await s.state(bid) == before  # the ledger did not move


async def test_declared_by_in_an_error_declaration_is_refused(s: Stack, db_url: str) -> None:
    eid = f"urn:uuid:{uuid.uuid4()}"
    await post_capture(s, doc(plain(eid)), "manufacturer")
    declared = plain(eid) | {
        "errorDeclaration": {"declarationTime": "2026-03-02T10:00:00+09:00", "bt:declaredBy": "MOTIE"}
    }
    job = await post_capture(s, doc(declared), "manufacturer")
    assert job["errors"][0]["code"] == "server-owned-field"
    (row,) = await stored(db_url, eid)
    assert row["error_declaration"] is None


async def test_declaring_another_participants_event_in_error_is_refused(s: Stack, db_url: str) -> None:
    eid = f"urn:uuid:{uuid.uuid4()}"
    original = plain(eid)
    assert (await post_capture(s, doc(original), "manufacturer"))["success"]
    declaration = {"declarationTime": "2026-03-02T10:00:00+09:00", "reason": "incorrect_data"}
    job = await post_capture(s, doc(original | {"errorDeclaration": declaration}), "oem")
    assert job["success"] is False and job["storedCount"] == 0
    (err,) = job["errors"]
    assert (err["status"], err["code"]) == (403, "not-capturer")
    assert err["errors"][0]["rule"] == "capturer-or-authority"
    (row,) = await stored(db_url, eid)
    assert row["actor"] == ORGS["manufacturer"] and row["error_declaration"] is None
    # an authority may declare it; so may its capturer
    assert (await post_capture(s, doc(original | {"errorDeclaration": declaration}), "ministry"))["success"]
    (row,) = await stored(db_url, eid)
    assert orjson.loads(row["error_declaration"])["reason"] == "incorrect_data"


async def test_another_participant_reusing_my_event_id_is_its_own_event(s: Stack, db_url: str) -> None:
    eid = f"urn:uuid:{uuid.uuid4()}"
    mine = plain(eid)
    assert (await post_capture(s, doc(mine), "manufacturer"))["success"]
    (before,) = await stored(db_url, eid)
    theirs = plain(eid, bizStep="shipping")
    job = await post_capture(s, doc(theirs), "oem")
    assert job["success"] and job["storedCount"] == 1  # not a 409 against my ID, not my event
    rows = {r["actor"]: r for r in await stored(db_url, eid)}
    assert set(rows) == {ORGS["manufacturer"], ORGS["oem"]}
    assert rows[ORGS["manufacturer"]] == before  # mine unchanged
    # my re-send is still a harmless retry; a different body under my own ID still conflicts
    again = await post_capture(s, doc(mine), "manufacturer")
    assert again["success"] and again["errors"] == []
    changed = await post_capture(s, doc(mine | {"bizStep": "shipping"}), "manufacturer")
    assert changed["errors"][0]["code"] == "event-id-conflict"
    assert {r["actor"]: r for r in await stored(db_url, eid)} == rows


async def test_battery_event_ids_of_two_capturers_do_not_collide(s: Stack) -> None:
    bid = await s.battery()
    eid = f"urn:uuid:{uuid.uuid4()}"
    incident = {"bt:incidentKind": "swelling", "bt:severity": "low"}
    step = "https://batterytrace.kr/voc/bizstep/incident_reporting"
    first = obj([battery(bid)], step, now(-60), **incident) | {"eventID": eid}
    second = obj([battery(bid)], step, now(-30), **incident) | {"eventID": eid}
    job = await post_capture(s, doc(first), "inspector")
    assert job["success"], job["errors"]
    job = await post_capture(s, doc(second), "inspector", org="KOTSA-2")
    assert job["success"], job["errors"]
    assert (await s.state(bid))["sequence"] == 3


# ---- the portal's EPCIS view ----


@pytest.fixture
async def world(make_settings, token) -> AsyncIterator[tuple[Stack, httpx.AsyncClient]]:
    async with stack(make_settings, token, streams=True) as st, portal_app(portal_settings(make_settings)) as portal:
        yield st, portal


def events_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body["epcisBody"]["queryResults"]["resultsBody"]["eventList"])


async def test_a_plain_event_cannot_shadow_a_ledger_event(world: tuple[Stack, httpx.AsyncClient]) -> None:
    s, portal = world
    admin = s.token("ops", "admin")
    bid = await s.battery()
    posted = await s.ok(bid, "INCIDENT", "inspector")
    uri = f"urn:uuid:{posted['event_id']}"

    async def view(n: int) -> list[dict[str, Any]] | None:
        r = await portal.get(f"/epcis/events/{uri}", headers=admin)
        found = events_of(r.json()) if r.status_code == 200 else []
        return found if len(found) == n else None

    (ledger_made,) = await eventually(lambda: view(1), timeout_s=30)
    assert ledger_made["bt:actor"] == ORGS["inspector"]
    # the attacker captures a plain event under that eventID, claiming the inspector as its actor first
    job = await post_capture(s, doc(plain(uri) | {"bt:actor": ORGS["inspector"]}), "oem")
    assert job["errors"][0]["code"] == "server-owned-field"
    assert (await post_capture(s, doc(plain(uri)), "oem"))["success"]
    both = await eventually(lambda: view(2), timeout_s=30)
    by_actor = {e["bt:actor"]: e for e in both}
    assert set(by_actor) == {ORGS["inspector"], ORGS["oem"]}
    assert by_actor[ORGS["inspector"]] == ledger_made  # the ledger-made event is unchanged
    assert "bt:hash" not in by_actor[ORGS["oem"]] and "bt:sequence" not in by_actor[ORGS["oem"]]
    # the battery's EPCIS events still name only the ledger-made one
    r = await portal.get("/epcis/events", params={"MATCH_epc": battery(bid)}, headers=admin)
    assert [e["bt:actor"] for e in events_of(r.json()) if e["eventID"] == uri] == [ORGS["inspector"]]


# ---- /verify ----


async def test_a_flood_of_verify_on_a_long_chain_does_bounded_work(s: Stack) -> None:
    bid = await s.battery()
    for _ in range(24):
        await s.ok(bid, "INCIDENT", "inspector")
    length = (await s.state(bid))["sequence"]
    answers = await asyncio.gather(
        *(s.events.get(f"/v1/batteries/{bid}/verify", params={"limit": 10}) for _ in range(40))
    )
    assert {r.status_code for r in answers} == {200}
    assert all(r.json()["events"] == 10 and r.json()["next_from_sequence"] == 11 for r in answers)
    # the pages chain to the whole verdict
    start, checked, head = 1, 0, None
    while start is not None:
        v = (await s.events.get(f"/v1/batteries/{bid}/verify", params={"from_sequence": start, "limit": 10})).json()
        assert v["valid"] is True and v["events"] <= 10 and v["from_sequence"] == start
        checked, head, start = checked + v["events"], v["head_hash"], v["next_from_sequence"]
    assert checked == length
    whole = (await s.events.get(f"/v1/batteries/{bid}/verify")).json()  # one page of ≤ 1000 is the whole
    assert whole["valid"] and whole["events"] == length and whole["head_hash"] == head
    # no page is larger than the cap, and a page beyond the chain is 404
    r = await s.events.get(f"/v1/batteries/{bid}/verify", params={"limit": 100_000})
    assert r.status_code == 422
    r = await s.events.get(f"/v1/batteries/{bid}/verify", params={"from_sequence": length + 5})
    assert r.status_code == 404 and r.json()["code"] == "beyond-chain"
    assert (await s.state(bid))["sequence"] == length


async def test_public_paths_are_rate_limited(make_settings, token) -> None:
    """An anonymous flood of /verify, the Digital Link page and the public passport is charged to the client
    address and refused with 429 past the burst; nothing it asked for changed."""
    async with stack(make_settings, token, rate_limit_per_s=0.5, rate_limit_burst=20) as st:
        bid = await st.battery()
        answers = [await st.events.get(f"/v1/batteries/{bid}/verify") for _ in range(30)]
        codes = [r.status_code for r in answers]
        assert 200 in codes and 429 in codes, codes
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.json()["code"] == "too-many-requests" and "retry-after" in refused.headers
    async with portal_app(portal_settings(make_settings, rate_limit_per_s=0.5, rate_limit_burst=10)) as portal:
        codes = [(await portal.get("/ui/dl/01/08801234567893/21/S1")).status_code for _ in range(15)]
        codes += [(await portal.get("/ui/passport/KR-NOPE-1")).status_code for _ in range(5)]
        assert 429 in codes and set(codes) <= {404, 429}, codes


# ---- the resolver ----


def test_digital_link_keys_are_parsed_not_matched() -> None:
    key = ui_repo.digital_link_key
    assert key("01/08801234567893/21/P0001") == "08801234567893/P0001"
    assert key("https://id.example/x/01/8801234567893/21/P0001?linkType=all") == "08801234567893/P0001"
    for hostile in ("%", "_", "%/21/%", "01/%/21/%", "01/0880123456789_/21/P0001", "x" * 10_000, "01/" + "9" * 600):
        assert key(hostile) is None, hostile


@pytest.fixture
async def portal_only(make_settings) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_app(portal_settings(make_settings)) as portal:
        yield portal


async def _seed_aliases(db_url: str, n: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute(
            "INSERT INTO portal.aliases (value, scheme, battery_id) "
            "SELECT 'https://id.batterytrace.kr/01/08801234567893/21/S' || i, 'gs1_digital_link', 'KR-SEED-' || i "
            "FROM generate_series(1, $1) AS i",
            n,
        )
        await conn.execute(
            "INSERT INTO portal.aliases (value, scheme, battery_id) "
            "SELECT 'urn:epc:id:sgtin:8801234.056789.' || i, 'epc', 'KR-SEED-' || i FROM generate_series(1, $1) AS i",
            n,
        )
        await conn.execute(
            "INSERT INTO portal.batteries (id, vin) SELECT 'KR-SEED-' || i, 'KMHEM41AP6A' || lpad(i::text, 6, '0') "
            "FROM generate_series(1, $1) AS i",
            n,
        )
        await conn.execute("ANALYZE portal.aliases")
        await conn.execute("ANALYZE portal.batteries")
    finally:
        await conn.close()


async def test_resolver_with_wildcard_and_long_input_finds_nothing(portal_only: httpx.AsyncClient, db_url: str) -> None:
    await _seed_aliases(db_url, 200)
    r = await portal_only.get("/ui/dl/01/08801234567893/21/S17")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/passport/KR-SEED-17")
    for hostile in (
        "%25",
        "_",
        "01/08801234567893/21/%25",
        "01/08801234567893/21/S_",
        "01/08801234567893/21/S1%25",
        "01/0880123456789_/21/S17",
        "01/08801234567893/21/" + "S" * 20_000,
    ):
        r = await portal_only.get(f"/ui/dl/{hostile}")
        assert r.status_code == 404, hostile
    for q in ("%", "_", "S1%", "x" * 20_000):
        r = await portal_only.get("/ui/lookup", params={"q": q})
        assert r.status_code == 404, q
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM portal.aliases") == 400
    finally:
        await conn.close()


# ---- no public path scans a table ----


INDEX_SCANS = ("Index Scan", "Index Only Scan", "Bitmap Index Scan")


def _plans(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(p for child in node.get("Plans", []) for p in _plans(child))]


async def test_no_public_path_scans_a_table(s: Stack, db_url: str) -> None:
    """EXPLAIN every statement the resolver (`/ui/dl`, `/ui/lookup`), `/verify` and the public passport
    issue, on tables with enough rows for a scan to matter, with sequential scans priced out (any Seq Scan
    left is one no index can serve; an index read without an index condition is a scan too). The old
    resolver's `value LIKE '%/<path>'` fails it."""
    await _seed_aliases(db_url, 20_000)
    bid = await s.battery()
    for _ in range(5):
        await s.ok(bid, "INCIDENT", "inspector")
    statements: list[tuple[str, list[Any]]] = [
        # the resolver
        (str(ui_repo._BY_KEY.compile(compile_kwargs={})).replace(":key", "$1"), ["08801234567893/S17"]),
        (history_repo.RESOLVE_ALIAS, ["https://id.batterytrace.kr/01/08801234567893/21/S17"]),
        (history_repo.GET_BATTERY, ["KR-SEED-17"]),
        # /verify
        (ledger_repo._CHAIN_PAGE, [bid, 1, 1001]),
        (ledger_repo._HASH_AT, [bid, 3]),
        # the public passport (one battery's events, by its key)
        (history_repo.TIMELINE, [bid]),
    ]
    old_resolver = (
        "SELECT battery_id FROM portal.aliases WHERE scheme = 'gs1_digital_link' AND value LIKE $1 LIMIT 2",
        ["%/01/08801234567893/21/S17"],
    )
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute("ANALYZE")
        await conn.execute("SET enable_seqscan = off")
        for sql, args in statements:
            (plan,) = orjson.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            scans = [
                f"{p['Node Type']} on {p.get('Relation Name') or p.get('Index Name')}"
                for p in _plans(plan["Plan"])
                if p["Node Type"] == "Seq Scan"
                or (p["Node Type"] in INDEX_SCANS and "Index Cond" not in p)  # a whole index read in order
            ]
            assert scans == [], f"{sql}: {scans}"
        (plan,) = orjson.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {old_resolver[0]}", *old_resolver[1]))
        assert any(p["Node Type"] == "Seq Scan" or "Index Cond" not in p for p in _plans(plan["Plan"]))
    finally:
        await conn.close()
