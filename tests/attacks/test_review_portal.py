"""Review of the portal's change: the ways around its rules a participant would try."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.portal.history.service import lives, passport_id
from services.portal.ingest import projection
from services.portal.ingest.projection import Battery, TimelineEvent
from services.portal.ingest.service import lives_begun
from tests.factories import create_models, register
from tests.portal_helpers import (
    Lifecycle,
    at,
    portal_app,
    portal_settings,
    registry_and_portal,
    topics,
    wait_registered,
    wait_sequence,
)


@pytest.fixture
async def reused(make_settings, token, infra, topic_prefix):
    """Battery R1, repurposed (its second life's passport exists), and the lifecycle stream to go on with."""
    async with registry_and_portal(make_settings, token) as (registry, portal, maker):
        admin = token("ops", "admin")
        await create_models(registry, maker, "NCM-PACK-77")
        await register(registry, maker, battery_id="R1", model_id="NCM-PACK-77")
        life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
        ev = life.event
        envelopes = [
            life.manufactured("R1", "LGES", at("2026-01-15")),
            ev("R1", "REMOVED", "DISM-1", "dismantler", at("2026-06-01"), {"reason": "accident"}),
            ev("R1", "TRANSFERRED", "DISM-1", "dismantler", at("2026-06-12"), {"to": "REP-1"}),
            ev(
                "R1",
                "REPURPOSED",
                "REP-1",
                "repurposer",
                at("2026-07-01"),
                {"new_application": "ESS", "rated_capacity": 50},
            ),
        ]
        await life.publish(envelopes)
        await wait_sequence(portal, admin, "R1", 4)
        await wait_registered(portal, admin, "R1")
        yield portal, life, envelopes[-1]["data"], admin


async def test_a_passport_whose_life_was_declared_in_error_is_404_not_an_error(reused) -> None:
    """The repurposing declared in error starts no life: the second life's passport ID, handed out before the
    declaration, finds nothing (not a 500), and the battery's current passport is its original one again."""
    portal, life, repurposed, admin = reused
    second = passport_id("R1", 1)
    assert (await portal.get(f"/v1/passports/by-id/{second}")).json()["life"] == 1
    declaration = life.event(
        "R1",
        "ERROR_DECLARED",
        "REP-1",
        "repurposer",
        at("2026-07-02"),
        {"declared_event_id": repurposed["event_id"], "reason": "did_not_occur"},
        corrected=("removed", "REP-1"),
    )
    await life.publish([declaration])
    await wait_sequence(portal, admin, "R1", 5)
    r = await portal.get(f"/v1/passports/by-id/{second}")
    assert (r.status_code, r.json()["code"]) == (404, "unknown-passport"), r.text
    current = (await portal.get("/v1/passports/R1")).json()
    assert (current["passport_id"], current["life"], current["successor"]) == (passport_id("R1", 0), 0, None)
    first = (await portal.get(f"/v1/passports/by-id/{passport_id('R1', 0)}")).json()
    assert first == current


def _timeline(kinds: list[str], declared: dict[int, int]) -> list[dict[str, Any]]:
    """Rows of `portal.events`: one per kind (sequence from 1); `declared` {declaration's sequence: declared one's}."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for seq, kind in enumerate(kinds, start=1):
        data = {"declared_event_id": f"e{declared[seq]}", "reason": "did_not_occur"} if seq in declared else {}
        rows.append(
            {
                "sequence": seq,
                "event_id": f"e{seq}",
                "type": kind,
                "occurred_at": when + timedelta(days=seq),
                "recorded_at": when + timedelta(days=seq),
                "state_after": "x",
                "custodian_after": "ORG",
                "actor": "ORG",
                "data": data,
                "declared_by": next((d for d, t in declared.items() if t == seq), None),
            }
        )
    return rows


@pytest.mark.parametrize(
    ("kinds", "declared"),
    [
        (["MANUFACTURED"], {}),
        (["MANUFACTURED", "REPURPOSED", "REMANUFACTURED"], {}),
        (["MANUFACTURED", "REPURPOSED", "ERROR_DECLARED"], {3: 2}),
        (["MANUFACTURED", "REPURPOSED", "ERROR_DECLARED", "REPURPOSED", "RECYCLED"], {3: 2}),
        (["MANUFACTURED", "REMANUFACTURED", "REPURPOSED", "ERROR_DECLARED", "ERROR_DECLARED"], {4: 3, 5: 2}),
    ],
)
def test_the_passports_the_ingest_keeps_are_the_lives_the_history_shows_whatever_the_batching(
    kinds: list[str], declared: dict[int, int]
) -> None:
    """The ingest records the passport of each life a batch begins (from the folded head's `life`); batch by batch
    or all at once, what it has recorded is every life `history.service.lives` shows (and, after a declaration,
    possibly an earlier one's too)."""
    rows = _timeline(kinds, declared)
    shown = {p["passport_id"] for p in lives("B1", rows)}
    for cut in range(len(rows) + 1):
        kept: set[str] = set()
        before = Battery("B1")
        for part in (rows[:cut], rows):
            timeline = [TimelineEvent.of(r) for r in part]
            after = replace(before, head=projection.fold(timeline) if timeline else before.head)
            kept |= {x["passport_id"] for x in lives_begun(before, after)}
            before = after
        assert shown <= kept, cut
        assert len(shown) == before.head.life + 1


# ---- a webhook subscription outlives its owner's suspension, its deliveries do not ----
async def test_a_suspended_owners_webhook_subscription_delivers_nothing_until_reactivated(
    make_settings, token, tmp_path
) -> None:
    """The subscription's owner is suspended after subscribing: a delivery attempt sends the real receiver nothing
    and moves no watermark (it is retried later); once reactivated, the same delivery reaches the receiver."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from services.portal.ingest.projection import Message
    from services.portal.ingest.schemas import ParticipantIn
    from services.portal.ingest.service import apply
    from services.portal.settings import PortalSettings
    from services.portal.subscriptions import repository as subs
    from services.portal.subscriptions.delivery import Dispatcher
    from tests.test_epcis_subscriptions import Receiver

    receiver = Receiver(tmp_path)
    await receiver.start()
    lges = token("LGES", "manufacturer")
    try:
        async with portal_app(portal_settings(make_settings, subscription_allow_private_dest=True)) as portal:
            assert (
                await portal.post("/epcis/queries", json={"name": "q", "query": {}}, headers=lges)
            ).status_code == 201
            yearly = {"month": "1", "dayOfMonth": "1", "hour": "0", "minute": "0"}  # not due while the test runs
            body = {"dest": f"http://127.0.0.1:{receiver.port}/hook", "schedule": yearly, "reportIfEmpty": True}
            r = await portal.post("/epcis/queries/q/subscriptions", json=body, headers=lges)
            assert r.status_code == 201, r.text
            sid = r.json()["subscriptionID"]
        settings: PortalSettings = portal_settings(
            make_settings, subscription_allow_private_dest=True, participants_unchecked_for_unit_tests=False
        )
        engine = create_async_engine(settings.database_url)
        sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

        async def as_status(status: str) -> None:
            who = ParticipantIn(id="LGES", name="LG Energy Solution", role="manufacturer", status=status)
            async with sessionmaker() as session, session.begin():
                await apply(session, [Message("registry", f"p-{status}-{sid}", "participant", who)])

        async def row() -> dict[str, Any]:
            async with sessionmaker() as session:
                found = await subs.subscription(session, "LGES", "q", sid)
            assert found is not None
            return found

        async def deliver_once() -> None:
            dispatcher = Dispatcher(settings, engine, sessionmaker)  # a fresh directory cache each time
            await dispatcher.start()
            # Only this explicit delivery: its claiming loop would otherwise deliver the retry the suspended
            # attempt scheduled as well, alongside (the tasks have not run yet: nothing was awaited since).
            for task in dispatcher._tasks:
                task.cancel()
            try:
                await dispatcher._deliver(await row())
            finally:
                await dispatcher.stop()

        try:
            await as_status("suspended")
            before = await row()
            await deliver_once()
            after = await row()
            assert receiver.deliveries() == []
            assert "not an active participant" in (after["last_error"] or "") and after["attempts"] == 1
            assert (after["after_seq"], after["last_notified_at"]) == (before["after_seq"], before["last_notified_at"])

            await as_status("active")
            await deliver_once()
            assert len(receiver.deliveries()) == 1
            assert (await row())["last_notified_at"] is not None
        finally:
            await engine.dispose()
    finally:
        receiver.stop()
