"""Small async factories for tests."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

_seq = itertools.count(1)


def battery_body(battery_id: str | None = None, model_id: str = "NCM-PACK-77", **over: Any) -> dict[str, Any]:
    n = next(_seq)
    body = {
        "id": battery_id if battery_id is not None else f"KR-T-{n:08d}",
        "model_id": model_id,
        "serial_number": f"SN{n:08d}",
        "manufactured_at": "2026-01-15T09:00:00+09:00",
        "manufacturing_site": "Ochang, KR",
        "materials_kg": {"lithium": 8.0, "nickel": 40.0, "cobalt": 5.0, "manganese": 4.5, "graphite": 50.0},
        "recycled_content_pct": {"lithium": 6, "nickel": 4, "cobalt": 16, "lead": 0},
        "carbon_footprint_kg_co2e_per_kwh": 61.5,
    }
    body.update(over)
    return body


MODELS = {
    "NCM-PACK-77": {
        "kind": "pack",
        "chemistry": "NCM",
        "rated_capacity_ah": 222,
        "nominal_voltage_v": 350,
        "rated_energy_kwh": 77.4,
        "mass_kg": 477,
    },
    "NCM-MOD-8": {
        "kind": "module",
        "chemistry": "NCM",
        "rated_capacity_ah": 222,
        "nominal_voltage_v": 36,
        "rated_energy_kwh": 8.0,
        "mass_kg": 45,
    },
    "NCM-CELL-60": {
        "kind": "cell",
        "chemistry": "NCM",
        "rated_capacity_ah": 60,
        "nominal_voltage_v": 3.65,
        "rated_energy_kwh": 0.22,
        "mass_kg": 0.9,
    },
    "LFP-PACK-60": {
        "kind": "pack",
        "chemistry": "LFP",
        "rated_capacity_ah": 180,
        "nominal_voltage_v": 340,
        "rated_energy_kwh": 60.0,
        "mass_kg": 420,
    },
}


async def create_models(client: httpx.AsyncClient, headers: dict[str, str], *ids: str) -> None:
    for mid in ids or MODELS:
        r = await client.post("/v1/models", json={"id": mid, **MODELS[mid]}, headers=headers)
        assert r.status_code in (201, 409), r.text


async def register(client: httpx.AsyncClient, headers: dict[str, str], **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/batteries", json=battery_body(**over), headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


#: Valid 사업자등록번호 for test participants (check digits verified by shared.participants.valid_business_number).
BUSINESS_NUMBERS = ("1248100998", "2208162517")
#: The GS1 company prefix test manufacturers own (GTIN 08801234567893 and urn:epc:id:sgtin:8801234.0xxxxx.* lie under it).
TEST_GS1_PREFIX = "8801234"


async def participant(
    client: httpx.AsyncClient, headers: dict[str, str], pid: str, role: str, **over: Any
) -> dict[str, Any]:
    """Register a participant with the registry (201, or 409 if a test registered it already); a manufacturer
    owns `TEST_GS1_PREFIX` unless told otherwise."""
    body: dict[str, Any] = {"id": pid, "name": pid, "role": role}
    if role == "manufacturer":
        body["gs1_company_prefixes"] = [TEST_GS1_PREFIX]
    if role == "ministry":
        body["ministry"] = pid
    body.update(over)
    r = await client.post("/v1/participants", json=body, headers=headers)
    assert r.status_code in (201, 409), r.text
    return dict(r.json())
