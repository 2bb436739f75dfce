"""Erasing a customer's personal data (Art. 17 GDPR), keeping the booked figures.

`POST /v1/customers/{id}/erase` (api/routes/customers.py) runs `erase_customer` in one
database transaction: nothing half-done. What is kept where and for how long is written up
in docs/data-retention.md; in short:

- **Refused while anything is open.** Every contract of the customer must be finished:
  `completed`, `cancelled`, `written_off` or `failed`. `handed_off` is *not* finished: the
  collection partner or the court procedure may still be pursuing the claim, and the case
  file is the evidence for it (§ 690 ZPO Mahnantrag, the Inkasso mandate) — a write-off or
  a later case status closes it first.
- **Refused while the retention period runs.** Booked records (payments received, the
  contract's end, write-offs) must be kept for `MAHNWERK_RETENTION_YEARS` (default 10:
  § 147 Abs. 1 Nr. 1, Abs. 3 AO and § 257 Abs. 1 Nr. 1, Abs. 4 HGB for books and records),
  counted from the end of the calendar year of the customer's last recorded fact
  (§ 147 Abs. 4 AO, § 257 Abs. 5 HGB). Art. 17 (3) (b) GDPR lets these legal obligations
  prevail over erasure. 0 turns the check off.
- **Anonymised, not deleted.** Names, e-mail addresses, postal addresses, the terms
  acceptance IP and the Stripe customer and payment-method references are replaced by
  placeholders in every table; ids, amounts, dates, statuses, stages and notice numbers
  stay, so reports and totals do not change.
- **Temporal histories are crypto-shredded**: the customer's data key is deleted
  (core/customer_keys.py), so every payload encrypted with it is unreadable for good.

A repeated request answers what the first one answered (the `customer_erasures` row); a
contract the customer started after an erasure is erased by the next request.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.customer_keys import shred
from core.models import (
    AccessState,
    CollectionCase,
    CollectionMessage,
    Consent,
    Contract,
    CustomerErasure,
    Installment,
    Invoice,
    Notice,
    OutboxEvent,
    PaymentAttempt,
    TimelineEvent,
)
from domain.invoice import document_hash
from domain.schedule import BERLIN

# Contract statuses after which nothing can happen to the claim any more (SPEC.md §2).
FINISHED = ("completed", "cancelled", "written_off", "failed")
ERASED = "[erased]"
# RFC 2606 reserves .invalid: a syntactically valid address that can never be delivered,
# so a reader that validates e-mail addresses still accepts the anonymised row.
ERASED_EMAIL = "erased@erased.invalid"
# Shorter personal values are replaced only where a whole string equals them: replacing a
# two-letter name inside every text would mangle unrelated words.
_MIN_SUBSTRING = 4


class ErasureRefused(Exception):
    """The erasure is not allowed (yet): `code` and `details` for the 409 answer."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class UnknownCustomer(LookupError):
    pass


@dataclass(frozen=True)
class Retention:
    """When the booked records of a customer may go (see the module docstring)."""

    years: int
    last_record_at: datetime | None

    @property
    def retain_until(self) -> date | None:
        if self.years <= 0 or self.last_record_at is None:
            return None
        # The period starts at the end of the calendar year of the last record (§ 147 Abs. 4
        # AO) and runs `years` full years: a 2026 record is kept until 31 Dec 2036.
        year = self.last_record_at.astimezone(BERLIN).year
        return date(year + self.years, 12, 31)

    def allows(self, today: date) -> bool:
        until = self.retain_until
        return until is None or today > until


# -- anonymising values ---------------------------------------------------------------------


class Scrubber:
    """Replaces one customer's personal values wherever they occur in text or JSON."""

    def __init__(self, contracts: list[Contract]) -> None:
        substrings: set[str] = set()
        exact: set[str] = set()

        def add(value: Any, *, substring: bool = True) -> None:
            if not isinstance(value, str):
                return
            value = value.strip()
            if not value or value in (ERASED, ERASED_EMAIL):
                return
            if substring and len(value) >= _MIN_SUBSTRING:
                substrings.add(value)
            else:
                exact.add(value.casefold())

        for c in contracts:
            for customer in (c.customer, (c.request or {}).get("customer")):
                customer = customer or {}
                add(customer.get("name"))
                add(customer.get("email"))
                address = customer.get("address") or {}
                for field, value in address.items():
                    if field == "country":
                        continue  # a country code identifies nobody
                    # Postal code and city alone are too common to replace inside texts
                    # ("Berlin" in "Europe/Berlin"); together they are the customer's.
                    add(value, substring=field not in ("postal_code", "city"))
                if address.get("postal_code") and address.get("city"):
                    add(f"{address['postal_code']} {address['city']}")
            for terms in (c.terms, (c.request or {}).get("terms")):
                add((terms or {}).get("ip"))
            for consent in (c.request or {}).get("consents") or []:
                add((consent or {}).get("ip"))  # issue 12: consents given at checkout
            for payment in (c.payment, (c.request or {}).get("payment")):
                payment = payment or {}
                add(payment.get("stripe_customer"))
                add(payment.get("payment_method"))
        self._exact = exact
        ordered = sorted(substrings, key=len, reverse=True)  # longest first: whole values win
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in ordered), re.IGNORECASE) if ordered else None
        )

    def text(self, value: str | None) -> str | None:
        if value is None:
            return None
        if value.strip().casefold() in self._exact:
            return ERASED
        if self._pattern is None:
            return value
        return self._pattern.sub(ERASED, value)

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value


def anonymised_customer(customer: dict[str, Any] | None) -> dict[str, Any]:
    """The customer block with only what identifies nobody: id (the platform's pseudonym,
    needed to find the contracts), locale, type (consumer or business decides the interest
    rate, § 288 BGB) and country."""
    customer = dict(customer or {})
    address = customer.get("address") or {}
    out: dict[str, Any] = {
        **{k: v for k, v in customer.items() if k in ("id", "locale", "type")},
        "name": ERASED,
        "email": ERASED_EMAIL,
    }
    if "address" in customer:
        out["address"] = {
            **{k: ERASED if v else v for k, v in address.items() if k != "country"},
            **({"country": address["country"]} if "country" in address else {}),
        }
    return out


def _anonymised_terms(terms: dict[str, Any] | None) -> dict[str, Any]:
    terms = dict(terms or {})
    if "ip" in terms:
        terms["ip"] = ERASED
    return terms


def _anonymised_payment(payment: dict[str, Any] | None) -> dict[str, Any]:
    # The Stripe customer and payment method point at the person's data at Stripe; the
    # PaymentIntents (payment records) stay, in payment_attempts.
    payment = dict(payment or {})
    for key in ("stripe_customer", "payment_method"):
        if payment.get(key):
            payment[key] = ERASED
    return payment


def _anonymised_request(request: dict[str, Any] | None, scrub: Scrubber) -> dict[str, Any]:
    request = dict(request or {})
    if "customer" in request:
        request["customer"] = anonymised_customer(request["customer"])
    if "terms" in request:
        request["terms"] = _anonymised_terms(request["terms"])
    if isinstance(request.get("consents"), list):
        request["consents"] = [_anonymised_terms(c) for c in request["consents"]]
    if "payment" in request:
        request["payment"] = _anonymised_payment(request["payment"])
    return scrub.json(request)  # type: ignore[no-any-return]


def _notice_placeholder(today: date) -> str:
    return (
        f"{ERASED} {today.isoformat()}: the text of this notice held personal data of a customer "
        "who was erased (Art. 17 GDPR); its stage, number, amounts and times are kept."
    )


# -- the erasure ------------------------------------------------------------------------------


def _last_record(s: Session, contract_ids: list[str]) -> datetime | None:
    """The customer's last recorded fact: payments, the contract's end, every timeline
    entry (conservative: a notice or stage change also counts)."""
    candidates = [
        s.scalar(
            select(func.max(Installment.paid_at)).where(Installment.contract_id.in_(contract_ids))
        ),
        s.scalar(
            select(func.max(PaymentAttempt.settled_at)).where(
                PaymentAttempt.contract_id.in_(contract_ids)
            )
        ),
        s.scalar(
            select(func.max(TimelineEvent.occurred_at)).where(
                TimelineEvent.contract_id.in_(contract_ids)
            )
        ),
        s.scalar(select(func.max(Contract.created_at)).where(Contract.id.in_(contract_ids))),
    ]
    found = [_aware(c) for c in candidates if c is not None]
    return max(found) if found else None


def _aware(value: datetime) -> datetime:
    # func.max bypasses the column type on SQLite: naive UTC comes back.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def erase_customer(
    sessions: sessionmaker[Session],
    customer_id: str,
    *,
    actor: str,
    retention_years: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Erase the customer's personal data; the answer of the erase endpoint.

    Raises UnknownCustomer (404) or ErasureRefused (409). Returns the same answer again for
    a customer whose every contract is erased already.
    """
    now = now or datetime.now(UTC)
    today = now.astimezone(BERLIN).date()
    with sessions() as s, s.begin():
        contracts = list(
            s.scalars(
                select(Contract)
                .where(Contract.customer_id == customer_id)
                .order_by(Contract.created_at, Contract.id)
                .with_for_update()
            )
        )
        previous = s.get(CustomerErasure, customer_id)
        if not contracts and previous is None:
            raise UnknownCustomer(customer_id)
        done = set((previous.result if previous else {}).get("contracts", []))
        if previous is not None and all(c.id in done for c in contracts):
            return dict(previous.result)

        still_open = [c for c in contracts if c.status not in FINISHED]
        if still_open:
            listed = ", ".join(f"{c.id} ({c.status})" for c in still_open)
            why = (
                "; handed_off counts as open: the collection case may still be pursued"
                if any(c.status == "handed_off" for c in still_open)
                else ""
            )
            raise ErasureRefused(
                "contracts_open",
                f"customer {customer_id} has contracts that are not finished: {listed}{why}",
                {
                    "reason": "contracts_open",
                    "contracts": [{"contract_id": c.id, "status": c.status} for c in still_open],
                },
            )

        ids = [c.id for c in contracts]
        retention = Retention(retention_years, _last_record(s, ids))
        until = retention.retain_until
        if until is not None and retention.last_record_at and not retention.allows(today):
            raise ErasureRefused(
                "retention_period",
                f"customer {customer_id}'s booked records must be kept until {until.isoformat()} "
                f"(MAHNWERK_RETENTION_YEARS={retention_years}, § 147 AO / § 257 HGB)",
                {
                    "reason": "retention_period",
                    "retain_until": until.isoformat(),
                    "last_record_at": retention.last_record_at.isoformat(),
                    "retention_years": retention_years,
                },
            )

        counts = _anonymise(s, customer_id, contracts, today)
        shredded = shred(s, customer_id)
        result = {
            "customer_id": customer_id,
            "status": "erased",
            "erased_at": now.isoformat(),
            "erased_by": actor,
            "contracts": ids,
            "workflow_ids": [c.workflow_id for c in contracts],
            "shredded_keys": [f"customer:{k}" for k in shredded]
            + list((previous.result if previous else {}).get("shredded_keys", [])),
            "rows": counts,
            "retention_years": retention_years,
            "last_record_at": (
                retention.last_record_at.isoformat() if retention.last_record_at else None
            ),
        }
        if previous is None:
            s.add(
                CustomerErasure(
                    customer_id=customer_id, erased_at=now, erased_by=actor, result=result
                )
            )
        else:
            previous.erased_at, previous.erased_by, previous.result = now, actor, result
        return result


def _anonymise(
    s: Session, customer_id: str, contracts: list[Contract], today: date
) -> dict[str, int]:
    scrub = Scrubber(contracts)
    ids = [c.id for c in contracts]
    counts = dict.fromkeys(
        ("contracts", "payment_attempts", "notices", "timeline_events", "outbox_events",
         "collection_cases", "collection_messages", "access", "invoices"),
        0,
    )  # fmt: skip
    for c in contracts:
        c.customer = anonymised_customer(c.customer)
        c.terms = _anonymised_terms(c.terms)
        c.payment = _anonymised_payment(c.payment)
        c.request = _anonymised_request(c.request, scrub)
        # The hash of the original body would let anyone holding a guess confirm it.
        canonical = json.dumps(c.request, sort_keys=True, separators=(",", ":"))
        c.request_hash = hashlib.sha256(canonical.encode()).hexdigest()
        if c.collection is not None:  # notes of the case at the partner (issue 12)
            c.collection = scrub.json(c.collection)
        counts["contracts"] += 1
    for consent in s.scalars(select(Consent).where(Consent.contract_id.in_(ids))):
        consent.ip = ERASED  # kind, version, text hash and time stay: the evidence
    for att in s.scalars(select(PaymentAttempt).where(PaymentAttempt.contract_id.in_(ids))):
        att.payment_method = None
        att.message = scrub.text(att.message)
        counts["payment_attempts"] += 1
    placeholder = _notice_placeholder(today)
    for notice in s.scalars(select(Notice).where(Notice.contract_id.in_(ids))):
        notice.recipient = ERASED_EMAIL
        notice.subject = scrub.text(notice.subject) or ""
        notice.text = placeholder
        notice.html = f"<p>{placeholder}</p>"
        notice.data = scrub.json(notice.data)
        counts["notices"] += 1
    for event in s.scalars(select(TimelineEvent).where(TimelineEvent.contract_id.in_(ids))):
        event.data = scrub.json(event.data)
        counts["timeline_events"] += 1
    for out in s.scalars(select(OutboxEvent).where(OutboxEvent.contract_id.in_(ids))):
        out.payload = scrub.json(out.payload)
        out.last_error = scrub.text(out.last_error)
        counts["outbox_events"] += 1
    for case in s.scalars(select(CollectionCase).where(CollectionCase.contract_id.in_(ids))):
        file = dict(case.file or {})
        if "debtor" in file:
            file["debtor"] = anonymised_customer(file["debtor"])
        if "terms" in file:
            file["terms"] = _anonymised_terms(file["terms"])
        if isinstance(file.get("consents"), list):
            file["consents"] = [_anonymised_terms(c) for c in file["consents"]]
        case.file = scrub.json(file)
        case.last_error = scrub.text(case.last_error)
        counts["collection_cases"] += 1
    # Invoices and credit notes (issue 15): kept as documents (numbers, amounts, tax) with
    # the customer anonymised; the hash is taken again of what is now stored (`erased_on`
    # says why it changed). A Core UPDATE: the ORM refuses to change an issued invoice.
    for inv in s.scalars(select(Invoice).where(Invoice.contract_id.in_(ids))):
        doc = dict(inv.document or {})
        doc["customer"] = anonymised_customer(doc.get("customer"))
        doc = scrub.json(doc)
        doc["erased_on"] = today.isoformat()
        s.execute(
            update(Invoice)
            .where(Invoice.id == inv.id)
            .values(document=doc, sha256=document_hash(doc))
            .execution_options(synchronize_session=False)
        )
        counts["invoices"] += 1
    for message in s.scalars(
        select(CollectionMessage).where(CollectionMessage.contract_id.in_(ids))
    ):
        message.payload = scrub.json(message.payload)
        message.last_error = scrub.text(message.last_error)
        counts["collection_messages"] += 1
    for access in s.scalars(
        select(AccessState).where(
            or_(AccessState.customer_id == customer_id, AccessState.contract_id.in_(ids))
        )
    ):
        access.reason = scrub.text(access.reason)
        counts["access"] += 1
    return counts
