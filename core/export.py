"""The month's bookings for the accountant (issue 15): one CSV per seller in a layout DATEV
imports (the columns of a DATEV "Buchungsstapel", docs/invoices.md).

Rows, by their day in Europe/Berlin:

=================  =========  ===================  ===========================  ==========
what               amount     Konto                Gegenkonto                   S/H
=================  =========  ===================  ===========================  ==========
invoice            gross      receivables          revenue account by tax       S
credit note        gross      receivables          revenue account by tax       H
payment (Stripe)   amount     transit (Stripe)     receivables                  S
settlement         amount     bank                 receivables                  S
refund (Stripe)    amount     transit (Stripe)     receivables                  H
dunning fee        amount     receivables          fees (other income)          S
write-off          amount     write-offs           receivables                  S
=================  =========  ===================  ===========================  ==========

The account numbers default to DATEV's SKR 03 chart and are the accountant's to change
(``MAHNWERK_EXPORT_ACCOUNTS``, ``key=number,…``); no tax key (BU-Schlüssel) is written:
SKR 03's revenue accounts used here carry their tax automatically. Not tax advice.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Contract, Invoice, PaymentAttempt, TimelineEvent
from domain.schedule import BERLIN, berlin_date

# SKR 03 (DATEV eG, Kontenrahmen SKR 03): the defaults
DEFAULT_ACCOUNTS: Final[dict[str, str]] = {
    "receivables": "1400",  # Forderungen aus Lieferungen und Leistungen
    "bank": "1200",  # Bank: settlements by transfer
    "transit": "1360",  # Geldtransit: Stripe payouts in transit
    "revenue_de_standard": "8400",  # Erlöse 19 % USt
    "revenue_de_reduced": "8300",  # Erlöse 7 % USt
    "revenue_small_business": "8195",  # Erlöse als Kleinunternehmer (§ 19 Abs. 1 UStG)
    "revenue_education_exempt": "8100",  # steuerfreie Umsätze § 4 Nr. 8 ff. UStG
    "revenue_reverse_charge": "8336",  # im anderen EU-Land steuerpflichtig, § 13b UStG
    "revenue_oss": "8320",  # im anderen EU-Land steuerpflichtig (OSS)
    "revenue_not_taxable": "8338",  # im Inland nicht steuerbar (Drittland)
    "fees": "2700",  # sonstige Erträge: Mahngebühren
    "write_offs": "2400",  # Forderungsverluste
}

COLUMNS: Final = (
    "Umsatz (ohne Soll/Haben-Kz)",
    "Soll/Haben-Kennzeichen",
    "WKZ Umsatz",
    "Konto",
    "Gegenkonto (ohne BU-Schlüssel)",
    "BU-Schlüssel",
    "Belegdatum",
    "Belegfeld 1",
    "Belegfeld 2",
    "Buchungstext",
    "Leistungsdatum",
    "EU-Land u. UStID",
    "EU-Steuersatz",
    "Art",
    "Vertrag",
)

_MONTH_RE = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def parse_accounts(raw: str) -> dict[str, str]:
    """``receivables=10000,bank=1800`` over the SKR 03 defaults; ValueError names the key."""
    accounts = dict(DEFAULT_ACCOUNTS)
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        key, _, number = entry.partition("=")
        key, number = key.strip(), number.strip()
        if key not in DEFAULT_ACCOUNTS:
            raise ValueError(f"unknown account {key!r} (one of {', '.join(DEFAULT_ACCOUNTS)})")
        if not re.fullmatch(r"[0-9]{1,9}", number):
            raise ValueError(f"account {key}: {number!r} is not an account number")
        accounts[key] = number
    return accounts


def month_range(month: str) -> tuple[datetime, datetime, str]:
    """``2026-12`` → [start, end) as UTC instants of Berlin midnights, and the label."""
    m = _MONTH_RE.fullmatch(month)
    if m is None:
        raise ValueError(f"month {month!r} is not YYYY-MM")
    year, mon = int(m.group(1)), int(m.group(2))
    start = datetime(year, mon, 1, tzinfo=BERLIN)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=BERLIN)
    return start.astimezone(UTC), end.astimezone(UTC), month


@dataclass(frozen=True)
class Booking:
    amount: int  # minor units, positive
    side: str  # S | H
    currency: str
    account: str
    counter: str
    day: str  # ISO date (Berlin)
    ref1: str  # Belegfeld 1: invoice / payment reference
    ref2: str  # Belegfeld 2
    text: str
    supply_day: str = ""
    eu_vat_id: str = ""
    eu_rate: str = ""
    kind: str = ""
    contract_id: str = ""


def _amount(minor: int) -> str:
    return f"{minor // 100},{minor % 100:02d}"


def _ddmm(iso: str) -> str:
    y, m, d = iso.split("-")
    return f"{d}{m}"


def _ddmmyyyy(iso: str) -> str:
    if not iso:
        return ""
    y, m, d = iso.split("-")
    return f"{d}{m}{y}"


def _seller_of(contract: Contract) -> str:
    return str(getattr(contract, "seller_id", None) or "default")


def bookings(
    s: Session, *, month: str, seller_id: str = "default", accounts: dict[str, str] | None = None
) -> list[Booking]:
    """The month's bookings of `seller_id`, in date order."""
    acc = accounts or DEFAULT_ACCOUNTS
    start, end, _ = month_range(month)
    first_day, last_day = berlin_date(start), berlin_date(end - timedelta(seconds=1))
    out: list[Booking] = []
    contracts = {c.id: c for c in s.scalars(select(Contract))}
    mine = {cid for cid, c in contracts.items() if _seller_of(c) == seller_id}
    invoice_of: dict[tuple[str, int], str] = {}
    for row in s.scalars(
        select(Invoice).where(Invoice.seller_key == seller_id).order_by(Invoice.id)
    ):
        if row.kind == "invoice":
            invoice_of[(row.contract_id, row.seq)] = row.number
        if not first_day <= row.issue_date <= last_day:
            continue
        doc = row.document
        key = doc["tax"]["key"]
        revenue = acc.get(f"revenue_{key}", acc["revenue_de_standard"])
        customer = doc.get("customer") or {}
        credit = row.kind == "credit_note"
        out.append(
            Booking(
                row.gross,
                "H" if credit else "S",
                row.currency,
                acc["receivables"],
                revenue,
                row.issue_date,
                row.number,
                row.refers_to or doc.get("due_date", ""),
                f"{'Rechnungskorrektur' if credit else 'Rechnung'} {row.number} "
                f"{customer.get('name', '')}"[:60],
                doc.get("supply_date", ""),
                customer.get("vat_id", "") if key == "reverse_charge" else "",
                f"{doc['tax']['rate_bp'] / 100:g}".replace(".", ",") if key == "oss" else "",
                row.kind,
                row.contract_id,
            )
        )
    for att in s.scalars(
        select(PaymentAttempt).where(
            PaymentAttempt.status == "succeeded",
            PaymentAttempt.contract_id.in_(mine),
        )
    ):
        when = att.settled_at or att.attempted_at
        if not start <= when < end:
            continue
        number = invoice_of.get((att.contract_id, att.installment_seq), "")
        out.append(
            Booking(
                att.amount,
                "S",
                att.currency.upper(),
                acc["transit"],
                acc["receivables"],
                berlin_date(when),
                number or att.payment_intent or "",
                att.payment_intent or "",
                f"Zahlung {number or att.contract_id} Rate {att.installment_seq}"[:60],
                kind="payment",
                contract_id=att.contract_id,
            )
        )
    facts = s.scalars(
        select(TimelineEvent)
        .where(
            TimelineEvent.type.in_(
                ("settlement.recorded", "refund.created", "fee.charged", "contract.written_off")
            ),
            TimelineEvent.occurred_at >= start,
            TimelineEvent.occurred_at < end,
            TimelineEvent.contract_id.in_(mine),
        )
        .order_by(TimelineEvent.occurred_at, TimelineEvent.id)
    )
    for fact in facts:
        data: dict[str, Any] = fact.data or {}
        amount = data.get("amount")
        if not isinstance(amount, int) or amount <= 0:
            continue
        currency = contracts[fact.contract_id].currency.upper()
        day = berlin_date(fact.occurred_at)
        if fact.type == "settlement.recorded":
            row_ = (
                "S",
                acc["bank"],
                acc["receivables"],
                str(data.get("reference") or "")[:36],
                f"Zahlungseingang {fact.contract_id}",
                "settlement",
            )
        elif fact.type == "refund.created":
            seq = data.get("installment")
            number = invoice_of.get((fact.contract_id, seq), "") if isinstance(seq, int) else ""
            row_ = (
                "H",
                acc["transit"],
                acc["receivables"],
                number,
                f"Erstattung {number or fact.contract_id}",
                "refund",
            )
        elif fact.type == "fee.charged":
            row_ = (
                "S",
                acc["receivables"],
                acc["fees"],
                str(data.get("stage") or ""),
                f"Mahngebühr {fact.contract_id}",
                "fee",
            )
        else:
            row_ = (
                "S",
                acc["write_offs"],
                acc["receivables"],
                "",
                f"Forderungsverlust {fact.contract_id}",
                "write_off",
            )
        side, account, counter, ref, text, kind = row_
        out.append(
            Booking(
                amount,
                side,
                currency,
                account,
                counter,
                day,
                ref,
                fact.contract_id,
                text[:60],
                kind=kind,
                contract_id=fact.contract_id,
            )
        )
    out.sort(key=lambda b: (b.day, b.kind != "invoice", b.ref1))
    return out


def to_csv(rows: Iterable[Booking]) -> str:
    """Semicolon-separated, decimal comma, Belegdatum TTMM (the Buchungsstapel's form)."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    for b in rows:
        writer.writerow(
            [
                _amount(b.amount),
                b.side,
                b.currency,
                b.account,
                b.counter,
                "",
                _ddmm(b.day),
                b.ref1[:36],
                b.ref2[:36],
                b.text,
                _ddmmyyyy(b.supply_day),
                b.eu_vat_id,
                b.eu_rate,
                b.kind,
                b.contract_id,
            ]
        )
    return buf.getvalue()


def export_month(
    s: Session, *, month: str, seller_id: str = "default", accounts: dict[str, str] | None = None
) -> str:
    return to_csv(bookings(s, month=month, seller_id=seller_id, accounts=accounts))


def last_month(today: date) -> str:
    first = today.replace(day=1) - timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"
