"""The access rules of shared.access, table-driven: role x relation -> level / allowed. Pure: no database."""

from __future__ import annotations

import pytest

from shared.access import (
    COMMERCIAL_FACTS,
    Custody,
    FieldGroup,
    Level,
    Ministry,
    Relation,
    Role,
    field_groups,
    may_look_up_by_vin,
    may_read_battery,
    may_read_capture_job,
    may_see_ministry_view,
    may_see_operations,
    only_handled_by,
    passport_level,
    sees_every_battery,
    sees_full_record,
    trim_commercial,
)
from shared.auth import Principal

NONE = Relation()
MAKER = Relation(is_manufacturer=True, custody=Custody.past)
#: The registry's manufacturer with no custody on the ledger (the relation facts are independent).
MAKER_ONLY = Relation(is_manufacturer=True)
CUSTODIAN_NOW = Relation(custody=Custody.current)
CUSTODIAN_BEFORE = Relation(custody=Custody.past)
CONSIGNEE = Relation(consigned=True)
CERTIFIER = Relation(certified=True)
#: Posted an INCIDENT or INSPECTED: the ledger proves no relation (the caller finds none of the facts).
POSTER_ONLY = Relation()
RELATIONS = {
    "none": NONE,
    "maker": MAKER,
    "maker_only": MAKER_ONLY,
    "custodian_now": CUSTODIAN_NOW,
    "custodian_before": CUSTODIAN_BEFORE,
    "consignee": CONSIGNEE,
    "certifier": CERTIFIER,
    "poster_only": POSTER_ONLY,
}
HANDLES = {"maker", "custodian_now", "custodian_before", "consignee"}

LEGITIMATE = {Role.dismantler, Role.collector, Role.assessor, Role.repurposer, Role.remanufacturer, Role.recycler}
AUTHORITIES = {Role.ministry, Role.certifier, Role.admin}
EVERY_BATTERY = {Role.ministry, Role.admin, Role.operator}
ALL_GROUPS = set(FieldGroup)


def who(role: Role, org: str = "ORG") -> Principal:
    return Principal(org=org, role=role, ministry=Ministry.MOLIT if role is Role.ministry else None)


def expected_level(role: Role, relation: str) -> Level:
    if role is Role.manufacturer and relation in ("maker", "maker_only"):
        return Level.manufacturer
    if role in (Role.ministry, Role.admin):
        return Level.authority
    if role in LEGITIMATE and relation in HANDLES:
        return Level.legitimate_interest
    if role is Role.certifier and relation == "certifier":
        return Level.legitimate_interest
    return Level.public


def expected_groups(role: Role, relation: str) -> set[FieldGroup]:
    if role in EVERY_BATTERY or relation in ("maker", "maker_only"):
        return ALL_GROUPS
    if relation in HANDLES:
        return {FieldGroup.public, FieldGroup.certification, FieldGroup.condition}
    if role is Role.certifier and relation == "certifier":
        return {FieldGroup.public, FieldGroup.certification}
    return {FieldGroup.public}


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize("role", list(Role))
def test_passport_level_by_role_and_relation(role: Role, relation: str) -> None:
    assert passport_level(who(role), RELATIONS[relation]) is expected_level(role, relation)


@pytest.mark.parametrize("relation", RELATIONS.values())
def test_passport_without_a_token_is_public(relation: Relation) -> None:
    assert passport_level(None, relation) is Level.public
    assert field_groups(None, relation) == {FieldGroup.public}


@pytest.mark.parametrize(
    ("role", "relation", "level"),
    [
        (Role.manufacturer, MAKER, Level.manufacturer),
        (Role.manufacturer, CUSTODIAN_NOW, Level.public),  # a maker holding another maker's battery: no level
        (Role.oem, MAKER, Level.public),  # an OEM named as manufacturer is not the manufacturer role
        (Role.recycler, CUSTODIAN_NOW, Level.legitimate_interest),
        (Role.recycler, CUSTODIAN_BEFORE, Level.legitimate_interest),  # a past custodian keeps its level
        (Role.collector, CONSIGNEE, Level.legitimate_interest),
        (Role.recycler, NONE, Level.public),
        (Role.inspector, CUSTODIAN_NOW, Level.public),  # inspecting is not a legitimate-interest role
        (Role.operator, MAKER, Level.public),  # operators read every history, not restricted passports
        (Role.certifier, NONE, Level.public),  # certifiers: only what they certified
        (Role.certifier, CERTIFIER, Level.legitimate_interest),  # condition and safety, no material masses
        (Role.collector, CERTIFIER, Level.public),  # `certified` counts for certifiers only
        (Role.ministry, NONE, Level.authority),
        (Role.admin, NONE, Level.authority),
    ],
)
def test_passport_level_examples(role: Role, relation: Relation, level: Level) -> None:
    assert passport_level(who(role), relation) is level


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize("role", list(Role))
def test_what_of_a_battery_each_role_and_relation_reads(role: Role, relation: str) -> None:
    groups = field_groups(who(role), RELATIONS[relation])
    assert groups == expected_groups(role, relation)
    assert may_read_battery(who(role), RELATIONS[relation]) is (groups != {FieldGroup.public})
    assert sees_full_record(who(role), RELATIONS[relation]) is (FieldGroup.commercial in groups)


def test_posting_proves_nothing_and_custody_or_consignment_is_handling() -> None:
    assert not POSTER_ONLY.handles and not CERTIFIER.handles and not MAKER_ONLY.handles
    assert CUSTODIAN_NOW.handles and CUSTODIAN_BEFORE.handles and CONSIGNEE.handles
    assert not may_read_battery(who(Role.inspector), POSTER_ONLY)


@pytest.mark.parametrize("role", list(Role))
def test_who_sees_every_battery_and_how_searches_narrow(role: Role) -> None:
    assert sees_every_battery(who(role)) is (role in EVERY_BATTERY)
    assert only_handled_by(who(role, "ORG")) == (None if role in EVERY_BATTERY else "ORG")


def test_the_registry_full_record_needs_a_token() -> None:
    assert sees_full_record(None, MAKER) is False


def test_commercial_facts_are_trimmed_unless_the_group_is_held() -> None:
    facts = {"serial_number": "SN1", "materials_kg": {"lithium": 8.0}, "suppliers": ["X"], "chemistry": "NCM"}
    assert trim_commercial(facts, frozenset({FieldGroup.public, FieldGroup.condition})) == {"chemistry": "NCM"}
    assert trim_commercial(facts, frozenset(FieldGroup)) == facts
    assert COMMERCIAL_FACTS == {"serial_number", "materials_kg", "suppliers"}


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
