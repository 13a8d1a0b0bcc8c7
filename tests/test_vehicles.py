"""Vehicles (issue 13 item 1): installation is a relation battery ↔ VIN with a start (INSTALLED) and an end
(REMOVED); a pack replacement is the change registration; `GET /v1/vehicles/{vin}` answers the batteries now
or `?at=` a past moment, and every VIN look-up follows the relation at the asked time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.portal.vehicles import relation
from shared.access import Role, may_read_vehicle, sees_every_vehicle
from shared.auth import Ministry, Principal
from tests.conftest import eventually
from tests.events_helpers import stack
from tests.portal_helpers import portal_app, portal_settings

VIN = "KMHEM41AP6A654321"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def ev(seq: int, etype: str, state: str, when: datetime, actor: str = "HMC", **data: Any) -> dict[str, Any]:
    return {
        "sequence": seq,
        "event_id": f"00000000-0000-0000-0000-{seq:012d}",
        "type": etype,
        "occurred_at": when,
        "actor": actor,
        "state_after": state,
        "custodian_after": actor,
        "data": data,
    }


# ---- the relation, pure ----
def test_installed_starts_and_removed_ends_the_relation() -> None:
    events = [
        ev(1, "MANUFACTURED", "manufactured", day(0), "LGES"),
        ev(2, "INSTALLED", "in_service", day(10), vin="P-VIN"),
        ev(3, "INSPECTED", "in_service", day(20), "KOTSA", soh_pct=90, cycle_count=10),
        ev(4, "REMOVED", "removed", day(30), "DISM-1", reason="replacement"),
    ]
    (i,) = relation.installations("A", events)
    assert (i.vin, i.installed_by, i.since, i.until, i.removal_reason) == (
        "P-VIN",
        "HMC",
        day(10),
        day(30),
        "replacement",
    )
    assert i.holds_at(day(10)) and i.holds_at(day(29)) and not i.holds_at(day(30)) and not i.holds_at(day(9))


def test_a_reinstalled_battery_has_two_relations_and_an_open_one_holds_until_now() -> None:
    events = [
        ev(2, "INSTALLED", "in_service", day(1), vin="V1"),
        ev(3, "REMOVED", "removed", day(2), reason="accident"),
        ev(4, "GRADED", "graded", day(3), "ASSESS-1", grade="remanufacture", soh_pct=70),
        ev(5, "REMANUFACTURED", "remanufactured", day(4), "REMAN-1"),
        ev(6, "INSTALLED", "in_service", day(5), vin="V2"),
    ]
    first, second = relation.installations("A", events)
    assert (first.vin, first.until) == ("V1", day(2)) and (second.vin, second.until) == ("V2", None)


def test_a_final_event_while_installed_ends_the_relation() -> None:
    events = [ev(2, "INSTALLED", "in_service", day(1), vin="V"), ev(3, "DISPOSED", "disposed", day(2), "COL-1")]
    (i,) = relation.installations("A", events)
    assert (i.until, i.removal_reason) == (day(2), "disposed")


def test_an_installation_declared_in_error_counts_for_nothing() -> None:
    events = [
        ev(2, "INSTALLED", "in_service", day(1), vin="V"),
        ev(3, "ERROR_DECLARED", "in_service", day(2), declared_event_id=ev(2, "", "", day(0))["event_id"]),
    ]
    assert relation.installations("A", events) == []


def test_a_pack_replacement_answers_the_old_pack_for_its_time_and_the_new_one_after() -> None:
    timelines = {
        "OLD": [
            ev(2, "INSTALLED", "in_service", day(1), vin="V"),
            ev(3, "REMOVED", "removed", day(10), reason="replacement"),
        ],
        "NEW": [ev(2, "INSTALLED", "in_service", day(11), vin="V")],
        "ELSEWHERE": [ev(2, "INSTALLED", "in_service", day(1), vin="W")],
    }
    found = relation.of_vehicle("V", timelines)
    assert [i.battery_id for i in found] == ["OLD", "NEW"]
    assert relation.answer_at(found, day(5)) == "OLD"
    assert relation.installed_at(found, day(10)) == []  # out, not yet replaced: the look-up answers the last one
    assert relation.answer_at(found, day(10)) == "OLD"
    assert relation.answer_at(found, day(12)) == "NEW"
    assert relation.answer_at(found, day(0)) is None


def test_a_vehicle_holds_several_batteries_and_a_later_one_never_displaces_the_first() -> None:
    timelines = {
        "ZZ-FIRST": [ev(2, "INSTALLED", "in_service", day(1), vin="V")],
        "AA-LATER": [ev(2, "INSTALLED", "in_service", day(2), vin="V", actor="KIA")],
    }
    found = relation.of_vehicle("V", timelines)
    assert sorted(i.battery_id for i in relation.installed_at(found, day(3))) == ["AA-LATER", "ZZ-FIRST"]
    assert relation.answer_at(found, day(3)) == "ZZ-FIRST"


# ---- who reads a vehicle (shared.access), pure ----
def who(role: Role, org: str = "ORG") -> Principal:
    return Principal(org=org, role=role, ministry=Ministry.MOLIT if role is Role.ministry else None)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("installed_one", "held_one"), [(False, False), (True, False), (False, True)])
def test_a_vehicle_is_read_by_authorities_and_by_the_installer_and_custodians_of_its_batteries(
    role: Role, installed_one: bool, held_one: bool
) -> None:
    authority = role in (Role.ministry, Role.admin)
    assert sees_every_vehicle(who(role)) is authority
    assert may_read_vehicle(who(role), installed_one=installed_one, held_one=held_one) is (
        authority or installed_one or held_one
    )


def test_only_its_batteries_concern_an_installer_that_is_no_authority() -> None:
    timelines = {
        "MINE": [ev(2, "INSTALLED", "in_service", day(1), vin="V", actor="KIA")],
        "THEIRS": [ev(2, "INSTALLED", "in_service", day(1), vin="V")],
    }
    found = relation.of_vehicle("V", timelines)
    custodians = {bid: {e["custodian_after"] for e in t} for bid, t in timelines.items()}
    assert [i.battery_id for i in relation.concerning(found, "KIA", custodians)] == ["MINE"]


# ---- end to end: events service → Kafka → portal ----
async def test_pack_replacement_is_the_change_registration_and_look_ups_follow_the_relation(
    make_settings, token
) -> None:
    async with stack(make_settings, token, streams=True) as s, portal_app(portal_settings(make_settings)) as portal:
        old, new = await s.battery(), await s.battery()
        for b in (old, new):
            await s.transfer_to(b, "oem")
        await s.ok(old, "INSTALLED", "oem", data={"vin": VIN})
        t_old = datetime.now(UTC)
        await s.ok(old, "REMOVED", "oem", data={"reason": "replacement"})
        t_gap = datetime.now(UTC)
        await s.ok(new, "INSTALLED", "oem", data={"vin": VIN})
        molit = s.as_role("ministry")

        async def replaced() -> Any:
            r = await portal.get(f"/v1/vehicles/{VIN}", headers=molit)
            return r.json() if r.status_code == 200 and len(r.json()["history"]) == 2 else None

        v = await eventually(replaced, timeout_s=30)
        assert v["vin"] == VIN and v["batteries"] == [new]
        assert [(h["battery_id"], h["until"] is None, h["removal_reason"]) for h in v["history"]] == [
            (old, False, "replacement"),
            (new, True, None),
        ]
        past = (await portal.get(f"/v1/vehicles/{VIN}", params={"at": t_old.isoformat()}, headers=molit)).json()
        assert past["batteries"] == [old]
        gap = (await portal.get(f"/v1/vehicles/{VIN}", params={"at": t_gap.isoformat()}, headers=molit)).json()
        assert gap["batteries"] == []
        # the lower-case VIN a person typed is the same vehicle; the pseudonym finds it too
        assert (await portal.get(f"/v1/vehicles/{VIN.lower()}", headers=molit)).json()["batteries"] == [new]
        assert (await portal.get(f"/v1/vehicles/{v['vin_pseudonym']}", headers=molit)).json()["batteries"] == [new]

        # the history resolver: the VIN answers the new pack now and the old pack for its time
        now = (await portal.get("/v1/batteries/-/history", params={"alias": VIN}, headers=molit)).json()
        assert now["battery_id"] == new and now["current"]["vin"] == VIN
        then = await portal.get(
            "/v1/batteries/-/history", params={"alias": VIN, "at": t_old.isoformat()}, headers=molit
        )
        assert then.json()["battery_id"] == old
        # search by VIN: both packs that were ever in the vehicle
        found = (await portal.get("/v1/batteries", params={"vin": VIN}, headers=molit)).json()
        assert sorted(b["id"] for b in found["items"]) == sorted([old, new])
        assert {b["vin"] for b in found["items"]} == {VIN}

        # the installing OEM reads the vehicle; the dismantler-less removal made the OEM custodian as well
        oem = (await portal.get(f"/v1/vehicles/{VIN}", headers=s.as_role("oem"))).json()
        assert [h["battery_id"] for h in oem["history"]] == [old, new]


async def test_the_demo_walks_through_a_pack_replacement_under_a_recall(make_settings, token, infra) -> None:
    from devtools.demo import load_demo_async
    from devtools.demo.vehicles import CAMPAIGN_ID, NEW, OLD
    from devtools.demo.vehicles import VIN as DEMO_VIN

    key = infra.public_key.with_name("jwt-private.pem")
    async with (
        stack(make_settings, token, streams=True, manufacturer_participant=False) as s,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        clients = {"registry": s.registry, "events": s.events, "portal": portal}
        counts = await load_demo_async({}, key, packs=8, seed=7, clients=clients, quiet=True)
        assert (counts["story_batteries"], counts["story_events"]) == (2, 5)
        molit = token("MOLIT", "ministry", ministry="MOLIT")
        v = (await portal.get(f"/v1/vehicles/{DEMO_VIN}", headers=molit)).json()
        assert v["batteries"] == [NEW]
        assert [(h["battery_id"], h["removal_reason"], h["recall_campaign"]) for h in v["history"]] == [
            (OLD, "recall", CAMPAIGN_ID),
            (NEW, None, None),
        ]
        recalls = (await portal.get("/v1/views/molit/recalls", headers=molit)).json()["campaigns"]
        demo = next(c for c in recalls if c["id"] == CAMPAIGN_ID)
        assert demo["removed"] == 1 and demo["affected"] >= 2 and demo["remaining"] == demo["affected"] - 1
        again = await load_demo_async({}, key, packs=8, seed=7, clients=clients, quiet=True)
        assert again["story_batteries"] == 0
        assert (await portal.get(f"/v1/vehicles/{DEMO_VIN}", headers=molit)).json()["history"] == v["history"]
