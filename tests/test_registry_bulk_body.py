"""A bulk registration's body is validated from its bytes into plain dicts (services/registry/batteries/schemas.py
PlainModel): the same batteries as BatteryIn gives, and over HTTP the same answers FastAPI gave for a `BulkIn`
body, refusals included."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.registry.batteries.schemas import PLAIN_BATTERY, PLAIN_BULK, BulkIn
from tests.factories import battery_body


def _as_model(raw: bytes) -> list[dict[str, Any]] | None:
    try:
        return [b.model_dump() for b in BulkIn.model_validate_json(raw).batteries]
    except ValidationError:
        return None


def _as_plain(raw: bytes) -> list[dict[str, Any]] | None:
    try:
        return [PLAIN_BATTERY.fill(b) for b in PLAIN_BULK.validate_json(raw)["batteries"]]
    except ValidationError:
        return None


def _with(**changes: Any) -> bytes:
    item = battery_body(battery_id="KR-PLAIN-1")
    for key, value in changes.items():
        if value is ...:
            item.pop(key)
        else:
            item[key] = value
    return orjson.dumps({"batteries": [item]})


CASES = {
    "as the factory makes it": _with(),
    "optional fields left out": _with(materials_kg=..., recycled_content_pct=..., carbon_footprint_kg_co2e_per_kwh=...),
    "kind given": _with(kind="pack"),
    "kind null": _with(kind=None),
    "unknown kind": _with(kind="crate"),
    "unknown field": _with(colour="red"),
    "unknown material": _with(materials_kg={"gold": 1}),
    "negative mass": _with(materials_kg={"lithium": -1}),
    "negative zeros": _with(materials_kg={"lithium": -0.0}, carbon_footprint_kg_co2e_per_kwh=-0.0),
    "share above 100": _with(recycled_content_pct={"lithium": 150}),
    "made in the future": _with(manufactured_at="2099-01-01T00:00:00Z"),
    "made before 1990": _with(manufactured_at="1989-12-31T00:00:00Z"),
    "naive time": _with(manufactured_at="2026-01-01T00:00:00"),
    "time as a number": _with(manufactured_at=0),
    "lower-case ID": _with(id="kr-1"),
    "ID too long": _with(id="A" * 25),
    "ID missing": _with(id=...),
    "number for a string": _with(serial_number=5),
    "string for a number": _with(carbon_footprint_kg_co2e_per_kwh="5"),
    "integer for a number": _with(carbon_footprint_kg_co2e_per_kwh=5),
    "materials null": _with(materials_kg=None),
    "no batteries": b'{"batteries": []}',
    "batteries not a list": b'{"batteries": {}}',
    "an item not an object": b'{"batteries": [1]}',
    "unknown top-level field": b'{"batteries": [], "more": 1}',
    "NaN": _with().replace(b"61.5", b"NaN"),
    "huge integer": _with().replace(b"61.5", b"1" + b"0" * 30),
    "repeated key": _with().replace(b'"id":"KR-PLAIN-1"', b'"id":"KR-PLAIN-1","id":"KR-PLAIN-2"'),
    "lone surrogate": _with().replace(b'"Ochang, KR"', b'"\\ud800"'),
    "10,001 batteries": orjson.dumps({"batteries": [battery_body(battery_id=f"KR-P-{i}") for i in range(10_001)]}),
}


@pytest.mark.parametrize("raw", CASES.values(), ids=CASES.keys())
def test_plain_batteries_are_the_models_dumped(raw: bytes) -> None:
    assert _as_plain(raw) == _as_model(raw)


def test_manufacturing_time_bounds_hold_to_the_microsecond() -> None:
    """From 1990-01-01 (not a microsecond before) up to two minutes ahead of the clock (shared.validation)."""
    now = datetime.now(UTC)
    for at, ok in (
        ("1990-01-01T00:00:00Z", True),
        ("1990-01-01T08:59:59.999999+09:00", False),
        ("1989-12-31T23:59:59.999999Z", False),
        ((now + timedelta(seconds=90)).isoformat(), True),
        ((now + timedelta(seconds=150)).isoformat(), False),
    ):
        raw = _with(manufactured_at=at)
        assert (_as_plain(raw) is not None, _as_model(raw) is not None) == (ok, ok), at


def test_plain_batteries_keep_the_models_field_order() -> None:
    raw = CASES["optional fields left out"]
    assert orjson.dumps(_as_plain(raw)) == orjson.dumps(_as_model(raw))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(battery_body())), _json, st.booleans())
def test_any_field_value_validates_alike(field: str, value: Any, nested: bool) -> None:
    """Whatever JSON a field (or a member of a nested one) holds, both accept it alike, with the same result."""
    item = copy.deepcopy(battery_body(battery_id="KR-PLAIN-H"))
    if nested and isinstance(item[field], dict):
        item[field]["lithium"] = value
    else:
        item[field] = value
    try:
        raw = orjson.dumps({"batteries": [item]})
    except TypeError:  # an integer beyond 64 bits
        return
    assert _as_plain(raw) == _as_model(raw)


# ---- over HTTP: FastAPI's answers for a BulkIn body ----


@pytest.fixture
async def maker(registry, token) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from tests.factories import create_models

    headers = token("LGES", "manufacturer")
    await create_models(registry, headers)
    return headers


def _problem(r: Any) -> tuple[int, list[tuple[str, str]]]:
    return r.status_code, [(e["field"], e["rule"]) for e in r.json().get("errors", [])]


async def test_bulk_body_refusals_are_fastapis(registry, maker, token) -> None:
    item = battery_body(battery_id="KR-REFUSED-1")
    body = orjson.dumps({"batteries": [item]})
    post = registry.post
    json = maker | {"content-type": "application/json"}
    r = await post("/v1/batteries/bulk", content=b"", headers=json)
    assert _problem(r) == (422, [("body", "missing")])
    r = await post("/v1/batteries/bulk", content=b'{"batteries": [}', headers=json)
    assert _problem(r) == (422, [("15", "json_invalid")]) and r.json()["detail"] == "15: JSON decode error"
    for media_type in ({"content-type": "text/plain"}, {}):  # none: FastAPI's strict content type
        r = await post("/v1/batteries/bulk", content=body, headers=maker | media_type)
        assert _problem(r) == (422, [("body", "model_attributes_type")])
    r = await post("/v1/batteries/bulk", content=b'{"batteries": [1]}', headers=json)
    assert _problem(r) == (422, [("batteries.0", "model_attributes_type")]) and r.json()["errors"][0]["index"] == 0
    r = await post("/v1/batteries/bulk", content=body.replace(b'"Ochang, KR"', b'"\\ud800"'), headers=json)
    assert _problem(r) == (422, [("batteries.0.manufacturing_site", "string_unicode")])
    # Bytes that are no text of any JSON encoding (found by the fuzzer: a 500): FastAPI's own answer, as the
    # single registration (a FastAPI-validated body) gives it for the same bytes.
    for raw in (b"\xba", b"\xff\xfe\x00", b'{"batteries": ["\xe9"]}'):
        single = await post("/v1/batteries", content=raw, headers=json)
        r = await post("/v1/batteries/bulk", content=raw, headers=json)
        assert single.status_code != 500 and (r.status_code, r.json()["code"]) == (
            single.status_code,
            single.json()["code"],
        ), (raw, r.text, single.text)
    # JSON that does not parse is refused before the caller's role is looked at; a body that parses, after.
    oem = token("HMC", "oem") | {"content-type": "application/json"}
    assert (await post("/v1/batteries/bulk", content=b"{", headers=oem)).status_code == 422
    assert (await post("/v1/batteries/bulk", content=b"{}", headers=oem)).status_code == 403
    assert (await registry.get("/v1/batteries/KR-REFUSED-1", headers=maker)).status_code == 404


async def test_bulk_body_takes_any_json_media_type(registry, maker) -> None:
    body = orjson.dumps({"batteries": [battery_body(battery_id="KR-LD-1")]})
    ld = maker | {"content-type": "application/ld+json; charset=utf-8"}
    assert (await registry.post("/v1/batteries/bulk", content=body, headers=ld)).status_code == 201
    got = await registry.get("/v1/batteries/KR-LD-1", headers=maker)
    assert got.json()["materials_kg"]["copper"] == 0.0 and got.json()["recycled_content_pct"]["lead"] == 0.0


def test_the_bulk_body_is_documented_as_bulkin() -> None:
    from services.registry.app import create_app
    from services.registry.settings import RegistrySettings

    doc = create_app(RegistrySettings(database_url="postgresql+asyncpg://nobody@/none")).openapi()
    body = doc["paths"]["/v1/batteries/bulk"]["post"]["requestBody"]
    assert body == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BulkIn"}}},
    }
    assert doc["components"]["schemas"]["BulkIn"]["properties"]["batteries"]["maxItems"] == 10_000
