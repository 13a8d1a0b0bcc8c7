"""VINs as personal data (issue 14 item 3): a VIN enters the ledger, its hash, the log and Kafka only as its
keyed pseudonym; the plain VIN lives in the erasable `events.vins`; an admin erasure removes it there, from
the outbox and (by a tombstone) from the portal, and every chain and proof still verifies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.events.vins.service import VinKey
from shared.contract import tlog
from shared.contract.proofs import verify_bundle
from shared.contract.streams import TOPIC_EPCIS, TOPIC_LIFECYCLE, TOPIC_VINS
from shared.db import asyncpg_dsn
from shared.vin import check_digit, is_pseudonym, pseudonym, vin_problem
from tests.conftest import eventually
from tests.events_helpers import BOOTSTRAP_ADMIN, stack
from tests.portal_helpers import portal_app, portal_settings, read_raw
from tests.test_transparency_log import checkpoint_at_least, ledger_size

VIN = "KMHEM41AP6A123456"


def test_a_pseudonym_is_an_hmac_of_the_vin_under_the_key() -> None:
    key = bytes(range(32))
    p = pseudonym(key, VIN)
    assert is_pseudonym(p) and p == VinKey(key).pseudonym(VIN)
    assert p != pseudonym(bytes(32), VIN)  # another key, another pseudonym: no dictionary without the key
    assert VIN not in p


def test_iso_3779_format_and_the_north_american_check_digit() -> None:
    assert vin_problem(VIN) is None  # Korean VIN: no check digit required
    assert vin_problem("1M8GDM9AXKP042788") is None  # the 49 CFR 565 textbook example, check digit X
    assert check_digit("1M8GDM9A_KP042788".replace("_", "0")) == "X"
    assert "check digit" in (vin_problem("1M8GDM9A1KP042788") or "")
    assert "17 characters" in (vin_problem("KMHEM41AP6A12345") or "")
    assert "not I, O, Q" in (vin_problem("KMHEM41AP6A12345O") or "")
    assert vin_problem("kmhem41ap6a123456") is not None


def pseudonym_of_test(event: dict[str, Any]) -> str:
    value = event["data"]["vin"]
    assert is_pseudonym(value), value
    return str(value)


async def test_a_vin_is_kept_only_as_its_pseudonym_and_erasure_removes_the_plain_vin_everywhere(
    make_settings, token, infra, topic_prefix, db_url
) -> None:
    async with (
        stack(make_settings, token, streams=True, log_checkpoint_interval_s=0.2) as s,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        bid = await s.battery()
        await s.transfer_to(bid, "oem")
        await s.ok(bid, "INSTALLED", "oem", data={"vin": VIN})
        await s.ok(bid, "INSPECTED", "inspector")
        # an EPCIS installation of a second battery into the same vehicle: the document's bt:vin too
        bid2 = await s.battery()
        await s.transfer_to(bid2, "oem")
        doc = {
            "@context": [
                "https://ref.gs1.org/standards/epcis/epcis-context.jsonld",
                {"bt": "https://batterytrace.kr/voc/"},
            ],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-02-02T10:00:00+09:00",
            "epcisBody": {
                "eventList": [
                    {
                        "type": "ObjectEvent",
                        "eventID": f"urn:uuid:{uuid.uuid4()}",
                        "eventTime": datetime.now(UTC).isoformat(),
                        "eventTimeZoneOffset": "+09:00",
                        "epcList": [f"https://batterytrace.kr/battery/{bid2}"],
                        "action": "OBSERVE",
                        "bizStep": "installing",
                        "bt:vin": VIN,
                    }
                ]
            },
        }
        r = await s.events.post(
            "/epcis/capture", json=doc, headers=s.as_role("oem") | {"Content-Type": "application/ld+json"}
        )
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "success", r.json()["errors"]

        t2 = (await s.events.get(f"/v1/batteries/{bid2}/events", headers=s.as_role("oem"))).json()["items"]
        assert t2[-1]["type"] == "INSTALLED" and t2[-1]["data"]["vin"] == pseudonym_of_test(t2[-1])
        timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("oem"))).json()["items"]
        installed = next(e for e in timeline if e["type"] == "INSTALLED")
        p = installed["data"]["vin"]
        assert is_pseudonym(p) and VIN not in str(timeline)

        # nowhere in the events database but events.vins: ledger, request digests, outbox, EPCIS store, log queue
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema IN ('events', 'portal') "
                "AND table_type = 'BASE TABLE'"
            )
            holding = []
            for (name,) in rows:
                for schema in ("events", "portal"):
                    if await conn.fetchval(
                        "SELECT to_regclass($1) IS NOT NULL", f"{schema}.{name}"
                    ) and await conn.fetchval(
                        f'SELECT EXISTS (SELECT 1 FROM {schema}."{name}" t WHERE t::text LIKE $1)', f"%{VIN}%"
                    ):
                        holding.append(f"{schema}.{name}")
            assert set(holding) <= {"events.vins", "events.outbox", "portal.vins"}, holding
            outbox_topics = await conn.fetch(
                "SELECT DISTINCT topic FROM events.outbox WHERE payload::text LIKE $1", f"%{VIN}%"
            )
            assert [r["topic"] for r in outbox_topics] == [TOPIC_VINS]
        finally:
            await conn.close()

        # Kafka: the lifecycle and EPCIS topics carry the pseudonym only; the VIN topic the plain VIN
        life = await read_raw(infra.kafka.bootstrap, topic_prefix + TOPIC_LIFECYCLE, at_least=1)
        epcis = await read_raw(infra.kafka.bootstrap, topic_prefix + TOPIC_EPCIS, at_least=1)
        assert life and epcis and not any(VIN.encode() in (r["value"] or b"") for r in life + epcis)
        assert any(p.encode() in (r["value"] or b"") for r in epcis)

        # the portal: sees the plain VIN (MOLIT), for the vehicle as for the pseudonym
        molit = s.as_role("ministry")

        async def vehicle() -> Any:
            r = await portal.get(f"/v1/vehicles/{VIN}", headers=molit)
            return r.json() if r.status_code == 200 and len(r.json()["batteries"]) == 2 else None

        v = await eventually(vehicle, timeout_s=30)
        assert v["vin"] == VIN and v["vin_pseudonym"] == p and sorted(v["batteries"]) == sorted([bid, bid2])

        before = (await s.events.get(f"/v1/batteries/{bid}/verify", headers=molit)).json()
        assert before["valid"] is True
        await checkpoint_at_least(s.events, await ledger_size(db_url))
        log_key = tlog.Verifier.decode((await s.events.get("/v1/log/key")).text)
        bundle_before = (await s.events.get(f"/v1/batteries/{bid}/proof-bundle", headers=molit)).json()
        assert verify_bundle(bundle_before, log_key).valid

        # erasure: admin only, with a reason
        admin = token(BOOTSTRAP_ADMIN, "admin")
        r = await s.events.post(f"/v1/vins/{p}/erasure", json={"reason": "PIPA request 2026-77"}, headers=molit)
        assert r.status_code == 403
        r = await s.events.post(f"/v1/vins/{p}/erasure", json={}, headers=admin)
        assert r.status_code == 422
        r = await s.events.post(f"/v1/vins/{p}/erasure", json={"reason": "PIPA request 2026-77"}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["vin"] is None and r.json()["erased"] is True and r.json()["erased_by"] == BOOTSTRAP_ADMIN

        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            for table in ("events.vins", "events.outbox", "events.ledger"):
                assert not await conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {table} t WHERE t::text LIKE $1)", f"%{VIN}%"
                ), table
            audit = await conn.fetchrow("SELECT * FROM events.audit_log WHERE details->>'action' = 'vin-erasure'")
            assert audit["actor"] == BOOTSTRAP_ADMIN and "PIPA request 2026-77" in str(audit["details"])
        finally:
            await conn.close()

        # the tombstone reaches the portal: the vehicle is found by pseudonym only, its VIN shown as erased
        async def erased() -> Any:
            r = await portal.get(f"/v1/vehicles/{p}", headers=molit)
            return r.json() if r.status_code == 200 and r.json()["vin_erased"] else None

        v = await eventually(erased, timeout_s=30)
        assert v["vin"] is None and sorted(v["batteries"]) == sorted([bid, bid2])
        assert (await portal.get(f"/v1/vehicles/{VIN}", headers=molit)).status_code == 404
        recs = await read_raw(infra.kafka.bootstrap, topic_prefix + TOPIC_VINS, at_least=2)
        assert any(r["value"] is None and r["key"] == p.encode() for r in recs)

        # and the chain, the proof bundle and the log still verify
        after = (await s.events.get(f"/v1/batteries/{bid}/verify", headers=molit)).json()
        assert after["valid"] is True and after["head_hash"] == before["head_hash"]
        bundle_after = (await s.events.get(f"/v1/batteries/{bid}/proof-bundle", headers=molit)).json()
        assert verify_bundle(bundle_after, log_key).valid and verify_bundle(bundle_before, log_key).valid
        assert [e["event"]["hash"] for e in bundle_after["events"]] == [
            e["event"]["hash"] for e in bundle_before["events"]
        ]
        history = (await portal.get(f"/v1/batteries/{bid}/history", headers=molit)).json()
        assert history["chain"]["status"] == "valid"
        assert history["current"]["vin"] == "erased"
