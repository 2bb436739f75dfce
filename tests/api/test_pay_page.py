"""The customer's payment page `/pay/{token}` (issue 16 item 1, first part): the link in a
real Mahnung opens a page with what is open (the claim as the API reads it) and how to pay by
bank transfer; once paid it says so; a tampered, foreign or expired link gets a clear page."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta

import pytest

from activities.notice_render import format_money
from core import paylink
from tests.conftest import SUPPORT
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after, rungs

LOST = "pm_card_visa_chargeDeclinedLostCard"
IBAN = "DE02120300000000202051"  # a valid test IBAN (Deutsche Kreditbank's example)
SECRET = "a-test-events-secret-of-some-length"


def test_tokens_are_signed_and_expire() -> None:
    token = paylink.issue(SECRET, "ord-2026.0001_x")
    assert "ord-2026" not in token  # the contract id is not readable in the link
    assert paylink.verify(SECRET, token).contract_id == "ord-2026.0001_x"
    cid, expires, mac = token.split(".")
    forged = [
        f"{paylink.issue(SECRET, 'ord-other').split('.')[0]}.{expires}.{mac}",  # another id
        f"{cid}.{int(expires) + 86400}.{mac}",  # a longer life
        f"{cid}.{expires}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # another signature
        token[:-3],
        "",
        "ord-2026-0001",  # the old link form
    ]
    for bad in forged:
        with pytest.raises(paylink.InvalidToken):
            paylink.verify(SECRET, bad)
    with pytest.raises(paylink.InvalidToken):  # another deployment's secret
        paylink.verify("another-secret-of-some-length", token)
    old = paylink.issue(SECRET, "ord-1", now=time.time() - paylink.TTL_SECONDS - 1)
    with pytest.raises(paylink.ExpiredToken) as exc:
        paylink.verify(SECRET, old)
    assert exc.value.contract_id == "ord-1"


def _link(text: str) -> str:
    found = re.findall(r"https?://\S+/pay/([A-Za-z0-9_.-]+)", text)
    assert found, text
    return found[0]


async def test_the_link_in_a_mahnung_opens_the_page_until_paid(stack: Stack) -> None:
    stack.settings.seller_iban = IBAN
    await stack.pin_date(6, 15)
    ladder = rungs(date.fromisoformat(await stack.today()))
    email = unique_email()
    cid, _ = await stack.start(count=1, payment_method=LOST, email=email)
    await stack.sleep_until(after(ladder["mahnung_1"]))
    await stack.env.sleep(timedelta(days=1))

    mails = stack.mails(email)
    mahnung = next(m for m in mails if "Mahnung" in str(m["Subject"]))
    text = mahnung.get_body(preferencelist=("plain",)).get_content()
    token = _link(text)
    assert (
        cid not in token
        and paylink.verify(stack.settings.events_secret.get_secret_value(), token).contract_id
        == cid
    )

    page = await stack.http.get(f"/pay/{token}")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert '<html lang="de">' in html
    claim = (await stack.contract(cid))["claim"]
    total = format_money(claim["total"], "eur", "de")
    assert claim["fees"] == 250 and claim["total"] > 9900
    assert f"Offener Betrag: {total}" in html  # the claim as the API reads it
    assert format_money(9900, "eur", "de") in html and "Mahngebühren" in html
    assert "DE02 1203 0000 0000 2020 51" in html  # IBAN for the transfer
    notices = (await stack.http.get(f"/v1/contracts/{cid}/notices", headers=SUPPORT)).json()
    assert notices["data"][-1]["notice_number"] in html  # the reference: the newest notice
    assert 'src="data:image/svg+xml' in html  # the GiroCode, inline
    assert stack.settings.seller_name in html

    resp = await stack.http.post(
        f"/v1/contracts/{cid}/settlements",
        json={"amount": claim["total"], "method": "bank_transfer", "reference": "Überweisung"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    paid = await stack.http.get(f"/pay/{token}")
    assert paid.status_code == 200
    assert 'data-status="paid"' in paid.text and "bezahlt" in paid.text
    assert "Offener Betrag" not in paid.text and IBAN not in paid.text


async def test_bad_and_expired_links_get_a_clear_page(stack: Stack) -> None:
    secret = stack.settings.events_secret.get_secret_value()
    cid, _ = await stack.start(count=1, email=unique_email(), locale="en")
    good = paylink.issue(secret, cid)
    en = await stack.http.get(f"/pay/{good}")
    assert en.status_code == 200 and '<html lang="en">' in en.text

    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    for token, lang in ((tampered, "de"), ("x" * 500, "de"), (cid, "en")):
        resp = await stack.http.get(f"/pay/{token}", headers={"Accept-Language": lang})
        assert resp.status_code == 404, token
        assert 'data-error="invalid"' in resp.text
        assert "Traceback" not in resp.text and "Error" not in resp.text
        assert ("Dieser Link ist ungültig" if lang == "de" else "This link is not valid") in (
            resp.text
        )
    gone = paylink.issue(secret, cid, now=time.time() - paylink.TTL_SECONDS - 60)
    resp = await stack.http.get(f"/pay/{gone}")
    assert resp.status_code == 410
    assert 'data-error="expired"' in resp.text and "This link has expired" in resp.text
    assert stack.settings.seller_email in resp.text  # whom to ask instead
    unknown = paylink.issue(secret, "ord-never-existed")
    assert (await stack.http.get(f"/pay/{unknown}")).status_code == 404
