"""The vehicle page in a real browser (Chromium via Playwright, as tests/test_ui_browser.py): MOLIT looks a
VIN up, opens the vehicle from the battery page, sees its batteries and their installation history in
Korean and English; a past date shows who was in the car then."""

from __future__ import annotations

from typing import Any

from tests.test_ui_browser import DESKTOP, PHONE, chromium, needs_chromium, sign_in, site  # noqa: F401  (fixtures)
from tests.test_ui_pages import VIN_2


async def test_molit_opens_a_vehicle_page_in_korean_and_english(site: dict[str, Any]) -> None:  # noqa: F811
    base, shots = site["base"], site["shots"]
    async with chromium() as browser:
        for viewport, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
            context = await browser.new_context(viewport=viewport, locale="ko-KR")
            page = await context.new_page()
            await sign_in(page, base, "MOLIT|ministry|MOLIT")
            await page.goto(f"{base}/ui/lookup?q={VIN_2}")
            assert "/ui/batteries/KR-SDI-P0003" in page.url
            await page.click('[data-testid="vehicle-link"]')
            await page.wait_for_load_state()
            assert "/ui/vehicles/" in page.url
            title = await page.locator('[data-testid="vehicle-vin"]').inner_text()
            assert title == f"차량 {VIN_2}"
            assert "KR-SDI-P0003" in await page.locator('[data-testid="vehicle-history"]').inner_text()
            assert "장착 이력" in await page.content()
            await page.screenshot(path=shots / f"vehicle-ko-{name}.png", full_page=True)

            await page.goto(page.url.split("?")[0] + "?lang=en")
            assert await page.locator('[data-testid="vehicle-vin"]').inner_text() == f"Vehicle {VIN_2}"
            assert "Installation history" in await page.content()
            # before it was ever installed: nobody in the car
            await page.fill('[data-testid="at"]', "2025-01-01")
            await page.click('form.inline-form button[type="submit"]')
            await page.wait_for_load_state()
            assert await page.locator('[data-testid="vehicle-batteries-none"]').is_visible()
            await page.screenshot(path=shots / f"vehicle-en-{name}.png", full_page=True)
            await context.close()


async def test_an_operator_learns_nothing_of_a_vehicle(site: dict[str, Any]) -> None:  # noqa: F811
    """Operators read every battery's history (audited), but a vehicle is personal data: not for them."""
    base = site["base"]
    async with chromium() as browser:
        context = await browser.new_context(viewport=DESKTOP, locale="en-US")
        page = await context.new_page()
        await sign_in(page, base, "ops|operator|")
        r = await page.goto(f"{base}/ui/lookup?q={VIN_2}&lang=en")
        assert r is not None and r.status == 404 and "/ui/batteries/" not in page.url
        r = await page.goto(f"{base}/ui/vehicles/{VIN_2}?lang=en")
        assert r is not None and r.status == 404
        assert f"No vehicle you may see is known as '{VIN_2}'" in await page.content()
        await context.close()
