"""Review of the portal's change: the ways around its rules a participant would try."""

from __future__ import annotations

import pytest

from services.portal.history.service import passport_id
from tests.conftest import RegistrySettings, serve
from tests.factories import create_models, register
from tests.portal_helpers import Lifecycle, at, portal_app, portal_settings, topics, wait_registered, wait_sequence


@pytest.fixture
async def reused(make_settings, token, infra, topic_prefix):
    """Battery R1, repurposed (its second life's passport exists), and the lifecycle stream to go on with."""
    from services.registry.app import create_app

    async with (
        serve(create_app(make_settings(RegistrySettings))) as registry,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        admin = token("ops", "admin")
        r = await registry.post(
            "/v1/participants", json={"id": "LGES", "name": "LG Energy Solution", "role": "manufacturer"}, headers=admin
        )
        assert r.status_code == 201, r.text
        maker = token("LGES", "manufacturer")
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
