"""The hand-off: build the collection case file (SPEC.md §6) and deliver it.

``build_case_file`` reads the ledger — contract, customer, terms acceptance evidence, the
open installments, every payment attempt and every notice — and freezes it, with the claim
computed by the pure rules in ``domain/``, into one JSON document in ``collection_cases``:

* principal per unpaid installment with its invoice's number and date (core.invoicing,
  issue 15); an installment without an issued invoice (invoicing off, or a contract from
  before issue 15) is named ``{contract_id}-{seq}`` with its due date, as before;
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

One file per (contract, dunning case, file number): the unique key makes a retried or
concurrent activity re-read the stored file instead of writing a second one, so the evidence
handed over never changes once built. File 0 is the hand-off; when later installments join
the case (a later default, or the rest of the plan called in, issue 12) a follow-up file
(1, 2, …) carries the whole claim as of then, names the installments that joined and the
file it supplements.

``deliver_case_file`` POSTs the stored file to ``MAHNWERK_COLLECTION_URL`` signed like the
platform events (SPEC.md §5) with ``Idempotency-Key: case-{id}``; anything but 2xx raises.
``deliver_collection_message`` does the same for the messages that follow a hand-off
(``case.payment``, ``case.recall``): stored once by their key, POSTed with
``Idempotency-Key: {key}`` until acknowledged. The workflow retries a failed delivery with
backoff until it succeeds (never failing the contract) and records each failed round
(``collection.delivery_failed``, counted by ``mahnwerk_collection_delivery_failures_total``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Final

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.events import sign
from core import metrics
from core.db import transaction
from core.invoicing import invoice_numbers
from core.models import (
    CollectionCase,
    CollectionMessage,
    Consent,
    Contract,
    Installment,
    Notice,
    PaymentAttempt,
)
from core.sellers import SellerConfigError, SellerSettings
from core.settings import Settings
from domain.claim import (
    COLLECTION,
    INFORMATION,
    PURSUIT_KINDS,
    RETURN_DEBIT,
    ChargeLine,
    Claim,
    ClaimFacts,
    CostFact,
    FeeFact,
    InstallmentFact,
    compute_claim,
)
from domain.collection import (
    AUSKUNFTSKOSTEN,
    COURT,
    INKASSO,
    INKASSOKOSTEN,
    MAHNKOSTEN,
    RUECKLASTSCHRIFTKOSTEN,
    VERZUGSPAUSCHALE,
    AncillaryClaim,
    Invoice,
    catalogue_for,
    limitation_end,
    mahnantrag_fields,
)
from domain.fees import B2B_LUMP_SUM
from domain.interest import (
    BASE_RATES_LAST_CHECKED,
    CONSUMER,
    BaseRate,
    check_amount,
    check_customer_type,
    format_rate,
    rate_text,
    with_rates,
)
from domain.schedule import berlin_date
from workflows.types import CaseFileInput, CaseFileResult, CollectionMessageInput

SCHEMA: Final = "mahnwerk.collection_case.v1"
MESSAGE_SCHEMA: Final = "mahnwerk.collection_message.v1"
ROUTES: Final = (COURT, INKASSO)
DELIVERY_TIMEOUT: Final = 20.0  # seconds
_ERROR_MAX: Final = 2000  # characters of a receiver's answer kept in last_error

# Costs of legal pursuit ("Kosten der Rechtsverfolgung", § 288 (5) sentence 3 BGB): the
# lump sums are credited against these (domain.claim PURSUIT_KINDS). Return-debit costs are
# not among them.
PURSUIT_COST_LABELS: Final = frozenset({MAHNKOSTEN, INKASSOKOSTEN, AUSKUNFTSKOSTEN})
# The costs a legacy input (no claim) itemises by label, and their kind in the claim.
COST_KIND_BY_LABEL: Final[dict[str, str]] = {
    RUECKLASTSCHRIFTKOSTEN: RETURN_DEBIT,
    INKASSOKOSTEN: COLLECTION,
    AUSKUNFTSKOSTEN: INFORMATION,
}

LUMP_SUM_BASIS: Final = "§ 288 Abs. 5 BGB"
CREDIT_BASIS: Final = "§ 288 Abs. 5 Satz 3 BGB"


def invoice_number(
    contract_id: str, seq: int, issued: dict[int, tuple[str, str]] | None = None
) -> str:
    """The installment's invoice number in the case file: the issued invoice's, else
    ``{contract_id}-{seq}`` (no invoice was issued for it)."""
    if issued and seq in issued:
        return issued[seq][0]
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


# -- the parts of the file: read from the claim (domain.claim), never computed again ------------


def legacy_claim(
    inp: CaseFileInput,
    rows: list[Installment],
    customer_type: str,
    rates: tuple[BaseRate, ...],
) -> Claim:
    """The claim of a hand-off whose workflow started before the claim model (its input
    carries no claim): the open installments' outstanding principal from their due dates,
    the fees and itemised costs as of the hand-off day — computed by the same
    ``domain.claim.compute_claim`` as every other claim."""
    as_of = berlin_date(inp.as_of)
    costs = []
    for n, pair in enumerate(inp.costs):
        label, amount = pair[0], pair[1]
        kind = COST_KIND_BY_LABEL.get(label.strip() if isinstance(label, str) else label)
        if kind is None:
            raise ValueError(
                f"cost label must be one of {', '.join(COST_KIND_BY_LABEL)}, got {label!r}"
            )
        costs.append(CostFact(f"cost:{n}", as_of, check_amount(amount, f"cost {label!r}"), kind))
    facts = ClaimFacts(
        customer_type=customer_type,
        installments=[
            InstallmentFact(r.seq, berlin_date(r.due_at), r.amount - r.paid_amount) for r in rows
        ],
        fees=[FeeFact("fees", as_of, check_amount(inp.fees, "fees"))] if inp.fees else [],
        costs=costs,
        interest="none" if inp.interest_waived else "statutory",
        rates=list(rates),
    )
    return compute_claim(facts, as_of)


def _exact_sum(texts: list[str]) -> str:
    total = sum((Fraction(t) for t in texts), Fraction(0))
    return (
        str(total.numerator) if total.denominator == 1 else f"{total.numerator}/{total.denominator}"
    )


def _interest_section(
    cid: str, claim: Claim, issued: dict[int, tuple[str, str]] | None = None
) -> dict[str, Any]:
    """Interest per installment as the claim has it (§ 288 BGB, exact per day on the
    principal open each day): ``computed`` | ``waived`` (support or policy ``none``) |
    ``unavailable`` (no § 247 rate for any interest day: 0, never a guess). A rate missing
    for later days only: computed up to ``interest_until``, the half-year named."""
    customer_type = claim.customer_type
    section: dict[str, Any] = {
        "status": "computed",
        "as_of": claim.as_of,
        "customer_type": customer_type,
        "rate_text": rate_text(customer_type, "de"),
        "rate_text_en": rate_text(customer_type, "en"),
        "base_rates_last_checked": BASE_RATES_LAST_CHECKED,
        "items": [],
        "total": 0,
    }
    if claim.interest_mode in ("none", "waived") and claim.interest == 0:
        section["status"] = "waived"
        section["reason"] = "interest waived or not charged by the policy"
        return section
    for item in claim.items:
        if not item.interest_periods:
            continue
        spans = item.interest_periods
        section["items"].append(
            {
                "invoice_number": invoice_number(cid, item.installment, issued),
                "principal": item.principal,
                "due_date": item.due,
                "from": spans[0].start,
                "to": spans[-1].end,
                "days": sum(p.days for p in spans),
                "rate_text": rate_text(customer_type, "de"),
                "rate_text_en": rate_text(customer_type, "en"),
                "accrued": item.interest_accrued,
                "paid": item.paid.interest,
                "waived": item.interest_waived,
                "amount": item.interest,  # claimed: accrued − paid − waived
                "exact": _exact_sum([p.exact for p in spans]),  # unrounded, minor units
                "periods": [
                    {
                        "from": p.start,
                        "to": p.end,
                        "days": p.days,
                        "principal": p.principal,
                        "base_rate_bp": p.base_bp,
                        "rate_bp": p.rate_bp,
                        "rate": format_rate(p.rate_bp, "de"),
                        "exact": p.exact,
                    }
                    for p in spans
                ],
            }
        )
    section["total"] = claim.interest
    if claim.missing_base_rate:
        section["missing_base_rate"] = claim.missing_base_rate
        section["interest_until"] = claim.interest_until
        section["reason"] = (
            f"no § 247 BGB base rate known for {claim.missing_base_rate}: interest computed "
            f"up to {claim.interest_until} only (supply the rate with MAHNWERK_BASE_RATES)"
        )
        if not section["items"]:
            section["status"] = "unavailable"
    return section


def _charge_item(line: ChargeLine) -> dict[str, Any]:
    return {
        "label": line.label,
        "amount": line.amount,
        "credited_to_lump_sum": line.credited,
        "paid": line.paid,
        "waived": line.waived,
        "claimed": line.open,
    }


def _costs(
    claim: Claim,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(fees section, costs section, lump-sum crediting or None) from the claim's fee, cost
    and lump-sum items: what was incurred (``amount``), absorbed by the § 288 (5) sentence 3
    crediting (``credited_to_lump_sum``), paid, waived, and what is ``claimed`` (open)."""
    fee_items = [_charge_item(line) for line in claim.fee_items]
    cost_items: list[dict[str, Any]] = []
    lumps = claim.lump_sum_items
    if lumps:
        cost_items.append(
            {
                "label": VERZUGSPAUSCHALE,
                "amount": sum(line.amount for line in lumps),
                "credited_to_lump_sum": sum(line.credited for line in lumps),
                "paid": sum(line.paid for line in lumps),
                "waived": sum(line.waived for line in lumps),
                "claimed": sum(line.open for line in lumps),
                "installments": len(lumps),
                "per_installment": B2B_LUMP_SUM,
                "basis": LUMP_SUM_BASIS,
            }
        )
    cost_items += [_charge_item(line) for line in claim.cost_items]
    crediting = None
    if lumps:
        pursuit = sum(
            line.amount - line.waived
            for line in claim.fee_items + claim.cost_items
            if line.kind in PURSUIT_KINDS
        )
        crediting = {
            "lump_sums": sum(line.amount for line in lumps),
            "pursuit_costs": pursuit,
            "credited": claim.credited,
            "basis": CREDIT_BASIS,
        }
    fee_section = {"items": fee_items, "total": claim.fees}
    cost_section = {"items": cost_items, "total": claim.costs + claim.lump_sums}
    return fee_section, cost_section, crediting


def _mahnantrag(
    category: str,
    invoices: list[Invoice],
    customer_type: str,
    fees: dict[str, Any],
    costs: dict[str, Any],
    interest: bool,
    claim: Claim,
) -> dict[str, Any]:
    ancillary = [
        AncillaryClaim(label=i["label"], amount=i["claimed"])
        for i in fees["items"] + costs["items"]
    ]
    # Interest still open on an installment whose principal is paid: the court cannot
    # compute it from a principal claim, so it is an itemised ancillary claim of its own
    # ("ausgerechnete Zinsen", § 690 (1) Nr. 3 ZPO), up to the day the claim was computed.
    for item in claim.items:
        if item.principal == 0 and item.interest > 0:
            ancillary.append(
                AncillaryClaim(
                    label=f"Verzugszinsen Rate {item.installment} bis {claim.interest_until}",
                    amount=item.interest,
                )
            )
    fields = asdict(mahnantrag_fields(category, invoices, customer_type, ancillary, interest))
    for main in fields["claims"]:
        if main["interest_mode"] == "pp_above_base":
            pp, since = main["interest_pp"], main["interest_from"]
            main["interest_text"] = f"{pp} Prozentpunkte über dem Basiszinssatz seit {since}"
            main["interest_text_en"] = f"{pp} percentage points above the base rate from {since}"
    fields["product_category"] = category
    return fields


# -- activities ----------------------------------------------------------------------------


class CollectionActivities:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = session_factory
        self.rates = with_rates(settings.extra_base_rates)
        # The creditor of a case file is the contract's seller (issue 14).
        self.sellers = SellerSettings(settings, session_factory)

    def _seller_settings(self, seller_id: str | None) -> Settings:
        try:
            return self.sellers.for_seller(seller_id)
        except SellerConfigError as exc:
            raise ApplicationError(str(exc), type="SellerMissing") from exc

    def _stored(self, contract_id: str, case_no: int, file_no: int = 0) -> CollectionCase | None:
        with self.sessions() as s:
            return s.scalar(
                select(CollectionCase).where(
                    CollectionCase.contract_id == contract_id,
                    CollectionCase.case_no == case_no,
                    CollectionCase.file_no == file_no,
                )
            )

    def _file(self, s: Session, inp: CaseFileInput, contract: Contract) -> dict[str, Any]:
        cid = contract.id
        seller = self._seller_settings(contract.seller_id)
        customer = dict(contract.customer or {})
        customer_type = check_customer_type(customer.get("type") or CONSUMER)
        claim = inp.claim
        if claim is None:  # a workflow started before the claim model
            open_rows = [
                row
                for row in s.scalars(
                    select(Installment)
                    .where(Installment.contract_id == cid, Installment.status == "open")
                    .order_by(Installment.seq)
                )
                if row.amount - row.paid_amount > 0
            ]
            claim = legacy_claim(inp, open_rows, customer_type, self.rates)
        as_of = claim.as_of

        installments: list[dict[str, Any]] = []
        invoices: list[Invoice] = []
        issued = invoice_numbers(s, cid)  # the invoices issued (issue 15)
        for item in claim.items:
            if item.principal <= 0:
                continue
            number = invoice_number(cid, item.installment, issued)
            invoice_date = issued[item.installment][1] if item.installment in issued else item.due
            invoices.append(
                Invoice(number=number, date=invoice_date, due=item.due, amount=item.principal)
            )
            installments.append(
                {
                    "seq": item.installment,
                    "invoice_number": number,
                    "invoice_date": invoice_date,
                    "due_date": item.due,
                    "amount": item.principal,
                    "original_amount": item.amount,
                    "paid": item.paid.principal,
                    "limitation_end": limitation_end(item.due),
                }
            )
        principal = claim.principal

        interest = _interest_section(cid, claim, issued)
        fees, costs, crediting = _costs(claim)
        charges_interest = claim.interest_mode == "statutory"

        product = dict(contract.product or {})
        category = str(product.get("category") or self.settings.product_category)
        mahnantrag = None
        if inp.route == COURT:
            if not invoices:
                raise _invalid(f"contract {cid}: no unpaid installment for a Mahnantrag")
            catalogue_for(category)  # a clear error for an unknown category
            mahnantrag = _mahnantrag(
                category, invoices, customer_type, fees, costs, charges_interest, claim
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
        # Consents given at checkout (issue 12): for digital content the evidence that the
        # withdrawal right lapsed (§ 356 (5) BGB with the § 312f BGB confirmation).
        consents = [
            {
                "kind": c.kind,
                "version": c.version,
                "text_hash": c.text_hash,
                "given_at": _iso(c.given_at),
                "ip": c.ip,
            }
            for c in s.scalars(
                select(Consent).where(Consent.contract_id == cid).order_by(Consent.id)
            )
        ]
        total = claim.total
        ends = [limitation_end(i.due) for i in invoices]
        follow_up = None
        if inp.file_no:
            first = s.scalar(
                select(CollectionCase.id).where(
                    CollectionCase.contract_id == cid,
                    CollectionCase.case_no == inp.case_no,
                    CollectionCase.file_no == 0,
                )
            )
            follow_up = {
                "supplements_case_id": first,
                "joined_installments": sorted(inp.joined),
                "note": "the whole claim as of this file; the installments named joined the "
                "case since the previous file",
            }
        return {
            "schema": SCHEMA,
            "case_id": None,  # set once the row has its id
            "contract_id": cid,
            "case_no": inp.case_no,
            "file_no": inp.file_no,
            "follow_up": follow_up,
            "route": inp.route,
            "as_of": as_of,
            "created_at": datetime.now(UTC).isoformat(),
            "currency": contract.currency,
            "creditor": {
                "seller_id": contract.seller_id,
                "name": seller.seller_name,
                "address": seller.seller_address,
                "email": seller.seller_email,
                "sepa_creditor_id": seller.seller_creditor_id or None,
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
            "consents": consents,
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
        stored = self._stored(inp.contract_id, inp.case_no, inp.file_no)
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
                    file_no=inp.file_no,
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
            stored = self._stored(inp.contract_id, inp.case_no, inp.file_no)
            if stored is None:
                raise
            return result_of(stored)
        except ApplicationError as exc:
            if exc.type == "InvalidCaseFile":
                metrics.collection_delivery_failed("case_file")
            raise
        return result

    @activity.defn(name="deliver_case_file")
    def deliver_case_file(self, case_id: int) -> bool:
        """POST the stored file to MAHNWERK_COLLECTION_URL; True once acknowledged (2xx),
        False when no URL is configured; raises (and is retried) otherwise."""
        with self.sessions() as s:
            row = s.get(CollectionCase, case_id)
            if row is None:
                raise _invalid(f"collection case {case_id} does not exist")
            contract = s.get(Contract, row.contract_id)
            seller_id = contract.seller_id if contract is not None else None
            delivered = row.delivered_at is not None
            file = row.file
        # the seller's collection partner, else MAHNWERK_COLLECTION_URL (issue 14)
        url = self._seller_settings(seller_id).collection_url
        if not url:
            return False
        if delivered:
            return True
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
            metrics.collection_delivery_failed("case_file")
            raise ApplicationError(
                f"collection case {case_id} not acknowledged by {url}: {error}",
                type="CollectionDeliveryFailed",
            )
        return True

    @activity.defn(name="deliver_collection_message")
    def deliver_collection_message(self, inp: CollectionMessageInput) -> bool:
        """Store the message once (by its key) and POST it to MAHNWERK_COLLECTION_URL until
        acknowledged: True once acknowledged (now or before), False when no URL is
        configured (it stays stored); raises otherwise (the workflow tries again later)."""
        payload = {
            "schema": MESSAGE_SCHEMA,
            "id": inp.key,
            "type": inp.type,
            "contract_id": inp.contract_id,
            "created": _iso(inp.created_at),
            "data": _jsonable(inp.data),
        }
        try:
            with transaction(self.sessions) as s:
                row = s.scalar(select(CollectionMessage).where(CollectionMessage.key == inp.key))
                if row is None:
                    s.add(
                        CollectionMessage(
                            contract_id=inp.contract_id,
                            key=inp.key,
                            type=inp.type,
                            payload=payload,
                            created_at=datetime.now(UTC),
                            delivery_attempts=0,
                        )
                    )
        except IntegrityError:
            pass  # a concurrent attempt stored it: deliver what it stored
        with self.sessions() as s:
            row = s.scalar(select(CollectionMessage).where(CollectionMessage.key == inp.key))
            if row is None:
                raise RuntimeError(f"collection message {inp.key} was not stored")
            contract = s.get(Contract, inp.contract_id)
            seller_id = contract.seller_id if contract is not None else None
            # the seller's collection partner, else MAHNWERK_COLLECTION_URL (issue 14)
            url = self._seller_settings(seller_id).collection_url
            if row.delivered_at is not None:
                return True
            if not url:
                return False
            stored, row_id = row.payload, row.id
        body = json.dumps(stored, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Mahnwerk-Signature": sign(body, self.settings.events_secret.get_secret_value()),
            "Idempotency-Key": inp.key,
            "Mahnwerk-Event-Id": inp.key,
        }
        error = _post(url, body, headers)
        with transaction(self.sessions) as s:
            message = s.get(CollectionMessage, row_id)
            if message is not None:
                message.delivery_attempts += 1
                if error is None:
                    message.delivered_at = message.delivered_at or datetime.now(UTC)
                    message.last_error = None
                else:
                    message.last_error = error[:_ERROR_MAX]
        if error is not None:
            activity.logger.warning("collection message %s not delivered: %s", inp.key, error)
            metrics.collection_delivery_failed(inp.type)
            raise ApplicationError(
                f"collection message {inp.key} not acknowledged by {url}: {error}",
                type="CollectionDeliveryFailed",
            )
        return True


def _post(url: str, body: bytes, headers: dict[str, str]) -> str | None:
    """POST; None when acknowledged (2xx), else the error."""
    try:
        with httpx.Client(timeout=DELIVERY_TIMEOUT) as client:
            resp = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if not resp.is_success:
        return f"HTTP {resp.status_code}: {resp.text[:500]}"
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
