"""Helpers for events-service tests: a registry + events stack in-process, and event posting."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from services.events.app import create_app as create_events
from services.events.settings import EventsSettings
from services.registry.app import create_app as create_registry
from services.registry.settings import RegistrySettings
from tests.conftest import serve
from tests.factories import battery_body, create_models, participant

ORGS = {
    "manufacturer": "LGES",
    "oem": "HMC",
    "inspector": "KOTSA",
    "dismantler": "DISM-1",
    "collector": "COL-1",
    "assessor": "ASSESS-1",
    "remanufacturer": "REMAN-1",
    "repurposer": "REPUR-1",
    "certifier": "KTL",
    "recycler": "REC-1",
}

#: The bootstrap admin org (ServiceSettings.bootstrap_admin_org): admitted before any participant exists.
BOOTSTRAP_ADMIN = "BT-ADMIN"

DATA: dict[str, dict[str, Any]] = {
    "INSTALLED": {"vin": "KMHEM41AP6A123456"},
    "INSPECTED": {"soh_pct": 91.5, "cycle_count": 420},
    "REMOVED": {"reason": "end_of_life", "consignee": "COL-1"},  # the collector it hands the battery to
    "COLLECTED": {"centre": "SIHEUNG-01", "region": "KR-41"},
    "GRADED": {"soh_pct": 62.0, "grade": "recycle"},
    "REMANUFACTURED": {},
    "REPURPOSED": {"new_application": "ESS", "rated_capacity": 50.0},
    "SAFETY_INSPECTED": {
        "certificate_number": "KC10031-T-0001",
        "body": "KTL",
        "standard": "KC 10031",
        "edition": "2024",
        "result": "pass",
        "valid_until": "2036-12-31",
        "report_ref": "KTL-R-T-0001",
    },
    "RECYCLED": {
        "process": "hydrometallurgy",
        "input_mass_kg": 450.0,
        "black_mass_kg": 180.0,
        "recovered_kg": {"lithium": 5.1, "nickel": 30.2, "cobalt": 3.9, "manganese": 3.1},
    },
    "DISPOSED": {"method": "landfill-hazardous"},
    "INCIDENT": {"kind": "swelling", "severity": "medium"},
}


@dataclass
class Stack:
    registry: httpx.AsyncClient
    events: httpx.AsyncClient
    token: Callable[..., dict[str, str]]

    def as_role(self, role: str, org: str | None = None) -> dict[str, str]:
        if role == "ministry":
            return self.token(org or "MOLIT", "ministry", ministry=org or "MOLIT")
        return self.token(org or ORGS.get(role, role.upper()), role)

    async def battery(self, battery_id: str | None = None, model_id: str = "NCM-PACK-77") -> str:
        body = battery_body(battery_id=battery_id, model_id=model_id)
        r = await self.registry.post("/v1/batteries", json=body, headers=self.as_role("manufacturer"))
        assert r.status_code == 201, r.text
        return str(body["id"])

    async def post(
        self,
        battery_id: str,
        etype: str,
        role: str,
        *,
        org: str | None = None,
        data: dict[str, Any] | None = None,
        event_id: str | None = None,
        occurred_at: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body = self.body(battery_id, etype, data=data, event_id=event_id, occurred_at=occurred_at, **extra)
        return await self.events.post("/v1/events", json=body, headers=self.as_role(role, org))

    @staticmethod
    def body(
        battery_id: str,
        etype: str,
        *,
        data: dict[str, Any] | None = None,
        event_id: str | None = None,
        occurred_at: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """An event as POST /v1/events takes it (a fresh event ID, now, the test site; the type's default data)."""
        return {
            "event_id": event_id or str(uuid.uuid4()),
            "battery_id": battery_id,
            "type": etype,
            "occurred_at": occurred_at or datetime.now(UTC).isoformat(),
            "location": {"site": "test site", "region": "KR-11"},
            "data": DATA.get(etype, {}) if data is None else data,
            **extra,
        }

    async def ok(self, battery_id: str, etype: str, role: str, **kw: Any) -> dict[str, Any]:
        r = await self.post(battery_id, etype, role, **kw)
        assert r.status_code == 201, f"{etype} by {role}: {r.text}"
        return dict(r.json())

    async def state(self, battery_id: str) -> dict[str, Any]:
        r = await self.events.get(f"/v1/batteries/{battery_id}/state", headers=self.as_role("manufacturer"))
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def transfer_to(self, battery_id: str, role: str) -> None:
        st = await self.state(battery_id)
        target = ORGS[role]
        if st["custodian"] != target:
            holder_role = next((r for r, o in ORGS.items() if o == st["custodian"]), "manufacturer")
            await self.ok(battery_id, "TRANSFERRED", holder_role, data={"to": target})


@contextlib.asynccontextmanager
async def stack(
    make_settings: Callable[..., Any],
    token: Callable[..., dict[str, str]],
    streams: bool = False,
    register_orgs: bool = False,
    manufacturer_participant: bool = True,
    **events_overrides: Any,
) -> AsyncIterator[Stack]:
    """Registry + events in-process. Without `streams`, no relays or consumers run (read-through covers
    the registry → events path), which keeps pure state-machine tests fast. The manufacturer is a registered
    participant owning the test GS1 prefix (unless `manufacturer_participant` is False); `register_orgs`
    registers every org of `ORGS` (and the ministry MOLIT) too, for tests that run with the participant check on."""
    if not streams:  # no registration arrives: the public read's facts are all the events service gets
        events_overrides = {
            "relay_enabled": False,
            "consumers_enabled": False,
            "plausibility_await_registration": False,
        } | events_overrides
    shared_keys = ("kafka_bootstrap_servers", "participants_unchecked_for_unit_tests", "participants_ttl_s")
    shared_overrides = {k: v for k, v in events_overrides.items() if k in shared_keys}
    registry_app = create_registry(make_settings(RegistrySettings, relay_enabled=streams, **shared_overrides))
    async with serve(registry_app) as registry:
        transport = httpx.ASGITransport(app=registry_app)
        events_app = create_events(make_settings(EventsSettings, **events_overrides), registry_transport=transport)
        async with serve(events_app) as events:
            s = Stack(registry, events, token)
            admin = token(BOOTSTRAP_ADMIN, "admin")
            if manufacturer_participant or register_orgs:
                await participant(registry, admin, ORGS["manufacturer"], "manufacturer")
            if register_orgs:
                for role, org in ORGS.items():
                    await participant(registry, admin, org, role)
                await participant(registry, admin, "MOLIT", "ministry")
            await create_models(registry, s.as_role("manufacturer"))
            yield s


#: Settings of a stack with the participant checks on (the attack tests): a directory entry lives half a second.
CHECKED = {"participants_unchecked_for_unit_tests": False, "participants_ttl_s": 0.5}


async def projected(s: Stack, org: str, status: str = "active") -> bool:
    """Whether the events service's participant projection holds `org` with `status`."""
    async with s.events.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        row = (await conn.execute(text("SELECT status FROM events.participants WHERE id = :id"), {"id": org})).first()
    return row is not None and row[0] == status
