"""Who may see what in the portal (DOMAIN.md, Access).

- Histories and search: authorities (ministries, certifiers, admin) and platform operators see every
  battery; any other participant sees the batteries it made or handled — it was the manufacturer, posted
  one of its events or was its custodian. Without a token: 401.
- Passports, by EU access level: `manufacturer` (the battery's own maker) > `authority` (ministry,
  certifier, admin) > `legitimate_interest` (dismantler, collector, assessor, repurposer, remanufacturer,
  recycler that handled this battery) > `public` (anyone, no token needed).
- Ministry views: that ministry's token only (and admin).
"""

from __future__ import annotations

from enum import StrEnum

from shared.auth import AUTHORITY, LEGITIMATE_INTEREST, Principal, Role

SEES_ALL = AUTHORITY | {Role.operator}


class Level(StrEnum):
    public = "public"
    legitimate_interest = "legitimate_interest"
    authority = "authority"
    manufacturer = "manufacturer"


def sees_all(principal: Principal) -> bool:
    return principal.role in SEES_ALL


def passport_level(principal: Principal | None, manufacturer: str | None, handled: bool) -> Level:
    if principal is None:
        return Level.public
    if principal.role is Role.manufacturer and manufacturer is not None and principal.org == manufacturer:
        return Level.manufacturer
    if principal.role in AUTHORITY:
        return Level.authority
    if principal.role in LEGITIMATE_INTEREST and handled:
        return Level.legitimate_interest
    return Level.public
