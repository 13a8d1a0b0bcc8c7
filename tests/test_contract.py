"""The published contract (shared.contract): one declaration, read the same by producers and consumers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contract import epcis, lifecycle, streams


def test_lifecycle_cloud_event_types_follow_the_event_types() -> None:
    for t in lifecycle.EventType:
        ce_type = streams.lifecycle_type(t.value)
        assert streams.is_lifecycle_type(ce_type)
        assert streams.is_known_lifecycle(ce_type, {"type": t.value})
    assert not streams.is_known_lifecycle("kr.battery.lifecycle.recalled.v1", {"type": "RECALLED"})
    assert not streams.is_known_lifecycle("kr.battery.lifecycle.collected.v2", {"type": "COLLECTED"})
    assert streams.registry_type("battery.registered") == streams.BATTERY_REGISTERED


def test_ledger_fields_are_the_hashed_fields_and_the_links() -> None:
    assert lifecycle.LEDGER_FIELDS[: len(lifecycle.HASHED_FIELDS)] == lifecycle.HASHED_FIELDS
    assert set(lifecycle.LEDGER_FIELDS) == set(lifecycle.LedgerRecord.model_fields) - set(lifecycle.STREAM_EXTRA_FIELDS)


def _record(prev: str, seq: int) -> dict[str, object]:
    rec: dict[str, object] = {
        "event_id": f"00000000-0000-4000-8000-{seq:012d}",
        "battery_id": "B1",
        "sequence": seq,
        "type": "INCIDENT",
        "occurred_at": datetime(2026, 1, seq, tzinfo=UTC),
        "recorded_at": f"2026-01-0{seq}T00:00:00.000001Z",
        "actor": "X",
        "actor_role": "oem",
        "location": {},
        "data": {"kind": "fire", "severity": "low"},
        "state_after": "in_service",
        "custodian_after": "X",
        "prev_hash": prev,
    }
    rec["hash"] = lifecycle.event_hash(prev, rec)
    return rec


def test_chain_verifies_and_names_the_first_broken_sequence() -> None:
    a = _record(lifecycle.GENESIS, 1)
    b = _record(str(a["hash"]), 2)
    assert lifecycle.verify_chain([a, b]) == (True, None, None, 2, b["hash"])
    tampered = {**b, "data": {"kind": "leak", "severity": "low"}}
    check = lifecycle.verify_chain([a, tampered])
    assert not check.valid and check.broken_at_sequence == 2 and "content" in (check.reason or "")
    assert lifecycle.verify_chain([a, tampered], recompute=False).valid  # linkage alone holds


def test_timestamps_keep_four_digit_years_and_utc() -> None:
    assert lifecycle.ts(datetime(1, 1, 23, tzinfo=UTC)) == "0001-01-23T00:00:00.000000Z"


@pytest.mark.parametrize("step", sorted(epcis.OBJECT_STEPS))
def test_every_captured_step_maps_to_a_lifecycle_type_written_back_the_same_way(step: str) -> None:
    t = epcis.OBJECT_STEPS[step]
    assert t in lifecycle.EventType.__members__
    if step != "repairing":  # CBV's repairing is read as remanufacturing; we write our own step
        assert epcis.STEPS[t][2] == step


def test_compact_iris_expand_to_our_namespaces() -> None:
    assert epcis.expand("btbizstep:grading") == epcis.BIZSTEP + "grading"
    assert epcis.expand("urn:epcglobal:cbv:bizstep:installing") == "installing"
    assert epcis.site_of(epcis.site_uri("Siheung centre")) == "Siheung centre"


@given(st.text())
def test_uuid5_url_is_uuid5_in_the_url_namespace(name: str) -> None:
    try:
        name.encode()
    except UnicodeEncodeError:  # a lone surrogate: uuid.uuid5 refuses it too
        return
    assert streams.uuid5_url(name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def test_manufactured_event_id_is_stable() -> None:
    """Registry, events service and consumers derive the same ID, now and from every ledger written before."""
    assert streams.manufactured_event_id("KR-LGES-P000001") == str(
        uuid.uuid5(uuid.NAMESPACE_URL, "https://batterytrace.kr/battery/KR-LGES-P000001/manufactured")
    )


# ---- the consumers' fast path reads a lifecycle message as the general path does ----


def _general(raw: bytes) -> tuple[str, str, lifecycle.LedgerRecord] | str | None:
    """What a consumer's general path makes of a record: (id, type, record) for a known lifecycle event, None
    for one it skips by UNKNOWN_TYPE_RULE, "rejected" for one it dead-letters."""
    import orjson
    from pydantic import ValidationError

    try:
        ce = streams.CloudEvent.model_validate(orjson.loads(raw))
        if not streams.is_known_lifecycle(ce.type, ce.data):
            return None
        return ce.id, ce.type, lifecycle.LedgerRecord.model_validate(ce.data)
    except (orjson.JSONDecodeError, ValidationError):
        return "rejected"


_MUTATIONS = st.sampled_from(
    [
        ("keep", None),
        ("extra", ("data", "a_future_field", {"x": 1})),
        ("extra", ("", "a_future_attribute", "x")),
        ("set", ("data", "type", "A_FUTURE_EVENT_TYPE")),
        ("set", ("", "type", "kr.battery.lifecycle.incident.v2")),
        ("set", ("", "type", "kr.battery.registry.battery_registered.v1")),
        ("set", ("", "specversion", "0.3")),
        ("set", ("data", "sequence", 0)),
        ("set", ("data", "sequence", "7")),
        ("set", ("data", "sequence", 7.0)),
        ("set", ("data", "occurred_at", "not a time")),
        ("set", ("data", "occurred_at", "2026-03-01T12:00:00+09:00")),
        ("set", ("data", "battery_id", "X" * 25)),
        ("set", ("data", "location", None)),
        ("set", ("data", "data", [])),
        ("drop", ("data", "hash")),
        ("drop", ("data", "recorded_at")),
        ("drop", ("", "id")),
        ("drop", ("", "data")),
    ]
)


@given(
    mutations=st.lists(_MUTATIONS, max_size=3),
    type_=st.sampled_from([t.value for t in lifecycle.EventType]),
    garbage=st.booleans(),
)
def test_the_lifecycle_fast_path_reads_what_the_general_path_reads(mutations, type_: str, garbage: bool) -> None:
    import orjson

    event = {
        "event_id": str(uuid.uuid4()),
        "battery_id": "KR-B1",
        "sequence": 3,
        "type": type_,
        "occurred_at": "2026-03-01T03:00:00.000000Z",
        "recorded_at": "2026-03-01T03:00:01.000000Z",
        "actor": "KTS",
        "actor_role": "inspector",
        "location": {"site": "Ulsan", "region": "KR-31"},
        "data": {"kind": "fire"},
        "state_after": "in_service",
        "custodian_after": "HMC",
        "prev_hash": "a" * 64,
        "hash": "b" * 64,
        "kind": "pack",
        "manufacturer": "LGES",
    }
    message = {
        "specversion": "1.0",
        "id": event["event_id"],
        "source": "/batterytrace/events",
        "type": f"kr.battery.lifecycle.{type_.lower()}.v1",
        "data": event,
    }
    for verb, change in mutations:
        if change is None:
            continue
        where, key, *value = change
        target = message if where == "" else message.get("data")
        if not isinstance(target, dict):
            continue
        if verb == "drop":
            target.pop(key, None)
        else:
            target[key] = value[0]
    raw = orjson.dumps(message) + (b"}" if garbage else b"")
    general = _general(raw)
    fast = streams.LifecycleCloudEvent.known(raw)
    if fast is not None:  # what the fast path reads, the general path reads the same
        assert general == (fast.id, fast.type, fast.data)
    else:  # and it leaves to the general path only what that path skips or rejects
        assert not isinstance(general, tuple)
