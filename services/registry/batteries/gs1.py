"""GS1 keys in battery aliases, pure: GTIN check digits, SGTIN EPC URNs and GS1 Digital Link URIs, and which
company prefix a key lies under (GS1 General Specifications §7.9; EPC Tag Data Standard §6.3.1; GS1 Digital
Link URI Syntax §4)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared.validation import RuleError

#: urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial (company prefix and item reference: 13 digits together).
_SGTIN = re.compile(r"^urn:epc:id:sgtin:([0-9]{6,12})\.([0-9]{1,7})\.([!%-?A-Z_a-z\x22]{1,20})$")
#: https://host[/prefix]/01/{gtin}/21/{serial}[...]: a Digital Link with a GTIN and a serial.
_DIGITAL_LINK = re.compile(r"^https?://[^/?#]+(?:/[^?#]*)?/01/([0-9]{8,14})/21/([^/?#]{1,20})(?:[/?#].*)?$")


class Gs1Error(RuleError):
    """A GS1 key that is malformed or fails its check digit; `rule` names what failed."""


@dataclass(frozen=True, slots=True)
class Gs1Key:
    gtin: str  # 14 digits, check digit verified
    serial: str
    company_prefix: str | None  # explicit in an SGTIN URN; in a GTIN it is some leading part after the indicator

    def lies_under(self, prefix: str) -> bool:
        if self.company_prefix is not None:
            return self.company_prefix == prefix
        return self.gtin[1:].startswith(prefix)

    def lies_under_any(self, prefixes: Iterable[str]) -> bool:
        return any(self.lies_under(p) for p in prefixes)


def gtin_check_digit(body: str) -> int:
    """The mod-10 check digit of a GTIN's digits before the check digit: weights 3, 1, 3, ... from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def valid_gtin(gtin: str) -> bool:
    """GTIN-8, -12, -13 or -14 with a correct check digit."""
    if len(gtin) not in (8, 12, 13, 14) or not gtin.isascii() or not gtin.isdigit():
        return False
    return gtin_check_digit(gtin[:-1]) == int(gtin[-1])


def parse_sgtin(urn: str) -> Gs1Key:
    m = _SGTIN.match(urn)
    if m is None:
        raise Gs1Error("sgtin-urn", "an EPC alias is urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial")
    prefix, item, serial = m.groups()
    if len(prefix) + len(item) != 13:
        raise Gs1Error("sgtin-urn", "company prefix and indicator + item reference must be 13 digits together")
    body = item[0] + prefix + item[1:]
    return Gs1Key(gtin=body + str(gtin_check_digit(body)), serial=serial, company_prefix=prefix)


def parse_digital_link(uri: str) -> Gs1Key:
    m = _DIGITAL_LINK.match(uri)
    if m is None:
        raise Gs1Error("digital-link", "a GS1 Digital Link alias is https://<host>/01/<GTIN>/21/<serial>")
    gtin, serial = m.groups()
    if not valid_gtin(gtin):
        raise Gs1Error("gtin-check-digit", f"GTIN {gtin} fails its check digit (or is not 8, 12, 13 or 14 digits)")
    return Gs1Key(gtin=gtin.zfill(14), serial=serial, company_prefix=None)
