"""Attacks on corrections and amendments, over HTTP with the participant check on, the way a participant who wants
around the rules would try them. Every refusal changes nothing: the ledger, the state and the amendments stay.

| attack | answer |
|---|---|
| a recycler declares another recycler's RECYCLED in error | 403 `forbidden` (only the event's actor or an authority) |
| a bystander names the real poster in `declared_actor` | 403 `forbidden` |
| the poster declares its RECYCLED after the window | 403 `correction-window-closed`; an authority still may |
| the same event declared twice (by its poster, then by an authority) | 409 `already-declared` |
| an ERROR_DECLARED declared in error (to undo a correction) | 422 `not-a-declaration` |
| a REMOVED declared while the COLLECTED after it stands | 409 `later-events-depend`, naming the COLLECTED |
| the registration (MANUFACTURED) declared to erase a battery | 422 `not-the-registration` (amend the facts) |
| a corrected RECYCLED re-sent with its old event ID | the original answered again, nothing appended, the battery stays corrected |
| a manufacturer amends another manufacturer's battery | 403 `not-the-manufacturer` |
| an OEM, a recycler or a certifier amends one | 403 `forbidden` (the role, before the body is read) |
| amending the manufacturer, the serial number or the model | 422 rule `amendable` |
| an empty or whitespace reason; no changes; the value it has already | 422 |
| a 100 KB amendment | 413 |
| two amendments racing on one battery | both recorded, numbered 1 and 2; the second's `before` is the first's `after` |
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import eventually
from tests.events_helpers import BOOTSTRAP_ADMIN, CHECKED, ORGS, Stack, projected, stack
from tests.factories import participant

OTHERS = {"REC-2": "recycler", "SDI": "manufacturer"}


@pytest.fixture
async def s(make_settings, token) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    async with stack(
        make_settings, token, streams=True, register_orgs=True, correction_window_days=2 / 86_400, **CHECKED
    ) as st:
        admin = token(BOOTSTRAP_ADMIN, "admin")
        await participant(st.registry, admin, "REC-2", "recycler")
        await participant(st.registry, admin, "SDI", "manufacturer", gs1_company_prefixes=["8809999"])
        for org in [*ORGS.values(), "MOLIT", *OTHERS]:
            await eventually(lambda org=org: projected(st, org))
        yield st


async def ledger(s: Stack, bid: str) -> list[dict[str, Any]]:
    r = await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def snapshot(s: Stack, bid: str) -> tuple[Any, ...]:
    st = await s.state(bid)
    return len(await ledger(s, bid)), st["state"], st["custodian"], st["sequence"], st["grade"]


def refused(r: Any, status: int, code: str) -> dict[str, Any]:
    assert (r.status_code, r.json().get("code")) == (status, code), r.text
    return dict(r.json())


def declaring(event: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"declared_event_id": event["event_id"], "reason": "did_not_occur", **extra}


async def recycled(s: Stack) -> tuple[str, dict[str, Any]]:
    bid = await s.battery()
    for etype, role, data in (
        ("TRANSFERRED", "manufacturer", {"to": ORGS["oem"]}),
        ("INSTALLED", "oem", None),
        ("REMOVED", "dismantler", None),
        ("COLLECTED", "collector", None),
        ("TRANSFERRED", "collector", {"to": ORGS["recycler"]}),
    ):
        await s.ok(bid, etype, role, data=data)
    return bid, await s.ok(bid, "RECYCLED", "recycler")


# ---- declarations ----
async def test_another_companys_event_cannot_be_declared(s: Stack) -> None:
    bid, event = await recycled(s)
    before = await snapshot(s, bid)
    refused(await s.post(bid, "ERROR_DECLARED", "recycler", org="REC-2", data=declaring(event)), 403, "forbidden")
    named = declaring(event, declared_actor=ORGS["recycler"])
    refused(await s.post(bid, "ERROR_DECLARED", "recycler", org="REC-2", data=named), 403, "forbidden")
    refused(await s.post(bid, "ERROR_DECLARED", "collector", data=declaring(event)), 403, "forbidden")
    assert await snapshot(s, bid) == before


async def test_outside_the_window_only_an_authority_declares_a_final_event(s: Stack) -> None:
    bid, event = await recycled(s)
    await asyncio.sleep(2.5)
    before = await snapshot(s, bid)
    body = refused(
        await s.post(bid, "ERROR_DECLARED", "recycler", data=declaring(event)), 403, "correction-window-closed"
    )
    assert body["errors"][0] == {
        "field": "data.declared_event_id",
        "rule": "final-event-window",
        "message": body["errors"][0]["message"],
    }
    assert await snapshot(s, bid) == before
    out = await s.ok(bid, "ERROR_DECLARED", "ministry", data=declaring(event))
    assert (out["state"], out["custodian"]) == ("collected", ORGS["recycler"])


async def test_declaring_twice_and_declaring_a_declaration(s: Stack) -> None:
    bid, event = await recycled(s)
    declaration = await s.ok(bid, "ERROR_DECLARED", "recycler", data=declaring(event))
    before = await snapshot(s, bid)
    body = refused(await s.post(bid, "ERROR_DECLARED", "ministry", data=declaring(event)), 409, "already-declared")
    assert body["declared_by_sequence"] == declaration["sequence"]
    undo = await s.post(bid, "ERROR_DECLARED", "recycler", data=declaring(declaration))
    assert undo.status_code == 422 and undo.json()["errors"][0]["rule"] == "not-a-declaration", undo.text
    assert await snapshot(s, bid) == before


async def test_an_event_a_later_one_depends_on_is_refused(s: Stack) -> None:
    bid = await s.battery()
    await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    await s.ok(bid, "INSTALLED", "oem")
    removed = await s.ok(bid, "REMOVED", "dismantler")
    collected = await s.ok(bid, "COLLECTED", "collector")
    before = await snapshot(s, bid)
    body = refused(
        await s.post(bid, "ERROR_DECLARED", "dismantler", data=declaring(removed)), 409, "later-events-depend"
    )
    assert body["dependent_event"] == {
        "sequence": collected["sequence"],
        "event_id": collected["event_id"],
        "type": "COLLECTED",
    }
    assert await snapshot(s, bid) == before
    await s.ok(bid, "ERROR_DECLARED", "collector", data=declaring(collected))
    out = await s.ok(bid, "ERROR_DECLARED", "dismantler", data=declaring(removed))
    assert (out["state"], out["custodian"]) == ("in_service", ORGS["oem"])


async def test_the_registration_cannot_be_declared_away(s: Stack) -> None:
    bid = await s.battery()
    genesis = (await ledger(s, bid))[0]
    before = await snapshot(s, bid)
    r = await s.post(bid, "ERROR_DECLARED", "manufacturer", data=declaring(genesis))
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "not-the-registration", r.text
    r = await s.post(bid, "ERROR_DECLARED", "ministry", data=declaring(genesis))
    assert r.status_code == 422, r.text
    assert await snapshot(s, bid) == before


async def test_a_corrected_recycled_resent_with_its_old_id_changes_nothing(s: Stack) -> None:
    bid, event = await recycled(s)
    await s.ok(bid, "ERROR_DECLARED", "recycler", data=declaring(event))
    before = await snapshot(s, bid)
    assert before[1] == "collected"
    original = next(e for e in await ledger(s, bid) if e["event_id"] == event["event_id"])
    again = await s.post(bid, "RECYCLED", "recycler", event_id=event["event_id"], occurred_at=original["occurred_at"])
    assert again.status_code == 201 and again.json()["sequence"] == event["sequence"], again.text  # the original
    assert await snapshot(s, bid) == before
    other = await s.post(bid, "RECYCLED", "recycler", event_id=event["event_id"])  # other content: a conflict
    refused(other, 409, "event-id-conflict")
    assert await snapshot(s, bid) == before
    # Posted anew (its own ID), the correct RECYCLED is a new event.
    fresh = await s.ok(bid, "RECYCLED", "recycler")
    assert fresh["sequence"] == before[3] + 1 and fresh["state"] == "recycled"


# ---- amendments ----
async def amend(s: Stack, bid: str, changes: Any, role: str = "manufacturer", **kw: Any) -> Any:
    body = {"changes": changes, "reason": kw.pop("reason", "wrong plant")}
    headers = s.token(kw.pop("org"), role) if "org" in kw else s.as_role(role)
    return await s.registry.post(f"/v1/batteries/{bid}/amendments", json=body, headers=headers)


async def amendments(s: Stack, bid: str) -> tuple[list[Any], dict[str, Any]]:
    listed = (await s.registry.get(f"/v1/batteries/{bid}/amendments", headers=s.as_role("manufacturer"))).json()
    record = (await s.registry.get(f"/v1/batteries/{bid}", headers=s.as_role("manufacturer"))).json()
    return listed["items"], record


async def test_amendments_by_others_are_refused(s: Stack) -> None:
    bid = await s.battery()
    before = await amendments(s, bid)
    site = {"manufacturing_site": "Elsewhere"}
    refused(await amend(s, bid, site, org="SDI"), 403, "not-the-manufacturer")
    refused(await amend(s, bid, site, "oem"), 403, "forbidden")  # the role, before the body is read
    refused(await amend(s, bid, site, "recycler"), 403, "forbidden")
    refused(await amend(s, bid, site, "certifier"), 403, "forbidden")  # an authority for what it certifies only
    assert await amendments(s, bid) == before


@pytest.mark.parametrize("field", ["manufacturer", "serial_number", "model_id", "id", "kind", "created_at"])
async def test_identity_is_not_amendable(s: Stack, field: str) -> None:
    bid = await s.battery()
    before = await amendments(s, bid)
    r = await amend(s, bid, {field: "KR-OTHER-1", "manufacturing_site": "Elsewhere"})
    body = refused(r, 422, "validation-error")
    assert {"field": f"changes.{field}", "rule": "amendable"}.items() <= body["errors"][0].items()
    assert await amendments(s, bid) == before


async def test_empty_reasons_changes_and_no_ops_are_refused(s: Stack) -> None:
    bid = await s.battery()
    before = await amendments(s, bid)
    site = {"manufacturing_site": "Elsewhere"}
    for reason in ("", "   "):
        refused(await amend(s, bid, site, reason=reason), 422, "validation-error")
    refused(await amend(s, bid, {}), 422, "validation-error")
    same = {"manufacturing_site": before[1]["manufacturing_site"]}
    body = refused(await amend(s, bid, same), 422, "validation-error")
    assert body["errors"][0]["rule"] == "changes-something"
    bad = await amend(s, bid, {"materials_kg": {"lithium": -1}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "changes.materials_kg.lithium", bad.text
    assert await amendments(s, bid) == before


async def test_a_huge_amendment_is_refused_unread(s: Stack) -> None:
    bid = await s.battery()
    before = await amendments(s, bid)
    r = await amend(s, bid, {"manufacturing_site": "x" * 100_000})
    assert r.status_code == 413, r.text
    assert await amendments(s, bid) == before


async def test_racing_amendments_apply_one_after_the_other(s: Stack) -> None:
    bid = await s.battery()
    sites = [f"Plant {i}" for i in range(6)]
    results = await asyncio.gather(*(amend(s, bid, {"manufacturing_site": site}) for site in sites))
    assert [r.status_code for r in results] == [201] * len(sites), [r.text for r in results]
    listed, record = await amendments(s, bid)
    assert sorted(a["number"] for a in listed) == list(range(1, len(sites) + 1))
    for prev, nxt in itertools.pairwise(listed):
        assert nxt["changes"]["manufacturing_site"]["before"] == prev["changes"]["manufacturing_site"]["after"]
    assert record["manufacturing_site"] == listed[-1]["changes"]["manufacturing_site"]["after"]
