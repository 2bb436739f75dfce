"""An invoice's amounts and its document (issue 15): pure functions, no I/O.

Prices in a contract are **gross**: the amount of an installment, period or purchase is what
the customer pays. An invoice splits it into net amount and VAT:

- per line (EN 16931: line amounts have two decimals, BT-131): the net amount contained in
  the gross price, ``gross × 10000 / (10000 + rate_bp)`` rounded half up
  (:func:`domain.vat.net_of_gross`);
- per VAT category and rate (BG-23): the taxable amount is the sum of the line net amounts
  and the tax the sum of the gross amounts less that (so net + tax is exactly what the
  customer pays). EN 16931 BR-CO-17 wants the tax to equal taxable × rate rounded; its
  published test allows a difference below one currency unit, and a line rounded as above
  differs from it by at most one cent. :func:`compute` reports the difference.

Without VAT (reverse charge, exemption, small business, not taxable) net = gross.

The document (:func:`build_document`) is a JSON-able dict: what is stored, hashed and
rendered as PDF and EN 16931 XML (core.invoice_documents). A credit note is a document of
its own (type code 381) with positive amounts that are credited, referring to the invoice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from domain.vat import TaxDecision, net_of_gross, tax_of_net

INVOICE: Final = "invoice"
CREDIT_NOTE: Final = "credit_note"
# UNTDID 1001 document type codes (EN 16931 BT-3)
TYPE_CODES: Final = {INVOICE: "380", CREDIT_NOTE: "381"}


@dataclass(frozen=True)
class LineIn:
    description: str
    gross: int  # minor units, > 0
    period_start: str = ""  # ISO dates of the period invoiced (BT-134/135), if any
    period_end: str = ""


@dataclass(frozen=True)
class Line:
    id: str  # BT-126
    description: str
    quantity: int
    gross: int
    net: int  # BT-131 (= net unit price BT-146 × 1)
    category: str
    rate_bp: int
    period_start: str
    period_end: str


@dataclass(frozen=True)
class Breakdown:
    """One VAT category and rate (EN 16931 BG-23)."""

    category: str
    rate_bp: int
    taxable: int  # BT-116
    tax: int  # BT-117
    # tax − taxable × rate rounded (BR-CO-17): 0 or ±1 cent per line (module docstring)
    rounding_difference: int
    note_de: str = ""
    note_en: str = ""
    exemption_code: str = ""


@dataclass(frozen=True)
class Totals:
    lines: tuple[Line, ...]
    breakdown: tuple[Breakdown, ...]
    net: int  # BT-109
    tax: int  # BT-110
    gross: int  # BT-112 = amount due BT-115 (nothing prepaid on the document)


def compute(lines: Sequence[LineIn], decision: TaxDecision) -> Totals:
    """The amounts of a document whose lines all share one tax decision."""
    if not lines:
        raise ValueError("an invoice has at least one line")
    out: list[Line] = []
    for n, line in enumerate(lines, start=1):
        if line.gross <= 0:
            raise ValueError(f"line {n}: amount must be positive, got {line.gross}")
        net = net_of_gross(line.gross, decision.rate_bp) if decision.rate_bp else line.gross
        out.append(
            Line(
                str(n),
                line.description,
                1,
                line.gross,
                net,
                decision.category,
                decision.rate_bp,
                line.period_start,
                line.period_end,
            )
        )
    gross = sum(line.gross for line in out)
    taxable = sum(line.net for line in out)
    tax = gross - taxable
    breakdown = Breakdown(
        decision.category,
        decision.rate_bp,
        taxable,
        tax,
        tax - tax_of_net(taxable, decision.rate_bp),
        decision.note_de if decision.category != "S" else "",
        decision.note_en if decision.category != "S" else "",
        decision.exemption_code,
    )
    return Totals(tuple(out), (breakdown,), taxable, tax, gross)


def build_document(
    *,
    kind: str,
    number: str,
    issue_date: str,
    currency: str,
    seller: dict[str, Any],
    customer: dict[str, Any],
    lines: Sequence[LineIn],
    decision: TaxDecision,
    supply_date: str,
    contract_id: str,
    seq: int,
    product: dict[str, Any],
    due_date: str = "",
    refers_to: dict[str, str] | None = None,
    reason: str = "",
    locale: str = "de",
    payment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The invoice or credit note as stored (every § 14 Abs. 4 UStG element; see
    docs/invoices.md for the mapping to EN 16931)."""
    if kind not in TYPE_CODES:
        raise ValueError(f"unknown document kind {kind!r}")
    if kind == CREDIT_NOTE and not refers_to:
        raise ValueError("a credit note refers to the invoice it corrects")
    totals = compute(lines, decision)
    notes_de = [decision.note_de] if decision.note_de else []
    notes_en = [decision.note_en] if decision.note_en else []
    return {
        "kind": kind,
        "type_code": TYPE_CODES[kind],
        "number": number,
        "issue_date": issue_date,
        "currency": currency.upper(),
        "locale": locale,
        "seller": dict(seller),
        "customer": dict(customer),
        "contract_id": contract_id,
        "seq": seq,
        "product": dict(product),
        "supply_date": supply_date,
        "due_date": due_date,
        "lines": [asdict(line) for line in totals.lines],
        "tax": {
            "key": decision.key,
            "category": decision.category,
            "rate_bp": decision.rate_bp,
            "country": decision.country,
            "basis": decision.basis,
            "rate_source": decision.rate_source,
            "exemption_code": decision.exemption_code,
        },
        "breakdown": [asdict(b) for b in totals.breakdown],
        "totals": {"net": totals.net, "tax": totals.tax, "gross": totals.gross},
        "notes_de": notes_de,
        "notes_en": notes_en,
        "refers_to": dict(refers_to) if refers_to else None,
        "reason": reason,
        "payment": dict(payment or {}),
    }


def document_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the document's canonical JSON (sorted keys, no spaces): stored with the
    invoice; a document whose hash differs was changed after it was issued."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def credit_lines(document: dict[str, Any], amount: int, description: str) -> list[LineIn]:
    """The lines of a credit note of `amount` (gross) against `document`: one line for the
    amount credited, the invoice's period kept. ValueError when more than the invoice."""
    if amount <= 0:
        raise ValueError("a credit note's amount must be positive")
    if amount > document["totals"]["gross"]:
        raise ValueError(
            f"credit of {amount} exceeds invoice {document['number']} "
            f"({document['totals']['gross']})"
        )
    first = document["lines"][0]
    return [LineIn(description, amount, first["period_start"], first["period_end"])]
