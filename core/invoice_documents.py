"""An issued invoice as documents (issue 15): PDF (de/en), EN 16931 CII XML, Factur-X.

Rendered from the stored, hashed document (core.invoicing) whenever asked for: the document
is what was issued; these are its presentations.

- :func:`pdf`: the invoice for people, in German or English (reportlab; fonts embedded:
  Bitstream Vera, shipped with reportlab).
- :func:`cii_xml`: UN/CEFACT Cross Industry Invoice D16B as EN 16931 wants it
  (``urn:cen.eu:en16931:2017``, the ZUGFeRD 2 / Factur-X EN 16931 profile) or as XRechnung
  3.0 CII (the German CIUS: seller contact, electronic addresses, buyer reference).
- :func:`facturx_pdf`: the PDF with the CII XML embedded as ``factur-x.xml`` and the PDF/A-3
  metadata (the ``factur-x`` library; it checks the XML against the Factur-X XSD first).

Business customers get the Factur-X PDF (EN 16931 since 2025, § 14 Abs. 1 UStG), consumers
the plain PDF; XRechnung on request (``Accept: application/xml``, ``?format=xrechnung``).
"""

from __future__ import annotations

import io
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Final

from lxml import etree

from domain.money import format_amount

NS: Final = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}
EN16931: Final = "urn:cen.eu:en16931:2017"
XRECHNUNG: Final = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
PEPPOL_PROCESS: Final = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
FORMATS: Final = ("facturx", "xrechnung")


def _amount(minor: int) -> str:
    return str((Decimal(minor) / 100).quantize(Decimal("0.01")))


def _percent(bp: int) -> str:
    return str((Decimal(bp) / 100).quantize(Decimal("0.01")))


def _date102(iso: str) -> str:
    return iso.replace("-", "")


class _Builder:
    def __init__(self) -> None:
        self.root = etree.Element(f"{{{NS['rsm']}}}CrossIndustryInvoice", nsmap=NS)

    @staticmethod
    def el(parent: Any, tag: str, text: str | None = None, **attrib: str) -> Any:
        prefix, name = tag.split(":")
        node = etree.SubElement(parent, f"{{{NS[prefix]}}}{name}", **attrib)
        if text is not None:
            node.text = text
        return node

    def date(self, parent: Any, tag: str, iso: str, ns: str = "udt") -> None:
        holder = self.el(parent, tag)
        self.el(holder, f"{ns}:DateTimeString", _date102(iso), format="102")


def cii_xml(document: dict[str, Any], profile: str = "facturx") -> bytes:
    """The document as CII XML: `facturx` (EN 16931 profile) or `xrechnung` (3.0)."""
    if profile not in FORMATS:
        raise ValueError(f"unknown e-invoice format {profile!r} (one of {', '.join(FORMATS)})")
    xr = profile == "xrechnung"
    b = _Builder()
    el = b.el
    seller, customer = document["seller"], document["customer"]
    currency = document["currency"]
    category = document["tax"]["category"]
    context = el(b.root, "rsm:ExchangedDocumentContext")
    if xr:
        el(
            el(context, "ram:BusinessProcessSpecifiedDocumentContextParameter"),
            "ram:ID",
            PEPPOL_PROCESS,
        )
    el(
        el(context, "ram:GuidelineSpecifiedDocumentContextParameter"),
        "ram:ID",
        XRECHNUNG if xr else EN16931,
    )

    header = el(b.root, "rsm:ExchangedDocument")
    el(header, "ram:ID", document["number"])
    el(header, "ram:TypeCode", document["type_code"])
    b.date(header, "ram:IssueDateTime", document["issue_date"])
    notes = list(document.get("notes_de") or [])
    if document["kind"] == "credit_note" and document.get("refers_to"):
        ref = document["refers_to"]
        notes.append(f"Rechnungskorrektur zu Rechnung {ref['number']} vom {ref['issue_date']}.")
    for line in seller.get("footer_de") or []:
        notes.append(line)
    for text in notes:
        el(el(header, "ram:IncludedNote"), "ram:Content", text)

    trade = el(b.root, "rsm:SupplyChainTradeTransaction")
    for line in document["lines"]:
        item = el(trade, "ram:IncludedSupplyChainTradeLineItem")
        el(el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", line["id"])
        el(el(item, "ram:SpecifiedTradeProduct"), "ram:Name", line["description"])
        agreement = el(item, "ram:SpecifiedLineTradeAgreement")
        el(el(agreement, "ram:NetPriceProductTradePrice"), "ram:ChargeAmount", _amount(line["net"]))
        el(el(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity", "1", unitCode="C62")
        settlement = el(item, "ram:SpecifiedLineTradeSettlement")
        tax = el(settlement, "ram:ApplicableTradeTax")
        el(tax, "ram:TypeCode", "VAT")
        el(tax, "ram:CategoryCode", line["category"])
        if line["category"] != "O":
            el(tax, "ram:RateApplicablePercent", _percent(line["rate_bp"]))
        if line.get("period_start") and line.get("period_end"):
            period = el(settlement, "ram:BillingSpecifiedPeriod")
            b.date(period, "ram:StartDateTime", line["period_start"])
            b.date(period, "ram:EndDateTime", line["period_end"])
        summation = el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
        el(summation, "ram:LineTotalAmount", _amount(line["net"]))

    agreement = el(trade, "ram:ApplicableHeaderTradeAgreement")
    # BT-10: XRechnung needs a buyer reference (a Leitweg-ID for public buyers); ours is the
    # contract, which the buyer knows from the checkout.
    el(agreement, "ram:BuyerReference", document["contract_id"])
    party = el(agreement, "ram:SellerTradeParty")
    vat_ids_allowed = category != "O"  # BR-O-02: no VAT ids on a not-subject invoice
    if not vat_ids_allowed or not (seller.get("vat_id") or seller.get("tax_number")):
        # BR-CO-26: the seller must be identifiable by BT-29, BT-30 or BT-31
        el(party, "ram:ID", seller.get("tax_number") or seller.get("vat_id") or seller["key"])
    el(party, "ram:Name", seller["name"])
    if xr or seller.get("phone") or seller.get("email"):
        contact = el(party, "ram:DefinedTradeContact")
        el(contact, "ram:PersonName", seller["name"])
        if seller.get("phone"):
            el(
                el(contact, "ram:TelephoneUniversalCommunication"),
                "ram:CompleteNumber",
                seller["phone"],
            )
        if seller.get("email"):
            el(el(contact, "ram:EmailURIUniversalCommunication"), "ram:URIID", seller["email"])
    _address(b, party, seller["address"])
    if seller.get("email"):
        el(el(party, "ram:URIUniversalCommunication"), "ram:URIID", seller["email"], schemeID="EM")
    if seller.get("vat_id") and vat_ids_allowed:
        el(el(party, "ram:SpecifiedTaxRegistration"), "ram:ID", seller["vat_id"], schemeID="VA")
    if seller.get("tax_number"):
        el(el(party, "ram:SpecifiedTaxRegistration"), "ram:ID", seller["tax_number"], schemeID="FC")
    buyer = el(agreement, "ram:BuyerTradeParty")
    el(buyer, "ram:Name", customer["name"])
    _address(b, buyer, customer.get("address") or {}, fallback_country=document["tax"]["country"])
    if customer.get("email"):
        el(
            el(buyer, "ram:URIUniversalCommunication"),
            "ram:URIID",
            customer["email"],
            schemeID="EM",
        )
    if customer.get("vat_id") and vat_ids_allowed:
        el(el(buyer, "ram:SpecifiedTaxRegistration"), "ram:ID", customer["vat_id"], schemeID="VA")

    delivery = el(trade, "ram:ApplicableHeaderTradeDelivery")
    event = el(delivery, "ram:ActualDeliverySupplyChainEvent")
    b.date(event, "ram:OccurrenceDateTime", document["supply_date"])

    settlement = el(trade, "ram:ApplicableHeaderTradeSettlement")
    el(settlement, "ram:PaymentReference", document["number"])
    el(settlement, "ram:InvoiceCurrencyCode", currency)
    means = el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
    if seller.get("iban"):
        el(means, "ram:TypeCode", "58")  # SEPA credit transfer (UNTDID 4461)
        account = el(means, "ram:PayeePartyCreditorFinancialAccount")
        el(account, "ram:IBANID", seller["iban"])
    else:
        el(means, "ram:TypeCode", "1")  # instrument not defined
    for row in document["breakdown"]:
        tax = el(settlement, "ram:ApplicableTradeTax")
        el(tax, "ram:CalculatedAmount", _amount(row["tax"]))
        el(tax, "ram:TypeCode", "VAT")
        if row["category"] != "S" and row.get("note_de"):
            el(tax, "ram:ExemptionReason", row["note_de"])
        el(tax, "ram:BasisAmount", _amount(row["taxable"]))
        el(tax, "ram:CategoryCode", row["category"])
        if row["category"] != "S" and row.get("exemption_code"):
            el(tax, "ram:ExemptionReasonCode", row["exemption_code"])
        if row["category"] != "O":
            el(tax, "ram:RateApplicablePercent", _percent(row["rate_bp"]))
    first = document["lines"][0]
    if first.get("period_start") and first.get("period_end"):
        period = el(settlement, "ram:BillingSpecifiedPeriod")
        b.date(period, "ram:StartDateTime", first["period_start"])
        b.date(period, "ram:EndDateTime", first["period_end"])
    terms = el(settlement, "ram:SpecifiedTradePaymentTerms")
    el(terms, "ram:Description", _terms_text(document, "de"))
    if document.get("due_date"):
        b.date(terms, "ram:DueDateDateTime", document["due_date"])
    totals = document["totals"]
    summation = el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    el(summation, "ram:LineTotalAmount", _amount(totals["net"]))
    el(summation, "ram:TaxBasisTotalAmount", _amount(totals["net"]))
    el(summation, "ram:TaxTotalAmount", _amount(totals["tax"]), currencyID=currency)
    el(summation, "ram:GrandTotalAmount", _amount(totals["gross"]))
    el(summation, "ram:DuePayableAmount", _amount(totals["gross"]))
    if document.get("refers_to"):
        ref = el(settlement, "ram:InvoiceReferencedDocument")
        el(ref, "ram:IssuerAssignedID", document["refers_to"]["number"])
        b.date(ref, "ram:FormattedIssueDateTime", document["refers_to"]["issue_date"], ns="qdt")
    return etree.tostring(b.root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _address(
    b: _Builder, party: Any, address: dict[str, str], fallback_country: str = "DE"
) -> None:
    node = b.el(party, "ram:PostalTradeAddress")
    if address.get("postal_code"):
        b.el(node, "ram:PostcodeCode", address["postal_code"])
    if address.get("line1"):
        b.el(node, "ram:LineOne", address["line1"])
    if address.get("line2"):
        b.el(node, "ram:LineTwo", address["line2"])
    if address.get("city"):
        b.el(node, "ram:CityName", address["city"])
    b.el(node, "ram:CountryID", address.get("country") or fallback_country)


def _terms_text(document: dict[str, Any], locale: str) -> str:
    de = locale == "de"
    if document["kind"] == "credit_note":
        return (
            "Der Betrag wird erstattet bzw. mit offenen Forderungen verrechnet."
            if de
            else "The amount is refunded or set off against open amounts."
        )
    due = document.get("due_date") or document["issue_date"]
    if document.get("payment", {}).get("terms") == "debit":
        return (
            f"Fällig am {_de_date(due)}; der Betrag wird mit der vereinbarten Zahlungsart "
            "eingezogen."
            if de
            else f"Due on {due}; collected with the agreed payment method."
        )
    return f"Fällig am {_de_date(due)}." if de else f"Due on {due}."


def _de_date(iso: str) -> str:
    y, m, d = iso.split("-")
    return f"{d}.{m}.{y}"


def _date(iso: str, locale: str) -> str:
    return _de_date(iso) if locale == "de" else iso


# -- PDF ----------------------------------------------------------------------------------------

_TEXT: Final[dict[str, dict[str, str]]] = {
    "de": {
        "invoice": "Rechnung",
        "credit_note": "Rechnungskorrektur (Gutschrift zur Rechnung)",
        "number": "Rechnungsnummer",
        "date": "Rechnungsdatum",
        "supply": "Leistungsdatum",
        "period": "Leistungszeitraum",
        "customer": "Kundennummer",
        "contract": "Vertrag",
        "refers": "Korrektur zu Rechnung",
        "reason": "Grund",
        "pos": "Pos.",
        "description": "Beschreibung",
        "net": "Netto",
        "rate": "USt.",
        "gross": "Brutto",
        "total_net": "Summe netto",
        "tax_at": "Umsatzsteuer {rate} % auf {base}",
        "tax_none": "Umsatzsteuer",
        "total": "Gesamtbetrag",
        "credit_total": "Gutschriftsbetrag",
        "seller_vat": "USt-IdNr.",
        "seller_tax_number": "Steuernummer",
        "customer_vat": "USt-IdNr. des Leistungsempfängers",
        "bank": "Bankverbindung",
    },
    "en": {
        "invoice": "Invoice",
        "credit_note": "Credit note (correction of invoice)",
        "number": "Invoice number",
        "date": "Invoice date",
        "supply": "Date of supply",
        "period": "Period of supply",
        "customer": "Customer number",
        "contract": "Contract",
        "refers": "Corrects invoice",
        "reason": "Reason",
        "pos": "No.",
        "description": "Description",
        "net": "Net",
        "rate": "VAT",
        "gross": "Gross",
        "total_net": "Total net",
        "tax_at": "VAT {rate} % on {base}",
        "tax_none": "VAT",
        "total": "Total amount",
        "credit_total": "Amount credited",
        "seller_vat": "VAT ID",
        "seller_tax_number": "Tax number",
        "customer_vat": "Customer's VAT ID",
        "bank": "Bank account",
    },
}
_REASONS: Final = {
    "de": {
        "refund": "Erstattung",
        "withdrawal": "Widerruf",
        "cancellation": "Kündigung",
        "goodwill": "Kulanz",
        "write_down": "Forderungsverzicht",
        "correction": "Korrektur",
    },
    "en": {
        "refund": "Refund",
        "withdrawal": "Withdrawal",
        "cancellation": "Cancellation",
        "goodwill": "Goodwill",
        "write_down": "Write-down",
        "correction": "Correction",
    },
}


@cache
def _fonts() -> tuple[str, str]:
    """Bitstream Vera (regular, bold), shipped with reportlab: embedded in the PDF (PDF/A
    wants every font embedded), with €, umlauts and ß."""
    import reportlab
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    folder = Path(reportlab.__file__).parent / "fonts"
    pdfmetrics.registerFont(TTFont("MahnwerkVera", str(folder / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont("MahnwerkVeraBd", str(folder / "VeraBd.ttf")))
    return "MahnwerkVera", "MahnwerkVeraBd"


def pdf(document: dict[str, Any], locale: str | None = None) -> bytes:
    """The invoice as a PDF in `locale` (default: the customer's, as issued)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas

    loc = locale if locale in ("de", "en") else document.get("locale", "de")
    t = _TEXT[loc]
    regular, bold = _fonts()
    buf = io.BytesIO()
    kind = t[document["kind"]]
    c = Canvas(buf, pagesize=A4, invariant=1, pageCompression=1, lang=loc)
    c.setTitle(f"{kind} {document['number']}")
    c.setAuthor(document["seller"]["name"])
    c.setSubject(f"{kind} {document['number']} {document['issue_date']}")
    c.setCreator("Mahnwerk")
    width, height = A4
    left, right = 20 * mm, width - 20 * mm
    seller, customer = document["seller"], document["customer"]
    currency = document["currency"].lower()

    def money(minor: int) -> str:
        return format_amount(minor, currency, loc)

    y = height - 20 * mm
    c.setFont(bold, 12)
    c.drawString(left, y, seller["name"])
    c.setFont(regular, 8)
    addr = seller["address"]
    y -= 5 * mm
    c.drawString(
        left, y, f"{addr.get('line1', '')} · {addr.get('postal_code', '')} {addr.get('city', '')}"
    )
    ids = []
    if seller.get("tax_number"):
        ids.append(f"{t['seller_tax_number']}: {seller['tax_number']}")
    if seller.get("vat_id"):
        ids.append(f"{t['seller_vat']}: {seller['vat_id']}")
    y -= 4 * mm
    c.drawString(left, y, " · ".join(ids))

    # the recipient (§ 14 Abs. 4 Nr. 1 UStG: name and address of the recipient)
    y = height - 50 * mm
    c.setFont(regular, 10)
    caddr = customer.get("address") or {}
    for text in [
        customer["name"],
        caddr.get("line1", ""),
        caddr.get("line2", ""),
        f"{caddr.get('postal_code', '')} {caddr.get('city', '')}".strip(),
        caddr.get("country", "") if caddr.get("country") not in (None, "", "DE") else "",
    ]:
        if text:
            c.drawString(left, y, text)
            y -= 5 * mm

    # the facts on the right: number, dates, customer
    info = [
        (t["number"], document["number"]),
        (t["date"], _date(document["issue_date"], loc)),
    ]
    first = document["lines"][0]
    if first.get("period_start") and first.get("period_end") != first.get("period_start"):
        info.append(
            (
                t["period"],
                f"{_date(first['period_start'], loc)} – {_date(first['period_end'], loc)}",
            )
        )
    else:
        info.append((t["supply"], _date(document["supply_date"], loc)))
    info.append((t["customer"], str(customer.get("id", ""))))
    info.append((t["contract"], document["contract_id"]))
    ry = height - 50 * mm
    for label, value in info:
        c.setFont(regular, 9)
        c.drawString(right - 80 * mm, ry, f"{label}:")
        c.drawRightString(right, ry, value)
        ry -= 5 * mm

    y = min(y, ry) - 10 * mm
    c.setFont(bold, 14)
    c.drawString(left, y, f"{kind} {document['number']}")
    y -= 7 * mm
    c.setFont(regular, 10)
    if document.get("refers_to"):
        ref = document["refers_to"]
        c.drawString(left, y, f"{t['refers']} {ref['number']} ({_date(ref['issue_date'], loc)})")
        y -= 5 * mm
        if document.get("reason"):
            reason = _REASONS[loc].get(document["reason"], document["reason"])
            c.drawString(left, y, f"{t['reason']}: {reason}")
            y -= 5 * mm

    # the lines
    y -= 4 * mm
    cols = [left, left + 12 * mm, right - 75 * mm, right - 45 * mm, right - 25 * mm]
    c.setFont(bold, 9)
    for x, label in zip(cols[:2], (t["pos"], t["description"]), strict=True):
        c.drawString(x, y, label)
    c.drawRightString(cols[3], y, t["net"])
    c.drawRightString(cols[4], y, t["rate"])
    c.drawRightString(right, y, t["gross"])
    y -= 2 * mm
    c.line(left, y, right, y)
    y -= 5 * mm
    c.setFont(regular, 9)
    for line in document["lines"]:
        c.drawString(cols[0], y, line["id"])
        c.drawString(cols[1], y, line["description"][:70])
        c.drawRightString(cols[3], y, money(line["net"]))
        rate = (
            f"{_percent(line['rate_bp']).rstrip('0').rstrip('.')} %"
            if line["category"] == "S"
            else "—"
        )
        c.drawRightString(cols[4], y, rate)
        c.drawRightString(right, y, money(line["gross"]))
        y -= 5 * mm
        if line.get("period_start") and line.get("period_end"):
            c.setFont(regular, 8)
            c.drawString(
                cols[1],
                y,
                f"{t['period']}: {_date(line['period_start'], loc)} – "
                f"{_date(line['period_end'], loc)}",
            )
            c.setFont(regular, 9)
            y -= 5 * mm
    c.line(left, y + 2 * mm, right, y + 2 * mm)

    # the totals per rate (§ 14 Abs. 4 Nr. 7, 8 UStG)
    y -= 3 * mm
    totals = document["totals"]
    rows: list[tuple[str, str]] = [(t["total_net"], money(totals["net"]))]
    for row in document["breakdown"]:
        if row["category"] == "S":
            label = t["tax_at"].format(
                rate=_percent(row["rate_bp"]).rstrip("0").rstrip("."), base=money(row["taxable"])
            )
        else:
            label = t["tax_none"]
        rows.append((label, money(row["tax"])))
    total_label = t["credit_total"] if document["kind"] == "credit_note" else t["total"]
    for n, (label, value) in enumerate(rows + [(total_label, money(totals["gross"]))]):
        last = n == len(rows)
        c.setFont(bold if last else regular, 10 if last else 9)
        c.drawString(right - 95 * mm, y, label)
        c.drawRightString(right, y, value)
        y -= 6 * mm if last else 5 * mm

    # notes: the reason for no VAT (§ 14 Abs. 4 Nr. 8 UStG, § 14a UStG), payment
    y -= 4 * mm
    c.setFont(regular, 9)
    notes = list(document.get(f"notes_{loc}") or [])
    if document["tax"]["key"] == "reverse_charge" and customer.get("vat_id"):
        notes.append(f"{t['customer_vat']}: {customer['vat_id']}")
    notes.append(_terms_text(document, loc))
    if seller.get("iban"):
        bank = (
            f"{t['bank']}: {seller.get('account_holder') or seller['name']}, IBAN {seller['iban']}"
        )
        if seller.get("bic"):
            bank += f", BIC {seller['bic']}"
        notes.append(bank)
    for note in notes:
        for chunk in _wrap(note, 105):
            c.drawString(left, y, chunk)
            y -= 4.5 * mm

    # the business-letter details
    c.setFont(regular, 7)
    fy = 20 * mm
    for line_text in reversed(seller.get(f"footer_{loc}") or []):
        c.drawString(left, fy, line_text[:150])
        fy += 3.5 * mm
    c.showPage()
    c.save()
    return buf.getvalue()


def _wrap(text: str, width: int) -> list[str]:
    words, lines, current = text.split(), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        lines.append(current)
    return lines


def facturx_pdf(document: dict[str, Any], locale: str | None = None) -> bytes:
    """The PDF with the EN 16931 CII XML embedded (Factur-X / ZUGFeRD 2, profile EN 16931),
    with PDF/A-3 metadata; the library checks the XML against its XSD before embedding."""
    from facturx import generate_from_binary

    loc = locale if locale in ("de", "en") else document.get("locale", "de")
    kind = _TEXT[loc][document["kind"]]
    return bytes(
        generate_from_binary(
            pdf(document, loc),
            cii_xml(document, "facturx"),
            flavor="factur-x",
            level="en16931",
            check_xsd=True,
            pdf_metadata={
                "author": document["seller"]["name"],
                "keywords": "Factur-X, ZUGFeRD, EN 16931",
                "title": f"{kind} {document['number']}",
                "subject": f"{kind} {document['number']} {document['issue_date']}",
            },
            lang="de-DE" if loc == "de" else "en-GB",
        )
    )


def is_business(document: dict[str, Any]) -> bool:
    return document.get("customer", {}).get("type") == "business"


def default_pdf(document: dict[str, Any], locale: str | None = None) -> bytes:
    """What `Accept: application/pdf` gets: Factur-X for business customers, else the PDF."""
    return facturx_pdf(document, locale) if is_business(document) else pdf(document, locale)
