"""The web UI in a real browser: Debian's Chromium driven by Playwright against the portal (and the registry)
served by uvicorn on 127.0.0.1, fed by the real registry and lifecycle envelopes on the real broker.
Screenshots of every page go to a temp dir and a set is copied to /tmp/ui-shots/ for review; server times
(Server-Timing) and page weights are written next to them."""

from __future__ import annotations

import asyncio
import shutil
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from devtools.embedded import free_port
from services.portal.ui.settings import UISettings
from tests.conftest import eventually
from tests.test_ui_pages import DIGITAL_LINK, LONG, VIN_2, session_key, ui_world

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REVIEW = Path("/tmp/ui-shots")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(autouse=True)
def needs_chromium() -> None:
    """Not a skip: without the browser these tests would vanish from the run."""
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's chromium is missing at {CHROMIUM}: `make browser` (part of `make test`) installs it")


@asynccontextmanager
async def http_server(app: FastAPI, port: int) -> AsyncIterator[str]:
    """uvicorn on 127.0.0.1 in this event loop; the app's lifespan is already running (tests.conftest.serve)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def site(make_settings, token, infra, topic_prefix, tmp_path) -> AsyncIterator[dict[str, Any]]:
    registry_port, portal_port = free_port(), free_port()
    async with ui_world(
        make_settings,
        token,
        infra,
        topic_prefix,
        registry_url=f"http://127.0.0.1:{registry_port}",
        events_url="http://127.0.0.1:9",  # no events service in this test: the ops page says so
        self_url=f"http://127.0.0.1:{portal_port}",
    ) as portal:
        portal.app.state.ui_settings = UISettings(  # type: ignore[attr-defined]
            dev_signin=True, dev_signing_key_file=infra.public_key.parent / "jwt-private.pem", ops_refresh_s=2
        )
        registry_app = portal.registry.app  # type: ignore[attr-defined]
        async with (
            http_server(registry_app, registry_port),
            http_server(portal.app, portal_port) as base,  # type: ignore[attr-defined]
        ):
            shots = tmp_path / "shots"
            shots.mkdir()
            registry = f"http://127.0.0.1:{registry_port}"
            yield {"base": base, "shots": shots, "app": portal.app, "registry": registry}  # type: ignore[attr-defined]
            copy_for_review(shots)


def copy_for_review(shots: Path) -> None:
    REVIEW.mkdir(exist_ok=True)
    for f in shots.iterdir():
        shutil.copy(f, REVIEW / f.name)


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(page: Any, base: str, preset: str) -> None:
    org, role, _ = preset.split("|")
    await page.goto(f"{base}/ui/signin")
    await page.click(f'[data-testid="as-{org}-{role}"]')
    await page.wait_for_load_state()


async def test_each_ministry_signs_in_and_sees_only_its_dashboard(site) -> None:
    base, shots = site["base"], site["shots"]
    async with chromium() as browser:
        for code in ("MOTIE", "MOLIT", "MCEE", "KATS"):
            context = await browser.new_context(viewport=DESKTOP, locale="ko-KR")
            page = await context.new_page()
            await sign_in(page, base, f"{code}|ministry|{code}")
            assert page.url == f"{base}/ui/ministry/{code}"
            await page.wait_for_selector('[data-testid="dashboard-title"]')
            assert await page.locator("svg").count() >= 3
            assert await page.locator("[data-table]").count() >= 4
            await page.screenshot(path=shots / f"dashboard-{code}.png", full_page=True)
            # the nav offers only its own dashboard, and the others answer 403 in a sentence
            links = await page.locator("header nav a").all_inner_texts()
            assert not any(other in " ".join(links) for other in {"MOTIE", "MOLIT", "MCEE", "KATS"} - {code})
            for other in {"MOTIE", "MOLIT", "MCEE", "KATS"} - {code}:
                r = await page.goto(f"{base}/ui/ministry/{other}")
                assert r is not None and r.status == 403
                assert "직원만 볼 수 있습니다" in await page.inner_text('[data-testid="error"]')
            if code == "MCEE":
                await page.goto(f"{base}/ui/ministry/MOTIE")
                await page.screenshot(path=shots / "forbidden-MOTIE-as-MCEE.png", full_page=True)
                await page.set_viewport_size(PHONE)
                await page.goto(f"{base}/ui/ministry/MCEE?from=2026-01&to=2026-12&region=KR-41")
                await page.screenshot(path=shots / "dashboard-MCEE-phone-KR-41.png", full_page=True)
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], "the page must not scroll sideways at phone width"
                async with page.expect_download() as download:
                    await page.click('[data-table="collected_by_region_centre"] a[download]')
                path = await (await download.value).path()
                assert (await asyncio.to_thread(Path(path).read_text, "utf-8-sig")).splitlines() == [
                    "region,centre,batteries",
                    "KR-41,SIHEUNG-01,1",
                ]
            await context.close()


async def test_look_up_by_id_and_vin_shows_the_full_timeline(site) -> None:
    base, shots = site["base"], site["shots"]
    async with chromium() as browser:
        page = await (await browser.new_context(viewport=DESKTOP)).new_page()
        await sign_in(page, base, "ops|admin|")
        await page.goto(f"{base}/ui/")
        await page.fill("#q", "KR-LGES-P0001")
        await page.press("#q", "Enter")
        await page.wait_for_selector('[data-testid="timeline"]')
        assert page.url == f"{base}/ui/batteries/KR-LGES-P0001"
        assert await page.locator("[data-testid=timeline] > li").count() == 5
        assert await page.locator("[data-testid=tree] details").count() == 1
        assert await page.inner_text("[data-testid=chain]") == "해시 체인: 연결 정상"
        await page.screenshot(path=shots / "battery-P0001.png", full_page=True)
        # the passport tabs switch
        await page.click("text=생애 기록")
        assert await page.locator('[data-aspect="kr.batterytrace.lifecycle"]').is_visible()
        assert not await page.locator('[data-aspect="generalProductInformation"]').is_visible()
        # as built before the module went in
        await page.fill("[data-testid=at]", "2026-01-15")
        await page.click("#composition button")
        await page.wait_for_url("**at=2026-01-15")
        assert await page.locator("[data-testid=tree]").count() == 0
        # by VIN
        await page.goto(f"{base}/ui/")
        await page.fill("#q", VIN_2)
        await page.press("#q", "Enter")
        await page.wait_for_selector('[data-testid="timeline"]')
        assert page.url == f"{base}/ui/batteries/KR-SDI-P0003"
        types = await page.locator("[data-testid=timeline] > li").evaluate_all("els => els.map(e => e.dataset.type)")
        assert types == [
            "MANUFACTURED", "INSTALLED", "REMOVED", "COLLECTED", "GRADED", "TRANSFERRED", "REPURPOSED",
            "SAFETY_INSPECTED", "INCIDENT",
        ]  # fmt: skip
        await page.screenshot(path=shots / "battery-SDI-P0003-by-VIN.png", full_page=True)
        await page.set_viewport_size(PHONE)
        await page.goto(f"{base}/ui/batteries/{LONG}")
        assert await page.locator("[data-testid=timeline] > li").count() == 50
        await page.screenshot(path=shots / "battery-50-events-phone.png", full_page=False)
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        # operations, refreshing live
        await page.set_viewport_size(DESKTOP)
        await page.goto(f"{base}/ui/ops")
        first = await page.inner_text("[data-testid=ops-updated]")
        await page.wait_for_function(
            "t => document.querySelector('[data-testid=ops-updated]').innerText !== t", arg=first, timeout=15000
        )
        assert await page.locator("[data-testid=topics] tbody tr").count() >= 2
        await page.screenshot(path=shots / "ops.png", full_page=True)


async def test_a_public_visitor_sees_the_public_passport_and_nothing_else(site) -> None:
    base, shots = site["base"], site["shots"]
    async with chromium() as browser:
        page = await (await browser.new_context(viewport=PHONE)).new_page()
        # a scanned QR code: the Digital Link opens the public passport
        path = DIGITAL_LINK.split("/", 3)[3]
        await page.goto(f"{base}/ui/dl/{path}")
        assert page.url == f"{base}/ui/passport/KR-LGES-P0001"
        text = await page.inner_text("main")
        assert "KR-LGES-P0001" in text and "공개" in text
        for hidden in ("batteryMaterialMass", "soh", "custodian", "KMHEM41AP6A000001", "HMC", "fire"):
            assert hidden not in text, hidden
        await page.screenshot(path=shots / "public-passport-phone.png", full_page=True)
        for url, status in (
            ("/ui/batteries/KR-LGES-P0001", 401),
            ("/ui/ministry/MOTIE", 401),
            ("/ui/ops", 401),
        ):
            r = await page.goto(base + url)
            assert r is not None and r.status == status, url
            assert "로그인하세요" in await page.inner_text('[data-testid="error"]')
        await page.screenshot(path=shots / "signin-needed-phone.png", full_page=True)
        await page.goto(f"{base}/ui/signin")
        await page.screenshot(path=shots / "signin-phone.png", full_page=True)


async def test_the_language_switch_works(site) -> None:
    base, shots = site["base"], site["shots"]
    async with chromium() as browser:
        page = await (await browser.new_context(viewport=DESKTOP)).new_page()
        await page.goto(f"{base}/ui/")
        assert await page.get_attribute("html", "lang") == "ko"
        assert "배터리 조회" in await page.inner_text("h1")
        await page.screenshot(path=shots / "home-ko.png")
        await page.click("[data-testid=lang-switch]")
        await page.wait_for_load_state()
        assert await page.get_attribute("html", "lang") == "en"
        assert await page.inner_text("h1") == "Look up a battery"
        await page.goto(f"{base}/ui/passport/KR-SDI-P0003")  # the choice sticks
        assert "General product information" in await page.inner_text("main")
        await page.screenshot(path=shots / "public-passport-en.png", full_page=True)
        await page.goto(f"{base}/ui/lookup?q=KR-NOPE-1")
        assert "No battery is known as 'KR-NOPE-1'" in await page.inner_text("[data-testid=notice]")
        await page.screenshot(path=shots / "lookup-not-found-en.png")
        await page.click("[data-testid=lang-switch]")
        await page.wait_for_load_state()
        assert "배터리" in await page.inner_text("[data-testid=notice]")


async def test_measure_server_time_and_page_weight(site, infra) -> None:
    """Figures for the report (not pass/fail: speed targets live in benchmarks): server time to render a
    battery page with 50 events and each dashboard, and the bytes each page loads."""
    base, shots = site["base"], site["shots"]

    lines = []

    async def server_ms(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> tuple[float, float]:
        times = []
        for _ in range(30):
            r = await client.get(url, headers=headers)
            assert r.status_code == 200, url
            times.append(float(r.headers["server-timing"].split("dur=")[1]))
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.95) - 1]

    async def cookie(org: str, role: str, ministry: str | None = None) -> dict[str, str]:
        return {"Cookie": f"bt_session={await session_key(site['app'], org, role, ministry)}"}

    pages = [(f"/ui/batteries/{LONG}", await cookie("ops", "admin"))]
    pages += [(f"/ui/ministry/{m}", await cookie(m, "ministry", m)) for m in ("MOTIE", "MOLIT", "MCEE", "KATS")]
    pages += [("/ui/passport/KR-LGES-P0001", {}), ("/ui/ops", await cookie("ops", "operator"))]
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for url, headers in pages:
            med, p95 = await server_ms(client, url, headers)
            lines.append(f"server time {url}: median {med:.1f} ms, p95 {p95:.1f} ms (30 requests)")
    async with chromium() as browser:
        for url, headers in pages:
            context = await browser.new_context(viewport=DESKTOP)
            if headers:
                token = headers["Cookie"].split("=", 1)[1]
                await context.add_cookies([{"name": "bt_session", "value": token, "url": base + "/ui"}])
            page = await context.new_page()
            sizes: list[int] = []

            async def on_response(r: Any, sizes: list[int] = sizes) -> None:
                try:
                    sizes.append(len(await r.body()))
                except Exception:
                    pass

            page.on("response", on_response)
            await page.goto(base + url)
            await page.wait_for_load_state("networkidle")
            lines.append(f"page weight {url}: {sum(sizes) / 1024:.1f} KB in {len(sizes)} responses")
            assert sum(sizes) < 300 * 1024, url
            await context.close()
    (shots / "measurements.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


async def test_the_corrected_history_strikes_the_mistaken_recycled_and_shows_the_amendment(
    site, token, infra, topic_prefix
) -> None:
    """A RECYCLED declared in error is struck through with its declaration, the battery is back where it was, and
    an amendment of a registry fact shows who, when, why, before and after, in Korean and in English."""
    from tests.factories import register
    from tests.portal_helpers import Lifecycle, at, topics

    base, shots, bid = site["base"], site["shots"], "KR-LGES-P0009"
    lges = token("LGES", "manufacturer")
    async with httpx.AsyncClient(base_url=site["registry"]) as registry:
        await register(
            registry, lges, battery_id=bid, model_id="NCM-PACK-77", manufactured_at="2026-01-10T10:00:00+09:00"
        )
        amended = await registry.post(
            f"/v1/batteries/{bid}/amendments",
            json={"changes": {"manufacturing_site": "Ochang plant 2"}, "reason": "entered from the wrong plant"},
            headers=lges,
        )
        assert amended.status_code == 201, amended.text
    life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
    recycled_data = {
        "process": "hydrometallurgy",
        "input_mass_kg": 450.0,
        "black_mass_kg": 180.0,
        "recovered_kg": {"lithium": 5.1, "nickel": 30.2, "cobalt": 3.9, "manganese": 3.1},
    }
    envelopes = [
        life.manufactured(bid, "LGES", at("2026-01-10")),
        life.event(bid, "TRANSFERRED", "LGES", "manufacturer", at("2026-03-01"), {"to": "REC-1"}),
        life.event(bid, "RECYCLED", "REC-1", "recycler", at("2026-03-05"), recycled_data, region="KR-41"),
    ]
    mistaken = envelopes[-1]["data"]["event_id"]
    envelopes.append(
        life.event(
            bid,
            "ERROR_DECLARED",
            "REC-1",
            "recycler",
            at("2026-03-06"),
            {"declared_event_id": mistaken, "reason": "did_not_occur"},
            corrected=("manufactured", "REC-1"),
        )
    )
    await life.publish(envelopes)
    async with chromium() as browser:
        page = await (await browser.new_context(viewport=DESKTOP, locale="ko-KR")).new_page()
        await sign_in(page, base, "ops|admin|")

        async def shown() -> bool:
            await page.goto(f"{base}/ui/batteries/{bid}")
            return await page.locator("[data-testid=timeline] > li").count() == 4 and (
                await page.locator("[data-testid=amendments] li").count() == 1
            )

        await eventually(shown, timeout_s=30)
        struck = page.locator("[data-testid=timeline] > li.declared")
        assert await struck.count() == 1
        assert await struck.get_attribute("data-type") == "RECYCLED"
        assert await struck.locator("del").count() == 1
        decoration = await struck.locator("del").evaluate("e => getComputedStyle(e).textDecorationLine")
        assert "line-through" in decoration
        note = await struck.locator("[data-testid=declared-note]").inner_text()
        assert "오류로 선언됨: #4" in note and "발생하지 않음" in note
        assert await page.inner_text("[data-testid=state]") == "제조됨"  # back where it was before the RECYCLED
        row = page.locator("[data-testid=amendments] tr[data-field=manufacturing_site]")
        assert "Ochang plant 2" in await row.inner_text() and "제조 사업장" in await row.inner_text()
        assert "entered from the wrong plant" in await page.inner_text("[data-testid=amendments]")
        await page.screenshot(path=shots / "battery-corrected-ko.png", full_page=True)
        await page.click("[data-testid=lang-switch]")
        await page.wait_for_selector("[data-testid=declared-note]")
        note = await page.inner_text("[data-testid=declared-note]")
        assert "Declared in error by #4" in note and "did not occur" in note
        assert "manufacturing site" in await page.inner_text("[data-testid=amendments]")
        await page.screenshot(path=shots / "battery-corrected-en.png", full_page=True)
