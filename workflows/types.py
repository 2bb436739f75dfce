"""Dataclasses that cross the Temporal boundary: workflow input and state, activity inputs
and results, update/signal/query payloads.

One dataclass in, one out (STYLE.md). New fields only with defaults, so histories recorded
with an older shape still decode. Times are aware UTC datetimes; money is int minor units.
Pure module: imported inside the workflow sandbox and by the activities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.claim import Claim, ClaimFacts, CostFact, FeeFact, PaymentFact, WaiverFact
from domain.interest import BASE_RATES, BaseRate, pinned_rates
from domain.policy import Policy

TASK_QUEUE = "mahnwerk"
WORKFLOW_NAME = "contract"


def workflow_id_for(contract_id: str) -> str:
    return f"contract-{contract_id}"


# -- contract input ------------------------------------------------------------------------


@dataclass
class Customer:
    id: str
    name: str
    email: str
    locale: str = "de"
    type: str = "consumer"  # consumer | business
    address: dict[str, str] = field(default_factory=dict)


@dataclass
class Product:
    id: str
    name: str


@dataclass
class InstallmentState:
    seq: int  # 1-based
    due_at: datetime
    amount: int
    status: str = "scheduled"  # scheduled | processing | paid | open | waived
    paid: int = 0
    attempts: int = 0  # debit attempts made for this installment
    first_failed_at: datetime | None = None
    next_retry_at: datetime | None = None
    last_code: str | None = None
    failure_class: str | None = None
    payment_intent: str | None = None  # the debit in flight (SEPA processing)
    processing_since: datetime | None = None
    next_poll_at: datetime | None = None
    retries_done: int = 0  # soft-decline retries used in the current failure episode
    fee_part: int = 0  # dunning fees included in the debit now in flight
    scheme: str = "card"  # card | sepa, of the last debit
    attempt_times: list[datetime] = field(default_factory=list)  # for Visa's 20-in-30-days cap
    retry_reason: str = ""  # why the next retry is when it is (timer summary)
    paid_at: datetime | None = None
    dunning_from: datetime | None = None  # reopened by a chargeback: the ladder counts from here
    # SEPA pre-notification: the attempt number announced and the amount announced for it.
    # A debit never takes more than announced (the customer was told that amount).
    announced_attempt: int = 0
    announced_amount: int = 0
    announced_collection: str = ""  # the collection date announced (ISO), if any
    processing_overdue: bool = False  # still `processing` after 14 TARGET business days
    # Stripe unreachable for the whole of a debit's retries: try again at this time.
    stalled_until: datetime | None = None
    stalls: int = 0
    # Stripe refused our request (400/401/403/404): the last error, shown with the
    # installment's `stalled` status; and how many such refusals this attempt had (each
    # retry after one sends a fresh idempotency key: a 4xx moved no money).
    stall_error: str | None = None
    integration_errors: int = 0
    disputed: int = 0  # reclaimed by an open or lost dispute / chargeback
    dispute_costs: int = 0  # return-debit costs charged for that dispute
    refunded: int = 0  # refunded at Stripe (e.g. in the Dashboard): not owed again
    # Claim facts (PATCH_CLAIM): the payment facts a chargeback reduced, by key and amount,
    # restored when the dispute is won.
    reversed_payments: dict[str, int] = field(default_factory=dict)
    # The due date the claim counts from when not the agreed one (ISO, Berlin): a chargeback
    # reopens the installment as of that day (interest from the day after, not again from
    # the agreed due date: the seller had the money meanwhile).
    claim_due: str = ""
    # How it ended when not simply paid (issue 12): handed off, written off, cancelled —
    # with the reason; shown as `schedule[].ended` and written to `installments.ended`.
    ended: InstallmentEnd | None = None

    @property
    def outstanding(self) -> int:
        return self.amount - self.paid


@dataclass
class InstallmentEnd:
    """How an installment ended (`schedule[].ended` of GET /v1/contracts/{id})."""

    how: str  # handed_off | written_off | cancelled | paid (after a hand-off)
    reason: str
    at: datetime


@dataclass
class ContractState:
    """Everything the workflow knows; carried across continue-as-new."""

    installments: list[InstallmentState] = field(default_factory=list)
    generated: int = 0  # installments generated so far (subscriptions generate lazily)
    status: str = "active"
    stage: str = "none"
    stages_done: list[str] = field(default_factory=list)
    case_no: int = 0
    case_opened_at: datetime | None = None
    access: str = "none"
    payment_method: str | None = None
    fees: int = 0
    fees_paid: int = 0
    paid_total: int = 0
    run: int = 1  # continue-as-new generation
    seen_payment_events: list[str] = field(default_factory=list)
    # support actions (SPEC.md §4)
    paused: bool = False
    paused_until: datetime | None = None
    paused_at: datetime | None = None
    ladder_delay_seconds: int = 0  # time the dunning clock stood still (pauses) this case
    contested: bool = False
    fees_waived: int = 0
    interest_waived: bool = False
    awaiting_approval: bool = False
    route: str | None = None  # court | inkasso, once decided
    cancel_at: datetime | None = None  # subscriptions: no renewal due at or after this
    approval_requested_at: datetime | None = None  # hand-off waiting for an admin since
    approval_reminders: int = 0
    case_file_id: int | None = None  # collection case file built at hand-off
    return_debit_costs: int = 0  # part of `fees` that are bank return-debit costs
    interest_paid: int = 0  # statutory interest received so far (§ 367 BGB allocation)
    # The payment method as Stripe describes it (looked up once per method): SEPA debits
    # are announced beforehand with these details.
    method: PaymentMethodInfo | None = None
    disputes_settled: list[str] = field(default_factory=list)  # won disputes, applied once
    # Update ids of the support actions already applied (the most recent ones, carried over
    # continue-as-new): Temporal de-duplicates an Update id only within one run, so a
    # retried action that reaches the next run is recognised here and changes nothing.
    done_actions: list[str] = field(default_factory=list)
    # -- the claim as facts (issue 11; workflows.base PATCH_CLAIM) ---------------------------
    # domain.claim.compute_claim reads these and the installments; nothing else computes
    # interest. `fees`, `fees_paid`, `fees_waived`, `return_debit_costs`, `interest_paid`
    # and `interest_waived`'s effect on amounts above are read only by contracts started
    # before the patch (their replays must issue the same commands).
    claim_facts: bool = False  # True: the facts below are complete for this contract
    claim_payments: list[PaymentFact] = field(default_factory=list)
    claim_fees: list[FeeFact] = field(default_factory=list)
    claim_costs: list[CostFact] = field(default_factory=list)
    claim_waivers: list[WaiverFact] = field(default_factory=list)
    fact_order: int = 0  # the facts' order within a day; bumped on every change
    # The § 247 BGB table the claim uses: pinned at start, refreshed by an activity (at most
    # once a day) while a half-year the claim needs is missing (MAHNWERK_BASE_RATES).
    base_rates: list[BaseRate] = field(default_factory=list)
    rates_checked_on: str = ""
    last_notice: NoticeAsked | None = None  # what the last dunning notice asked for
    residual: ResidualState | None = None  # the final notice for what stayed open
    needs_address: bool = False  # a court hand-off waits for the debtor's postal address
    # Notices the mail server did not take for a day, re-sent later (PATCH_NOTICE_RETRY)
    notice_retries: list[NoticeRetry] = field(default_factory=list)
    # -- ending early (issue 12 item 3; workflows/endings.py) ------------------------------
    ended_reason: str = ""  # the cancellation's reason (domain.endings.REASONS), once asked
    refunds: list[RefundRecord] = field(default_factory=list)  # every refund, by Stripe id
    # Customer messages beyond dunning waiting to be sent by the main loop (issue 12 item 4),
    # and a counter that names the ones that may happen more than once (payment_failed_3)
    messages_pending: list[MessageAsk] = field(default_factory=list)
    message_seq: int = 0
    told_case: int = 0  # the dunning case the customer was told a payment failed in
    # The invoices issued for the installments this run carries (issue 15, PATCH_INVOICES);
    # a number "" marks one that could not be issued (recorded, not asked for again).
    invoices: list[InvoiceRef] = field(default_factory=list)
    # -- after the hand-off (issue 12; workflows.base PATCH_AFTER_HANDOFF) -------------------
    case: CaseState | None = None  # the case at the collection partner
    deliveries: list[PartnerDelivery] = field(default_factory=list)  # to the partner, waiting
    call_in: CallInState | None = None  # the § 498 BGB call-in (policy on_default: call_in)


@dataclass
class InvoiceRef:
    """An issued invoice as the workflow remembers it (core.invoicing)."""

    seq: int
    number: str
    issue_date: str = ""


@dataclass
class InvoiceRequest:
    """Issue the invoice of installment / period / purchase `seq` (activity `issue_invoice`):
    idempotent, the same contract and seq always get the same invoice."""

    contract_id: str
    seq: int
    amount: int  # gross, minor units
    due_at: datetime
    issued_at: datetime  # workflow time: the invoice date is its day in Europe/Berlin


@dataclass
class CreditNoteRequest:
    """A credit note against the invoice of installment `seq` (activity `issue_credit_note`);
    one per `ref` (e.g. the refund's id). reason: refund | withdrawal | cancellation |
    goodwill | write_down | correction."""

    contract_id: str
    seq: int
    amount: int  # gross, minor units
    reason: str
    ref: str
    issued_at: datetime


@dataclass
class NoticeRetry:
    """A notice whose send failed through every activity retry (SMTP down for a day): sent
    again at `retry_at`, until delivered or moot (its case closed). A dunning rung's notice
    holds the ladder from `held_since` (workflows.base PATCH_NOTICE_RETRY)."""

    stage: str
    template: str
    case_no: int
    failed_at: datetime  # the first failure
    retry_at: datetime
    attempts: int = 1  # sends that failed so far
    held_since: datetime | None = None  # the ladder stands still since (rung notices)
    error: str = ""


@dataclass
class RefundRecord:
    """A refund given on one installment: by Mahnwerk (a cancellation) or at Stripe (the
    Dashboard). ``id`` is Stripe's refund id (re_…), or ``outside:<ref>:<seq>`` for money the
    seller transfers back outside Stripe; each id is recorded once, whichever of the refund
    activity and the `charge.refunded` webhook tells first."""

    id: str
    installment: int
    amount: int
    source: str  # mahnwerk | stripe | outside (to be transferred by the seller)
    at: datetime
    reason: str = ""  # the cancellation's reason, or Stripe's refund reason
    payment_intent: str | None = None
    ref: str = ""  # the cancellation's action id (Idempotency-Key) that asked for it


@dataclass
class MessageAsk:
    """A customer message the main loop sends (once: its `stage` is unique per contract)."""

    kind: str  # domain.policy.MESSAGE_KINDS
    stage: str  # the notices row's stage, e.g. "payment_failed_3_1"
    case_no: int = 0
    installment: int = 0
    amount: int = 0
    code: str = ""
    failure_class: str = ""
    reason: str = ""


@dataclass
class CaseFileRef:
    """One case file of a case: 0 at the hand-off, then a follow-up per join."""

    file_no: int
    installments: list[int]  # the installments handed over with this file
    case_id: int | None = None  # the collection_cases row, once built
    delivered_at: datetime | None = None


@dataclass
class CaseStatusEntry:
    """What the partner or the court reported (POST …/case-status), with its date."""

    status: str  # domain.collection.CASE_STATUSES
    on: str  # ISO date (Berlin) it happened
    reference: str = ""  # the court's file number or the partner's reference
    note: str = ""
    actor: str = ""
    recorded_at: datetime | None = None


@dataclass
class CaseState:
    """The claim at the collection partner: what was handed over and what happened since."""

    case_no: int
    route: str  # court | inkasso
    handed_off_at: datetime
    installments: list[int] = field(default_factory=list)  # every installment handed over
    files: list[CaseFileRef] = field(default_factory=list)
    statuses: list[CaseStatusEntry] = field(default_factory=list)
    notice_sent: bool = False  # the hand-off announcement to the customer
    closed: str = ""  # "" (open) | paid | recalled | uncollectible
    closed_at: datetime | None = None
    payments_told: int = 0  # `case.payment` messages queued for the partner


@dataclass
class PartnerDelivery:
    """Something for the collection partner, delivered until acknowledged: a case file
    (built, then POSTed) or a message (`case.payment`, `case.recall`). A failure waits and
    is tried again with backoff (1 h doubling up to a day), never failing the contract."""

    key: str  # unique: case_file:{case}:{file} | payment:{payment key} | recall:{case}
    kind: str  # case_file | message
    file_no: int = 0  # case_file
    message: str = ""  # message: case.payment | case.recall
    data: dict[str, Any] = field(default_factory=dict)  # message: its data
    tries: int = 0  # failed rounds so far
    next_try_at: datetime | None = None  # None: now
    last_error: str = ""


@dataclass
class CallInState:
    """Calling in the rest of the plan (policy `on_default: call_in`; domain.call_in).

    `status`: `not_allowed` (§ 498 BGB conditions not met: `reasons`; checked again when
    another installment falls into default), `noticed` (the two-week notice went out; the
    rest falls due at `next_step_at` unless the arrears are paid), `called_in`, `lapsed`
    (the arrears were paid in time, or nothing was left to call in)."""

    case_no: int
    status: str
    reasons: list[str] = field(default_factory=list)
    checked: list[int] = field(default_factory=list)  # installments in default when checked
    noticed_at: datetime | None = None
    deadline_day: str = ""  # ISO date: the last day to pay the arrears
    next_step_at: datetime | None = None
    arrears: int = 0  # principal in default when noticed (the "rückständige Betrag")
    arrears_installments: list[int] = field(default_factory=list)
    remainder: int = 0  # what falls due if unpaid: arrears plus the installments not yet due
    notice_failures: int = 0
    called_in_at: datetime | None = None
    installments: list[int] = field(default_factory=list)  # called in


@dataclass
class NoticeAsked:
    """What a dunning notice asked: the claim's total as of its day and the last day to pay.
    A settlement of exactly that total by that day is booked as of the notice's day (the
    interest accrued since is not claimed: the customer paid what was asked)."""

    stage: str
    as_of: str  # ISO date (Berlin) of the claim printed
    total: int
    deadline_day: str  # ISO date, the last day to pay


@dataclass
class ResidualState:
    """What stayed open (interest, fees, costs, lump sums) once the principal was paid, when
    the policy claims it by a final notice (``residual.write_off_below`` not reached)."""

    case_no: int
    amount: int
    sent_at: datetime | None = None  # the final notice
    deadline_day: str = ""  # its last day to pay (ISO, Berlin)
    next_step_at: datetime | None = None  # 00:00 Berlin after the deadline


@dataclass
class ContractInput:
    contract_id: str
    kind: str  # one_off | installments | subscription
    policy: Policy
    customer: Customer
    product: Product
    currency: str
    amount: int
    first_due: str  # ISO date (Europe/Berlin) or RFC 3339 time
    interval: str | None = None  # ISO 8601 duration; None for one_off
    count: int | None = None  # None: subscription, until cancelled
    stripe_customer: str | None = None
    payment_method: str | None = None
    payment_intent: str | None = None  # one_off: created by the platform at checkout
    minimum_term: str | None = None  # subscriptions: ISO 8601 duration from the start
    # How often a debit stuck in `processing` is polled in case a webhook was lost.
    poll_interval_seconds: int = 6 * 3600
    # After the last payment the contract keeps listening for chargebacks this long: a SEPA
    # debtor may reclaim an authorised debit within 8 weeks without giving reasons (§ 675x
    # (2),(4) BGB) and an unauthorised one within 13 months (§ 676b (2) BGB; SEPA Core
    # rulebook), card disputes come up to ~120 days later (network rules). 13 months: a
    # dispute arriving after the last payment still reopens the contract (issue 10 item 6).
    chargeback_watch_days: int = 396
    # Continue-as-new after this many paid periods (subscriptions) to bound the history.
    periods_per_run: int = 12
    # Upsert the SPEC.md §7 search attributes (off only where a test server lacks them).
    search_attributes: bool = True
    # Who sends SEPA pre-notifications (MAHNWERK_SEPA_PRENOTIFICATION, pinned at start):
    # `mahnwerk` (its own notice, Stripe's debit e-mails turned off) or `stripe` (Stripe's
    # own debit notification e-mails; Mahnwerk sends none, so the customer never gets two).
    sepa_prenotification_by: str = "mahnwerk"
    # The seller's Land (MAHNWERK_SELLER_STATE, pinned at start): its public holidays move
    # payment deadlines (§ 193 BGB). "" (contracts started before it): nationwide ones only.
    seller_state: str = ""
    # The § 247 BGB base-rate table when the contract started (domain.interest.BASE_RATES
    # plus MAHNWERK_BASE_RATES): the workflow never reads the table in code, so a release
    # that adds a row cannot change what a replay computes. Rows without their sources
    # (domain.interest.pinned_rates; contracts started before carry them, unused).
    base_rates: list[BaseRate] = field(default_factory=lambda: pinned_rates(BASE_RATES))
    # When invoices are issued (MAHNWERK_INVOICE_TIMING, pinned at checkout): at_due |
    # at_payment; "" none (invoicing off, or a contract from before issue 15).
    invoice_timing: str = ""
    state: ContractState | None = None
    # The seller (creditor) of the contract (issue 14, core/sellers.py): whose Stripe account
    # debits it and whose details its notices carry. "" (contracts started before): the
    # default seller.
    seller_id: str = ""


# -- activities ----------------------------------------------------------------------------


@dataclass
class ChargeInput:
    contract_id: str
    installment_seq: int
    attempt: int
    idempotency_key: str  # {contract}:{installment}:{attempt}, derived in the workflow
    amount: int
    currency: str
    stripe_customer: str | None
    payment_method: str | None
    description: str
    customer_email: str = ""
    attempted_at: datetime | None = None  # workflow time of the attempt (business time)
    # The method's own type (card | sepa_debit), named in the request as Stripe documents
    # for merchant-initiated charges; None: unknown (automatic methods without redirects).
    method_type: str | None = None
    mandate: str | None = None  # SEPA: the Stripe Mandate the debit is collected under
    seller_id: str = ""  # whose Stripe account debits it (issue 14); "": the default seller


@dataclass
class ChargeResult:
    # succeeded | processing | pending | declined | error (Stripe refused the request:
    # 400/401/403/404, our integration error, never the customer's decline)
    status: str
    payment_intent: str | None = None
    code: str | None = None  # Stripe decline / failure code (error: Stripe's error code)
    failure_class: str | None = None  # domain.declines class
    message: str | None = None
    amount: int = 0
    scheme: str | None = None  # card | sepa, from the payment method's own type
    request_id: str | None = None  # error: Stripe's request id (req_…), for support
    http_status: int | None = None  # error: Stripe's HTTP status
    # SEPA: the charge's `payment_method_details.sepa_debit.expected_debit_date` (ISO date)
    expected_debit_date: str | None = None


@dataclass
class PaymentMethodLookup:
    contract_id: str
    stripe_customer: str | None
    payment_method: str | None
    seller_id: str = ""  # on whose Stripe account the method lives (issue 14)


@dataclass
class PaymentMethodInfo:
    """What a SEPA pre-notification needs to say about the method (DOMAIN.md §4)."""

    payment_method: str | None
    kind: str  # card | sepa_debit | unknown (not found, or another type)
    last4: str | None = None  # IBAN (SEPA) or card number
    mandate: str | None = None  # Stripe Mandate id
    mandate_reference: str | None = None  # the SEPA mandate reference (≤ 35 characters)
    # The Mandate's status at Stripe: active | inactive | pending; None: no mandate found.
    # An inactive mandate (revoked by the debtor, or the method detached) cannot be debited.
    mandate_status: str | None = None

    @property
    def is_sepa(self) -> bool:
        return self.kind == "sepa_debit"


@dataclass
class PaymentStatusInput:
    contract_id: str
    payment_intent: str
    scheme: str | None = None  # card | sepa, as the workflow knows the debit's method
    seller_id: str = ""  # on whose Stripe account the debit runs (issue 14)


@dataclass
class Fact:
    """One thing that happened: a timeline row, and optionally an event to the platform.

    `key` is derived from business ids, so recording the same fact twice is a no-op.
    """

    key: str
    type: str
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    actor: str | None = None
    event: str | None = None  # SPEC.md §5 event type to send to the platform, if any


@dataclass
class LedgerSync:
    """The contract's current state plus the facts that led to it, written in one
    transaction."""

    contract_id: str
    status: str
    stage: str
    access: str
    overdue_amount: int
    fees: int
    case_no: int
    case_opened_at: datetime | None
    paused: bool = False
    paused_until: datetime | None = None
    contested: bool = False
    installments: list[InstallmentState] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    customer_id: str = ""
    product_id: str = ""
    # (idempotency_key, status, code) for attempts whose outcome arrived later (SEPA)
    attempt_outcomes: list[list[str]] = field(default_factory=list)
    # Support actions answered in this pass: their first answer, kept by Idempotency-Key
    actions: list[ActionOutcome] = field(default_factory=list)
    # The claim as of now (domain.claim), stored with the contract for the API and reports;
    # None from contracts started before PATCH_CLAIM.
    claim: Claim | None = None
    claim_facts: ClaimFacts | None = None  # what it is computed from (the API's as-of-today)
    # Installments being collected (domain.claim.demanded): all of them, and those of them
    # that were in default before.
    collecting: list[int] = field(default_factory=list)
    collecting_defaulted: list[int] = field(default_factory=list)
    # The customer's postal address, when support changed it (POST …/address).
    customer_address: dict[str, str] | None = None
    # The case at the collection partner (issue 12): contracts.collection
    case: CaseState | None = None
    call_in: CallInState | None = None
    deliveries: list[PartnerDelivery] = field(default_factory=list)


@dataclass
class ActionOutcome:
    """A support action's answer as the API gives it (`http_status` and JSON body), written
    to the ledger with the action's facts (core.models.SupportActionRequest)."""

    update_id: str
    http_status: int
    response: dict[str, Any]


@dataclass
class ClaimLine:
    label: str  # e.g. "Rate 3 von 6" rendered by the template from kind/seq
    seq: int
    due_at: datetime
    amount: int  # outstanding


@dataclass
class NoticeInput:
    """What a notice says. ``claim`` (the domain claim as of the notice) is the only source of
    its amounts when given; ``lines``/``fees``/``total`` remain for notices of contracts
    started before the claim model (and the SEPA pre-notification)."""

    contract_id: str
    case_no: int
    stage: str  # ladder stage, e.g. "reminder"
    template: str  # template name from the policy step's `notice`
    customer: Customer
    product: Product
    currency: str
    lines: list[ClaimLine]
    fees: int
    total: int
    deadline: datetime  # pay by
    created_at: datetime
    # statutory | none (policy charges none) | waived (support waived it): § 288 BGB interest
    interest_mode: str = "statutory"
    interest_paid: int = 0  # statutory interest already received (deducted on the notice)
    debit: DebitAnnouncement | None = None  # SEPA pre-notification only
    # -- typed fields (issue 11): the renderer never parses workflow strings ---------------
    claim: Claim | None = None  # the claim as of the notice (domain.claim.compute_claim)
    deadline_day: str = ""  # ISO date (Berlin): the last day to pay, after § 193 BGB
    deadline_shift_reason: str = ""  # why it moved ("Sonntag", "1. Weihnachtstag"), or ""
    kind: str = ""  # one_off | installments | subscription ("" before issue 11)
    count: int | None = None  # installments in the plan; None: one-off or subscription
    route: str | None = None  # court | inkasso: the hand-off notice
    # A re-send of a notice the mail server never took (PATCH_NOTICE_RETRY): its recorded,
    # unsent text is rendered again from this input (a new claim and last day to pay).
    rerender: bool = False
    message: MessageInfo | None = None  # a customer message beyond dunning (issue 12)
    call_in: CallInNotice | None = None  # the § 498 BGB notice (template `call_in`)


@dataclass
class MessageInfo:
    """What a customer message beyond dunning says (templates `<locale>/<kind>.*`)."""

    kind: str  # payment_failed | payment_received | … (domain.policy.MESSAGE_KINDS)
    at: datetime  # when it happened (workflow time)
    installment: int = 0  # the installment concerned (payment_failed, refund_confirmed)
    amount: int = 0  # the failed debit, or the amount refunded
    code: str = ""  # payment_failed: Stripe's decline code
    failure_class: str = ""  # payment_failed: fix_data | never
    reason: str = ""  # withdrawal / refund: the reason given
    refund: int = 0  # withdrawal: refunded to the means of payment used (Stripe)
    refund_outside: int = 0  # withdrawal: to be transferred by the seller
    cancelled: list[int] = field(default_factory=list)  # installments no longer owed
    access: str = ""  # the access after it (granted | locked | none)
    next_due: str = ""  # the next installment's due date (ISO, Berlin), "" if none
    next_amount: int = 0
    paid_total: int = 0  # plan_completed: everything paid


@dataclass
class CallInNotice:
    """What the § 498 BGB notice says besides the claim: the arrears to pay by the deadline
    and what falls due at once if they are not paid."""

    arrears: int  # the claim in arrears (principal, interest, fees, costs) as of the notice
    future: int  # principal of the installments not yet due
    installments: int  # how many installments are not yet due
    remainder: int  # arrears + future: what falls due if the deadline passes unpaid


@dataclass
class DebitAnnouncement:
    """A SEPA pre-notification: which debit, when, how much, under which mandate."""

    seq: int
    attempt: int
    label: str
    amount: int  # the most the debit will take (minor units)
    debit_at: datetime
    iban_last4: str | None
    mandate_reference: str | None
    short_notice: bool = False  # sent later than the policy's lead (e.g. due at checkout)
    # The day the money leaves the debtor's account (ISO date, Europe/Berlin): the debit is
    # submitted at `debit_at` and collected the next TARGET business day
    # (domain.calendar.sepa_collection_date). None in notices of older contracts.
    collection_date: str | None = None


@dataclass
class NoticeResult:
    notice_number: str
    message_id: str
    sent_at: datetime
    already_sent: bool = False


# -- messages ------------------------------------------------------------------------------


@dataclass
class PaymentUpdate:
    """Signal from the Stripe webhook: the outcome of a debit that was `processing`."""

    event_id: str
    payment_intent: str
    # succeeded | failed | disputed | dispute_won (closed as won, or funds reinstated) |
    # dispute_lost | refunded (a refund made at Stripe, e.g. in the Dashboard)
    status: str
    code: str | None = None
    installment_seq: int | None = None
    # disputed / dispute_won: the disputed amount; refunded: the charge's `amount_refunded`
    # (cumulative, so a redelivered or reordered event is harmless)
    amount: int = 0
    dispute: str | None = None  # the Dispute id (dp_…), to settle each dispute once
    # refunded: the charge's refunds as Stripe lists them (ids, amounts): each is recorded
    # once by its id, so a refund Mahnwerk made itself is never counted twice (issue 12)
    refunds: list[RefundInfo] = field(default_factory=list)
    # succeeded: a PaymentIntent that is none of our debits (the platform created it for this
    # contract, metadata.contract_id): a payment of the claim (issue 12); `amount` received
    external: bool = False


@dataclass
class RefundInfo:
    """A Stripe refund as the `charge.refunded` webhook (or the refund activity) saw it."""

    id: str  # re_…
    amount: int
    status: str = "succeeded"  # succeeded | pending | failed | canceled | requires_action
    reason: str = ""  # Stripe's: requested_by_customer | duplicate | fraudulent | ""
    ref: str = ""  # metadata `mahnwerk_refund`: the cancellation that asked for it


@dataclass
class MandateUpdate:
    """Signal from the `mandate.updated` webhook: a SEPA mandate changed status."""

    event_id: str
    mandate: str
    status: str  # active | inactive | pending
    payment_method: str | None = None


@dataclass
class SettlementRequest:
    amount: int
    method: str  # bank_transfer | cash | other
    reference: str
    received_at: datetime | None = None
    actor: str = "api"
    request_id: str = ""


@dataclass
class PaymentMethodRequest:
    payment_method: str
    actor: str = "api"
    request_id: str = ""


@dataclass
class SupportAction:
    """Every support/admin action: who did it (API key name) and why, plus its fields."""

    actor: str
    reason: str = ""
    until: datetime | None = None  # pause (time), deferral (Europe/Berlin midnight)
    fees: bool = False  # waivers
    interest: bool = False  # waivers
    route: str | None = None  # approve-handoff
    address: dict[str, str] | None = None  # set-address: the debtor's postal address
    at_period_end: bool = True  # cancel
    request_id: str = ""
    # cancel (issue 12): the amount to refund (minor units), None: as the policy says; and a
    # free-text note (`reason` is then one of domain.endings.REASONS)
    refund: int | None = None
    note: str = ""
    case_status: str | None = None  # case-status: domain.collection.CASE_STATUSES
    on: str | None = None  # case-status: the ISO date it happened
    reference: str = ""  # case-status: the court's file number or the partner's reference


@dataclass
class ActionResult:
    status: str
    stage: str
    access: str
    overdue_amount: int
    message: str = ""
    debited: list[ChargeResult] = field(default_factory=list)
    allocation: dict[str, int] = field(default_factory=dict)
    # cancel: the refund given ({"amount", "stripe", "outside_stripe", "refunds": [...]})
    refund: dict[str, Any] | None = None


def action_response(contract_id: str, res: ActionResult) -> dict[str, Any]:
    """The JSON body of a support action's 200 answer (api.schemas.ActionOut): built here
    once, so the answer the API gives and the one the ledger keeps for a retry are equal."""
    return {
        "contract_id": contract_id,
        "status": res.status,
        "stage": res.stage,
        "access": res.access,
        "overdue_amount": res.overdue_amount,
        "message": res.message,
        "debits": [
            {
                "status": d.status,
                "amount": d.amount,
                "code": d.code,
                "payment_intent": d.payment_intent,
            }
            for d in res.debited
        ],
        "allocation": dict(res.allocation),
    } | ({"refund": res.refund} if res.refund is not None else {})


def action_error(status: int, type_: str, message: str) -> dict[str, Any]:
    """The JSON body of a refused action, as api.errors renders it (SPEC.md §4)."""
    code = "conflict" if status == 409 else "invalid_input"
    return {"error": {"code": code, "message": message, "details": {"type": type_}}}


@dataclass
class ContractView:
    """Query result: the live state as the workflow sees it."""

    contract_id: str
    status: str
    stage: str
    access: str
    overdue_amount: int
    fees: int
    waiting_for: str
    installments: list[InstallmentState]
    claim: Claim | None = None  # the claim as of now (contracts started since PATCH_CLAIM)
    case: CaseState | None = None  # the case at the collection partner (issue 12)
    call_in: CallInState | None = None
    deliveries: list[PartnerDelivery] = field(default_factory=list)


# -- refunds (issue 12) -------------------------------------------------------------------


@dataclass
class RefundPartInput:
    installment: int
    amount: int
    payment_intent: str


@dataclass
class RefundInput:
    """Refund these parts through Stripe, each once: the idempotency key of a part is
    ``refund:{contract}:{ref}:{payment_intent}`` (derived here from the cancellation's action
    id, never random), and the activity looks for a refund carrying `ref` in its metadata
    before creating one (Stripe forgets idempotency keys after 24 h)."""

    contract_id: str
    ref: str  # the cancellation's action id (its Idempotency-Key)
    reason: str  # domain.endings.REASONS
    currency: str
    parts: list[RefundPartInput] = field(default_factory=list)


@dataclass
class RefundResult:
    refunds: list[RefundInfo] = field(default_factory=list)  # in the order of the parts
    # parts Stripe refused (e.g. the charge was disputed meanwhile): (payment intent, error)
    failed: list[list[str]] = field(default_factory=list)


# -- hand-off ------------------------------------------------------------------------------


@dataclass
class CaseFileInput:
    """Build the collection case file (SPEC.md §6) of dunning case `case_no` at hand-off."""

    contract_id: str
    case_no: int
    route: str  # court | inkasso
    as_of: datetime  # interest runs up to and including this day (Europe/Berlin)
    fees: int = 0  # dunning fees still open (Mahnkosten)
    # other costs still open, itemised: (label, amount), e.g. ("Rücklastschriftkosten", 350)
    costs: list[tuple[str, int]] = field(default_factory=list)
    interest_waived: bool = False  # waived by support, or policy `interest: none`
    # The claim as of the hand-off day (domain.claim): when given, the case file's amounts
    # are read from it, never computed again (issue 11).
    claim: Claim | None = None
    # issue 12: 0 is the file of the hand-off; a follow-up file (1, 2, …) hands over the
    # installments in `joined` (later defaults, or the rest called in) with the whole claim.
    file_no: int = 0
    joined: list[int] = field(default_factory=list)


@dataclass
class CaseFileResult:
    case_id: int
    principal: int
    interest: int  # 0 when waived or when a base rate is missing (see missing_base_rate)
    fees: int  # dunning fees claimed (after § 288 (5) sentence 3 BGB crediting)
    costs: int  # lump sums and other costs claimed
    total: int
    route: str
    missing_base_rate: str | None = None  # the 1 Jan / 1 Jul whose § 247 rate is unknown


@dataclass
class CollectionMessageInput:
    """A message to the collection partner (`case.payment`, `case.recall`): stored once by
    `key`, POSTed until acknowledged (activities.collection.deliver_collection_message)."""

    contract_id: str
    key: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None  # workflow time


@dataclass
class InterestInput:
    """Statutory default interest (§ 288 BGB) on the open lines, as of a day."""

    lines: list[ClaimLine]
    as_of: datetime  # interest up to and including this day (Europe/Berlin)
    customer_type: str  # consumer | business


@dataclass
class InterestOutput:
    amounts: list[int]  # per line, in the order given
    total: int
    unavailable: str | None = None  # why interest could not be computed (missing base rate)
