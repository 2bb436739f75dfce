"""Issuing invoices and credit notes: gapless numbers from the database, immutable documents.

Numbers (§ 14 Abs. 4 Nr. 4 UStG: "eine fortlaufende Nummer … die zur Identifizierung der
Rechnung vom Rechnungsaussteller einmalig vergeben wird") are allocated in the transaction
that stores the document, from a counter row per seller and series
(core.models.InvoiceCounter):

- The increment is one ``UPDATE … SET last_value = last_value + n RETURNING last_value``:
  on PostgreSQL it takes the row's lock, and a second transaction's increment waits on it
  until the first commits or rolls back, then counts on from the new value; on SQLite it
  takes the database's write lock (writers are serialised; the busy timeout makes the
  others wait). A counter that does not exist yet is created first.

The invoice is inserted in the same transaction, with its timeline row and the platform
event (`invoice.issued`, `credit_note.issued`). If anything fails, the increment is rolled
back with it: a number is never skipped and never given twice. Issuing is idempotent by
``key`` (one invoice per contract and installment; one credit note per refund reference):
a repeat returns the stored document and takes no number.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
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


def _take(s: Session, seller_key: str, series: str, n: int) -> int:
    """Advance the counter of (seller, series) by `n`, locking it until the transaction ends
    (PostgreSQL: the row; SQLite: the database's write lock); the first of the `n` numbers.
    The counter is created at 0 when it does not exist yet."""
    where = (InvoiceCounter.seller_key == seller_key, InvoiceCounter.series == series)
    advance = (
        update(InvoiceCounter)
        .where(*where)
        .values(last_value=InvoiceCounter.last_value + n)
        .returning(InvoiceCounter.last_value)
        .execution_options(synchronize_session=False)
    )
    last = s.scalar(advance)
    if last is None:  # the first number of this seller's series
        values = {"seller_key": seller_key, "series": series, "last_value": 0}
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            s.execute(pg_insert(InvoiceCounter).values(**values).on_conflict_do_nothing())
        elif dialect == "sqlite":
            s.execute(sqlite_insert(InvoiceCounter).values(**values).on_conflict_do_nothing())
        else:  # pragma: no cover - the two databases we support
            s.execute(insert(InvoiceCounter).values(**values))
        last = s.scalar(advance)
        if last is None:  # pragma: no cover - created just above, in this transaction
            raise InvoiceError(f"the invoice counter {seller_key}/{series} cannot be created")
    return int(last) - n + 1


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
    timeline row and platform event, in one transaction; idempotent by `key`. (The callers
    look the key up first; one stored meanwhile is found by the batch, `_number_batch`.)"""
    series, prefix = seller.series_for(kind)
    job = _Job(
        key=key,
        kind=kind,
        contract_id=contract_id,
        customer_id=customer_id,
        product_id=product_id,
        seq=seq,
        make_document=make_document,
        issued_at=issued_at,
        refers_to=refers_to,
    )
    numbering = _numbering(sessions, seller.key, series)
    with numbering.lock:
        numbering.queue.append(job)
        lead = not numbering.leading
        numbering.leading = True
    if lead:
        numbering.lead(sessions, seller.key, series, prefix)
    job.done.wait()
    if job.error is not None:
        raise job.error
    assert job.result is not None
    return job.result


# -- group commit of the numbering (issue 17) ------------------------------------------------
#
# The numbers of a series are gapless, so every invoice of a seller passes through one
# counter row: one at a time. In a due wave each numbering transaction held the row's lock
# across five round trips while its thread competed with 60 others for the GIL, and the
# whole wave queued behind it (~8 invoices, hence ~8 debits per second on a 2-core machine).
# So the invoices waiting in this process are numbered together: the first thread to find
# none in progress leads — it takes everything queued (up to NUMBERING_BATCH), locks the
# counter once, advances it by the number of new invoices, stores them and commits once —
# and goes on while more are queued; the others wait for their result without holding a
# connection. A batch that fails is stored one invoice at a time, so one bad invoice fails
# alone. Across processes the counter's row lock still orders the batches.

NUMBERING_BATCH = 100


@dataclass(eq=False)
class _Job:
    key: str
    kind: str
    contract_id: str
    customer_id: str
    product_id: str
    seq: int
    make_document: Any
    issued_at: datetime
    refers_to: str | None
    done: threading.Event = field(default_factory=threading.Event)
    result: Issued | None = None
    error: BaseException | None = None


class _Numbering:
    """The invoices of one (database, seller, series) queued in this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list[_Job] = []
        self.leading = False

    def lead(
        self, sessions: sessionmaker[Session], seller_key: str, series: str, prefix: str
    ) -> None:
        while True:
            with self.lock:
                batch = self.queue[:NUMBERING_BATCH]
                del self.queue[:NUMBERING_BATCH]
                if not batch:
                    self.leading = False
                    return
            try:
                try:
                    results = _number_batch(sessions, batch, seller_key, series, prefix)
                except Exception:
                    if len(batch) == 1:
                        raise
                    results = []
                    for job in batch:  # one at a time: a bad invoice fails alone
                        try:
                            results.extend(
                                _number_batch(sessions, [job], seller_key, series, prefix)
                            )
                        except BaseException as exc:  # noqa: BLE001 - handed to its caller
                            job.error = exc
                            results.append(None)
                for job, issued in zip(batch, results, strict=True):
                    job.result = issued
            except BaseException as exc:  # noqa: BLE001 - handed to the callers
                for job in batch:
                    if job.result is None and job.error is None:
                        job.error = exc
            finally:
                for job in batch:
                    job.done.set()


_NUMBERINGS: dict[tuple[int, str, str], _Numbering] = {}
_NUMBERINGS_GUARD = threading.Lock()


def _numbering(sessions: sessionmaker[Session], seller_key: str, series: str) -> _Numbering:
    with _NUMBERINGS_GUARD:
        return _NUMBERINGS.setdefault((id(sessions), seller_key, series), _Numbering())


def _number_batch(
    sessions: sessionmaker[Session], jobs: list[_Job], seller_key: str, series: str, prefix: str
) -> list[Issued | None]:
    """Number and store `jobs` in one transaction (keys already stored: their invoice).

    The stored keys are looked up before the counter is locked: a key another process stores
    meanwhile fails this batch's INSERT on the unique key (the batch is then stored one
    invoice at a time, and that one finds the other's invoice below) — the counter's
    increment is rolled back with it, so no number is skipped. The rows are inserted with
    one statement per table (no unit of work: they are never changed afterwards)."""
    try:
        with sessions() as s, s.begin():
            keys = [j.key for j in jobs]
            known = set(s.scalars(select(Invoice.key).where(Invoice.key.in_(keys))))
            issued: dict[str, Issued] = (
                {
                    row.key: _issued(row, False)
                    for row in s.scalars(select(Invoice).where(Invoice.key.in_(known)))
                }
                if known
                else {}
            )
            # the same key twice in one batch (a retry while the first is queued): once
            new = list({j.key: j for j in jobs if j.key not in known}.values())
            if new:
                first = _take(s, seller_key, series, len(new))
                invoices: list[dict[str, Any]] = []
                facts: list[dict[str, Any]] = []
                events: list[dict[str, Any]] = []
                for i, job in enumerate(new):
                    value = first + i
                    number = format_number(prefix, value)
                    document = job.make_document(number)
                    totals = document["totals"]
                    row = {
                        "key": job.key,
                        "seller_key": seller_key,
                        "series": series,
                        "sequence": value,
                        "number": number,
                        "kind": job.kind,
                        "contract_id": job.contract_id,
                        "seq": job.seq,
                        "refers_to": job.refers_to,
                        "issue_date": document["issue_date"],
                        "currency": document["currency"],
                        "net": totals["net"],
                        "tax": totals["tax"],
                        "gross": totals["gross"],
                        "document": document,
                        "sha256": document_hash(document),
                    }
                    invoices.append(row)
                    fact, event = _event_rows(row, job.customer_id, job.product_id, job.issued_at)
                    facts.append(fact)
                    events.append(event)
                    issued[job.key] = Issued(
                        number, job.kind, row["issue_date"], job.seq, row["gross"], True
                    )
                s.execute(insert(Invoice), invoices)
                s.execute(insert(TimelineEvent), facts)
                s.execute(insert(OutboxEvent), events)
            out: list[Issued | None] = []
            created: set[str] = set()
            for job in jobs:
                one = issued[job.key]
                if one.created and job.key in created:  # its second job in this batch
                    one = dataclasses.replace(one, created=False)
                out.append(one)
                if one.created:
                    created.add(job.key)
            return out
    except IntegrityError:
        if len(jobs) != 1:
            raise
        # Another process stored this key first; its number stands, ours was rolled back.
        with sessions() as s:
            row2 = s.scalar(select(Invoice).where(Invoice.key == jobs[0].key))
            if row2 is None:
                raise
            return [_issued(row2, False)]


def _event_rows(
    row: dict[str, Any], customer_id: str, product_id: str, issued_at: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The timeline row and the platform event of a stored invoice or credit note."""
    type_ = "invoice.issued" if row["kind"] == INVOICE else "credit_note.issued"
    fact_key = f"{type_}:{row['key']}"
    data = {
        "number": row["number"],
        "kind": row["kind"],
        "installment": row["seq"],
        "issue_date": row["issue_date"],
        "currency": row["currency"],
        "net": row["net"],
        "tax": row["tax"],
        "gross": row["gross"],
        "refers_to": row["refers_to"],
        "seller_id": row["seller_key"],
    }
    fact = {
        "contract_id": row["contract_id"],
        "key": fact_key,
        "type": type_,
        "occurred_at": issued_at,
        "actor": None,
        "data": data,
    }
    eid = _event_id(fact_key)
    event = {
        "event_id": eid,
        "contract_id": row["contract_id"],
        "type": type_,
        "payload": {
            "id": eid,
            "type": type_,
            "created": issued_at.astimezone(UTC).isoformat(),
            "contract_id": row["contract_id"],
            "customer_id": customer_id,
            "product_id": product_id,
            "seller_id": row["seller_key"],
            "data": data,
        },
    }
    return fact, event


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
