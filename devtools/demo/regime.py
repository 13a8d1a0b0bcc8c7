"""Demo steps of the Korean and EU regime (issue 13) that need the running services, not just the plan: a
recycler's implausible report, refused, then its honest one. (The plan itself walks a pre-removal grading and a
reused pack in service on an expired KC 10031 certificate: `plan.py`, `_pre_removal_grading` and `_certificate`.)"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from devtools.demo.catalogue import kind_specs
from devtools.demo.plan import DEMO_NS, SPAN_DAYS, PackPlan

if TYPE_CHECKING:
    from devtools.demo.load import Api

#: What the honest report says was recovered, per kg contained.
HONEST_YIELD = {"lithium": 0.72, "nickel": 0.95, "cobalt": 0.96, "manganese": 0.9, "copper": 0.9, "aluminium": 0.85}


def _report(pack: dict[str, Any], factor: dict[str, float], mass: float) -> dict[str, Any]:
    content = pack["materials_kg"]
    recovered = {m: round(content.get(m, 0.0) * f, 3) for m, f in factor.items() if content.get(m)}
    return {
        "process": "hydrometallurgy",
        "input_mass_kg": mass,
        "black_mass_kg": round(mass * 0.38, 2),
        "recovered_kg": recovered,
    }


async def implausible_report_refused(api: Api, plans: list[PackPlan], start: datetime) -> int:
    """For each pack its plan left at a recycler: first a report of three times the lithium the pack contained
    (the events service answers 422 `implausible-recovery`, naming the kg contained and recovered, and stores
    nothing), then the recycler's honest report (201). Idempotent: on a second run the honest report is a retry and
    the implausible one meets a recycled battery (409). Returns how many implausible reports were refused."""
    refused = 0
    at = (start + timedelta(days=SPAN_DAYS, minutes=1)).isoformat()
    for plan in plans:
        recycler = plan.awaiting_recycling
        if recycler is None:
            continue
        pack = plan.batteries[0]
        mass = float(kind_specs(plan.family, "pack")[1])
        inflated = _report(pack, {"lithium": 3.0}, mass)
        attempt = {
            "event_id": str(uuid.uuid5(DEMO_NS, f"implausible/{plan.pack_id}")),
            "battery_id": plan.pack_id,
            "type": "RECYCLED",
            "occurred_at": at,
            "data": inflated,
        }
        r = await api.post("events", "/v1/events", attempt, recycler)
        if r.status_code == 422 and r.json().get("code") == "implausible-recovery":
            refused += 1
        elif r.status_code != 409:  # 409: recycled already (a second run)
            raise RuntimeError(f"the implausible report for {plan.pack_id} was answered {r.status_code}: {r.text}")
        honest = {**attempt, "event_id": str(uuid.uuid5(DEMO_NS, f"honest/{plan.pack_id}"))}
        honest["data"] = _report(pack, HONEST_YIELD, mass)
        r = await api.post("events", "/v1/events", honest, recycler)
        if r.status_code != 201:
            raise RuntimeError(f"the honest report for {plan.pack_id} was answered {r.status_code}: {r.text}")
    return refused
