"""The customer's payment page in a real browser (issue 16 item 1, first part): the customer
opens the link of a Mahnung as it arrived in the SMTP catcher, on a phone-sized screen, sees
what is open and the bank details with the GiroCode; support records the transfer; the page
then says "Bezahlt". A tampered link shows a clear page. Screenshots go to the artifacts
folder."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

from playwright.async_api import async_playwright
from sqlalchemy.orm import Session, sessionmaker

from activities.notice_render import format_money
from api.main import create_app
from tests.browser.conftest import LiveServer, chromium_path
from tests.conftest import SUPPORT
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after, rungs

LOST = "pm_card_visa_chargeDeclinedLostCard"
IBAN = "DE02120300000000202051"


async def test_customer_opens_the_mahnung_link_and_sees_it_paid(
    stack: Stack, sessions: sessionmaker[Session], artifacts: Path
) -> None:
    executable = chromium_path()
    stack.settings.seller_iban = IBAN
    await stack.pin_date(6, 15)
    ladder = rungs(date.fromisoformat(await stack.today()))
    email = unique_email()
    cid, _ = await stack.start(count=1, payment_method=LOST, email=email)
    await stack.sleep_until(after(ladder["mahnung_1"]))
    await stack.env.sleep(timedelta(days=1))
    mahnung = next(m for m in stack.mails(email) if "Mahnung" in str(m["Subject"]))
    html_mail = mahnung.get_body(preferencelist=("html",)).get_content()
    link = re.findall(r'href="(http://[^"]+/pay/[^"]+)"', html_mail)[0]  # the button's link
    claim = (await stack.contract(cid))["claim"]

    async with LiveServer(create_app(stack.settings, sessions)) as server:
        url = server.url + link[link.index("/pay/") :]
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
                await page.goto(url)
                heading = page.get_by_role("heading", level=1)
                assert await heading.inner_text() == (
                    f"Offener Betrag: {format_money(claim['total'], 'eur', 'de')}"
                )
                assert await page.get_by_text("DE02 1203 0000 0000 2020 51").is_visible()
                qr = page.get_by_role("img", name=re.compile("GiroCode"))
                assert await qr.is_visible()
                box = await qr.bounding_box()
                assert box is not None and box["width"] <= 390  # fits a phone screen
                await page.screenshot(path=str(artifacts / "pay-open.png"), full_page=True)

                resp = await stack.http.post(
                    f"/v1/contracts/{cid}/settlements",
                    json={"amount": claim["total"], "method": "bank_transfer", "reference": "Ü"},
                    headers=SUPPORT,
                )
                assert resp.status_code == 200, resp.text
                await page.reload()
                assert await heading.inner_text() == "Bezahlt"
                assert await page.get_by_text("alles bezahlt").is_visible()
                await page.screenshot(path=str(artifacts / "pay-paid.png"), full_page=True)

                await page.goto(url[:-2] + ("AA" if not url.endswith("AA") else "BB"))
                assert await heading.inner_text() == "Dieser Link ist ungültig"
                await page.screenshot(path=str(artifacts / "pay-invalid.png"), full_page=True)
                assert errors == []
            finally:
                await browser.close()
    c = await stack.contract(cid)
    assert c["status"] == "completed" and c["claim"]["total"] == 0  # the one installment paid
