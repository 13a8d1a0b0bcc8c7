"""The portal's pure projection: a battery's timeline folded into its head, its cell in the counts, and
the contained-materials flow (no database, no broker)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from services.portal.ingest.projection import (
    Battery,
    Facts,
    Flows,
    Head,
    TimelineEvent,
    contained_flows,
    count_key,
    fold,
)


def ev(seq: int, kind: str, state: str, when: str, data: dict[str, Any] | None = None, **kw: Any) -> TimelineEvent:
    at = datetime.fromisoformat(when).replace(tzinfo=UTC)
    return TimelineEvent(
        sequence=seq,
        event_id=f"e{seq}",
        type=kind,
        occurred_at=at,
        recorded_at=at,
        state_after=state,
        custodian_after=kw.pop("custodian", "LGES"),
        location=kw.pop("location", {}),
        data=data or {},
    )


TIMELINE = [
    ev(1, "MANUFACTURED", "manufactured", "2026-01-10T00:00:00"),
    ev(2, "INSTALLED", "in_service", "2026-02-01T00:00:00", {"vin": "KMHEM41AP6A000009"}, location={"region": "KR-11"}),
    ev(3, "INSPECTED", "in_service", "2026-03-01T00:00:00", {"soh_pct": 91.5, "cycle_count": 300}),
    ev(4, "REPURPOSED", "repurposed", "2026-04-01T00:00:00", {"new_application": "ESS", "rated_capacity": 40}),
    ev(5, "SAFETY_INSPECTED", "repurposed", "2026-04-15T00:00:00", {"result": "pass", "body": "KTL"}),
]


def test_fold_of_no_events_is_the_empty_head() -> None:
    assert fold([]) == Head()


def test_the_highest_sequence_decides_whatever_the_delivery_order() -> None:
    assert fold(list(reversed(TIMELINE))) == fold(TIMELINE)
    head = fold(TIMELINE)
    assert (head.sequence, head.state, head.last_event_id) == (5, "repurposed", "e5")
    assert head.state_since == TIMELINE[3].occurred_at  # unchanged by the same-state event after it


def test_a_reuse_starts_a_new_life_out_of_service() -> None:
    head = fold(TIMELINE[:4])
    assert (head.life, head.status, head.installed_at, head.safety) == (1, "repurposed", None, None)
    assert (head.vin, head.soh_pct, head.cycle_count, head.region) == ("KMHEM41AP6A000009", 91.5, 300, "KR-11")
    assert fold(TIMELINE).safety == "pass"


def test_recycling_makes_waste_in_the_local_month() -> None:
    recycled = ev(6, "RECYCLED", "recycled", "2026-04-30T16:00:00", location={"region": "KR-41"})
    head = fold([*TIMELINE, recycled])
    assert (head.status, head.recycled_month, head.recycled_region) == ("waste", date(2026, 5, 1), "KR-41")


def test_count_key_waits_for_the_first_lifecycle_event() -> None:
    registered = Battery("B1", facts=Facts(registered=True, manufacturer="LGES", chemistry="NCM", kind="pack"))
    assert count_key(registered) is None
    reused = Battery("B1", facts=registered.facts, head=fold(TIMELINE[:4]))
    assert count_key(reused) == ("repurposed", "KR-11", "LGES", "NCM", "pack", "repurposed", "pending", "")


def test_contained_materials_count_once_registered_and_recycled() -> None:
    recycled = fold([*TIMELINE, ev(6, "RECYCLED", "recycled", "2026-05-02T00:00:00")])
    facts = Facts(registered=True, materials_kg={"lithium": 2.0, "nickel": 5.0})
    flows = Flows()
    assert not contained_flows(flows, Battery("B1", head=recycled))  # not registered yet
    assert not contained_flows(flows, Battery("B1", facts=facts, head=fold(TIMELINE)))  # not recycled yet
    assert contained_flows(flows, Battery("B1", facts=facts, head=recycled))
    assert not contained_flows(flows, Battery("B1", facts=facts, head=recycled, contained_counted=True))
    [(key, (n, amounts))] = flows.rows.items()
    assert key[0] == "recycled_contained" and n == 1
    assert amounts == {"lithium": 2.0, "nickel": 5.0, "cobalt": 0.0, "manganese": 0.0}
