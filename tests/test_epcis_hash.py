"""The EPCIS event hash (CBV 2.0): every reference vector of the standard's suite (`event-hash/X.jsonld` with
its expected `X.hashes`, one line per event, and where given the `X.prehashes`) reproduced exactly, one test per
file and line; and the properties capture relies on."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from services.events.epcis.event_hash import canonical_time, event_hash, event_hashes, hash_of, prehashes
from tests.standards import standard_files

DOCUMENTS = standard_files("epcis/event-hash", "*.jsonld")


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


VECTORS = [(doc, i, line) for doc in DOCUMENTS for i, line in enumerate(_lines(doc.with_suffix(".hashes")))]
#: The suite's pre-hash strings that hash to their file's expected hash (three lines of the suite's `.prehashes`
#: files, in epcisDocWithAllGS1Keys, epcisDocWithCustomSchemaInContext and epcisDocWithDefaultSchemaInContext,
#: are stale: they do not hash to the `.hashes` line they stand beside; the hashes are the vectors).
PREHASHES = [
    (doc, i, line)
    for doc in DOCUMENTS
    if doc.with_suffix(".prehashes").exists()
    for i, line in enumerate(_lines(doc.with_suffix(".prehashes")))
    if hash_of(line) == _lines(doc.with_suffix(".hashes"))[i]
]


def test_the_suite_is_complete() -> None:
    assert len(DOCUMENTS) >= 22 and len(VECTORS) >= 40 and len(PREHASHES) >= 35


@pytest.mark.parametrize(
    ("document", "index", "expected"), VECTORS, ids=lambda v: v.stem if isinstance(v, Path) else str(v)[:12]
)
def test_reference_hash(document: Path, index: int, expected: str) -> None:
    hashes = event_hashes(orjson.loads(document.read_bytes()))
    assert len(hashes) == len(_lines(document.with_suffix(".hashes")))
    assert hashes[index] == expected


@pytest.mark.parametrize(
    ("document", "index", "expected"), PREHASHES, ids=lambda v: v.stem if isinstance(v, Path) else str(v)[:12]
)
def test_reference_prehash(document: Path, index: int, expected: str) -> None:
    assert prehashes(orjson.loads(document.read_bytes()))[index] == expected


EVENT = {
    "type": "ObjectEvent",
    "eventTime": "2026-11-02T10:30:00.000+09:00",
    "eventTimeZoneOffset": "+09:00",
    "action": "OBSERVE",
    "bizStep": "inspecting",
    "epcList": ["urn:epc:id:sgtin:8801234.056789.P1", "urn:epc:id:sgtin:8801234.056789.P2"],
    "readPoint": {"id": "urn:epc:id:sgln:8801234.00001.0"},
}
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"bt": "https://batterytrace.kr/voc/"}]


def test_the_same_event_serialised_otherwise_has_the_same_hash() -> None:
    other = copy.deepcopy(EVENT)
    other["eventTime"] = "2026-11-02T01:30:00Z"  # the same instant in UTC
    other["epcList"].reverse()
    other["bizStep"] = "https://ref.gs1.org/cbv/BizStep-inspecting"
    other["readPoint"] = {"id": "https://id.gs1.org/414/8801234000017"}  # the same GLN as a Digital Link
    other = {"eventID": "urn:uuid:1", "recordTime": "2027-01-01T00:00:00Z", **dict(reversed(list(other.items())))}
    assert event_hash(other, CONTEXT) == event_hash(EVENT, CONTEXT)


@pytest.mark.parametrize(
    "change",
    [
        {"action": "ADD"},
        {"bizStep": "shipping"},
        {"eventTime": "2026-11-02T10:30:00.001+09:00"},
        {"epcList": ["urn:epc:id:sgtin:8801234.056789.P1"]},
        {"bt:region": "KR-11"},
        {"readPoint": {"id": "urn:epc:id:sgln:8801234.00001.1"}},
    ],
)
def test_any_change_of_content_changes_the_hash(change: dict[str, object]) -> None:
    assert event_hash({**EVENT, **change}, CONTEXT) != event_hash(EVENT, CONTEXT)


def test_hash_form() -> None:
    h = event_hash(EVENT, CONTEXT)
    assert (
        h.startswith("ni:///sha-256;") and h.endswith("?ver=CBV2.0") and len(h) == len("ni:///sha-256;?ver=CBV2.0") + 64
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-10-21T14:45:00Z", "2019-10-21T14:45:00.000Z"),
        ("2019-10-21T14:45:00.0006+01:00", "2019-10-21T13:45:00.001Z"),
        ("2019-10-21T14:45:00.0005+01:00", "2019-10-21T13:45:00.000Z"),  # half to even, as the reference
        ("2019-10-21T23:59:59.9996Z", "2019-10-22T00:00:00.000Z"),
        ("not a time", "not a time"),
    ],
)
def test_canonical_time(text: str, expected: str) -> None:
    assert canonical_time(text) == expected


@pytest.mark.parametrize("value", ["Infinity", "NaN", "1e400", "-0", "1_000", "+5"])
def test_odd_numbers_never_break_the_hash(value: str) -> None:
    assert event_hash({**EVENT, "bt:note": value}, CONTEXT).startswith("ni:///")


@pytest.mark.parametrize(
    "extension",
    [
        {"bt:x": None},
        {"bt:x": [1, [2, [3]], {"a": None}]},
        {"bt:x": {"#text": 5, "type": 7}},
        {"@xmlns:q": 5, "q:y": True},
        {"bt:x": {"type": 1}, "bt:y": {"type": "a"}},
        {"sensorElementList": [{"sensorReport": [{"type": 5, "value": "x"}, {"type": "Temperature"}]}]},
    ],
)
def test_any_json_in_extensions_hashes(extension: dict[str, object]) -> None:
    """Capture hashes whatever the schema lets through: extension content of any JSON shape."""
    assert event_hash({**EVENT, **extension}, CONTEXT).startswith("ni:///")


def test_bare_strings_are_looked_up_by_their_tail() -> None:
    """The reference's rule (a bare string that exactly one expanded URI ends with, after a `-` or `/`, becomes
    it), by look-up: a document with thousands of vocabulary URIs is not compared string by string."""
    from services.events.epcis.event_hash import _replace_bare_strings, _suffixes

    index = _suffixes({"https://ref.gs1.org/cbv/BizStep-void_shipping", "https://ref.gs1.org/cbv/BizStep-shipping"})
    assert _replace_bare_strings("shipping", index) == "https://ref.gs1.org/cbv/BizStep-shipping"
    assert _replace_bare_strings("void_shipping", index) == "https://ref.gs1.org/cbv/BizStep-void_shipping"
    assert _replace_bare_strings("BizStep-shipping", index) == "https://ref.gs1.org/cbv/BizStep-shipping"
    assert _replace_bare_strings("cbv", index) == "cbv"  # two URIs end with it: no replacement
    events = [{**EVENT, "bizStep": f"https://ref.gs1.org/cbv/BizStep-x{i}"} for i in range(2000)]
    assert len(set(event_hashes({"@context": CONTEXT, "epcisBody": {"eventList": events}}))) == 2000
