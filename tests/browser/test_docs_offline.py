"""`/docs` and `/redoc` render in a real browser with the network cut off (issue 16 item 3).

Every request the page makes to a host other than the API's own (127.0.0.1) is aborted and
recorded: Swagger UI must render an operation and its Authorize button, ReDoc the API's
operations, and no request may even have been attempted elsewhere (a CDN, fonts, the
public validator service).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Page, Route, async_playwright

from tests.browser.conftest import LiveServer, chromium_path

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


async def _offline_page(page: Page, external: list[str]) -> None:
    async def gate(route: Route) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            await route.continue_()
        else:
            external.append(url)
            await route.abort("internetdisconnected")

    await page.route("**/*", gate)


async def test_docs_and_redoc_render_without_internet(
    live_api: LiveServer, artifacts: Path
) -> None:
    executable = chromium_path()
    external: list[str] = []
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await _offline_page(page, external)

            await page.goto(f"{live_api.url}/docs")
            # an operation of the API, rendered by Swagger UI from /openapi.json
            operation = page.locator(".opblock-summary", has_text="/v1/contracts/{contract_id}")
            await operation.first.wait_for(state="visible", timeout=20_000)
            assert await page.locator("button.authorize").count() == 1  # the Bearer scheme
            assert await page.get_by_text("Read a contract").first.is_visible()
            await page.locator("button.authorize").click()
            dialog = page.locator(".modal-ux")
            await dialog.wait_for(state="visible")
            assert "apiKey" in await dialog.inner_text()
            await page.screenshot(path=str(artifacts / "docs-swagger-ui.png"), full_page=False)
            await page.keyboard.press("Escape")

            await page.goto(f"{live_api.url}/redoc")
            heading = page.locator("h1", has_text="Mahnwerk")
            await heading.first.wait_for(state="visible", timeout=20_000)
            await page.get_by_text("Read a contract").first.wait_for(state="attached")
            await page.screenshot(path=str(artifacts / "docs-redoc.png"), full_page=False)
        finally:
            await browser.close()
    assert external == [], f"requests to other hosts: {external}"
    assert errors == [], errors
