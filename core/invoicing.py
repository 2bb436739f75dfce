"""Issuing invoices and credit notes: gapless numbers from the database, immutable documents.

Numbers (§ 14 Abs. 4 Nr. 4 UStG: "eine fortlaufende Nummer … die zur Identifizierung der
Rechnung vom Rechnungsaussteller einmalig vergeben wird") are allocated in the transaction
that stores the document, from a counter row per seller and series
(core.models.InvoiceCounter):

- PostgreSQL: the row is read with ``SELECT … FOR UPDATE``; a second transaction waits on the
  lock until the first commits or rolls back, then reads the new value.
- SQLite: the first statement of the transaction is the increment, which takes the database's
  write lock (writers are serialised; the busy timeout makes the others wait).

The invoice is inserted in the same transaction, with its timeline row and the platform
event (`invoice.issued`, `credit_note.issued`). If anything fails, the increment is rolled
back with it: a number is never skipped and never given twice. Issuing is idempotent by
``key`` (one invoice per contract and installment; one credit note per refund reference):
a repeat returns the stored document and takes no number.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.invoice_seller import InvoiceSeller, invoice_seller
from core.models import Contract, Invoice, InvoiceCounter, OutboxEvent, TimelineEvent
from domain.durations import parse_interval
from domain.invoice import (
    CREDIT_NOTE,
    INVOICE,
    LineIn,
    build_document,
    credit_lines,
    document_hash,
)
from domain.schedule import berlin_date, due_instant, shift
from domain.vat import RATES, TaxCustomer, TaxDecision, TaxProduct, decide

log = logging.getLogger(__name__)


class InvoiceError(Exception):
    """An invoice cannot be issued as asked (the message says why)."""


class InvoiceTampered(Exception):
    """A stored document no longer matches the hash it was issued with."""


@event.listens_for(Invoice, "before_update")
def _immutable(mapper: Any, connection: Any, target: Invoice) -> None:
    raise InvoiceError(
        f"invoice {target.number} is immutable once issued; correct it with a credit note"
    )


@dataclass(frozen=True)
class Issued:
    number: str
    kind: str
    issue_date: str
    seq: int
    gross: int
    created: bool  # False: it existed (an idempotent repeat)


def invoice_key(contract_id: str, seq: int) -> str:
    return f"invoice:{contract_id}:{seq}"


def credit_key(contract_id: str, seq: int, ref: str) -> str:
    return f"credit:{contract_id}:{seq}:{ref}"[:255]


def format_number(prefix: str, value: int) -> str:
    return f"{prefix}{value:06d}"


def _issued(row: Invoice, created: bool) -> Issued:
    return Issued(row.number, row.kind, row.issue_date, row.seq, row.gross, created)


def verified(row: Invoice) -> dict[str, Any]:
    """The stored document, checked against its hash."""
    if document_hash(row.document) != row.sha256:
        raise InvoiceTampered(f"invoice {row.number}: the stored document does not match its hash")
    return row.document


# -- numbering -------------------------------------------------------------------------------


_COUNTER_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_COUNTER_LOCKS_GUARD = threading.Lock()


def _counter_lock(seller_key: str, series: str) -> threading.Lock:
    with _COUNTER_LOCKS_GUARD:
        return _COUNTER_LOCKS.setdefault((seller_key, series), threading.Lock())


def next_value(s: Session, seller_key: str, series: str) -> int:
    """Take the next number of (seller, series) inside the caller's transaction; it is the
    caller's to commit (then it is used) or roll back (then it was never taken)."""
    dialect = s.get_bind().dialect.name
    values = {"seller_key": seller_key, "series": series, "last_value": 0}
    if dialect == "postgresql":
        s.execute(pg_insert(InvoiceCounter).values(**values).on_conflict_do_nothing())
        counter = s.scalars(
            select(InvoiceCounter)
            .where(InvoiceCounter.seller_key == seller_key, InvoiceCounter.series == series)
            .with_for_update()
        ).one()
        counter.last_value += 1
        s.flush()
        return counter.last_value
    if dialect == "sqlite":
        s.execute(sqlite_insert(InvoiceCounter).values(**values).on_conflict_do_nothing())
    else:  # pragma: no cover - Mahnwerk runs on PostgreSQL or SQLite
        if s.get(InvoiceCounter, (seller_key, series)) is None:
            s.execute(insert(InvoiceCounter).values(**values))
    s.execute(
        update(InvoiceCounter)
        .where(InvoiceCounter.seller_key == seller_key, InvoiceCounter.series == series)
        .values(last_value=InvoiceCounter.last_value + 1)
        .execution_options(synchronize_session=False)
    )
    value = s.scalar(
        select(InvoiceCounter.last_value).where(
            InvoiceCounter.seller_key == seller_key, InvoiceCounter.series == series
        )
    )
    return int(value or 0)


def _event_id(fact_key: str) -> str:
    from activities.ledger import event_id_for  # the ledger's stable ids (SPEC.md §5)

    return event_id_for(fact_key)


def store(
    sessions: sessionmaker[Session],
    *,
    key: str,
    seller: InvoiceSeller,
    kind: str,
    contract_id: str,
    customer_id: str,
    product_id: str,
    seq: int,
    make_document: Any,
    issued_at: datetime,
    refers_to: str | None = None,
) -> Issued:
    """Allocate a number and store the document `make_document(number)` builds, with its
    timeline row and platform event, in one transaction; idempotent by `key`."""
    with sessions() as s:
        existing = s.scalar(select(Invoice).where(Invoice.key == key))
        if existing is not None:
            return _issued(existing, False)
    series, prefix = seller.series_for(kind)
    try:
        # One numbering transaction per series at a time in this process: the others wait
        # here, not holding a pooled connection while they queue for the counter's row lock
        # (in a due wave every connection was held by a waiter, and the ledger's other
        # writes starved; issue 17). Across processes the row lock still decides.
        with _counter_lock(seller.key, series), sessions() as s, s.begin():
            value = next_value(s, seller.key, series)
            if s.scalar(select(Invoice.id).where(Invoice.key == key)) is not None:
                raise _Exists  # issued meanwhile (we now hold the counter): roll back
            number = format_number(prefix, value)
            document = make_document(number)
            row = Invoice(
                key=key,
                seller_key=seller.key,
                series=series,
                sequence=value,
                number=number,
                kind=kind,
                contract_id=contract_id,
                seq=seq,
                refers_to=refers_to,
                issue_date=document["issue_date"],
                currency=document["currency"],
                net=document["totals"]["net"],
                tax=document["totals"]["tax"],
                gross=document["totals"]["gross"],
                document=document,
                sha256=document_hash(document),
            )
            s.add(row)
            _record_event(s, row, customer_id, product_id, issued_at)
            s.flush()
            issued = _issued(row, True)
    except (_Exists, IntegrityError):
        # Another attempt stored this key first; its number stands, ours was rolled back.
        with sessions() as s:
            row2 = s.scalar(select(Invoice).where(Invoice.key == key))
            if row2 is None:
                raise
            return _issued(row2, False)
    return issued


class _Exists(Exception):
    pass


def _record_event(
    s: Session, row: Invoice, customer_id: str, product_id: str, issued_at: datetime
) -> None:
    type_ = "invoice.issued" if row.kind == INVOICE else "credit_note.issued"
    fact_key = f"{type_}:{row.key}"
    data = {
        "number": row.number,
        "kind": row.kind,
        "installment": row.seq,
        "issue_date": row.issue_date,
        "currency": row.currency,
        "net": row.net,
        "tax": row.tax,
        "gross": row.gross,
        "refers_to": row.refers_to,
        "seller_id": row.seller_key,
    }
    s.add(
        TimelineEvent(
            contract_id=row.contract_id,
            key=fact_key,
            type=type_,
            occurred_at=issued_at,
            actor=None,
            data=data,
        )
    )
    eid = _event_id(fact_key)
    s.add(
        OutboxEvent(
            event_id=eid,
            contract_id=row.contract_id,
            type=type_,
            payload={
                "id": eid,
                "type": type_,
                "created": issued_at.astimezone(UTC).isoformat(),
                "contract_id": row.contract_id,
                "customer_id": customer_id,
                "product_id": product_id,
                "seller_id": row.seller_key,
                "data": data,
            },
        )
    )


# -- invoices ----------------------------------------------------------------------------------


def _label(kind: str, seq: int, count: int | None, locale: str, product: str) -> str:
    de = locale == "de"
    if kind == "one_off":
        return product
    if kind == "installments":
        part = f"Rate {seq} von {count}" if de else f"Installment {seq} of {count}"
    else:
        part = f"Beitrag Zeitraum {seq}" if de else f"Subscription period {seq}"
    return f"{product} — {part}"


def _schedule(contract: Contract) -> tuple[str | None, int | None]:
    """(interval, count) of the contract as checked out."""
    req = contract.request or {}
    part = req.get(contract.kind) or {}
    return part.get("interval"), part.get("count")


def _period(contract: Contract, due_at: datetime, seq: int) -> tuple[str, str]:
    """The period an installment or subscription period pays for: from its due day to the
    day before the next one's (ISO, Berlin); a one-off purchase: its day."""
    start = berlin_date(due_at)
    interval, _ = _schedule(contract)
    if contract.kind == "one_off" or not interval:
        return start, start
    req = contract.request or {}
    part = req.get(contract.kind) or {}
    first = due_instant(part.get("first_due") or part.get("start") or start)
    nxt = shift(first, parse_interval(interval), seq)
    end = date.fromisoformat(berlin_date(nxt)) - timedelta(days=1)
    return start, max(end.isoformat(), start)


def customer_party(customer: dict[str, Any]) -> dict[str, Any]:
    address = dict(customer.get("address") or {})
    return {
        "id": customer.get("id", ""),
        "name": customer.get("name", ""),
        "email": customer.get("email", ""),
        "type": customer.get("type", "consumer"),
        "vat_id": customer.get("vat_id") or "",
        "address": address,
        "locale": customer.get("locale", "de"),
    }


def tax_decision(
    seller: InvoiceSeller, contract: Contract, supply_day: str, rates: Any = RATES
) -> TaxDecision:
    customer = contract.customer or {}
    product = contract.product or {}
    address = customer.get("address") or {}
    electronic = product.get("electronic_service")
    return decide(
        seller.tax,
        TaxCustomer(
            customer.get("type", "consumer"),
            address.get("country", ""),
            customer.get("vat_id") or "",
        ),
        TaxProduct(
            product.get("tax_category") or seller.product_tax,
            seller.electronic_services if electronic is None else bool(electronic),
        ),
        supply_day,
        rates,
    )


def issue_invoice(
    sessions: sessionmaker[Session],
    *,
    contract_id: str,
    seq: int,
    amount: int,
    due_at: datetime,
    issued_at: datetime,
    settings: Any = None,
) -> Issued:
    """The invoice of installment / period / purchase `seq` of `contract_id` (gross
    `amount`), issued on `issued_at`'s Berlin day; the stored one if it exists."""
    if settings is None:
        from core.settings import get_settings

        settings = get_settings()
    with sessions() as s:
        existing = s.scalar(select(Invoice).where(Invoice.key == invoice_key(contract_id, seq)))
        if existing is not None:
            return _issued(existing, False)
        contract = s.get(Contract, contract_id)
        if contract is None:
            raise InvoiceError(f"contract {contract_id} is not in the ledger")
        s.expunge(contract)
    seller = invoice_seller(getattr(contract, "seller_id", None), settings, sessions)
    customer = customer_party(contract.customer or {})
    locale = "en" if customer["locale"] == "en" else "de"
    start, end = _period(contract, due_at, seq)
    _, count = _schedule(contract)
    product = dict(contract.product or {})
    decision = tax_decision(seller, contract, start, RATES + settings.extra_vat_rates)
    issue_date = berlin_date(issued_at)
    line = LineIn(
        _label(contract.kind, seq, count, locale, product.get("name", "")), amount, start, end
    )

    def make(number: str) -> dict[str, Any]:
        return build_document(
            kind=INVOICE,
            number=number,
            issue_date=issue_date,
            currency=contract.currency,
            seller=seller.as_party(),
            customer=customer,
            lines=[line],
            decision=decision,
            supply_date=start,
            contract_id=contract_id,
            seq=seq,
            product=product,
            due_date=berlin_date(due_at),
            locale=locale,
            payment={"terms": "debit" if contract.payment.get("payment_method") else "transfer"},
        )

    issued = store(
        sessions,
        key=invoice_key(contract_id, seq),
        seller=seller,
        kind=INVOICE,
        contract_id=contract_id,
        customer_id=contract.customer_id,
        product_id=contract.product_id,
        seq=seq,
        make_document=make,
        issued_at=issued_at,
    )
    if issued.created:
        log.info("invoice %s issued for %s installment %s", issued.number, contract_id, seq)
    return issued


# -- credit notes ------------------------------------------------------------------------------

CREDIT_REASONS_DE = {
    "refund": "Erstattung",
    "withdrawal": "Widerruf",
    "cancellation": "Kündigung",
    "goodwill": "Kulanz",
    "write_down": "Forderungsverzicht",
    "correction": "Rechnungskorrektur",
}
CREDIT_REASONS_EN = {
    "refund": "Refund",
    "withdrawal": "Withdrawal",
    "cancellation": "Cancellation",
    "goodwill": "Goodwill",
    "write_down": "Write-down",
    "correction": "Correction",
}


def _decision_of(document: dict[str, Any]) -> TaxDecision:
    """The original invoice's tax treatment: a credit note corrects it at the same rate."""
    tax = document["tax"]
    return TaxDecision(
        tax["key"],
        tax["category"],
        tax["rate_bp"],
        tax["country"],
        tax["basis"],
        (document.get("notes_de") or [""])[0],
        (document.get("notes_en") or [""])[0],
        tax.get("exemption_code", ""),
        tax.get("rate_source", ""),
    )


def issue_credit_note(
    sessions: sessionmaker[Session],
    *,
    contract_id: str,
    seq: int,
    amount: int,
    reason: str,
    ref: str,
    issued_at: datetime,
    settings: Any = None,
) -> Issued:
    """A credit note of `amount` (gross) against the invoice of installment `seq`, for
    `reason` (refund | withdrawal | cancellation | goodwill | write_down | correction);
    `ref` identifies the refund (one credit note per ref). InvoiceError when the
    installment has no invoice or the credits would exceed it."""
    if settings is None:
        from core.settings import get_settings

        settings = get_settings()
    if reason not in CREDIT_REASONS_DE:
        raise InvoiceError(f"unknown credit-note reason {reason!r}")
    key = credit_key(contract_id, seq, ref)
    with sessions() as s:
        existing = s.scalar(select(Invoice).where(Invoice.key == key))
        if existing is not None:
            return _issued(existing, False)
        original = s.scalar(select(Invoice).where(Invoice.key == invoice_key(contract_id, seq)))
        if original is None:
            raise InvoiceError(f"installment {seq} of contract {contract_id} has no invoice")
        credited = s.scalar(
            select(func.coalesce(func.sum(Invoice.gross), 0)).where(
                Invoice.kind == CREDIT_NOTE,
                Invoice.refers_to == original.number,
                Invoice.contract_id == contract_id,
            )
        )
        contract = s.get(Contract, contract_id)
        if contract is None:
            raise InvoiceError(f"contract {contract_id} is not in the ledger")
        invoice = verified(original)
        s.expunge_all()
    left = original.gross - int(credited or 0)
    if amount > left:
        raise InvoiceError(
            f"credit of {amount} exceeds what invoice {original.number} has left to credit ({left})"
        )
    seller = invoice_seller(original.seller_key, settings, sessions)
    locale = invoice.get("locale", "de")
    words = CREDIT_REASONS_DE if locale == "de" else CREDIT_REASONS_EN
    title = "Rechnungskorrektur zu" if locale == "de" else "Correction of invoice"
    description = f"{words[reason]}: {title} {original.number}"
    lines = credit_lines({**invoice, "totals": {"gross": left}}, amount, description)
    issue_date = berlin_date(issued_at)

    def make(number: str) -> dict[str, Any]:
        return build_document(
            kind=CREDIT_NOTE,
            number=number,
            issue_date=issue_date,
            currency=invoice["currency"],
            seller=seller.as_party(),
            customer=invoice["customer"],
            lines=lines,
            decision=_decision_of(invoice),
            supply_date=invoice["supply_date"],
            contract_id=contract_id,
            seq=seq,
            product=invoice["product"],
            refers_to={"number": original.number, "issue_date": original.issue_date},
            reason=reason,
            locale=locale,
        )

    issued = store(
        sessions,
        key=key,
        seller=seller,
        kind=CREDIT_NOTE,
        contract_id=contract_id,
        customer_id=contract.customer_id,
        product_id=contract.product_id,
        seq=seq,
        make_document=make,
        issued_at=issued_at,
        refers_to=original.number,
    )
    if issued.created:
        log.info("credit note %s issued against %s", issued.number, original.number)
    return issued


# -- reads -------------------------------------------------------------------------------------


def invoices_of(s: Session, contract_id: str) -> list[Invoice]:
    return list(
        s.scalars(select(Invoice).where(Invoice.contract_id == contract_id).order_by(Invoice.id))
    )


def invoice_numbers(s: Session, contract_id: str) -> dict[int, tuple[str, str]]:
    """Installment → (invoice number, issue date) of the contract's invoices."""
    return {
        row.seq: (row.number, row.issue_date)
        for row in s.scalars(
            select(Invoice).where(Invoice.contract_id == contract_id, Invoice.kind == INVOICE)
        )
    }


def summary(row: Invoice) -> dict[str, Any]:
    """The JSON view of an invoice (API, events)."""
    return {
        "number": row.number,
        "kind": row.kind,
        "seller_id": row.seller_key,
        "contract_id": row.contract_id,
        "installment": row.seq,
        "issue_date": row.issue_date,
        "currency": row.currency,
        "net": row.net,
        "tax": row.tax,
        "gross": row.gross,
        "refers_to": row.refers_to,
        "sha256": row.sha256,
    }
