"""The pure rules behind participants and aliases: the business registration number's check digit, GS1 check
digits and keys, and which roles may receive a battery in which state (TRANSFERRED)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.events.lifecycle import machine
from services.events.lifecycle.machine import BatteryState, Event, Poster, Receiver, Refusal, Transition
from services.events.lifecycle.rules import MAY_HOLD, may_hold
from services.registry.batteries.gs1 import Gs1Error, gtin_check_digit, parse_digital_link, parse_sgtin, valid_gtin
from shared.access import Role
from shared.contract.lifecycle import EventType, State
from shared.participants import business_number_check_digit, valid_business_number

# Published business registration numbers (사업자등록번호): Samsung Electronics, NAVER.
PUBLISHED = ["124-81-00998", "220-81-62517"]


@pytest.mark.parametrize("number", PUBLISHED)
def test_published_business_numbers_pass_their_check_digit(number: str) -> None:
    assert valid_business_number(number) and valid_business_number(number.replace("-", ""))


@pytest.mark.parametrize("number", PUBLISHED)
def test_every_other_last_digit_fails(number: str) -> None:
    digits = number.replace("-", "")
    for d in "0123456789":
        if d != digits[9]:
            assert not valid_business_number(digits[:9] + d)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "124810099",
        "12481009980",
        "12481009a8",
        "\uff11\uff12\uff14\uff18\uff11\uff10\uff10\uff19\uff19\uff18",
        "124 81 00998",
    ],
)
def test_malformed_business_numbers_fail(bad: str) -> None:
    assert not valid_business_number(bad)


def test_the_ninth_digit_carries_into_the_sum() -> None:
    # digit 9 = 9: 9*5 = 45 adds 45 and (45 // 10) = 4
    assert business_number_check_digit("124810099") == 8


@pytest.mark.parametrize("gtin", ["08801234567893", "4006381333931", "96385074", "036000291452", "10614141123459"])
def test_published_gtins_pass(gtin: str) -> None:
    assert valid_gtin(gtin)
    assert not valid_gtin(gtin[:-1] + str((int(gtin[-1]) + 1) % 10))


def test_gtin_check_digit_weights_three_then_one_from_the_right() -> None:
    assert gtin_check_digit("880123456789") == 3  # GTIN-13 8801234567893
    assert gtin_check_digit("0880123456789") == 3  # leading zeros change nothing


def test_sgtin_urn_makes_the_gtin_and_names_its_company_prefix() -> None:
    key = parse_sgtin("urn:epc:id:sgtin:0614141.112345.400")  # EPC Tag Data Standard example
    assert (key.gtin, key.serial, key.company_prefix) == ("10614141123459", "400", "0614141")
    assert key.lies_under("0614141") and not key.lies_under("061414")


@pytest.mark.parametrize(
    "urn",
    ["urn:epc:id:sgtin:0614141.11234.400", "urn:epc:id:sgtin:0614141112345.400", "urn:epc:id:sscc:0614141.1234567890"],
)
def test_malformed_sgtin_urns_fail(urn: str) -> None:
    with pytest.raises(Gs1Error):
        parse_sgtin(urn)


def test_digital_link_gtin_lies_under_a_leading_prefix_after_the_indicator() -> None:
    key = parse_digital_link("https://id.example.kr/01/08801234567893/21/P1?linkType=all")
    assert key.gtin == "08801234567893" and key.serial == "P1"
    assert key.lies_under_any(["8801234"]) and key.lies_under("88012345")
    assert not key.lies_under_any(["8809999", "0880"])
    with pytest.raises(Gs1Error) as bad:
        parse_digital_link("https://id.example.kr/01/08801234567890/21/P1")
    assert bad.value.rule == "gtin-check-digit"


def test_may_hold_covers_every_holding_role_and_no_other() -> None:
    assert set(MAY_HOLD) == {
        Role.manufacturer,
        Role.oem,
        Role.dismantler,
        Role.collector,
        Role.assessor,
        Role.remanufacturer,
        Role.repurposer,
        Role.recycler,
    }
    for role in (Role.inspector, Role.certifier, Role.ministry, Role.operator, Role.admin):
        assert not any(may_hold(role, s) for s in State)
    assert all(not may_hold(r, s) for r in Role for s in (State.recycled, State.disposed))
    assert may_hold(Role.collector, State.removed) and not may_hold(Role.collector, State.manufactured)


AT = datetime(2026, 1, 1, tzinfo=UTC)
STATE = BatteryState("B1", "pack", "M", "LGES", State.manufactured, "LGES", 1, "0" * 64, AT)
TRANSFER = Event(EventType.TRANSFERRED, "e1", "B1", datetime(2026, 2, 1, tzinfo=UTC), data={"to": "HMC"})
LGES = Poster("LGES", Role.manufacturer)


@pytest.mark.parametrize(
    ("receiver", "rule"),
    [
        (Receiver("HMC", None), "registered-participant"),
        (Receiver("HMC", Role.oem, active=False), "active-participant"),
        (Receiver("HMC", Role.collector, active=True), "may-hold"),
    ],
)
def test_the_machine_refuses_a_receiver_that_may_not_hold(receiver: Receiver, rule: str) -> None:
    out = machine.apply(STATE, LGES, TRANSFER, recorded_at=TRANSFER.occurred_at, receiver=receiver)
    assert isinstance(out, Refusal) and out.status == 422
    assert (out.errors[0]["field"], out.errors[0]["rule"]) == ("data.to", rule)


def test_the_machine_moves_custody_to_an_active_receiver_that_may_hold() -> None:
    out = machine.apply(
        STATE, LGES, TRANSFER, recorded_at=TRANSFER.occurred_at, receiver=Receiver("HMC", Role.oem, active=True)
    )
    assert isinstance(out, Transition) and out.state.custodian == "HMC"
