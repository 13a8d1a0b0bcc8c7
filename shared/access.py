"""Who may see what (DOMAIN.md, Access), written once: the roles, the four EU access levels and every
read-access decision the services make.

Pure: no I/O. A caller proves the relation between the principal's organisation and one battery from its
own data (the events service from its ledger, the portal from its read model) and passes it in as a
`Relation`; the decision is made here.

- Every battery: authorities (ministries, certifiers, admin) and the platform's operators (their reads are
  audited) read every history, timeline and EPCIS event, and list every battery.
- Any other participant reads the batteries it handled (`Relation.handled`). Without a token: 401.
- Passports, by EU access level: `manufacturer` (the battery's own maker) > `authority` (ministry,
  certifier, admin) > `legitimate_interest` (dismantler, collector, assessor, repurposer, remanufacturer,
  recycler that handled this battery) > `public` (anyone, no token needed).
- The registry's full record (serial number, material content): the battery's manufacturer, and whoever
  sees every battery; anyone else gets its public fields.
- Ministry views: that ministry's token only (and admin). The operations pages: operators (and admin).
- EPCIS capture jobs: their poster, ministries, operators and admin.
- A vehicle's batteries (a VIN look-up in the UI): signed-in participants only (VINs are personal data).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

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
#: Who reads every battery: authorities, and the platform's operators.
SEES_EVERY_BATTERY = AUTHORITY | {Role.operator}
#: Who reads every EPCIS capture job, not only their own (certifiers do not: they certify, they capture none).
SEES_EVERY_CAPTURE_JOB = frozenset({Role.ministry, Role.operator, Role.admin})


@dataclass(frozen=True, slots=True)
class Relation:
    """What the caller proved, from its own data, about the principal's organisation and one battery."""

    #: The organisation is the battery's registered manufacturer.
    manufacturer: bool = False
    #: The organisation made the battery, posted one of its events or was its custodian. (DOMAIN.md narrows
    #: this to custody and consignment; that change is made where the services prove it, and here.)
    handled: bool = False


def is_authority(principal: Principal) -> bool:
    return principal.role in AUTHORITY


def sees_every_battery(principal: Principal) -> bool:
    return principal.role in SEES_EVERY_BATTERY


def may_read_battery(principal: Principal, relation: Relation) -> bool:
    """A battery's history, ledger timeline and state, and the EPCIS events about it."""
    return sees_every_battery(principal) or relation.handled


def passport_level(principal: Principal | None, relation: Relation) -> Level:
    if principal is None:
        return Level.public
    if principal.role is Role.manufacturer and relation.manufacturer:
        return Level.manufacturer
    if is_authority(principal):
        return Level.authority
    if principal.role in LEGITIMATE_INTEREST and relation.handled:
        return Level.legitimate_interest
    return Level.public


def sees_full_record(principal: Principal | None, relation: Relation) -> bool:
    """The registry's whole record of a battery, commercial facts included; else its public fields."""
    return principal is not None and (sees_every_battery(principal) or relation.manufacturer)


def may_read_capture_job(principal: Principal, posted_by: str) -> bool:
    return principal.org == posted_by or principal.role in SEES_EVERY_CAPTURE_JOB


def may_see_ministry_view(principal: Principal, ministry: Ministry) -> bool:
    return principal.role is Role.admin or (principal.role is Role.ministry and principal.ministry is ministry)


def may_see_operations(principal: Principal) -> bool:
    return principal.role in (Role.operator, Role.admin)


def may_look_up_by_vin(principal: Principal | None) -> bool:
    return principal is not None


def only_handled_by(principal: Principal) -> str | None:
    """The organisation a search over batteries is narrowed to (the batteries it handled); None for those
    who see every battery."""
    return None if sees_every_battery(principal) else principal.org
