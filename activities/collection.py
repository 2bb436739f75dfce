"""The hand-off: build the collection case file (SPEC.md §6) and deliver it.

``build_case_file`` reads the ledger — contract, customer, terms acceptance evidence, the
open installments, every payment attempt and every notice — and freezes it, with the claim
computed by the pure rules in ``domain/``, into one JSON document in ``collection_cases``:

* principal per unpaid installment (invoice number ``{contract_id}-{seq}``; the invoice date
  is the due date until invoices are issued separately);
* statutory default interest per installment (``domain.interest.claim_interest``, § 288 BGB)
  up to and including the as-of day (Europe/Berlin). A base rate the table does not know is
  never guessed: the interest is then 0 with ``status: unavailable`` and the reason, and the
  result names the missing half-year (supply it with ``MAHNWERK_BASE_RATES``);
* dunning fees and other costs itemised; for business customers the EUR 40 lump sum per
  installment in default (§ 288 (5) BGB), against which the costs of legal pursuit (dunning,
  collection and information costs) are credited (§ 288 (5) sentence 3 BGB;
  ``domain.fees.pursuit_costs_after_lump_sum``). Return-debit costs are damage, not pursuit
  costs, and stay claimable beside the lump sum;
* for the ``court`` route the fields of the online Mahnantrag (``domain.collection``): the
  interest there is "pp above the base rate from the day after the due date", which the
  court computes itself, so it is claimed even when our own computation lacks a rate;
* the limitation end per installment (§§ 195, 199 BGB).

One file per (contract, dunning case): the unique key makes a retried or concurrent
activity re-read the stored file instead of writing a second one, so the evidence handed
over never changes once built.

``deliver_case_file`` POSTs the stored file to ``MAHNWERK_COLLECTION_URL`` signed like the
platform events (SPEC.md §5) with ``Idempotency-Key: case-{id}``; anything but 2xx raises,
so the workflow's retry policy repeats it until the receiver acknowledges.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.events import sign
from core.db import transaction
from core.models import CollectionCase, Contract, Installment, Notice, PaymentAttempt
from core.settings import Settings
from domain.collection import (
    AUSKUNFTSKOSTEN,
    COURT,
    INKASSO,
    INKASSOKOSTEN,
    MAHNKOSTEN,
    VERZUGSPAUSCHALE,
    AncillaryClaim,
    Invoice,
    catalogue_for,
    limitation_end,
    mahnantrag_fields,
)
from domain.fees import B2B_LUMP_SUM, lump_sums, pursuit_costs_after_lump_sum
from domain.interest import (
    BASE_RATES_LAST_CHECKED,
    CONSUMER,
    BaseRate,
    MissingBaseRate,
    check_amount,
    check_customer_type,
    claim_interest,
    format_rate,
    rate_text,
    with_rates,
)
from domain.schedule import berlin_date
from workflows.types import CaseFileInput, CaseFileResult

SCHEMA: Final = "mahnwerk.collection_case.v1"
ROUTES: Final = (COURT, INKASSO)
DELIVERY_TIMEOUT: Final = 20.0  # seconds
_ERROR_MAX: Final = 2000  # characters of a receiver's answer kept in last_error

# Costs of legal pursuit ("Kosten der Rechtsverfolgung", § 288 (5) sentence 3 BGB): the
# lump sums are credited against these. Return-debit costs are not among them.
PURSUIT_COST_LABELS: Final = frozenset({MAHNKOSTEN, INKASSOKOSTEN, AUSKUNFTSKOSTEN})

LUMP_SUM_BASIS: Final = "§ 288 Abs. 5 BGB"
CREDIT_BASIS: Final = "§ 288 Abs. 5 Satz 3 BGB"


def invoice_number(contract_id: str, seq: int) -> str:
    """``{contract_id}-{seq}``: the installment's invoice number in the case file."""
    return f"{contract_id}-{seq}"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _invalid(message: str) -> ApplicationError:
    """A case file that cannot be built from this ledger: retrying would not help."""
    return ApplicationError(message, type="InvalidCaseFile", non_retryable=True)


def result_of(row: CollectionCase) -> CaseFileResult:
    totals = row.file["totals"]
    return CaseFileResult(
        case_id=row.id,
        principal=totals["principal"],
        interest=totals["interest"],
        fees=totals["fees"],
        costs=totals["costs"],
        total=totals["total"],
        route=row.route,
        missing_base_rate=row.file["interest"].get("missing_base_rate"),
    )


# -- the parts of the file -------------------------------------------------------------------


def _interest_section(
    invoices: list[Invoice],
    as_of: str,
    customer_type: str,
    waived: bool,
    rates: tuple[BaseRate, ...],
) -> dict[str, Any]:
    """Interest per installment, or why there is none: ``computed`` | ``waived`` |
    ``unavailable`` (a § 247 base rate is missing: 0, never a guess)."""
    section: dict[str, Any] = {
        "status": "computed",
        "as_of": as_of,
        "customer_type": customer_type,
        "rate_text": rate_text(customer_type, "de"),
        "rate_text_en": rate_text(customer_type, "en"),
        "base_rates_last_checked": BASE_RATES_LAST_CHECKED,
        "items": [],
        "total": 0,
    }
    if waived:
        section["status"] = "waived"
        section["reason"] = "interest waived or not charged by the policy"
        return section
    try:
        results = claim_interest([(i.amount, i.due) for i in invoices], as_of, customer_type, rates)
    except MissingBaseRate as exc:
        section["status"] = "unavailable"
        section["reason"] = str(exc)
        section["missing_base_rate"] = exc.rate_date
        section["needed_for"] = exc.needed_for
        return section
    for invoice, r in zip(invoices, results, strict=True):
        section["items"].append(
            {
                "invoice_number": invoice.number,
                "principal": r.principal,
                "due_date": r.due_date,
                "from": r.from_date,
                "to": r.to_date,
                "days": r.days,
                "rate_text": r.rate_text,
                "rate_text_en": r.rate_text_en,
                "amount": r.amount,
                "exact": r.exact,  # unrounded, minor units as a fraction
                "periods": [
                    {
                        "from": p.start,
                        "to": p.end,
                        "days": p.days,
                        "base_rate_bp": p.base_bp,
                        "rate_bp": p.rate_bp,
                        "rate": format_rate(p.rate_bp, "de"),
                        "exact": p.exact,
                    }
                    for p in r.periods
                ],
            }
        )
    section["total"] = sum(r.amount for r in results)
    return section


def _costs(
    fees: int, costs: list[tuple[str, int]], customer_type: str, in_default: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(fees section, costs section, lump-sum crediting or None), each item with what was
    incurred (``amount``), what the lump sums absorb (``credited_to_lump_sum``) and what is
    claimed; the sections' ``total`` is what is claimed."""
    lumps = lump_sums(customer_type, in_default)
    credit_left = lumps

    def item(label: str, amount: int) -> dict[str, Any]:
        nonlocal credit_left
        credited = min(amount, credit_left) if label in PURSUIT_COST_LABELS else 0
        credit_left -= credited
        return {
            "label": label,
            "amount": amount,
            "credited_to_lump_sum": credited,
            "claimed": amount - credited,
        }

    fee_items = [item(MAHNKOSTEN, check_amount(fees, "fees"))] if fees else []
    cost_items: list[dict[str, Any]] = []
    if lumps:
        cost_items.append(
            {
                "label": VERZUGSPAUSCHALE,
                "amount": lumps,
                "credited_to_lump_sum": 0,
                "claimed": lumps,
                "installments": in_default,
                "per_installment": B2B_LUMP_SUM,
                "basis": LUMP_SUM_BASIS,
            }
        )
    for pair in costs:
        label, amount = pair[0], pair[1]
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"cost label must be a non-empty string, got {label!r}")
        if check_amount(amount, f"cost {label!r}"):
            cost_items.append(item(label.strip(), amount))

    crediting = None
    if lumps:
        pursuit = sum(
            i["amount"] for i in fee_items + cost_items if i["label"] in PURSUIT_COST_LABELS
        )
        credited = sum(i["credited_to_lump_sum"] for i in fee_items + cost_items)
        # the itemised split must leave exactly what the domain rule leaves
        assert pursuit - credited == pursuit_costs_after_lump_sum(pursuit, lumps)
        crediting = {
            "lump_sums": lumps,
            "pursuit_costs": pursuit,
            "credited": credited,
            "basis": CREDIT_BASIS,
        }
    fee_section = {"items": fee_items, "total": sum(i["claimed"] for i in fee_items)}
    cost_section = {"items": cost_items, "total": sum(i["claimed"] for i in cost_items)}
    return fee_section, cost_section, crediting


def _mahnantrag(
    category: str,
    invoices: list[Invoice],
    customer_type: str,
    fees: dict[str, Any],
    costs: dict[str, Any],
    interest: bool,
) -> dict[str, Any]:
    ancillary = [
        AncillaryClaim(label=i["label"], amount=i["claimed"])
        for i in fees["items"] + costs["items"]
    ]
    fields = asdict(mahnantrag_fields(category, invoices, customer_type, ancillary, interest))
    for claim in fields["claims"]:
        if claim["interest_mode"] == "pp_above_base":
            pp, since = claim["interest_pp"], claim["interest_from"]
            claim["interest_text"] = f"{pp} Prozentpunkte über dem Basiszinssatz seit {since}"
            claim["interest_text_en"] = f"{pp} percentage points above the base rate from {since}"
    fields["product_category"] = category
    return fields


# -- activities ----------------------------------------------------------------------------


class CollectionActivities:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = session_factory
        self.rates = with_rates(settings.extra_base_rates)

    def _stored(self, contract_id: str, case_no: int) -> CollectionCase | None:
        with self.sessions() as s:
            return s.scalar(
                select(CollectionCase).where(
                    CollectionCase.contract_id == contract_id, CollectionCase.case_no == case_no
                )
            )

    def _file(self, s: Session, inp: CaseFileInput, contract: Contract) -> dict[str, Any]:
        cid = contract.id
        customer = dict(contract.customer or {})
        customer_type = check_customer_type(customer.get("type") or CONSUMER)
        as_of = berlin_date(inp.as_of)

        open_rows = [
            row
            for row in s.scalars(
                select(Installment)
                .where(Installment.contract_id == cid, Installment.status == "open")
                .order_by(Installment.seq)
            )
            if row.amount - row.paid_amount > 0
        ]
        installments: list[dict[str, Any]] = []
        invoices: list[Invoice] = []
        for row in open_rows:
            due = berlin_date(row.due_at)
            number = invoice_number(cid, row.seq)
            outstanding = row.amount - row.paid_amount
            invoices.append(Invoice(number=number, date=due, due=due, amount=outstanding))
            installments.append(
                {
                    "seq": row.seq,
                    "invoice_number": number,
                    "invoice_date": due,
                    "due_date": due,
                    "amount": outstanding,
                    "original_amount": row.amount,
                    "paid": row.paid_amount,
                    "limitation_end": limitation_end(due),
                }
            )
        principal = sum(i.amount for i in invoices)

        interest = _interest_section(
            invoices, as_of, customer_type, inp.interest_waived, self.rates
        )
        fees, costs, crediting = _costs(inp.fees, list(inp.costs), customer_type, len(invoices))

        product = dict(contract.product or {})
        category = str(product.get("category") or self.settings.product_category)
        mahnantrag = None
        if inp.route == COURT:
            if not invoices:
                raise _invalid(f"contract {cid}: no unpaid installment for a Mahnantrag")
            catalogue_for(category)  # a clear error for an unknown category
            mahnantrag = _mahnantrag(
                category, invoices, customer_type, fees, costs, not inp.interest_waived
            )

        attempts = [
            {
                "installment_seq": a.installment_seq,
                "attempt": a.attempt,
                "attempted_at": _iso(a.attempted_at),
                "amount": a.amount,
                "currency": a.currency,
                "status": a.status,
                "decline_code": a.decline_code,
                "failure_class": a.failure_class,
                "message": a.message,
                "payment_intent": a.payment_intent,
                "idempotency_key": a.idempotency_key,
                "settled_at": _iso(a.settled_at),
            }
            for a in s.scalars(
                select(PaymentAttempt)
                .where(PaymentAttempt.contract_id == cid)
                .order_by(PaymentAttempt.attempted_at, PaymentAttempt.id)
            )
        ]
        notices = [
            {
                "notice_number": n.notice_number,
                "case_no": n.case_no,
                "stage": n.stage,
                "channel": n.channel,
                "recipient": n.recipient,
                "subject": n.subject,
                "status": n.status,
                "created_at": _iso(n.created_at),
                "sent_at": _iso(n.sent_at),
                "message_id": n.message_id,
                "text_sha256": _sha256(n.text),
                "html_sha256": _sha256(n.html),
            }
            for n in s.scalars(
                select(Notice)
                .where(Notice.contract_id == cid)
                .order_by(Notice.created_at, Notice.id)
            )
        ]
        terms = dict(contract.terms or {})
        total = principal + interest["total"] + fees["total"] + costs["total"]
        ends = [limitation_end(i.due) for i in invoices]
        return {
            "schema": SCHEMA,
            "case_id": None,  # set once the row has its id
            "contract_id": cid,
            "case_no": inp.case_no,
            "route": inp.route,
            "as_of": as_of,
            "created_at": datetime.now(UTC).isoformat(),
            "currency": contract.currency,
            "creditor": {
                "name": self.settings.seller_name,
                "address": self.settings.seller_address,
                "email": self.settings.seller_email,
                "sepa_creditor_id": self.settings.seller_creditor_id or None,
            },
            "debtor": {
                "id": contract.customer_id,
                "name": customer.get("name"),
                "type": customer_type,
                "email": customer.get("email"),
                "locale": customer.get("locale"),
                "address": customer.get("address") or {},
            },
            "contract": {
                "id": cid,
                "kind": contract.kind,
                "product": product,
                "created_at": _iso(contract.created_at),
                "policy": contract.policy_name,
            },
            "terms": {
                "version": terms.get("version"),
                "accepted_at": terms.get("accepted_at"),
                "ip": terms.get("ip"),
                "text_sha256": terms.get("text_sha256"),
            },
            "installments": installments,
            "interest": interest,
            "fees": fees,
            "costs": costs,
            "lump_sum_crediting": crediting,
            "totals": {
                "principal": principal,
                "interest": interest["total"],
                "fees": fees["total"],
                "costs": costs["total"],
                "total": total,
            },
            "attempts": attempts,
            "notices": notices,
            "mahnantrag": mahnantrag,
            "limitation_end": min(ends) if ends else None,
        }

    @activity.defn(name="build_case_file")
    def build_case_file(self, inp: CaseFileInput) -> CaseFileResult:
        """Build and store the case file of (contract, case) once; later calls return it."""
        if inp.route not in ROUTES:
            raise _invalid(f"route must be one of {', '.join(ROUTES)}, got {inp.route!r}")
        stored = self._stored(inp.contract_id, inp.case_no)
        if stored is not None:
            if stored.route != inp.route:
                activity.logger.warning(
                    "case file %s of %s/%s was built for route %s; keeping it (asked: %s)",
                    stored.id, inp.contract_id, inp.case_no, stored.route, inp.route,
                )  # fmt: skip
            return result_of(stored)
        try:
            with transaction(self.sessions) as s:
                contract = s.get(Contract, inp.contract_id)
                if contract is None:
                    raise _invalid(f"contract {inp.contract_id} is not in the ledger")
                try:
                    file = self._file(s, inp, contract)
                except ValueError as exc:  # bad ledger data (customer type, category, costs)
                    raise _invalid(f"contract {inp.contract_id}: {exc}") from None
                row = CollectionCase(
                    contract_id=inp.contract_id,
                    case_no=inp.case_no,
                    route=inp.route,
                    file=file,
                    created_at=datetime.now(UTC),
                    delivery_attempts=0,
                )
                s.add(row)
                s.flush()  # the INSERT: a concurrent attempt's row makes this fail
                row.file = {**file, "case_id": row.id}
                result = result_of(row)
        except IntegrityError:
            stored = self._stored(inp.contract_id, inp.case_no)
            if stored is None:
                raise
            return result_of(stored)
        return result

    @activity.defn(name="deliver_case_file")
    def deliver_case_file(self, case_id: int) -> bool:
        """POST the stored file to MAHNWERK_COLLECTION_URL; True once acknowledged (2xx),
        False when no URL is configured; raises (and is retried) otherwise."""
        url = self.settings.collection_url
        if not url:
            return False
        with self.sessions() as s:
            row = s.get(CollectionCase, case_id)
            if row is None:
                raise _invalid(f"collection case {case_id} does not exist")
            if row.delivered_at is not None:
                return True
            file = row.file
        body = json.dumps(file, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Mahnwerk-Signature": sign(body, self.settings.events_secret.get_secret_value()),
            "Idempotency-Key": f"case-{case_id}",
        }
        error: str | None = None
        try:
            with httpx.Client(timeout=DELIVERY_TIMEOUT) as client:
                resp = client.post(url, content=body, headers=headers)
            if not resp.is_success:
                error = f"HTTP {resp.status_code}: {resp.text[:500]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with transaction(self.sessions) as s:
            row = s.get(CollectionCase, case_id)
            assert row is not None
            row.delivery_attempts += 1
            if error is None:
                row.delivered_at = row.delivered_at or datetime.now(UTC)
                row.last_error = None
            else:
                row.last_error = error[:_ERROR_MAX]
        if error is not None:
            activity.logger.warning("collection case %s not delivered: %s", case_id, error)
            raise ApplicationError(
                f"collection case {case_id} not acknowledged by {url}: {error}",
                type="CollectionDeliveryFailed",
            )
        return True
