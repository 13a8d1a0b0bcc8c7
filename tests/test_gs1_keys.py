"""GS1 keys in EPC URI form → the constrained canonical GS1 Digital Link URI (services/events/epcis/gs1_keys.py),
scheme by scheme, on the worked examples of GS1's EPC Tag Data Standard (TDS 2.x, §6 and Table E-1: SGTIN,
SSCC, SGLN, GRAI, GIAI, GSRN, GDTI, SGCN, CPI, PGLN) and CBV 2.0 §8.9 (class level, patterns, non-canonical
Digital Link hosts and their query strings). The event-hash reference vectors (tests/test_epcis_hash.py) cover the
module through whole events; these name the scheme that breaks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.events.epcis.gs1_keys import check_digit, normalise

DL = "https://id.gs1.org"
EXAMPLES = [
    ("urn:epc:id:sgtin:0614141.812345.6789", f"{DL}/01/80614141123458/21/6789"),
    ("urn:epc:id:sscc:0614141.1234567890", f"{DL}/00/106141412345678908"),
    ("urn:epc:id:sgln:0614141.12345.400", f"{DL}/414/0614141123452/254/400"),
    ("urn:epc:id:sgln:0614141.12345.0", f"{DL}/414/0614141123452"),  # extension 0: the GLN alone
    ("urn:epc:id:grai:0614141.12345.400", f"{DL}/8003/00614141123452400"),
    ("urn:epc:id:giai:0614141.12345400", f"{DL}/8004/061414112345400"),
    ("urn:epc:id:gsrn:0614141.1234567890", f"{DL}/8018/061414112345678902"),
    ("urn:epc:id:gdti:0614141.12345.006847", f"{DL}/253/0614141123452006847"),
    ("urn:epc:id:sgcn:4012345.67890.04711", f"{DL}/255/401234567890104711"),
    ("urn:epc:id:cpi:0614141.123ABC.123456789", f"{DL}/8010/0614141123ABC/8011/123456789"),
    ("urn:epc:id:pgln:0614141.12345", f"{DL}/417/0614141123452"),
    ("urn:epc:class:lgtin:4012345.012345.998877", f"{DL}/01/04012345123456/10/998877"),
    ("urn:epc:idpat:sgtin:4012345.012345.*", f"{DL}/01/04012345123456"),
    ("https://example.com/01/09520123456788/21/12345?17=201225", f"{DL}/01/09520123456788/21/12345"),
]


@pytest.mark.parametrize(
    ("uri", "canonical"), EXAMPLES, ids=[u.split(":")[3] if u[:3] == "urn" else "dl" for u, _ in EXAMPLES]
)
def test_tds_worked_examples(uri: str, canonical: str) -> None:
    assert normalise(uri) == canonical


@pytest.mark.parametrize("uri", ["urn:epc:id:gid:95100000.12345.400", "urn:epc:id:sgtin:bad", "", "not a uri", 42])
def test_what_is_not_a_gs1_key_is_none(uri: object) -> None:
    assert normalise(uri) is None


def mod10(digits: str) -> int:
    """GS1 General Specifications §7.9.1, written out again: weights 3,1,3,... from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


@given(st.from_regex(r"\A[0-9]{7}\Z"), st.from_regex(r"\A[0-9]{6}\Z"), st.from_regex(r"\A[0-9]{1,20}\Z"))
def test_any_sgtin_becomes_its_gtin_14_with_the_check_digit(prefix: str, item: str, serial: str) -> None:
    """An SGTIN's GTIN-14 is the indicator digit, the company prefix, the rest of the item reference and the
    GS1 mod-10 check digit; the serial follows as AI 21."""
    gtin13 = item[0] + prefix + item[1:]
    assert check_digit(gtin13) == mod10(gtin13)
    assert normalise(f"urn:epc:id:sgtin:{prefix}.{item}.{serial}") == f"{DL}/01/{gtin13}{mod10(gtin13)}/21/{serial}"
