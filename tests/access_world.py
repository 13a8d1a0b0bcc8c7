"""Battery R1's life as the ledger publishes it, with one organisation for each relation issue 12 names
(the relation matrix in tests/test_authz_matrix.py and the attacks in tests/attacks/test_access.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from tests.conftest import RegistrySettings, eventually, serve
from tests.factories import create_models, register
from tests.portal_helpers import Lifecycle, at, portal_app, portal_settings, topics, wait_registered, wait_sequence

BATTERY_URI = "https://batterytrace.kr/battery/"
#: Each relation is held by one organisation in R1's life (made by LGES).
RELATION_ORGS = {
    "none": "SDI",  # a competitor manufacturer, never near it
    "manufacturer": "LGES",
    "custodian_now": "REP-1",
    "custodian_before": "HMC",
    "consignee": "COL-7",  # named in REMOVED.data.consignee, never collected it
    "poster_only": "KOTSA",  # posted an INCIDENT
    "certifier": "KTL",  # posted the SAFETY_INSPECTED
}


def event_list(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"])


@contextlib.asynccontextmanager
async def access_world(
    make_settings: Callable[..., Any], token: Callable[..., dict[str, str]], infra: Any, topic_prefix: str
) -> AsyncIterator[dict[str, Any]]:
    """Registry and portal; battery R1's life published as the ledger would (every relation in it)."""
    from services.registry.app import create_app as create_registry

    async with (
        serve(create_registry(make_settings(RegistrySettings))) as registry,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        maker = token("LGES", "manufacturer")
        await create_models(registry, maker, "NCM-PACK-77")
        await register(registry, maker, battery_id="R1", model_id="NCM-PACK-77")
        life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
        ev = life.event
        await life.publish(
            [
                life.manufactured("R1", "LGES", at("2026-01-15")),
                ev("R1", "TRANSFERRED", "LGES", "manufacturer", at("2026-01-20"), {"to": "HMC"}),
                ev("R1", "INSTALLED", "HMC", "oem", at("2026-02-01"), {"vin": "KMHEM41AP6A000009"}),
                ev("R1", "INCIDENT", "KOTSA", "inspector", at("2026-03-01"), {"kind": "thermal", "severity": "low"}),
                ev("R1", "REMOVED", "HMC", "oem", at("2026-06-01"), {"reason": "end_of_life", "consignee": "COL-7"}),
                ev("R1", "COLLECTED", "COL-1", "collector", at("2026-06-05"), {"centre": "C-1", "region": "KR-41"}),
                ev("R1", "GRADED", "COL-1", "assessor", at("2026-06-10"), {"soh_pct": 81, "grade": "reuse"}),
                ev("R1", "TRANSFERRED", "COL-1", "collector", at("2026-06-12"), {"to": "REP-1"}),
                ev(
                    "R1",
                    "REPURPOSED",
                    "REP-1",
                    "repurposer",
                    at("2026-07-01"),
                    {"new_application": "ESS", "rated_capacity": 50},
                ),
                ev("R1", "SAFETY_INSPECTED", "KTL", "certifier", at("2026-07-10"), {"result": "pass", "body": "KTL"}),
            ]
        )
        admin = token("root", "admin")
        await wait_sequence(portal, admin, "R1", 10)
        await wait_registered(portal, admin, "R1")
        serial = (await registry.get("/v1/batteries/R1", headers=admin)).json()["serial_number"]

        async def epcis_ready() -> bool:
            r = await portal.get("/epcis/events", params={"MATCH_anyEPC": BATTERY_URI + "R1"}, headers=admin)
            return r.status_code == 200 and len(event_list(r.json())) >= 10

        await eventually(epcis_ready, timeout_s=30)
        yield {"registry": registry, "portal": portal, "serial": serial, "maker": maker}
