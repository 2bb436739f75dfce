"""Paying a Mahnung online in a real browser (issue 16 item 1): the customer opens the link
of the Mahnung as it arrived in the SMTP catcher, presses "pay now", pays with a test card
on the stand-in's hosted checkout page, comes back to the payment page and sees "Bezahlt"
once the webhook has recorded the payment; the contract is settled and unlocked. The
stand-in delivers its webhooks to the API on a real port, as in `make run`."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import async_playwright
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from tests.api.test_pay_checkout import _in_dunning
from tests.browser.conftest import LiveServer, chromium_path
from tests.stack import Stack


async def test_customer_pays_the_mahnung_by_card_and_sees_it_paid(
    stack: Stack, sessions: sessionmaker[Session], artifacts: Path
) -> None:
    executable = chromium_path()
    cid, _, _, _ = await _in_dunning(stack, count=1)
    mahnung = next(
        m
        for m in stack.smtp.store.messages()
        if "Mahnung" in str(m["Subject"]) and cid in m.get_body(("plain",)).get_content()
    )
    html_mail = mahnung.get_body(preferencelist=("html",)).get_content()
    link = re.findall(r'href="(http://[^"]+/pay/[^"]+)"', html_mail)[0]  # the button's link
    before = await stack.contract(cid)
    assert before["status"] == "in_dunning" and before["claim"]["total"] > 0

    app = create_app(stack.settings, sessions)
    app.state.mahnwerk._client = stack.client  # webhooks signal the contract
    async with LiveServer(app) as server:
        stack.standin.set_config(webhook_url=f"{server.url}/v1/webhooks/stripe")
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=executable, headless=True, args=["--no-sandbox"]
                )
                try:
                    page = await browser.new_page(
                        viewport={"width": 390, "height": 844}, locale="de-DE"
                    )
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    await page.goto(server.url + link[link.index("/pay/") :])
                    await page.get_by_role(
                        "button", name="Jetzt mit Karte oder SEPA-Lastschrift bezahlen"
                    ).click()
                    await page.wait_for_url(stack.standin.url + "/**")  # Stripe's page
                    await page.get_by_label(re.compile("Visa 4242")).check()
                    await page.screenshot(path=str(artifacts / "checkout-standin.png"))
                    await page.get_by_role("button", name="Bezahlen / Pay").click()
                    await page.wait_for_url(re.compile(r"/pay/[^?]+\?checkout=cs_test_"))
                    heading = page.get_by_role("heading", level=1)
                    # processing until the webhook is recorded; the page refreshes itself
                    await page.wait_for_selector('h1[data-status="paid"]', timeout=30_000)
                    assert await heading.inner_text() == "Bezahlt"
                    assert await page.get_by_text("alles bezahlt").is_visible()
                    await page.screenshot(path=str(artifacts / "checkout-paid.png"), full_page=True)
                    assert errors == []
                finally:
                    await browser.close()
        finally:
            stack.standin.set_config(webhook_url=None)
    after = await stack.contract(cid)
    assert after["claim"]["total"] == 0
    assert after["status"] == "completed" and after["access"] == "granted"
