"""Invoices from the outside (issue 15): contracts started through the API run on the real
worker; each installment is invoiced when it falls due, the invoices are read through the
API as JSON, PDF and XML, a refund made at Stripe gets a credit note referring to the
invoice, and the Mahnungen and the case file name the invoices they claim."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from pypdf import PdfReader

from core.settings import Settings
from tests.conftest import ADMIN, PLATFORM, SUPPORT
from tests.invoices.einvoice import schematron_errors, xrechnung_errors, xsd_valid
from tests.stack import Stack, unique_email
from tests.workflows.test_payments import deliver, timeline
from tests.workflows.test_stripe_webhooks import _client

LOST = "pm_card_visa_chargeDeclinedLostCard"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings with the seller's tax details an invoice names (§ 14 Abs. 4 Nr. 2
    UStG) and the contact XRechnung wants."""
    return settings.model_copy(
        update={
            "seller_vat_id": "DE999999995",
            "seller_tax_number": "21/815/08150",
            "seller_phone": "+49 30 1234567",
            "seller_iban": "DE89370400440532013000",
        }
    )


async def _invoices(stack: Stack, cid: str) -> list[dict]:  # type: ignore[type-arg]
    resp = await stack.http.get(f"/v1/contracts/{cid}/invoices", headers=SUPPORT)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def test_each_installment_is_invoiced_when_it_falls_due(stack: Stack) -> None:
    cid, handle = await stack.start(count=3, amount=9900)
    await stack.env.sleep(timedelta(hours=1))
    first = await _invoices(stack, cid)
    # the first installment is due today: its invoice exists; the others are not due yet
    assert [(i["installment"], i["kind"]) for i in first] == [(1, "invoice")]
    assert first[0]["issue_date"] == await stack.today()
    view = await stack.result(handle)
    assert view.status == "completed"
    invoices = await _invoices(stack, cid)
    assert [i["installment"] for i in invoices] == [1, 2, 3]
    numbers = [int(i["number"].removeprefix("RE-")) for i in invoices]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    assert all((i["net"], i["tax"], i["gross"]) == (8319, 1581, 9900) for i in invoices)
    contract = await stack.contract(cid)
    due_days = [s["due_at"] for s in contract["schedule"]]
    assert len(due_days) == 3
    # one invoice.issued per invoice, to the platform too
    issued = await timeline(stack, cid, "invoice.issued")
    assert sorted(e["data"]["number"] for e in issued) == [i["number"] for i in invoices]

    number = invoices[1]["number"]
    as_json = await stack.http.get(f"/v1/invoices/{number}", headers=PLATFORM)
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    doc = as_json.json()["document"]
    assert doc["number"] == number and doc["lines"][0]["description"] == "Kurs X — Rate 2 von 3"
    assert as_json.json()["sha256"] == invoices[1]["sha256"]

    as_pdf = await stack.http.get(
        f"/v1/invoices/{number}", headers={**SUPPORT, "Accept": "application/pdf"}
    )
    assert as_pdf.status_code == 200 and as_pdf.headers["content-type"] == "application/pdf"
    text = PdfReader(io.BytesIO(as_pdf.content)).pages[0].extract_text()
    assert f"Rechnung {number}" in text and "Erika Mustermann" in text

    english = await stack.http.get(
        f"/v1/invoices/{number}?locale=en", headers={**ADMIN, "Accept": "application/pdf"}
    )
    assert f"Invoice {number}" in PdfReader(io.BytesIO(english.content)).pages[0].extract_text()

    for fmt in ("facturx", "xrechnung"):
        as_xml = await stack.http.get(
            f"/v1/invoices/{number}?format={fmt}",
            headers={**PLATFORM, "Accept": "application/xml, application/json;q=0.5"},
        )
        assert as_xml.status_code == 200 and as_xml.headers["content-type"] == "application/xml"
        assert xsd_valid(as_xml.content)
        assert schematron_errors(as_xml.content, xrechnung=fmt == "xrechnung") == []
    assert xrechnung_errors(as_xml.content) == []

    refused = await stack.http.get(
        f"/v1/invoices/{number}", headers={**PLATFORM, "Accept": "text/html"}
    )
    assert refused.status_code == 406 and refused.json()["error"]["code"] == "not_acceptable"
    missing = await stack.http.get("/v1/invoices/RE-999999999", headers=PLATFORM)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    anonymous = await stack.http.get(f"/v1/invoices/{number}")
    assert anonymous.status_code == 401
    bad = await stack.http.get(f"/v1/invoices/{number}?format=ubl", headers=PLATFORM)
    assert bad.status_code == 422 and "format" in bad.json()["error"]["message"]
    none = await stack.http.get("/v1/contracts/ord-unknown/invoices", headers=PLATFORM)
    assert none.status_code == 404


async def test_a_refund_at_stripe_gets_a_credit_note(stack: Stack) -> None:
    cid, _ = await stack.start(count=3)
    await stack.env.sleep(timedelta(hours=1))
    (debit,) = stack.debits(cid)
    _client(stack).v1.refunds.create(
        params={"payment_intent": str(debit["payment_intent"]), "amount": 1900}
    )
    refunded = stack.standin.events("charge.refunded")[-1]
    await deliver(stack, refunded)
    await deliver(stack, refunded)  # redelivered: one refund, one credit note
    await stack.env.sleep(timedelta(hours=1))
    invoices = await _invoices(stack, cid)
    assert [(i["kind"], i["installment"]) for i in invoices] == [
        ("invoice", 1),
        ("credit_note", 1),
    ]
    invoice, note = invoices
    assert note["refers_to"] == invoice["number"] and note["number"].startswith("RK-")
    # 19.00 gross back: 19.00 / 1.19 = 15.966… → 15.97 net, 3.03 VAT
    assert (note["net"], note["tax"], note["gross"]) == (1597, 303, 1900)
    (event,) = await timeline(stack, cid, "credit_note.issued")
    assert event["data"]["number"] == note["number"]
    doc = (await stack.http.get(f"/v1/invoices/{note['number']}", headers=PLATFORM)).json()
    assert doc["document"]["refers_to"]["number"] == invoice["number"]
    assert doc["document"]["type_code"] == "381"


async def test_a_withdrawal_gets_a_credit_note_referring_to_the_invoice(stack: Stack) -> None:
    """Issue 15: a withdrawal (issue 12, `POST …/cancel`) refunds what was paid through
    Stripe; the refund gets a credit note naming the invoice it corrects."""
    cid, _ = await stack.start(count=3)
    await stack.env.sleep(timedelta(hours=1))
    (debit,) = stack.debits(cid)  # installment 1 paid at checkout
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/cancel",
        json={"reason": "withdrawal", "note": "Widerruf per E-Mail"},
        headers=SUPPORT | {"Idempotency-Key": "withdraw-1"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["refund"]["stripe"] == debit["amount"]
    await stack.env.sleep(timedelta(hours=1))
    invoices = await _invoices(stack, cid)
    assert [(i["kind"], i["installment"]) for i in invoices] == [
        ("invoice", 1),
        ("credit_note", 1),
    ]
    invoice, note = invoices
    assert note["refers_to"] == invoice["number"]
    assert note["gross"] == invoice["gross"] == debit["amount"]  # the whole payment back
    assert (note["net"], note["tax"]) == (invoice["net"], invoice["tax"])
    doc = (await stack.http.get(f"/v1/invoices/{note['number']}", headers=PLATFORM)).json()
    assert doc["document"]["refers_to"]["number"] == invoice["number"]
    assert doc["document"]["type_code"] == "381"
    # the later installments were never invoiced: they ended cancelled, not due
    c = await stack.contract(cid)
    assert [s["ended"]["how"] for s in c["schedule"][1:]] == ["cancelled", "cancelled"]


async def test_mahnungen_and_the_case_file_name_the_invoices(stack: Stack) -> None:
    await stack.pin_date(6, 15)  # no holiday moves the rungs for the next six weeks
    email = unique_email()
    cid, handle = await stack.start(count=2, payment_method=LOST, email=email)
    view = await stack.settled(handle, "handed_off")  # the workflow goes on (issue 12)
    assert view.status == "handed_off"
    invoices = {i["installment"]: i for i in await _invoices(stack, cid)}
    assert sorted(invoices) == [1, 2]
    # the dunning notices (not the customer messages beside them, docs/endings.md)
    resp = await stack.http.get(f"/v1/contracts/{cid}/notices", headers=ADMIN)
    ladder = {"reminder", "mahnung_1", "lock", "mahnung_2", "handoff"}
    texts = [n["text"] for n in resp.json()["data"] if n["stage"] in ladder]
    assert len(texts) == len(ladder)
    first, second = invoices[1], invoices[2]

    def named(inv: dict, text: str) -> bool:  # type: ignore[type-arg]
        y, m, d = inv["issue_date"].split("-")
        return f"(Rechnung {inv['number']} vom {d}.{m}.{y})" in text

    # every notice claims installment 1 by its invoice; those after installment 2 fell due
    # claim that by its invoice too
    assert all(named(first, t) for t in texts)
    assert any(named(second, t) for t in texts)
    # ... and links the payment page's invoice list (issue 15 item 4), whose PDFs open with
    # the notice's own signed link
    links = [
        re.findall(r"^Ihre Rechnungen: \S+/pay/([A-Za-z0-9_.-]+)#invoices$", t, re.M) for t in texts
    ]
    assert all(len(found) == 1 for found in links), texts
    token = links[-1][0]
    page = await stack.http.get(f"/pay/{token}")
    assert page.status_code == 200 and 'id="invoices"' in page.text
    for inv in (first, second):
        assert f'href="{token}/invoices/{inv["number"]}.pdf"' in page.text
    pdf = await stack.http.get(f"/pay/{token}/invoices/{first['number']}.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert first["number"] in "\n".join(
        p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages
    )
    case = (await stack.http.get(f"/v1/contracts/{cid}/collection-case", headers=ADMIN)).json()
    items = case["file"]["installments"]
    assert [(i["invoice_number"], i["invoice_date"]) for i in items] == [
        (first["number"], first["issue_date"]),
        (second["number"], second["issue_date"]),
    ]
    assert case["route"] in ("court", "inkasso")
    if case["route"] == "court":  # the Mahnantrag names invoice number and date per claim
        claims = case["file"]["mahnantrag"]["claims"]
        assert [(c["invoice_number"], c["invoice_date"]) for c in claims] == [
            (first["number"], first["issue_date"]),
            (second["number"], second["issue_date"]),
        ]
