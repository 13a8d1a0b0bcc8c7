"""The web UI over HTTP (httpx on the ASGI app), fed by the real registry and lifecycle envelopes on the real
broker: every page renders, access is the API's, the public passport holds no restricted field, the
language switch, CSV downloads."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from html import unescape
from typing import Any

import httpx
import pytest

from services.portal.ui import sessions
from services.portal.ui.settings import UISettings
from shared.auth import Ministry, Principal, Role
from tests.conftest import Infra, RegistrySettings, eventually, serve
from tests.factories import create_models, participant, register
from tests.portal_helpers import Lifecycle, at, portal_app, portal_settings, topics, wait_sequence

VIN_1, VIN_2 = "KMHEM41AP6A000001", "KMHEM41AP6A000002"
DIGITAL_LINK = "https://id.batterytrace.kr/01/08801234567893/21/P0001"
LONG = "KR-LGES-P0050"
#: battery -> its last sequence once the scenario is applied
LAST = {
    "KR-LGES-P0001": 5,
    "KR-LGES-M0001": 2,
    "KR-LGES-C0001": 2,
    "KR-LGES-C0002": 2,
    "KR-LGES-P0002": 7,
    "KR-SDI-P0003": 9,
    LONG: 50,
}


def scenario(life: Lifecycle) -> list[dict[str, Any]]:
    """A pack P0001 (module M0001 of cells C0001, C0002) in a car; P0002 recycled; SDI's P0003 repurposed
    for an ESS, safety-inspected and swollen; P0050 with 50 events (47 inspections)."""
    ev = life.event
    e = [
        life.manufactured(b, "LGES", at("2026-01-10"), kind=k)
        for b, k in (
            ("KR-LGES-P0001", "pack"),
            ("KR-LGES-M0001", "module"),
            ("KR-LGES-C0001", "cell"),
            ("KR-LGES-C0002", "cell"),
            ("KR-LGES-P0002", "pack"),
            (LONG, "pack"),
        )
    ]
    e.append(life.manufactured("KR-SDI-P0003", "SDI", at("2026-02-10")))
    e += [
        ev(c, "ASSEMBLED", "LGES", "manufacturer", at("2026-01-20"), {"parent_id": "KR-LGES-M0001"})
        for c in ("KR-LGES-C0001", "KR-LGES-C0002")
    ]
    e += [
        ev("KR-LGES-M0001", "ASSEMBLED", "LGES", "manufacturer", at("2026-01-21"), {"parent_id": "KR-LGES-P0001"}),
        ev("KR-LGES-P0001", "TRANSFERRED", "LGES", "manufacturer", at("2026-01-25"), {"to": "HMC"}),
        ev(
            "KR-LGES-P0001",
            "INSTALLED",
            "HMC",
            "oem",
            at("2026-02-01"),
            {"vin": VIN_1},
            region="KR-31",
            site="Ulsan plant",
        ),
        ev(
            "KR-LGES-P0001",
            "INSPECTED",
            "KTS",
            "inspector",
            at("2026-05-01"),
            {"soh_pct": 96.5, "cycle_count": 120},
            region="KR-31",
        ),
        ev(
            "KR-LGES-P0001",
            "INCIDENT",
            "HMC",
            "oem",
            at("2026-06-10"),
            {"kind": "fire", "severity": "high"},
            region="KR-31",
        ),
    ]
    p2 = "KR-LGES-P0002"
    e += [
        ev(p2, "INSTALLED", "HMC", "oem", at("2026-02-01"), {"ess_site_id": "ESS-7"}, region="KR-11"),
        ev(p2, "REMOVED", "DISM-1", "dismantler", at("2026-04-01"), {"reason": "end_of_life"}, region="KR-11"),
        ev(p2, "COLLECTED", "COL-1", "collector", at("2026-04-05"), {"centre": "SIHEUNG-01", "region": "KR-41"}),
        ev(p2, "GRADED", "ASS-1", "assessor", at("2026-04-10"), {"soh_pct": 60, "grade": "recycle"}, region="KR-41"),
        ev(p2, "TRANSFERRED", "ASS-1", "assessor", at("2026-04-20"), {"to": "REC-1"}),
        ev(
            p2,
            "RECYCLED",
            "REC-1",
            "recycler",
            at("2026-05-01"),
            {
                "process": "hydrometallurgy",
                "input_mass_kg": 477,
                "black_mass_kg": 150,
                "recovered_kg": {"lithium": 4, "nickel": 36, "cobalt": 4.5, "manganese": 2},
            },
            region="KR-44",
        ),
    ]
    p3 = "KR-SDI-P0003"
    e += [
        ev(p3, "INSTALLED", "HMC", "oem", at("2026-02-15"), {"vin": VIN_2}, region="KR-11"),
        ev(p3, "REMOVED", "DISM-1", "dismantler", at("2026-03-05"), {"reason": "recall"}, region="KR-11"),
        ev(p3, "COLLECTED", "COL-2", "collector", at("2026-03-10"), {"centre": "SEOUL-02", "region": "KR-11"}),
        ev(p3, "GRADED", "ASS-1", "assessor", at("2026-03-20"), {"soh_pct": 82, "grade": "reuse"}, region="KR-11"),
        ev(p3, "TRANSFERRED", "ASS-1", "assessor", at("2026-03-25"), {"to": "REP-1"}),
        ev(
            p3,
            "REPURPOSED",
            "REP-1",
            "repurposer",
            at("2026-04-01"),
            {"new_application": "ESS", "rated_capacity": 50},
            region="KR-11",
        ),
        ev(
            p3,
            "SAFETY_INSPECTED",
            "KTL",
            "certifier",
            at("2026-04-15"),
            {"standard": "KC 10031", "result": "pass", "body": "KTL"},
            region="KR-11",
        ),
        ev(
            p3,
            "INCIDENT",
            "REP-1",
            "repurposer",
            at("2026-07-01"),
            {"kind": "swelling", "severity": "low"},
            region="KR-11",
        ),
    ]
    e += [
        ev(LONG, "TRANSFERRED", "LGES", "manufacturer", at("2026-01-12"), {"to": "HMC"}),
        ev(LONG, "INSTALLED", "HMC", "oem", at("2026-01-15"), {"vin": "KMHEM41AP6A000050"}, region="KR-41"),
    ]
    start = at("2026-01-20")
    for i in range(47):
        e.append(
            ev(
                LONG,
                "INSPECTED",
                "KTS",
                "inspector",
                start + timedelta(days=7 * i),
                {"soh_pct": round(100 - i * 0.3, 1), "cycle_count": 20 * (i + 1)},
                region="KR-41",
            )
        )
    return e


@asynccontextmanager
async def ui_world(
    make_settings: Callable[..., Any],
    token: Callable[..., dict[str, str]],
    infra: Infra,
    topic_prefix: str,
    **portal_overrides: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """The registry and the portal (with the demo sign-in) running, the scenario applied."""
    from services.registry.app import create_app

    async with (
        serve(create_app(make_settings(RegistrySettings))) as registry,
        portal_app(portal_settings(make_settings, **portal_overrides)) as portal,
    ):
        portal.app.state.ui_settings = UISettings(  # type: ignore[attr-defined]
            dev_signin=True, dev_signing_key_file=infra.public_key.parent / "jwt-private.pem"
        )
        lges, sdi = token("LGES", "manufacturer"), token("SDI", "manufacturer")
        await participant(registry, token("BT-ADMIN", "admin"), "LGES", "manufacturer")  # owns DIGITAL_LINK's prefix
        await create_models(registry, lges, "NCM-PACK-77", "NCM-MOD-8", "NCM-CELL-60")
        await create_models(registry, sdi, "LFP-PACK-60")
        for bid, model in (
            ("KR-LGES-P0001", "NCM-PACK-77"),
            ("KR-LGES-M0001", "NCM-MOD-8"),
            ("KR-LGES-C0001", "NCM-CELL-60"),
            ("KR-LGES-C0002", "NCM-CELL-60"),
            ("KR-LGES-P0002", "NCM-PACK-77"),
            (LONG, "NCM-PACK-77"),
        ):
            await register(registry, lges, battery_id=bid, model_id=model, manufactured_at="2026-01-10T10:00:00+09:00")
        await register(
            registry,
            sdi,
            battery_id="KR-SDI-P0003",
            model_id="LFP-PACK-60",
            manufactured_at="2026-02-10T10:00:00+09:00",
        )
        r = await registry.post(
            "/v1/batteries/KR-LGES-P0001/aliases",
            json={"scheme": "gs1_digital_link", "value": DIGITAL_LINK},
            headers=lges,
        )
        assert r.status_code == 201, r.text
        life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
        await life.publish(scenario(life))
        admin = token("ops", "admin")
        for bid, seq in LAST.items():
            await wait_sequence(portal, admin, bid, seq)
        for bid in LAST:  # and every registration (the passport needs it)

            async def registered(bid: str = bid) -> bool:
                return (await portal.get(f"/ui/passport/{bid}")).status_code == 200

            await eventually(registered, timeout_s=30)
        portal.registry = registry  # type: ignore[attr-defined]
        yield portal


async def cookie(portal: httpx.AsyncClient, org: str, role: str, ministry: str | None = None) -> dict[str, str]:
    """A signed-in UI session (server-side, as a sign-in makes it) for the participant."""
    return {"Cookie": f"bt_session={await session_key(portal.app, org, role, ministry)}"}  # type: ignore[attr-defined]


async def session_key(app: Any, org: str, role: str, ministry: str | None = None) -> str:
    principal = Principal(org=org, role=Role(role), ministry=Ministry(ministry) if ministry else None, subject=org)
    return await sessions.open_session(app.state.engine, principal, 3600)


@pytest.fixture
async def portal(make_settings, token, infra, topic_prefix) -> AsyncIterator[httpx.AsyncClient]:
    async with ui_world(make_settings, token, infra, topic_prefix) as client:
        yield client


async def test_every_page_renders_for_its_audience(portal, infra) -> None:
    admin = await cookie(portal, "ops", "admin")
    pages = {
        "/ui/": None,
        "/ui/signin": None,
        "/ui/passport/KR-LGES-P0001": None,
        "/ui/batteries/KR-LGES-P0001": admin,
        "/ui/batteries/KR-LGES-P0001?at=2026-01-20": admin,
        "/ui/ministry/MOTIE": await cookie(portal, "MOTIE", "ministry", "MOTIE"),
        "/ui/ministry/MOLIT": await cookie(portal, "MOLIT", "ministry", "MOLIT"),
        "/ui/ministry/MCEE": await cookie(portal, "MCEE", "ministry", "MCEE"),
        "/ui/ministry/KATS?from=2026-01&to=2026-12&region=KR-11": await cookie(portal, "KATS", "ministry", "KATS"),
        "/ui/ops": await cookie(portal, "ops", "operator"),
        "/ui/ops/live": await cookie(portal, "ops", "operator"),
        "/ui/static/style.css": None,
        "/ui/static/ui.js": None,
    }
    for path, headers in pages.items():
        r = await portal.get(path, headers=headers or {})
        assert r.status_code == 200, (path, r.text[:500])
        if path.startswith("/ui/static"):
            continue
        assert "Traceback" not in r.text
        assert "Server-Timing" in r.headers


async def test_battery_page_shows_the_whole_life(portal, infra) -> None:
    r = await portal.get("/ui/batteries/KR-LGES-P0001?lang=en", headers=await cookie(portal, "ops", "admin"))
    html = r.text
    for text in (
        "KR-LGES-M0001",
        "KR-LGES-C0001",
        "Installed",
        "Inspected",
        "Incident",
        VIN_1,
        "HMC",
        "KTS",
        "linked and intact",
        DIGITAL_LINK,
        "Lifecycle record",
        "kWh",
    ):
        assert text in html, text
    assert html.count('class="ev ') == 5
    # 50 events, in order
    html = (await portal.get(f"/ui/batteries/{LONG}", headers=await cookie(portal, "ops", "admin"))).text
    assert html.count('class="ev ') == 50
    assert html.index(">#1<") < html.index(">#2<") < html.index(">#50<")


async def test_composition_as_built_at_a_past_date(portal, infra) -> None:
    admin = await cookie(portal, "ops", "admin")
    before = (await portal.get("/ui/batteries/KR-LGES-P0001?at=2026-01-15&lang=en", headers=admin)).text
    assert "KR-LGES-M0001" not in before.split('id="composition"')[1].split("</section>")[0]
    assert "Nothing was inside it at that time" in before
    after = (await portal.get("/ui/batteries/KR-LGES-P0001?at=2026-01-22&lang=en", headers=admin)).text
    tree = after.split('id="composition"')[1].split("</section>")[0]
    assert "KR-LGES-M0001" in tree and "KR-LGES-C0002" in tree and "<details" in tree


async def test_look_up_by_id_vin_and_digital_link(portal, infra) -> None:
    admin = await cookie(portal, "ops", "admin")
    r = await portal.get("/ui/lookup", params={"q": "kr-lges-p0001"}, headers=admin)
    assert (r.status_code, r.headers["location"]) == (303, "/ui/batteries/KR-LGES-P0001")
    r = await portal.get("/ui/lookup", params={"q": VIN_2}, headers=admin)
    assert r.headers["location"] == "/ui/batteries/KR-SDI-P0003"
    # without sign-in: the public passport, and a VIN needs sign-in
    r = await portal.get("/ui/lookup", params={"q": DIGITAL_LINK})
    assert r.headers["location"] == "/ui/passport/KR-LGES-P0001"
    r = await portal.get("/ui/lookup", params={"q": VIN_1, "lang": "en"})
    assert r.status_code == 401 and "needs sign-in" in r.text
    # a scanned QR opens the public passport
    r = await portal.get("/ui/dl/01/08801234567893/21/P0001")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/passport/KR-LGES-P0001")
    r = await portal.get("/ui/lookup", params={"q": "KR-NOPE-1", "lang": "en"})
    assert r.status_code == 404 and "No battery is known as 'KR-NOPE-1'" in unescape(r.text)


async def test_public_passport_has_no_restricted_fields(portal) -> None:
    r = await portal.get("/ui/passport/KR-SDI-P0003?lang=en")
    assert r.status_code == 200
    html = r.text
    assert "KR-SDI-P0003" in html and "Lithium iron phosphate" in html and "Repurposed" in html
    for secret in (
        "batteryMaterialMass",
        "soh_pct",
        "custodian",
        VIN_2,
        "REP-1",
        "swelling",
        "SN0",
        "KTL",
        "Lifecycle record",
        "kr.batterytrace",
    ):
        if secret == "REP-1":  # the repurposer is this life's operator: public by the Battery Pass
            continue
        assert secret not in html, secret
    assert "batteryMaterials" in html  # named as hidden, no values


async def test_battery_history_needs_sign_in_and_a_handled_battery(portal, infra) -> None:
    r = await portal.get("/ui/batteries/KR-LGES-P0001?lang=en")
    assert r.status_code == 401 and "Sign in to see this page." in r.text
    r = await portal.get("/ui/batteries/KR-LGES-P0001?lang=en", headers=await cookie(portal, "REC-1", "recycler"))
    assert r.status_code == 403
    assert "Your organisation (REC-1) neither made nor handled this battery" in r.text
    assert "/ui/passport/KR-LGES-P0001" in r.text
    r = await portal.get("/ui/batteries/KR-NOPE-9?lang=en", headers=await cookie(portal, "ops", "admin"))
    assert r.status_code == 404 and "The portal knows no battery 'KR-NOPE-9'" in unescape(r.text)
    r = await portal.get(
        "/ui/batteries/KR-LGES-P0001?at=yesterday&lang=en", headers=await cookie(portal, "ops", "admin")
    )
    assert r.status_code == 422 and "Please check what you entered" in r.text


async def test_passport_tabs_follow_the_access_level(portal, infra) -> None:
    maker = (
        await portal.get("/ui/batteries/KR-LGES-P0002?lang=en", headers=await cookie(portal, "LGES", "manufacturer"))
    ).text
    recycler = (
        await portal.get("/ui/batteries/KR-LGES-P0002?lang=en", headers=await cookie(portal, "REC-1", "recycler"))
    ).text
    assert "Access level: manufacturer" in maker and 'data-aspect="kr.batterytrace.manufacturing"' in maker
    assert "Access level: legitimate interest" in recycler
    assert 'data-aspect="kr.batterytrace.condition"' in recycler
    assert 'data-aspect="kr.batterytrace.manufacturing"' not in recycler
    assert 'data-aspect="kr.batterytrace.lifecycle"' not in recycler


async def test_each_ministry_sees_only_its_dashboard(portal, infra) -> None:
    for code in ("MOTIE", "MOLIT", "MCEE", "KATS"):
        own = await cookie(portal, code, "ministry", code)
        assert (await portal.get(f"/ui/ministry/{code}", headers=own)).status_code == 200
        for other in {"MOTIE", "MOLIT", "MCEE", "KATS"} - {code}:
            r = await portal.get(f"/ui/ministry/{other}?lang=en", headers=own)
            assert r.status_code == 403, (code, other)
            assert f"This dashboard is for {other} staff only." in r.text
            r = await portal.get(f"/ui/ministry/{other}/csv/grades", headers=own)
            assert r.status_code == 403
    r = await portal.get("/ui/ministry/MOTIE", headers=await cookie(portal, "LGES", "manufacturer"))
    assert r.status_code == 403
    r = await portal.get("/ui/ministry/MOTIE?lang=en")
    assert r.status_code == 401 and "/ui/signin" in r.text
    r = await portal.get("/ui/ops?lang=en", headers=await cookie(portal, "MOTIE", "ministry", "MOTIE"))
    assert r.status_code == 403 and "for platform operators only" in r.text


async def test_dashboard_figures_filters_and_csv(portal, infra) -> None:
    mcee = await cookie(portal, "MCEE", "ministry", "MCEE")
    html = (await portal.get("/ui/ministry/MCEE?lang=en", headers=mcee)).text
    assert "SIHEUNG-01" in html and "SEOUL-02" in html and "<svg" in html
    r = await portal.get("/ui/ministry/MCEE/csv/collected_by_region_centre", headers=mcee)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows == [["region", "centre", "batteries"], ["KR-11", "SEOUL-02", "1"], ["KR-41", "SIHEUNG-01", "1"]]
    # the region filter narrows the table and its CSV
    r = await portal.get("/ui/ministry/MCEE/csv/collected_by_region_centre?region=KR-41", headers=mcee)
    assert list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))[1:] == [["KR-41", "SIHEUNG-01", "1"]]
    # a period with nothing in it says what to do
    html = (await portal.get("/ui/ministry/MCEE?from=2027-01&to=2027-02&lang=en", headers=mcee)).text
    assert "Nothing was recorded for this period and region" in html
    motie = await cookie(portal, "MOTIE", "ministry", "MOTIE")
    r = await portal.get("/ui/ministry/MOTIE/csv/recovered_by_month", headers=motie)
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows == [["month", "lithium", "nickel", "cobalt", "manganese"], ["2026-05", "4.0", "36.0", "4.5", "2.0"]]
    r = await portal.get("/ui/ministry/MOTIE/csv/nope?lang=en", headers=motie)
    assert r.status_code == 404 and "This dashboard has no table 'nope'." in unescape(r.text)
    r = await portal.get("/ui/ministry/MOTIE?from=soon&lang=en", headers=motie)
    assert r.status_code == 422 and "Please check what you entered" in r.text
    # every table has a CSV link that answers
    for code in ("MOTIE", "MOLIT", "MCEE", "KATS"):
        headers = await cookie(portal, code, "ministry", code)
        html = (await portal.get(f"/ui/ministry/{code}", headers=headers)).text
        links = [part.split('"')[0] for part in html.split(f'href="/ui/ministry/{code}/csv/')[1:]]
        assert links
        for link in links:
            r = await portal.get(f"/ui/ministry/{code}/csv/{link}", headers=headers)
            assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf"), link


async def test_language_switch(portal, infra) -> None:
    assert "배터리 조회" in (await portal.get("/ui/")).text  # Korean by default
    r = await portal.get("/ui/lang/en", params={"next": "/ui/passport/KR-LGES-P0001"})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/passport/KR-LGES-P0001")
    assert "bt_lang=en" in r.headers["set-cookie"]
    html = (await portal.get("/ui/passport/KR-LGES-P0001")).text
    assert 'lang="en"' in html and "General product information" in html
    portal.cookies.set("bt_lang", "ko")
    assert "일반 제품 정보" in (await portal.get("/ui/passport/KR-LGES-P0001")).text
    # no open redirect
    r = await portal.get("/ui/lang/en", params={"next": "https://evil.example/"})
    assert r.headers["location"] == "/ui/"


def csrf_of(html: str) -> str:
    """The CSRF token a page's POST forms carry."""
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_dev_sign_in_sets_an_http_only_cookie(portal) -> None:
    csrf = csrf_of((await portal.get("/ui/signin")).text)
    r = await portal.post("/ui/signin", data={"preset": "MCEE|ministry|MCEE", "next": "/ui/", "csrf": csrf})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/ministry/MCEE")
    set_cookie = r.headers["set-cookie"].lower()
    assert "bt_session=" in set_cookie and "httponly" in set_cookie and "samesite=lax" in set_cookie
    assert (await portal.get("/ui/ministry/MCEE")).status_code == 200
    assert (await portal.get("/ui/ministry/MOTIE")).status_code == 403
    csrf = portal.cookies["bt_csrf"]  # signing in gave a fresh one
    r = await portal.post(
        "/ui/signin", data={"role": "ministry", "org": "X", "ministry": "", "lang": "en", "csrf": csrf}
    )
    assert r.status_code == 422
    await portal.post("/ui/signout", data={"csrf": csrf})
    portal.cookies.clear()
    assert (await portal.get("/ui/ministry/MCEE")).status_code == 401


async def test_sign_in_without_dev_mode_says_it_is_not_configured(portal) -> None:
    portal.app.state.ui_settings = UISettings()
    html = (await portal.get("/ui/signin?lang=en")).text
    assert "No way to sign in is configured" in html and 'name="preset"' not in html
    r = await portal.post("/ui/signin", data={"preset": "ops|admin|", "csrf": csrf_of(html) if "csrf" in html else ""})
    assert r.status_code == 404
    portal.app.state.ui_settings = UISettings(
        oidc_issuer="http://127.0.0.1:9",  # configured, but the provider does not answer: a sentence, not a 500
        oidc_client_id="portal",
        oidc_redirect_uri="https://portal.example.kr/ui/oidc/callback",
    )
    r = await portal.get("/ui/signin/oidc?lang=en")
    assert r.status_code == 503 and "did not complete" in r.text
    r = await portal.get("/ui/oidc/callback?code=x&state=y&lang=en")  # no sign-in in flight
    assert r.status_code == 401 and "did not complete" in r.text
