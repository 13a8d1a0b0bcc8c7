"""A demo story of its own: a pack replacement in a vehicle under a recall (issue 13, Vehicles and Recalls).

MOLIT registers a recall campaign for an LGES pack model; HMC installs an LGES pack into a car, then takes it
out under the recall (REMOVED, reason `recall`, naming the campaign) and installs a replacement pack into the
same VIN: the vehicle's change registration. The portal's vehicle page (`/ui/vehicles/<VIN>`) then shows the
old pack for its time and the new one now; MOLIT's recall view counts the campaign. Times are fixed relative
to the demo's anchor and event IDs are UUIDv5, so loading again changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from devtools.demo.plan import PackPlan

if TYPE_CHECKING:
    from devtools.demo.load import Api

NS = uuid.UUID("7d4b3c52-6f55-4d1e-9a0b-3c1f6a0e9b11")
VIN = "KMHK381G5TU900001"
OLD, NEW = "KR-LGES-DEMO-P-OLD", "KR-LGES-DEMO-P-NEW"
CAMPAIGN_ID = "MOLIT-DEMO-001"


def _event(battery: str, step: str, etype: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid5(NS, f"{battery}/{step}")),
        "battery_id": battery,
        "type": etype,
        "occurred_at": at.isoformat(),
        "location": {"site": "Hyundai service centre Ulsan", "region": "KR-31"},
        "data": data,
    }


async def pack_replacement_under_recall(api: Api, plans: list[PackPlan], start: datetime) -> dict[str, int]:
    """Register the campaign and the two packs, install, remove under the recall, replace. Returns counts."""
    template = next(b for p in plans if p.family.manufacturer == "LGES" for b in p.batteries if b["id"] == p.pack_id)
    model = template["model_id"]
    campaign = {
        "id": CAMPAIGN_ID,
        "title": "Demo: pack coolant leak risk (리콜 데모)",
        "maker": "LGES",
        "models": [model],
        "serial_ranges": [],
        "vin_ranges": [],
        "opened_on": (start + timedelta(days=60)).date().isoformat(),
    }
    r = await api.post("registry", "/v1/recalls", campaign, "MOLIT")
    if r.status_code not in (200, 201):
        raise RuntimeError(f"registering the demo recall: HTTP {r.status_code}: {r.text[:500]}")
    created = 0
    for i, bid in enumerate((OLD, NEW)):
        body = {k: v for k, v in template.items() if k != "_at"} | {
            "id": bid,
            "serial_number": f"DEMO-{i:04d}",
            "manufactured_at": (start + timedelta(days=1 + i)).isoformat(),
        }
        r = await api.post("registry", "/v1/batteries", body, "LGES")
        if r.status_code == 201:
            created += 1
        elif r.status_code != 409:
            raise RuntimeError(f"registering {bid}: HTTP {r.status_code}: {r.text[:500]}")

    def day(n: int) -> datetime:
        return start + timedelta(days=n)

    story = [
        ("LGES", _event(OLD, "to-hmc", "TRANSFERRED", day(10), {"to": "HMC"})),
        ("LGES", _event(NEW, "to-hmc", "TRANSFERRED", day(10), {"to": "HMC"})),
        ("HMC", _event(OLD, "installed", "INSTALLED", day(20), {"vin": VIN})),
        ("HMC", _event(OLD, "removed", "REMOVED", day(70), {"reason": "recall", "recall_campaign": CAMPAIGN_ID})),
        ("HMC", _event(NEW, "installed", "INSTALLED", day(71), {"vin": VIN})),
    ]
    for actor, ev in story:
        for attempt in range(120):  # the events service learns batteries and campaigns from the registry stream
            r = await api.post("events", "/v1/events", ev, actor)
            if r.status_code == 201:
                break
            code = r.json().get("code") if r.headers.get("content-type", "").endswith("json") else None
            if code not in ("unknown-battery", "unknown-recall-campaign") or attempt == 119:
                raise RuntimeError(f"{ev['type']} of {ev['battery_id']}: HTTP {r.status_code}: {r.text[:500]}")
            await asyncio.sleep(0.5)
    return {"story_batteries": created, "story_events": len(story)}
