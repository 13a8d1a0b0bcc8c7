"""Vehicle identification numbers (ISO 3779) and their keyed pseudonyms, as every service checks them.

A VIN is 17 characters of A-Z and 0-9 without I, O and Q. Position 9 is a check digit where the market
requires one: North America (49 CFR 565, WMIs starting 1-5) and China (GB 16735, WMIs starting L). Korean and
European VINs carry no check digit, so it is not checked for them.

A VIN is personal data once linked to an owner (PIPA), so it enters the ledger, its hashes, the transparency
log and Kafka only as a keyed pseudonym: HMAC-SHA-256 under a key the events service alone holds, written as
64 lowercase hex digits. The functions here are pure; the key is the caller's."""

from __future__ import annotations

import hashlib
import hmac
import re

VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
PSEUDONYM_RE = re.compile(r"^[0-9a-f]{64}$")
#: The JSON Schema pattern of a pseudonym (64 lowercase hex digits).
PSEUDONYM_PATTERN = PSEUDONYM_RE.pattern

_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
#: First characters of world manufacturer identifiers whose markets require the check digit.
CHECK_DIGIT_REGIONS = frozenset("12345L")


def check_digit(vin: str) -> str:
    """The ISO 3779 / 49 CFR 565 check digit of a well-formed VIN ('0'-'9' or 'X')."""
    total = sum(_VALUES[c] * w for c, w in zip(vin, _WEIGHTS, strict=True)) % 11
    return "X" if total == 10 else str(total)


def vin_problem(value: str) -> str | None:
    """Why `value` is not a VIN, or None if it is one."""
    if len(value) != 17:
        return f"a VIN has 17 characters, not {len(value)}"
    if not VIN_RE.match(value):
        return "a VIN is made of A-Z (not I, O, Q) and 0-9 only"
    if value[0] in CHECK_DIGIT_REGIONS and value[8] != check_digit(value):
        return f"the check digit (9th character) must be {check_digit(value)} for this VIN"
    return None


def is_vin(value: str) -> bool:
    return vin_problem(value) is None


def normalise(query: str) -> str:
    """What a person typed as a VIN, as a VIN would be written (surrounding blanks dropped, upper case).
    Nothing else is mapped: an 'O' is not silently read as a '0'."""
    return query.strip().upper()


def is_pseudonym(value: str) -> bool:
    return bool(PSEUDONYM_RE.match(value))


def pseudonym(key: bytes, vin: str) -> str:
    """The keyed pseudonym of a VIN: HMAC-SHA-256 under `key`, in lowercase hex."""
    return hmac.new(key, vin.encode("ascii"), hashlib.sha256).hexdigest()
