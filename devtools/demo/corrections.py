"""The demo's corrections (issue 13): a mistaken RECYCLED declared in error, and an amendment of registry facts.

- A recycler takes over a pack waiting at a collection centre (TRANSFERRED by the centre), posts RECYCLED for it by
  mistake (the pack it meant is another one), and declares it in error the same day, within its 30-day window: the
  pack is back to `collected` at the recycler, every ministry figure as if the RECYCLED never happened, and the
  history shows it struck through with the declaration.
- A manufacturer amends a pack's manufacturing site and carbon footprint (entered from another plant's
  declaration): the registration stays as it was, the amendment records who, when, why, before and after, and the
  history and passport show it.

Idempotent like the rest of the demo: the events' IDs are UUIDv5 of the battery and step and their times are fixed
from the demo's start (a second run re-posts them as harmless retries); an amendment that would change nothing
(422 `changes-something`: a previous run made it) is skipped."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from devtools.demo.plan import DEMO_NS, SPAN_DAYS, PackPlan

if TYPE_CHECKING:  # load imports this module; the Api and its errors are its own
    from devtools.demo.load import Api

RECYCLER = "REC-SUNGEEL"
AMENDED = {"manufacturing_site": "Ochang plant 2 (corrected)", "carbon_footprint_kg_co2e_per_kwh": 58.2}
AMEND_REASON = "Site and carbon footprint were entered from another plant's declaration (EU 2023/1542 Art. 7)."


class StoryError(RuntimeError):
    """A step of a story was refused (the demo stops with the service's answer)."""


def _id(battery_id: str, step: str) -> str:
    return str(uuid.uuid5(DEMO_NS, f"{battery_id}/correction/{step}"))


def waiting_at_a_centre(plans: list[PackPlan]) -> PackPlan | None:
    """A pack whose story ends collected at a centre (a backlog one), the later the better: it is the one the
    recycler mistakes for the pack it recycled."""
    for plan in reversed(plans):
        last = [e for e in plan.events if e.battery_id == plan.pack_id]
        if last and last[-1].type == "COLLECTED":
            return plan
    return None


async def mistaken_recycling(api: Api, plans: list[PackPlan], start: datetime) -> str | None:
    """The mistaken RECYCLED and its correction; the pack's ID (None: no pack waits at a centre)."""
    plan = waiting_at_a_centre(plans)
    if plan is None:
        return None
    pack = plan.pack_id
    collected = [e for e in plan.events if e.battery_id == pack][-1]
    now = start + timedelta(days=SPAN_DAYS)  # the demo's "now" (the first run's clock): after every planned event
    recycled_id = _id(pack, "recycled")
    steps: list[tuple[str, dict[str, Any]]] = [
        (
            collected.actor,
            {
                "event_id": _id(pack, "transferred"),
                "type": "TRANSFERRED",
                "occurred_at": (now - timedelta(minutes=9)).isoformat(),
                "data": {"to": RECYCLER},
            },
        ),
        (
            RECYCLER,
            {
                "event_id": recycled_id,
                "type": "RECYCLED",
                "occurred_at": (now - timedelta(minutes=8)).isoformat(),
                "location": {"region": "KR-45", "site": "Gunsan recycling plant"},
                "data": {
                    "process": "hydrometallurgy",
                    "input_mass_kg": 420.0,
                    "black_mass_kg": 160.0,
                    "recovered_kg": {"lithium": 4.8, "nickel": 28.0, "cobalt": 3.5, "manganese": 2.9},
                },
            },
        ),
        (
            RECYCLER,
            {
                "event_id": _id(pack, "declared"),
                "type": "ERROR_DECLARED",
                "occurred_at": (now - timedelta(minutes=7)).isoformat(),
                "location": {"region": "KR-45", "site": "Gunsan recycling plant"},
                "data": {"declared_event_id": recycled_id, "reason": "incorrect_data"},
            },
        ),
    ]
    for actor, body in steps:
        r = await api.post("events", "/v1/events", {"battery_id": pack, **body}, actor)
        if r.status_code != 201:
            raise StoryError(f"correction story {body['type']} for {pack}: HTTP {r.status_code}: {r.text[:2000]}")
    return pack


async def amendment(api: Api, plans: list[PackPlan]) -> str | None:
    """The manufacturer's amendment of a pack's site and carbon footprint; the pack's ID. Not the first pack: the
    demo's clock is read back from its manufacturing date."""
    if len(plans) < 2:
        return None
    plan = plans[1]
    pack = plan.pack_id
    body = {"changes": AMENDED, "reason": AMEND_REASON}
    r = await api.post("registry", f"/v1/batteries/{pack}/amendments", body, plan.family.manufacturer)
    rules = {e.get("rule") for e in r.json().get("errors", [])} if r.status_code == 422 else set()
    if r.status_code != 201 and rules != {"changes-something"}:
        raise StoryError(f"amendment of {pack}: HTTP {r.status_code}: {r.text[:2000]}")
    return pack


async def load_corrections(api: Api, plans: list[PackPlan], start: datetime) -> dict[str, str | None]:
    """Both stories; which packs they concern."""
    return {"corrected_pack": await mistaken_recycling(api, plans, start), "amended_pack": await amendment(api, plans)}
