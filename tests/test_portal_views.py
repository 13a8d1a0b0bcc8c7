"""Ministry views against a scenario whose every figure is known in advance."""

from __future__ import annotations

import pytest

from tests.conftest import RegistrySettings, eventually, serve
from tests.factories import create_models, register
from tests.portal_helpers import Lifecycle, at, portal_app, portal_settings, topics, wait_sequence

VIN = ["KMHEM41AP6A000001", "KMHEM41AP6A000002", "KMHEM41AP6A000003"]


def scenario(life: Lifecycle) -> list[dict]:
    """Four LGES NCM packs (P1..P4, 77.4 kWh, Li 8 / Ni 40 / Co 5 / Mn 4.5 kg each) and one SDI LFP pack."""
    e = [life.manufactured(b, "LGES", at("2026-01-15")) for b in ("P1", "P2", "P3", "P4")]
    e.append(life.manufactured("B1", "SDI", at("2026-02-10")))
    ev = life.event
    # P1: in service in KR-31, two inspections, a fire
    e += [
        ev("P1", "INSTALLED", "HMC", "oem", at("2026-02-01"), {"vin": VIN[0]}, region="KR-31"),
        ev("P1", "INSPECTED", "KTS", "inspector", at("2026-03-01"), {"soh_pct": 95, "cycle_count": 50}, region="KR-31"),
        ev(
            "P1", "INSPECTED", "KTS", "inspector", at("2026-06-01"), {"soh_pct": 85, "cycle_count": 400}, region="KR-31"
        ),
        ev("P1", "INCIDENT", "HMC", "oem", at("2026-06-10"), {"kind": "fire", "severity": "high"}, region="KR-31"),
        # graded before removal (탈거 전 성능평가): still in service
        ev(
            "P1",
            "GRADED",
            "ASS-1",
            "assessor",
            at("2026-06-20"),
            {"soh_pct": 84, "grade": "reuse", "pre_removal": True},
            region="KR-31",
            state="in_service",
        ),
    ]
    # P2: ESS, end of life, collected, graded recycle, recycled
    e += [
        ev("P2", "INSTALLED", "HMC", "oem", at("2026-02-01"), {"ess_site_id": "ESS-7"}, region="KR-11"),
        ev("P2", "REMOVED", "DISM-1", "dismantler", at("2026-04-01"), {"reason": "end_of_life"}, region="KR-11"),
        ev("P2", "COLLECTED", "COL-1", "collector", at("2026-04-05"), {"centre": "SIHEUNG-01", "region": "KR-41"}),
        ev("P2", "GRADED", "ASS-1", "assessor", at("2026-04-10"), {"soh_pct": 60, "grade": "recycle"}, region="KR-41"),
        ev("P2", "TRANSFERRED", "ASS-1", "assessor", at("2026-04-20"), {"to": "REC-1"}),
        ev(
            "P2",
            "RECYCLED",
            "REC-1",
            "recycler",
            at("2026-05-01"),
            {
                "process": "hydrometallurgy",
                "input_mass_kg": 477,
                "black_mass_kg": 150,
                "recovered_kg": {"lithium": 4, "nickel": 36, "cobalt": 4.5, "manganese": 2, "copper": 10},
            },
            region="KR-44",
        ),
    ]
    # P3: accident removal, waiting for collection since March
    e += [
        ev("P3", "INSTALLED", "HMC", "oem", at("2026-02-01"), {"vin": VIN[1]}, region="KR-31"),
        ev("P3", "REMOVED", "DISM-1", "dismantler", at("2026-03-01"), {"reason": "accident"}, region="KR-31"),
    ]
    # P4: recall, collected, graded reuse, repurposed for an ESS, passes safety, swells later
    e += [
        ev("P4", "INSTALLED", "HMC", "oem", at("2026-02-01"), {"vin": VIN[2]}, region="KR-11"),
        ev("P4", "REMOVED", "DISM-1", "dismantler", at("2026-03-05"), {"reason": "recall"}, region="KR-11"),
        ev("P4", "COLLECTED", "COL-2", "collector", at("2026-03-10"), {"centre": "SEOUL-02", "region": "KR-11"}),
        ev("P4", "GRADED", "ASS-1", "assessor", at("2026-03-20"), {"soh_pct": 82, "grade": "reuse"}, region="KR-11"),
        ev("P4", "TRANSFERRED", "ASS-1", "assessor", at("2026-03-25"), {"to": "REP-1"}),
        ev(
            "P4",
            "REPURPOSED",
            "REP-1",
            "repurposer",
            at("2026-04-01"),
            {"new_application": "ESS", "rated_capacity": 50},
            region="KR-11",
        ),
        ev(
            "P4",
            "SAFETY_INSPECTED",
            "KTL",
            "certifier",
            at("2026-04-15"),
            {"standard": "KC 10031", "result": "pass", "body": "KTL"},
            region="KR-11",
        ),
        ev(
            "P4",
            "INCIDENT",
            "REP-1",
            "repurposer",
            at("2026-07-01"),
            {"kind": "swelling", "severity": "low"},
            region="KR-11",
        ),
    ]
    return e


@pytest.fixture
async def portal(make_settings, token, infra, topic_prefix):
    from services.registry.app import create_app

    async with (
        serve(create_app(make_settings(RegistrySettings))) as registry,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        await create_models(registry, token("LGES", "manufacturer"), "NCM-PACK-77")
        await create_models(registry, token("SDI", "manufacturer"), "LFP-PACK-60")
        for b in ("P1", "P2", "P3", "P4"):
            await register(registry, token("LGES", "manufacturer"), battery_id=b, model_id="NCM-PACK-77")
        await register(
            registry,
            token("SDI", "manufacturer"),
            battery_id="B1",
            model_id="LFP-PACK-60",
            manufactured_at="2026-02-10T09:00:00+09:00",
        )
        life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
        await life.publish(scenario(life))
        admin = token("ops", "admin")
        for bid, seq in (("P1", 6), ("P2", 7), ("P3", 3), ("P4", 9), ("B1", 1)):
            await wait_sequence(portal, admin, bid, seq)

        async def registered() -> bool:
            r = await portal.get("/v1/views/motie", headers=admin)
            return r.json()["registrations"]["batteries"] == 5

        await eventually(registered, timeout_s=30)
        yield portal


async def test_motie_figures(portal, token) -> None:
    v = (await portal.get("/v1/views/motie", headers=token("MOTIE", "ministry", "MOTIE"))).json()
    reg = v["registrations"]
    assert (reg["batteries"], reg["packs"], reg["pack_kwh"]) == (5, 5, 369.6)
    assert reg["by_month_manufacturer_chemistry_kind"] == [
        {
            "month": "2026-01-01",
            "manufacturer": "LGES",
            "chemistry": "NCM",
            "kind": "pack",
            "batteries": 4,
            "kwh": 309.6,
        },
        {"month": "2026-02-01", "manufacturer": "SDI", "chemistry": "LFP", "kind": "pack", "batteries": 1, "kwh": 60.0},
    ]
    assert v["outcomes"]["totals"] == {"recycled": 1, "repurposed": 1}
    assert v["outcomes"]["by_manufacturer"] == [
        {"manufacturer": "LGES", "outcome": "recycled", "batteries": 1},
        {"manufacturer": "LGES", "outcome": "repurposed", "batteries": 1},
    ]
    # Every material recovered is reported (issue 13: copper was dropped before).
    assert v["recovered_materials_kg"]["by_month"] == [
        {
            "month": "2026-05-01",
            "lithium": 4.0,
            "nickel": 36.0,
            "cobalt": 4.5,
            "manganese": 2.0,
            "copper": 10.0,
            "aluminium": 0.0,
            "graphite": 0.0,
            "lead": 0.0,
        }
    ]
    assert v["recovered_materials_kg"]["totals"]["copper"] == 10.0
    assert v["recycled_content_declared"][0] == {
        "manufacturer": "LGES",
        "chemistry": "NCM",
        "batteries": 4,
        "avg_pct": {"lithium": 6.0, "nickel": 4.0, "cobalt": 16.0, "lead": 0.0},
    }
    spring = (
        await portal.get(
            "/v1/views/motie",
            params={"from": "2026-02-01", "to": "2026-04-30"},
            headers=token("MOTIE", "ministry", "MOTIE"),
        )
    ).json()
    assert spring["registrations"]["batteries"] == 1 and spring["outcomes"]["totals"] == {"repurposed": 1}


async def test_molit_figures(portal, token) -> None:
    h = token("MOLIT", "ministry", "MOLIT")
    v = (await portal.get("/v1/views/molit", headers=h)).json()
    assert v["in_service_now"] == {"batteries": 1, "by_region": [{"region": "KR-31", "batteries": 1}]}
    assert v["pre_removal_gradings"] == {
        "gradings": 1,
        "by_grade": [{"grade": "reuse", "gradings": 1, "avg_soh_pct": 84.0}],
    }
    assert v["installations"] == [
        {"month": "2026-02-01", "region": "KR-11", "target": "ess", "batteries": 1},
        {"month": "2026-02-01", "region": "KR-11", "target": "vehicle", "batteries": 1},
        {"month": "2026-02-01", "region": "KR-31", "target": "vehicle", "batteries": 2},
    ]
    insp = v["inspections"]
    assert (insp["inspections"], insp["avg_soh_pct"], insp["soh_distribution"]) == (2, 90.0, {"80-90": 1, "90-100": 1})
    assert v["removals"]["by_reason"] == {"accident": 1, "end_of_life": 1, "recall": 1}
    assert v["incidents"]["by_kind_severity"] == [
        {"kind": "fire", "severity": "high", "incidents": 1},
        {"kind": "swelling", "severity": "low", "incidents": 1},
    ]
    kr31 = (await portal.get("/v1/views/molit", params={"region": "KR-31"}, headers=h)).json()
    assert kr31["removals"]["by_reason"] == {"accident": 1} and kr31["incidents"]["incidents"] == 1
    summer = (await portal.get("/v1/views/molit", params={"from": "2026-06-01"}, headers=h)).json()
    assert summer["inspections"]["inspections"] == 1 and summer["inspections"]["avg_soh_pct"] == 85.0
    assert summer["removals"]["batteries"] == 0 and summer["incidents"]["incidents"] == 2
    spring = (await portal.get("/v1/views/molit", params={"to": "2026-05-31"}, headers=h)).json()
    assert spring["pre_removal_gradings"] == {"gradings": 0, "by_grade": []}


async def test_mcee_figures(portal, token) -> None:
    r = await portal.get("/v1/views/mcee", headers=token("MCEE", "ministry", "MCEE"))
    assert r.status_code == 200, r.text
    v = r.json()
    # Collection in units, kg and kWh (issue 13: units only before); the packs are 477 kg, 77.4 kWh.
    assert v["collected"]["by_region_centre"] == [
        {"region": "KR-11", "centre": "SEOUL-02", "batteries": 1, "kg": 477.0, "kwh": 77.4},
        {"region": "KR-41", "centre": "SIHEUNG-01", "batteries": 1, "kg": 477.0, "kwh": 77.4},
    ]
    assert (v["collected"]["batteries"], v["collected"]["kg"], v["collected"]["kwh"]) == (2, 954.0, 154.8)
    assert v["backlog_now"] == {
        "removed_not_collected": 1,
        "removed_over_30_days": 1,
        "collected_not_graded": 0,
        "collected_over_30_days": 0,
    }
    rec = v["recycling"]
    assert (rec["batteries"], rec["input_mass_kg"], rec["black_mass_kg"]) == (1, 477.0, 150.0)
    rates = {
        r["material"]: (r["recovered_kg"], r["contained_kg"], r["rate_pct"], r["meets_2027_target"])
        for r in v["recovery"]
    }
    # Every material (issue 13: copper, aluminium, graphite and lead were missing); P2 declared no copper.
    assert rates == {
        "lithium": (4.0, 8.0, 50.0, True),
        "nickel": (36.0, 40.0, 90.0, True),
        "cobalt": (4.5, 5.0, 90.0, True),
        "manganese": (2.0, 4.5, 44.44, None),
        "copper": (10.0, 0.0, None, None),
        "aluminium": (0.0, 0.0, None, None),
        "graphite": (0.0, 50.0, 0.0, None),
        "lead": (0.0, 0.0, None, None),
    }
    # Both EU dates (Regulation (EU) 2023/1542 Annex XII part C): 2031 asks Li 80 %, Co/Ni/Cu 95 %.
    by_2031 = {r["material"]: (r["eu_target_2031_pct"], r["meets_2031_target"]) for r in v["recovery"]}
    assert by_2031["lithium"] == (80.0, False) and by_2031["nickel"] == (95.0, False)
    assert by_2031["copper"] == (95.0, None) and by_2031["manganese"] == (None, None)
    # Recycling efficiency of lithium-based batteries (Annex XII part B): 56.5 kg recovered of 477 kg.
    assert v["recycling_efficiency"] == {
        "batteries": 1,
        "input_mass_kg": 477.0,
        "recovered_kg": 56.5,
        "efficiency_pct": 11.84,
        "eu_target_2025_pct": 65.0,
        "eu_target_2030_pct": 70.0,
        "meets_2025_target": False,
        "meets_2030_target": False,
    }
    (recycler,) = v["by_recycler"]
    assert (recycler["recycler"], recycler["batteries"]) == ("REC-1", 1)
    assert recycler["recycling_efficiency"]["efficiency_pct"] == 11.84
    assert {r["material"]: r["rate_pct"] for r in recycler["recovery"]} == {m: r[2] for m, r in rates.items()}
    assert v["disposals"] == {"batteries": 0, "by_method": {}}
    kr11 = (
        await portal.get("/v1/views/mcee", params={"region": "KR-11"}, headers=token("MCEE", "ministry", "MCEE"))
    ).json()
    assert kr11["collected"]["batteries"] == 1 and kr11["backlog_now"]["removed_not_collected"] == 0


async def test_kats_figures(portal, token) -> None:
    v = (await portal.get("/v1/views/kats", headers=token("KATS", "ministry", "KATS"))).json()
    assert v["reused_now"] == {
        "batteries": 1,
        "by_status_safety": [{"status": "repurposed", "safety": "pass", "batteries": 1}],
    }
    assert v["safety_inspections"]["by_result_body"] == [
        {"result": "pass", "body": "KTL", "standard": "KC 10031", "inspections": 1}
    ]
    assert v["grades"] == [
        {"grade": "recycle", "batteries": 1, "avg_soh_pct": 60.0},
        {"grade": "reuse", "batteries": 1, "avg_soh_pct": 82.0},
    ]
    assert v["incidents_after_reuse"] == {
        "incidents": 1,
        "by_kind_severity": [{"kind": "swelling", "severity": "low", "incidents": 1}],
    }


async def test_only_that_ministry_sees_its_view(portal, token) -> None:
    for view in ("motie", "molit", "mcee", "kats"):
        own = view.upper()
        assert (await portal.get(f"/v1/views/{view}", headers=token(own, "ministry", own))).status_code == 200
        assert (await portal.get(f"/v1/views/{view}", headers=token("ops", "admin"))).status_code == 200
        assert (await portal.get(f"/v1/views/{view}")).status_code == 401
        others = [m for m in ("MOTIE", "MOLIT", "MCEE", "KATS") if m != own]
        for who in [token(m, "ministry", m) for m in others] + [token("LGES", "manufacturer"), token("o", "operator")]:
            r = await portal.get(f"/v1/views/{view}", headers=who)
            assert r.status_code == 403 and r.json()["code"] == "wrong-ministry", (view, r.text)


async def test_period_must_be_ordered(portal, token) -> None:
    r = await portal.get(
        "/v1/views/kats", params={"from": "2026-05-01", "to": "2026-01-01"}, headers=token("KATS", "ministry", "KATS")
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "from"


async def test_kats_lists_certificates_expiring_within_90_days_and_batteries_in_service_on_expired_ones(
    make_settings, token, infra, topic_prefix
) -> None:
    from datetime import UTC, datetime, timedelta

    today = datetime.now(UTC).date()

    def cert(number: str, days: int, result: str = "pass") -> dict:
        until = (today + timedelta(days=days)).isoformat()
        return {"certificate_number": number, "body": "KTL", "standard": "KC 10031", "edition": "2024"} | {
            "result": result,
            "valid_until": until,
            "report_ref": f"R-{number}",
        }

    life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
    ev = life.event
    e = [life.manufactured(b, "LGES", at("2026-01-15")) for b in ("R1", "R2", "R3", "R4")]
    reuse = {"new_application": "ESS", "rated_capacity": 40}
    e += [  # R1: in service on a certificate that expired ten days ago
        ev("R1", "REPURPOSED", "REP-1", "repurposer", at("2026-02-01"), reuse, region="KR-11"),
        ev("R1", "SAFETY_INSPECTED", "KTL", "certifier", at("2026-02-02"), cert("C-R1", -10)),
        ev("R1", "INSTALLED", "HMC", "oem", at("2026-02-03"), {"ess_site_id": "ESS-1"}, region="KR-11"),
    ]
    e += [  # R2: remanufactured, certificate expiring in 30 days
        ev("R2", "REMANUFACTURED", "REM-1", "remanufacturer", at("2026-02-01"), {}, region="KR-41"),
        ev("R2", "SAFETY_INSPECTED", "KTR", "certifier", at("2026-02-02"), cert("C-R2", 30) | {"body": "KTR"}),
    ]
    e += [  # R3: valid for 200 days more; R4: a failed inspection after a passing one leaves no certificate
        ev("R3", "REPURPOSED", "REP-1", "repurposer", at("2026-02-01"), reuse, region="KR-11"),
        ev("R3", "SAFETY_INSPECTED", "KTL", "certifier", at("2026-02-02"), cert("C-R3", 200)),
        ev("R4", "REPURPOSED", "REP-1", "repurposer", at("2026-02-01"), reuse, region="KR-11"),
        ev("R4", "SAFETY_INSPECTED", "KTL", "certifier", at("2026-02-02"), cert("C-R4", 20)),
        ev("R4", "SAFETY_INSPECTED", "KTL", "certifier", at("2026-02-03"), cert("C-R4b", 20, "fail")),
    ]
    async with portal_app(portal_settings(make_settings)) as portal:
        await life.publish(e)
        admin = token("ops", "admin")
        for bid, seq in (("R1", 4), ("R2", 3), ("R3", 3), ("R4", 4)):
            await wait_sequence(portal, admin, bid, seq)
        v = (await portal.get("/v1/views/kats", headers=token("KATS", "ministry", "KATS"))).json()
    assert v["certificates_expiring_90_days"] == [
        {
            "battery_id": "R2",
            "state": "remanufactured",
            "status": "remanufactured",
            "region": "KR-41",
            "certificate_number": "C-R2",
            "certificate_body": "KTR",
            "certificate_valid_until": (today + timedelta(days=30)).isoformat(),
        }
    ]
    assert v["in_service_on_expired_certificate"] == [
        {
            "battery_id": "R1",
            "state": "in_service",
            "status": "repurposed",
            "region": "KR-11",
            "certificate_number": "C-R1",
            "certificate_body": "KTL",
            "certificate_valid_until": (today - timedelta(days=10)).isoformat(),
        }
    ]


async def test_an_unchecked_report_is_flagged_in_the_history(make_settings, token, infra, topic_prefix) -> None:
    """The events service accepts a report the registry's facts cannot check and flags it (`data.unchecked`); the
    portal's history shows the flag with the event, and the figures count the event as reported."""
    life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
    report = {
        "process": "hydrometallurgy",
        "input_mass_kg": 450,
        "black_mass_kg": 150,
        "recovered_kg": {"lithium": 5.0},
        "unchecked": ["input-mass", "recovery"],
    }
    e = [
        life.manufactured("U1", "LGES", at("2026-01-15")),
        life.event("U1", "TRANSFERRED", "LGES", "manufacturer", at("2026-02-01"), {"to": "REC-1"}),
        life.event("U1", "RECYCLED", "REC-1", "recycler", at("2026-03-01"), report, region="KR-44"),
    ]
    async with portal_app(portal_settings(make_settings)) as portal:
        await life.publish(e)
        h = await wait_sequence(portal, token("ops", "admin"), "U1", 3)
        assert h["timeline"][-1]["type"] == "RECYCLED"
        assert h["timeline"][-1]["data"]["unchecked"] == ["input-mass", "recovery"]
        v = (await portal.get("/v1/views/mcee", headers=token("MCEE", "ministry", "MCEE"))).json()
        assert v["recycling"]["batteries"] == 1
