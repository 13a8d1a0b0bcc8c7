"""The access rules of shared.access, table-driven: role x relation -> level / allowed. Pure: no database."""

from __future__ import annotations

import pytest

from shared.access import (
    Level,
    Ministry,
    Relation,
    Role,
    may_look_up_by_vin,
    may_read_battery,
    may_read_capture_job,
    may_see_ministry_view,
    may_see_operations,
    only_handled_by,
    passport_level,
    sees_every_battery,
    sees_full_record,
)
from shared.auth import Principal

NONE = Relation()
HANDLED = Relation(handled=True)
MAKER = Relation(manufacturer=True, handled=True)
#: The registry's manufacturer without a handler row (the relation facts are independent).
MAKER_ONLY = Relation(manufacturer=True)
RELATIONS = {"none": NONE, "handled": HANDLED, "maker": MAKER, "maker_only": MAKER_ONLY}

LEGITIMATE = {Role.dismantler, Role.collector, Role.assessor, Role.repurposer, Role.remanufacturer, Role.recycler}
AUTHORITIES = {Role.ministry, Role.certifier, Role.admin}
EVERY_BATTERY = AUTHORITIES | {Role.operator}


def who(role: Role, org: str = "ORG") -> Principal:
    return Principal(org=org, role=role, ministry=Ministry.MOLIT if role is Role.ministry else None)


def expected_level(role: Role, relation: str) -> Level:
    if role is Role.manufacturer and relation in ("maker", "maker_only"):
        return Level.manufacturer
    if role in AUTHORITIES:
        return Level.authority
    if role in LEGITIMATE and relation in ("handled", "maker"):
        return Level.legitimate_interest
    return Level.public


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize("role", list(Role))
def test_passport_level_by_role_and_relation(role: Role, relation: str) -> None:
    assert passport_level(who(role), RELATIONS[relation]) is expected_level(role, relation)


@pytest.mark.parametrize("relation", RELATIONS.values())
def test_passport_without_a_token_is_public(relation: Relation) -> None:
    assert passport_level(None, relation) is Level.public


@pytest.mark.parametrize(
    ("role", "relation", "level"),
    [
        (Role.manufacturer, MAKER, Level.manufacturer),
        (Role.manufacturer, HANDLED, Level.public),  # a maker handling another maker's battery: no level
        (Role.oem, MAKER, Level.public),  # an OEM named as manufacturer is not the manufacturer role
        (Role.recycler, HANDLED, Level.legitimate_interest),
        (Role.recycler, NONE, Level.public),
        (Role.inspector, HANDLED, Level.public),  # inspecting is not a legitimate-interest role
        (Role.operator, MAKER, Level.public),  # operators read every history, not restricted passports
        (Role.certifier, NONE, Level.authority),
        (Role.ministry, NONE, Level.authority),
        (Role.admin, NONE, Level.authority),
    ],
)
def test_passport_level_examples(role: Role, relation: Relation, level: Level) -> None:
    assert passport_level(who(role), relation) is level


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize("role", list(Role))
def test_who_reads_a_battery(role: Role, relation: str) -> None:
    allowed = role in EVERY_BATTERY or RELATIONS[relation].handled
    assert may_read_battery(who(role), RELATIONS[relation]) is allowed


@pytest.mark.parametrize("role", list(Role))
def test_who_sees_every_battery_and_how_searches_narrow(role: Role) -> None:
    assert sees_every_battery(who(role)) is (role in EVERY_BATTERY)
    assert only_handled_by(who(role, "ORG")) == (None if role in EVERY_BATTERY else "ORG")


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize("role", list(Role))
def test_who_sees_the_registry_full_record(role: Role, relation: str) -> None:
    allowed = role in EVERY_BATTERY or RELATIONS[relation].manufacturer
    assert sees_full_record(who(role), RELATIONS[relation]) is allowed


def test_the_registry_full_record_needs_a_token() -> None:
    assert sees_full_record(None, MAKER) is False


@pytest.mark.parametrize("role", list(Role))
def test_who_reads_a_capture_job(role: Role) -> None:
    assert may_read_capture_job(who(role, "ORG"), "ORG") is True
    assert may_read_capture_job(who(role, "ORG"), "OTHER") is (role in {Role.ministry, Role.operator, Role.admin})


@pytest.mark.parametrize("ministry", list(Ministry))
@pytest.mark.parametrize("role", list(Role))
def test_who_sees_a_ministry_view(role: Role, ministry: Ministry) -> None:
    principal = who(role)
    allowed = role is Role.admin or (role is Role.ministry and principal.ministry is ministry)
    assert may_see_ministry_view(principal, ministry) is allowed


@pytest.mark.parametrize("role", list(Role))
def test_who_sees_the_operations_pages(role: Role) -> None:
    assert may_see_operations(who(role)) is (role in {Role.operator, Role.admin})


@pytest.mark.parametrize("role", list(Role))
def test_principal_is_authority_is_the_shared_rule(role: Role) -> None:
    assert who(role).is_authority is (role in AUTHORITIES)


def test_a_vin_look_up_needs_a_signed_in_participant() -> None:
    assert may_look_up_by_vin(None) is False
    assert all(may_look_up_by_vin(who(role)) for role in Role)
