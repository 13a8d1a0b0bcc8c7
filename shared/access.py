"""Who may see what (DOMAIN.md, Access), written once: the roles, the four EU access levels and every
read-access decision the services make.

Pure: no I/O. A caller proves the relation between the principal's organisation and one battery from its
own data (the events service from its ledger, the portal from its read model) and passes it in as a
`Relation`; the decision is made here.

- Every battery: ministries, admin and the platform's operators (their reads are audited) read every
  history, timeline and EPCIS event, and list every battery.
- Any other participant reads a battery only through a relation the ledger proves (`Relation`): its
  manufacturer; its current or past custodian; the participant an event consigns it to (`data.consignee`);
  a certifier, the batteries it posted SAFETY_INSPECTED for (their certification data only). Posting an
  INCIDENT or INSPECTED proves nothing. Without a token: 401.
- What of a battery, by field group (`field_groups`): commercial facts (serial number, material masses,
  suppliers) for its manufacturer and those who see every battery only; custodians and consignees all
  the rest; certifiers the certification data; anyone else the public fields.
- Passports, by EU access level: `manufacturer` (the battery's own maker) > `authority` (ministry, admin)
  > `legitimate_interest` (dismantler, collector, assessor, repurposer, remanufacturer, recycler that
  holds, held or is consigned this battery; a certifier that certified it) > `public` (anyone, no token).
- The registry's full record (serial number, material content): the commercial field group.
- Ministry views: that ministry's token only (and admin). The operations pages: operators (and admin).
- EPCIS capture jobs: their poster, ministries, operators and admin.
- A vehicle's batteries (a VIN look-up in the UI): signed-in participants only (VINs are personal data).
- A vehicle (`GET /v1/vehicles/{vin}`, its batteries and their history, its plain VIN): MOLIT, the other
  ministries and admin, all of it; the OEM that installed one of its batteries and a current or past
  custodian of one, the installations of those batteries only (`may_read_vehicle`). Anyone else learns
  nothing, not even whether the VIN is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # shared.auth imports this module; a principal is only read here
    from shared.auth import Principal


class Role(StrEnum):
    manufacturer = "manufacturer"
    oem = "oem"
    inspector = "inspector"
    dismantler = "dismantler"
    collector = "collector"
    assessor = "assessor"
    remanufacturer = "remanufacturer"
    repurposer = "repurposer"
    certifier = "certifier"
    recycler = "recycler"
    ministry = "ministry"
    operator = "operator"
    admin = "admin"


class Ministry(StrEnum):
    MOTIE = "MOTIE"
    MOLIT = "MOLIT"
    MCEE = "MCEE"
    KATS = "KATS"


class Level(StrEnum):
    """The EU passport's access levels, lowest first."""

    public = "public"
    legitimate_interest = "legitimate_interest"
    authority = "authority"
    manufacturer = "manufacturer"


#: Roles that handle batteries physically: EU "legitimate interest" for the batteries they handled.
LEGITIMATE_INTEREST = frozenset(
    {Role.dismantler, Role.collector, Role.assessor, Role.repurposer, Role.remanufacturer, Role.recycler}
)
AUTHORITY = frozenset({Role.ministry, Role.certifier, Role.admin})
#: Who reads every battery: ministries, admin, and the platform's operators (certifiers: what they certified).
SEES_EVERY_BATTERY = frozenset({Role.ministry, Role.admin, Role.operator})
#: Who reads the authority-level passport of every battery (certifiers only those they certified).
PASSPORT_AUTHORITY = frozenset({Role.ministry, Role.admin})
#: Who reads every EPCIS capture job, not only their own (certifiers do not: they certify, they capture none).
SEES_EVERY_CAPTURE_JOB = frozenset({Role.ministry, Role.operator, Role.admin})


class Custody(StrEnum):
    """Whether the organisation holds the battery, held it once, or never did."""

    none = "none"
    past = "past"
    current = "current"


class FieldGroup(StrEnum):
    """What a battery's data is made of, as far as reading it goes.

    - `public`: what anyone holding the battery's ID sees (the registry's public fields, the public passport).
    - `certification`: its safety inspections (SAFETY_INSPECTED) and safety status.
    - `condition`: its state, custody, health, timeline and EPCIS events (everything non-public but commercial).
    - `commercial`: serial number, material masses, suppliers: the manufacturer and authorities only.
    """

    public = "public"
    certification = "certification"
    condition = "condition"
    commercial = "commercial"


#: The facts of a battery in the `commercial` group, by their field names in every answer that holds them.
COMMERCIAL_FACTS = frozenset({"serial_number", "materials_kg", "suppliers"})
#: Lifecycle events that belong to the `certification` group.
CERTIFICATION_EVENTS = frozenset({"SAFETY_INSPECTED"})


@dataclass(frozen=True, slots=True)
class Relation:
    """What the caller proved, from the ledger (or the portal's copy of it), about the principal's
    organisation and one battery. Posting an event (INCIDENT, INSPECTED) proves none of these."""

    #: The organisation is the battery's registered manufacturer.
    is_manufacturer: bool = False
    #: The organisation is its custodian now (`current`), was one before (`past`), or never (`none`).
    custody: Custody = Custody.none
    #: An event names the organisation as the battery's consignee (`data.consignee`).
    consigned: bool = False
    #: The organisation posted a SAFETY_INSPECTED for it.
    certified: bool = False

    @property
    def handles(self) -> bool:
        """Custody now or before, or consignment: the relation DOMAIN.md calls "handle"."""
        return self.custody is not Custody.none or self.consigned


EVERY_GROUP = frozenset(FieldGroup)
_HANDLER_GROUPS = frozenset({FieldGroup.public, FieldGroup.certification, FieldGroup.condition})
_CERTIFIER_GROUPS = frozenset({FieldGroup.public, FieldGroup.certification})
_PUBLIC = frozenset({FieldGroup.public})


def is_authority(principal: Principal) -> bool:
    return principal.role in AUTHORITY


def sees_every_battery(principal: Principal) -> bool:
    return principal.role in SEES_EVERY_BATTERY


def field_groups(principal: Principal | None, relation: Relation) -> frozenset[FieldGroup]:
    """What of one battery the principal may read: everything for those who see every battery and for its
    manufacturer; all but commercial facts for its current and past custodians and its consignee; the
    certification data for a certifier that certified it; else the public fields."""
    if principal is None:
        return _PUBLIC
    if sees_every_battery(principal) or relation.is_manufacturer:
        return EVERY_GROUP
    if relation.handles:
        return _HANDLER_GROUPS
    if principal.role is Role.certifier and relation.certified:
        return _CERTIFIER_GROUPS
    return _PUBLIC


def may_read_battery(principal: Principal, relation: Relation) -> bool:
    """A battery's history, ledger timeline and state, and the EPCIS events about it (what of them:
    `field_groups`)."""
    return field_groups(principal, relation) != _PUBLIC


def passport_level(principal: Principal | None, relation: Relation) -> Level:
    """`manufacturer` for its maker; `authority` for ministries and admin (material masses, custody,
    incidents); `legitimate_interest` (condition, safety; no commercial facts) for a legitimate-interest
    role that holds, held or is consigned the battery, and for a certifier that certified it."""
    if principal is None:
        return Level.public
    if principal.role is Role.manufacturer and relation.is_manufacturer:
        return Level.manufacturer
    if principal.role in PASSPORT_AUTHORITY:
        return Level.authority
    if principal.role in LEGITIMATE_INTEREST and relation.handles:
        return Level.legitimate_interest
    if principal.role is Role.certifier and relation.certified:
        return Level.legitimate_interest
    return Level.public


def sees_full_record(principal: Principal | None, relation: Relation) -> bool:
    """The registry's whole record of a battery, commercial facts included; else its public fields."""
    return FieldGroup.commercial in field_groups(principal, relation)


def trim_commercial(facts: Mapping[str, Any], groups: frozenset[FieldGroup]) -> dict[str, Any]:
    """`facts` without its commercial facts unless `groups` holds them."""
    if FieldGroup.commercial in groups:
        return dict(facts)
    return {k: v for k, v in facts.items() if k not in COMMERCIAL_FACTS}


def may_read_capture_job(principal: Principal, posted_by: str) -> bool:
    return principal.org == posted_by or principal.role in SEES_EVERY_CAPTURE_JOB


def may_see_ministry_view(principal: Principal, ministry: Ministry) -> bool:
    return principal.role is Role.admin or (principal.role is Role.ministry and principal.ministry is ministry)


def may_see_operations(principal: Principal) -> bool:
    return principal.role in (Role.operator, Role.admin)


def may_look_up_by_vin(principal: Principal | None) -> bool:
    return principal is not None


def sees_every_vehicle(principal: Principal) -> bool:
    """Every vehicle and every battery ever installed in it: ministries (MOLIT first) and admin. Operators
    run the platform; they do not read personal data."""
    return principal.role in PASSPORT_AUTHORITY


def may_read_vehicle(principal: Principal, *, installed_one: bool, held_one: bool) -> bool:
    """A vehicle, its VIN and (`sees_every_vehicle`: all of them, else the ones concerning the principal) its
    batteries' installations: authorities; the OEM that installed one of its batteries (`installed_one`); a
    current or past custodian of one of them (`held_one`)."""
    return sees_every_vehicle(principal) or installed_one or held_one


def only_handled_by(principal: Principal) -> str | None:
    """The organisation a search over batteries is narrowed to (the batteries it made, holds, held or is
    consigned: the portal's `handlers`); None for those who see every battery."""
    return None if sees_every_battery(principal) else principal.org
