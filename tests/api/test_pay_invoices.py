"""The payment page lists the contract's invoices and credit notes, each a PDF download
authorised by the page's signed token (issue 15 item 4, issue 16 item 1): the right
contract's invoice opens as the PDF `GET /v1/invoices/{number}` renders; another contract's
invoice is 404, as is a tampered link (the page's clear "not valid" page); an expired link
410."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

from pypdf import PdfReader
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core import paylink
from core.invoicing import issue_credit_note, issue_invoice
from core.settings import Settings
from tests.conftest import SUPPORT, api_client
from tests.invoices.helpers import add_contract

DUE = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
ISSUED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def _invoice(sessions: sessionmaker[Session], settings: Settings, cid: str, seq: int) -> str:
    return issue_invoice(
        sessions,
        contract_id=cid,
        seq=seq,
        amount=9900,
        due_at=DUE,
        issued_at=ISSUED,
        settings=settings,
    ).number


async def test_the_page_lists_and_serves_its_contracts_invoices(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    mine = add_contract(sessions)
    other = add_contract(sessions, customer={"name": "Max Fremd", "locale": "en"})
    first = _invoice(sessions, settings, mine, 1)
    second = _invoice(sessions, settings, mine, 2)
    credit = issue_credit_note(
        sessions,
        contract_id=mine,
        seq=1,
        amount=1900,
        reason="goodwill",
        ref="re_test_goodwill",
        issued_at=ISSUED,
        settings=settings,
    ).number
    foreign = _invoice(sessions, settings, other, 1)
    secret = settings.events_secret.get_secret_value()
    token = paylink.issue(secret, mine)

    app = create_app(settings, sessions)
    async with api_client(app) as http:
        page = await http.get(f"/pay/{token}")
        assert page.status_code == 200, page.text
        html = page.text
        assert 'id="invoices"' in html and "Ihre Rechnungen" in html
        for number in (first, second, credit):
            assert f'href="{token}/invoices/{number}.pdf"' in html  # relative to /pay/
        assert "Rechnungskorrektur" in html and "19,00\u00a0€" in html and "01.12.2026" in html
        assert foreign not in html

        # the download: the same PDF the API renders, with the number in its text
        pdf = await http.get(f"/pay/{token}/invoices/{second}.pdf")
        assert pdf.status_code == 200, pdf.text
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["cache-control"] == "no-store"
        assert f'filename="{second}.pdf"' in pdf.headers["content-disposition"]
        text = _text(pdf.content)
        assert second in text and "Erika Mustermann" in text
        api = await http.get(
            f"/v1/invoices/{second}", headers={**SUPPORT, "Accept": "application/pdf"}
        )
        assert api.status_code == 200 and _text(api.content) == text
        note = await http.get(f"/pay/{token}/invoices/{credit}.pdf")
        assert note.status_code == 200 and credit in _text(note.content)

        # another contract's invoice through this contract's link: unknown, as made up
        for number in (foreign, "RE-999999", "RE 1"):
            resp = await http.get(f"/pay/{token}/invoices/{number}.pdf")
            assert resp.status_code == 404, (number, resp.status_code)
            assert resp.headers["content-type"].startswith("text/html"), number
            assert 'data-error="invalid"' in resp.text and "%PDF" not in resp.text
        # the other contract's own link does serve it
        theirs = paylink.issue(secret, other)
        assert (await http.get(f"/pay/{theirs}/invoices/{foreign}.pdf")).status_code == 200

        # a tampered link: the clear page, never the PDF
        tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
        resp = await http.get(f"/pay/{tampered}/invoices/{first}.pdf")
        assert resp.status_code == 404 and 'data-error="invalid"' in resp.text
        assert "Dieser Link ist ungültig" in resp.text and "Traceback" not in resp.text
        # an expired one: 410, as the page says it
        gone = paylink.issue(secret, mine, now=time.time() - paylink.TTL_SECONDS - 60)
        resp = await http.get(f"/pay/{gone}/invoices/{first}.pdf")
        assert resp.status_code == 410 and 'data-error="expired"' in resp.text


async def test_no_invoices_no_list(sessions: sessionmaker[Session], settings: Settings) -> None:
    cid = add_contract(sessions)
    token = paylink.issue(settings.events_secret.get_secret_value(), cid)
    async with api_client(create_app(settings, sessions)) as http:
        page = await http.get(f"/pay/{token}")
        assert page.status_code == 200 and 'id="invoices"' not in page.text
