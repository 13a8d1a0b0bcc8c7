"""Registry service: participants, models, batteries, aliases, and the rules with their errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.registry.batteries.schemas import BatteryOut, BatteryPublic
from tests.factories import battery_body, create_models, participant, register

PROBLEM = "application/problem+json"


@pytest.fixture
async def maker(registry: httpx.AsyncClient, token) -> dict[str, str]:  # type: ignore[no-untyped-def]
    headers = token("LGES", "manufacturer")
    await create_models(registry, headers)
    return headers


async def test_admin_registers_participant_and_lists_by_role(registry, token) -> None:
    admin = token("ops", "admin")
    r = await registry.post(
        "/v1/participants",
        json={"id": "REC-1", "name": "Recycler One", "role": "recycler", "region": "KR-11"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    await registry.post(
        "/v1/participants", json={"id": "MCEE", "name": "MCEE", "role": "ministry", "ministry": "MCEE"}, headers=admin
    )
    got = await registry.get("/v1/participants/REC-1", headers=admin)
    assert got.json()["role"] == "recycler"
    listed = await registry.get("/v1/participants", params={"role": "recycler"}, headers=admin)
    assert [p["id"] for p in listed.json()["items"]] == ["REC-1"]


async def test_non_admin_cannot_register_participant(registry, token) -> None:
    r = await registry.post(
        "/v1/participants", json={"id": "X", "name": "X", "role": "recycler"}, headers=token("LGES", "manufacturer")
    )
    assert r.status_code == 403
    assert r.headers["content-type"].startswith(PROBLEM)


async def test_ministry_participant_needs_ministry_code(registry, token) -> None:
    r = await registry.post(
        "/v1/participants", json={"id": "M", "name": "M", "role": "ministry"}, headers=token("ops", "admin")
    )
    assert r.status_code == 422
    assert "ministry" in r.json()["detail"]


async def test_duplicate_participant_is_409(registry, token) -> None:
    admin = token("ops", "admin")
    body = {"id": "C-1", "name": "C", "role": "collector"}
    assert (await registry.post("/v1/participants", json=body, headers=admin)).status_code == 201
    r = await registry.post("/v1/participants", json=body, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "duplicate-participant"


async def test_register_battery_takes_manufacturer_from_token(registry, maker) -> None:
    created = await register(registry, maker, battery_id="KR-A-1")
    assert created["manufacturer"] == "LGES"
    assert created["kind"] == "pack" and created["chemistry"] == "NCM"
    assert created["rated_energy_kwh"] == 77.4


async def test_body_cannot_choose_manufacturer(registry, maker) -> None:
    r = await registry.post("/v1/batteries", json=battery_body(manufacturer="OTHER"), headers=maker)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "manufacturer"


@pytest.mark.parametrize("bad_id", ["kr-lower", "A" * 25, "KR_UNDERSCORE", "", "KR 1"])
async def test_battery_id_format_is_enforced(registry, maker, bad_id) -> None:
    r = await registry.post("/v1/batteries", json=battery_body(battery_id=bad_id), headers=maker)
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "id" and err["rule"]


async def test_unknown_model_is_422_naming_the_field(registry, maker) -> None:
    r = await registry.post("/v1/batteries", json=battery_body(model_id="NOPE"), headers=maker)
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "model_id", "rule": "known-model", "message": "no battery model 'NOPE'"}]


async def test_kind_must_match_model(registry, maker) -> None:
    r = await registry.post("/v1/batteries", json=battery_body(kind="cell"), headers=maker)
    assert r.status_code == 422
    assert r.json()["errors"][0]["rule"] == "matches-model"


async def test_duplicate_battery_is_409_and_changes_nothing(registry, maker) -> None:
    first = await register(registry, maker, battery_id="KR-DUP-1", serial_number="ORIGINAL")
    r = await registry.post(
        "/v1/batteries", json=battery_body(battery_id="KR-DUP-1", serial_number="OTHER"), headers=maker
    )
    assert r.status_code == 409 and r.json()["code"] == "duplicate-battery"
    again = await registry.get("/v1/batteries/KR-DUP-1", headers=maker)
    assert again.json()["serial_number"] == first["serial_number"] == "ORIGINAL"


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("materials_kg", {"lithium": -1}, "greater_than_equal"),
        ("recycled_content_pct", {"cobalt": 101}, "less_than_equal"),
        ("recycled_content_pct", {"lithium": -0.1}, "greater_than_equal"),
        ("manufactured_at", "2026-01-01T00:00:00", "timezone_aware"),
        ("carbon_footprint_kg_co2e_per_kwh", -5, "greater_than_equal"),
    ],
)
async def test_value_rules(registry, maker, field, value, rule) -> None:
    r = await registry.post("/v1/batteries", json=battery_body(**{field: value}), headers=maker)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["rule"] == rule
    assert r.json()["errors"][0]["field"].startswith(field)


async def test_timestamp_in_future_is_refused(registry, maker) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = await registry.post("/v1/batteries", json=battery_body(manufactured_at=future), headers=maker)
    assert r.status_code == 422
    assert "future" in r.json()["errors"][0]["message"]


async def test_wrong_role_is_403_and_no_token_is_401(registry, token) -> None:
    r = await registry.post("/v1/batteries", json=battery_body(), headers=token("R1", "recycler"))
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    r = await registry.post("/v1/batteries", json=battery_body())
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = await registry.post("/v1/batteries", json=battery_body(), headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401 and r.json()["code"] == "invalid-token"


async def test_expired_token_is_401(registry, token) -> None:
    r = await registry.post("/v1/batteries", json=battery_body(), headers=token("LGES", "manufacturer", ttl_s=-60))
    assert r.status_code == 401 and r.json()["code"] == "token-expired"


async def test_public_caller_sees_only_public_fields(registry, maker) -> None:
    await register(registry, maker, battery_id="KR-PUB-1")
    public = (await registry.get("/v1/batteries/KR-PUB-1")).json()
    assert public["access_level"] == "public"
    assert "serial_number" not in public and "materials_kg" not in public
    assert public["chemistry"] == "NCM" and public["manufacturer"] == "LGES"
    full = (await registry.get("/v1/batteries/KR-PUB-1", headers=maker)).json()
    assert full["access_level"] == "full" and full["materials_kg"]["lithium"] == 8.0


async def test_other_participants_see_public_fields_authorities_the_full_record(registry, maker, token) -> None:
    await register(registry, maker, battery_id="KR-PUB-2")
    rival = (await registry.get("/v1/batteries/KR-PUB-2", headers=token("SDI", "manufacturer"))).json()
    assert rival["access_level"] == "public" and "materials_kg" not in rival
    recycler = (await registry.get("/v1/batteries/KR-PUB-2", headers=token("REC-1", "recycler"))).json()
    assert recycler["access_level"] == "public"
    # Issue 12: commercial facts are for the manufacturer and authorities; a certifier reads what it certified
    # (the ledger's, not the registry's), so the registry answers it the public fields.
    certifier = (await registry.get("/v1/batteries/KR-PUB-2", headers=token("KTL", "certifier"))).json()
    assert certifier["access_level"] == "public" and "serial_number" not in certifier
    for who in (token("KATS", "ministry", ministry="KATS"), token("ops", "operator")):
        assert (await registry.get("/v1/batteries/KR-PUB-2", headers=who)).json()["access_level"] == "full"


async def test_a_battery_is_answered_as_its_response_model_writes_it(registry, maker, token) -> None:
    """GET /v1/batteries/{id} answers plain data shaped like the model (shared.responses.DirectJSON): byte for
    byte what BatteryOut or BatteryPublic would write, aliases and amended facts included."""
    await participant(registry, token("ops", "admin"), "LGES", "manufacturer")
    await register(registry, maker, battery_id="KR-SHAPE-1", manufacturing_site="오창, KR")
    epc = {"scheme": "epc", "value": "urn:epc:id:sgtin:8801234.056789.SH1"}
    assert (await registry.post("/v1/batteries/KR-SHAPE-1/aliases", json=epc, headers=maker)).status_code == 201
    change = {"changes": {"materials_kg": {"cobalt": 1.5}, "carbon_footprint_kg_co2e_per_kwh": 60}, "reason": "recount"}
    assert (await registry.post("/v1/batteries/KR-SHAPE-1/amendments", json=change, headers=maker)).status_code == 201
    full = await registry.get("/v1/batteries/KR-SHAPE-1", headers=maker)
    assert full.headers["content-type"] == "application/json"
    assert BatteryOut.model_validate_json(full.content).model_dump_json().encode() == full.content
    assert (
        full.json()["aliases"] == [epc | {"battery_id": "KR-SHAPE-1"}] and full.json()["materials_kg"]["cobalt"] == 1.5
    )
    public = await registry.get("/v1/batteries/KR-SHAPE-1")
    assert BatteryPublic.model_validate_json(public.content).model_dump_json().encode() == public.content
    assert public.json()["access_level"] == "public" and public.json()["carbon_footprint_kg_co2e_per_kwh"] == 60.0


async def test_unknown_battery_is_404_problem(registry) -> None:
    r = await registry.get("/v1/batteries/KR-NONE")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)


async def test_bulk_registers_all(registry, maker) -> None:
    items = [battery_body(battery_id=f"KR-BULK-{i:05d}") for i in range(1500)]
    r = await registry.post("/v1/batteries/bulk", json={"batteries": items}, headers=maker)
    assert r.status_code == 201, r.text
    assert r.json()["created"] == 1500
    assert (await registry.get("/v1/batteries/KR-BULK-01499", headers=maker)).status_code == 200


async def test_bulk_is_all_or_nothing_with_errors_by_index(registry, maker) -> None:
    items = [battery_body(battery_id=f"KR-BN-{i}") for i in range(5)]
    items[3]["model_id"] = "NOPE"
    r = await registry.post("/v1/batteries/bulk", json={"batteries": items}, headers=maker)
    assert r.status_code == 422
    assert [e["index"] for e in r.json()["errors"]] == [3]
    assert (await registry.get("/v1/batteries/KR-BN-0", headers=maker)).status_code == 404


async def test_bulk_schema_errors_name_the_item_index(registry, maker) -> None:
    items = [battery_body(battery_id=f"KR-BS-{i}") for i in range(3)]
    items[2]["recycled_content_pct"] = {"lithium": 150}
    r = await registry.post("/v1/batteries/bulk", json={"batteries": items}, headers=maker)
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["index"] == 2 and err["field"] == "batteries.2.recycled_content_pct.lithium"


async def test_bulk_duplicates_inside_request_and_against_existing(registry, maker) -> None:
    await register(registry, maker, battery_id="KR-EXIST")
    items = [battery_body(battery_id="KR-TWICE"), battery_body(battery_id="KR-TWICE")]
    r = await registry.post("/v1/batteries/bulk", json={"batteries": items}, headers=maker)
    assert r.status_code == 409 and [e["index"] for e in r.json()["errors"]] == [0, 1]
    items = [battery_body(battery_id="KR-NEW-1"), battery_body(battery_id="KR-EXIST")]
    r = await registry.post("/v1/batteries/bulk", json={"batteries": items}, headers=maker)
    assert r.status_code == 409 and [e["index"] for e in r.json()["errors"]] == [1]
    assert (await registry.get("/v1/batteries/KR-NEW-1", headers=maker)).status_code == 404


async def test_bulk_by_copy_names_the_ids_registered_already(registry, maker) -> None:
    """From 50 batteries on the rows go by COPY, which stops at the first ID taken: the answer still names every
    item registered already, and nothing of the request is kept."""
    await register(registry, maker, battery_id="KR-COPY-A")
    await register(registry, maker, battery_id="KR-COPY-B")
    items = [battery_body(battery_id=f"KR-COPY-{i:03d}") for i in range(60)]
    items[41]["id"], items[7]["id"] = "KR-COPY-A", "KR-COPY-B"
    r = await registry.post("/v1/batteries/bulk", json={"batteries": items}, headers=maker)
    assert r.status_code == 409 and r.json()["code"] == "duplicate-battery"
    assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(7, "batteries.7.id"), (41, "batteries.41.id")]
    assert (await registry.get("/v1/batteries/KR-COPY-000", headers=maker)).status_code == 404
    items[41]["id"], items[7]["id"] = "KR-COPY-041", "KR-COPY-007"
    r = await registry.post("/v1/batteries/bulk", json={"batteries": items}, headers=maker)
    assert r.status_code == 201 and r.json()["created"] == 60


async def test_bulk_limit_is_10000(registry, maker) -> None:
    items = [battery_body(battery_id=f"KR-L-{i}") for i in range(10_001)]
    r = await registry.post("/v1/batteries/bulk", json={"batteries": items}, headers=maker)
    assert r.status_code == 422
    assert r.json()["errors"][0]["rule"] == "too_long"


async def test_list_filters_and_cursor_pagination(registry, maker, token) -> None:
    other = token("SDI", "manufacturer")
    for i in range(5):
        await register(registry, maker, battery_id=f"KR-LG-{i}")
    await register(registry, other, battery_id="KR-SD-1", model_id="LFP-PACK-60")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"manufacturer": "LGES", "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await registry.get("/v1/batteries", params=params, headers=maker)).json()
        seen += [b["id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"KR-LG-{i}" for i in range(5)]
    ministry = token("MOTIE", "ministry", ministry="MOTIE")
    lfp = (await registry.get("/v1/batteries", params={"chemistry": "LFP"}, headers=ministry)).json()
    assert [b["id"] for b in lfp["items"]] == ["KR-SD-1"]
    mine = (await registry.get("/v1/batteries", headers=other)).json()
    assert [b["id"] for b in mine["items"]] == ["KR-SD-1"]
    theirs = await registry.get("/v1/batteries", params={"manufacturer": "LGES"}, headers=other)
    assert theirs.status_code == 403
    bad = await registry.get("/v1/batteries", params={"cursor": "%%%"}, headers=maker)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"


async def test_aliases_resolve_and_conflict(registry, maker, token) -> None:
    await participant(registry, token("ops", "admin"), "LGES", "manufacturer")
    await register(registry, maker, battery_id="KR-AL-1")
    await register(registry, maker, battery_id="KR-AL-2")
    epc = {"scheme": "epc", "value": "urn:epc:id:sgtin:8801234.056789.AL1"}
    r = await registry.post("/v1/batteries/KR-AL-1/aliases", json=epc, headers=maker)
    assert r.status_code == 201, r.text
    dl = {"scheme": "gs1_digital_link", "value": "https://id.example.kr/01/08801234567893/21/AL1"}
    assert (await registry.post("/v1/batteries/KR-AL-1/aliases", json=dl, headers=maker)).status_code == 201
    res = (await registry.get("/v1/resolve", params={"alias": epc["value"]})).json()
    assert res == {"battery_id": "KR-AL-1", "scheme": "epc", "value": epc["value"]}
    assert (await registry.get("/v1/resolve", params={"alias": dl["value"]})).json()["battery_id"] == "KR-AL-1"
    again = await registry.post("/v1/batteries/KR-AL-1/aliases", json=epc, headers=maker)
    assert again.status_code == 201
    taken = await registry.post("/v1/batteries/KR-AL-2/aliases", json=epc, headers=maker)
    assert taken.status_code == 409 and taken.json()["code"] == "alias-taken"
    bad = await registry.post("/v1/batteries/KR-AL-2/aliases", json={"scheme": "vin", "value": "SHORT"}, headers=maker)
    assert bad.status_code == 422
    # a VIN is never a free alias (INSTALLED attaches it): not for an OEM, not for the manufacturer
    vin = {"scheme": "vin", "value": "KMHEM41AP6A123456"}
    for who in (token("HMC", "oem"), maker):
        r = await registry.post("/v1/batteries/KR-AL-2/aliases", json=vin, headers=who)
        assert r.status_code == 422 and r.json()["code"] == "vin-by-installed"
    stranger = await registry.post(
        "/v1/batteries/KR-AL-2/aliases", json=dl | {"value": dl["value"] + "X"}, headers=token("R1", "recycler")
    )
    assert stranger.status_code == 403
    assert (await registry.get("/v1/resolve", params={"alias": "nothing"})).status_code == 404


async def test_openapi_has_examples_and_problem_responses(registry) -> None:
    spec = (await registry.get("/openapi.json")).json()
    post = spec["paths"]["/v1/batteries"]["post"]
    assert "422" in post["responses"] and "application/problem+json" in post["responses"]["422"]["content"]
    assert spec["components"]["schemas"]["BatteryIn"]["examples"]


async def test_health_and_readiness(registry) -> None:
    assert (await registry.get("/healthz")).json() == {"status": "ok"}
    ready = await registry.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
