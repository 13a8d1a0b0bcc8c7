"""The demo loader against the in-process stack (registry → Kafka → events → Kafka → portal): every
ministry view shows figures in each main section, and loading it again changes nothing."""

from __future__ import annotations

from typing import Any

from devtools.demo import ORGS, build_plans, load_demo_async
from services.portal.app import create_app as create_portal
from tests.conftest import serve
from tests.events_helpers import stack
from tests.portal_helpers import portal_settings

PACKS = 40


def test_plan_is_deterministic_and_time_ordered() -> None:
    a, b = build_plans(7, PACKS), build_plans(7, PACKS)
    assert [(p.pack_id, p.batteries, [e.__dict__ for e in p.events]) for p in a] == [
        (p.pack_id, p.batteries, [e.__dict__ for e in p.events]) for p in b
    ]
    for p in a:
        assert len(p.batteries) == 1 + 2 + 8
        last = {bat["id"]: bat["_at"] for bat in p.batteries}
        for e in p.events:
            assert e.at >= last[e.battery_id], (p.pack_id, e)
            last[e.battery_id] = e.at


def _sections(views: dict[str, dict[str, Any]]) -> dict[str, Any]:
    m, lt, c, k = views["MOTIE"], views["MOLIT"], views["MCEE"], views["KATS"]
    return {
        "MOTIE registrations": m["registrations"]["packs"],
        "MOTIE kWh": m["registrations"]["pack_kwh"],
        "MOTIE outcomes repurposed": m["outcomes"]["totals"].get("repurposed", 0),
        "MOTIE outcomes remanufactured": m["outcomes"]["totals"].get("remanufactured", 0),
        "MOTIE outcomes recycled": m["outcomes"]["totals"].get("recycled", 0),
        "MOTIE recovered Li": m["recovered_materials_kg"]["totals"]["lithium"],
        "MOTIE recovered Ni": m["recovered_materials_kg"]["totals"]["nickel"],
        "MOTIE recycled content": len(m["recycled_content_declared"]),
        "MOLIT in service": lt["in_service_now"]["batteries"],
        "MOLIT installations": len(lt["installations"]),
        "MOLIT inspections": lt["inspections"]["inspections"],
        "MOLIT removals": lt["removals"]["batteries"],
        "MOLIT removal reasons": len(lt["removals"]["by_reason"]),
        "MOLIT incidents": lt["incidents"]["incidents"],
        "MOLIT pre-removal gradings": lt["pre_removal_gradings"]["gradings"],
        "MCEE collected": c["collected"]["batteries"],
        "MCEE removed not collected": c["backlog_now"]["removed_not_collected"],
        "MCEE removed over 30 days": c["backlog_now"]["removed_over_30_days"],
        "MCEE collected not graded": c["backlog_now"]["collected_not_graded"],
        "MCEE collected over 30 days": c["backlog_now"]["collected_over_30_days"],
        "MCEE recycling": c["recycling"]["batteries"],
        "MCEE recovery Li": next(r["rate_pct"] for r in c["recovery"] if r["material"] == "lithium") or 0,
        "MCEE disposals": c["disposals"]["batteries"],
        "KATS reused": k["reused_now"]["batteries"],
        "KATS safety pass": sum(
            r["inspections"] for r in k["safety_inspections"]["by_result_body"] if r["result"] == "pass"
        ),
        "KATS safety fail": sum(
            r["inspections"] for r in k["safety_inspections"]["by_result_body"] if r["result"] == "fail"
        ),
        "KATS grades": len(k["grades"]),
        "KATS incidents after reuse": k["incidents_after_reuse"]["incidents"],
        "KATS in service on an expired certificate": len(k["in_service_on_expired_certificate"]),
        "MCEE recycling efficiency": c["recycling_efficiency"]["efficiency_pct"] or 0,
    }


async def test_demo_fills_every_view_and_loads_idempotently(make_settings, token, infra) -> None:
    key = infra.public_key.with_name("jwt-private.pem")
    async with stack(make_settings, token, streams=True, manufacturer_participant=False) as s:
        async with serve(create_portal(portal_settings(make_settings))) as portal:
            clients = {"registry": s.registry, "events": s.events, "portal": portal}

            async def views() -> dict[str, dict[str, Any]]:
                out = {}
                for code in ("MOTIE", "MOLIT", "MCEE", "KATS"):
                    r = await portal.get(f"/v1/views/{code.lower()}", headers=token(code, "ministry", ministry=code))
                    assert r.status_code == 200, r.text
                    out[code] = r.json()
                return out

            first = await load_demo_async({}, key, packs=PACKS, seed=7, clients=clients, quiet=True)
            assert first["portal_caught_up"] == 1
            assert first["packs"] == PACKS and first["batteries"] == PACKS * 11 == first["batteries_created"]
            assert first["participants"] == len(ORGS)
            assert first["implausible_refused"] == 1  # the recycler's inflated report (devtools/demo/regime.py)
            before = await views()
            empty = {name: v for name, v in _sections(before).items() if not v}
            assert not empty, f"empty sections: {empty}"
            roles = {o.role for o in ORGS}
            assert len(roles) == 12  # every participant role of DOMAIN.md, ministries and the operator

            second = await load_demo_async({}, key, packs=PACKS, seed=7, clients=clients, quiet=True)
            assert second["participants"] == second["models"] == second["batteries_created"] == 0
            assert second["events"] == first["events"]
            assert second["implausible_refused"] == 0  # the battery is recycled by now
            after = await views()
            assert after == before

            # A pack's whole history at the portal matches the ledger, hash chain intact.
            pack = build_plans(7, 1)[0].pack_id
            r = await portal.get(f"/v1/batteries/{pack}/history", headers=token("MOLIT", "ministry", ministry="MOLIT"))
            assert r.status_code == 200, r.text
            body = r.json()
            v = await s.events.get(f"/v1/batteries/{pack}/verify", headers=token("MOLIT", "ministry", ministry="MOLIT"))
            assert v.status_code == 200 and v.json()["valid"], v.text
            assert body["current"]["sequence"] == v.json()["events"]

            # The corrections: the mistaken RECYCLED struck through, the pack back at `collected`; the amendment.
            from devtools.demo.corrections import AMENDED, waiting_at_a_centre

            plans = build_plans(7, PACKS)
            assert first["corrected_packs"] == first["amended_packs"] == 1
            molit = token("MOLIT", "ministry", ministry="MOLIT")
            corrected = waiting_at_a_centre(plans)
            assert corrected is not None
            h = (await portal.get(f"/v1/batteries/{corrected.pack_id}/history", headers=molit)).json()
            declared = [e for e in h["timeline"] if e["declared_in_error"]]
            assert [e["type"] for e in declared] == ["RECYCLED"]
            assert h["timeline"][-1]["type"] == "ERROR_DECLARED" and h["current"]["state"] == "collected"
            amended = (await portal.get(f"/v1/batteries/{plans[1].pack_id}/history", headers=molit)).json()
            assert [sorted(a["changes"]) for a in amended["amendments"]] == [sorted(AMENDED)]
            assert amended["registry"]["manufacturing_site"] == AMENDED["manufacturing_site"]
