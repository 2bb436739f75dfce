"""Typed response models of the reads (issue 16 item 3): what a platform developer's client
generator sees in `/openapi.json`, instead of `object`.

The field names are the ones the API always answered (SPEC.md §4: add, never rename). The
routes still build plain dicts; FastAPI validates them against these models on the way out
(`response_model=`, with `response_model_exclude_unset=True` so that a key the dict does not
carry is not added). Every model lets unknown keys through (`extra="allow"`): a field a later
change adds to a route's dict reaches clients even before it is described here, and
tests/api/test_openapi.py fails until it is.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# -- vocabularies ---------------------------------------------------------------------------

ContractStatus = Literal[
    "active", "in_dunning", "completed", "cancelled", "handed_off", "written_off", "failed"
]
ContractKind = Literal["one_off", "installments", "subscription"]
Access = Literal["granted", "locked", "none"]
InstallmentStatus = Literal[
    "scheduled",
    "processing",
    "paid",
    "open",
    "stalled",
    "handed_off",
    "written_off",
    "cancelled",
    "refunded",
    "waived",
]
# The stages every contract may be in besides its policy's own ladder stages.
ReservedStage = Literal["none", "retrying", "needs_address"]
STAGE_PATTERN = r"^[a-z0-9_]{1,32}$"
STAGE_DESCRIPTION = (
    "`none` (no dunning case), `retrying` (a failed debit is retried), `needs_address` (a "
    "court hand-off waits for the debtor's postal address), or a stage of the contract's "
    "policy ladder (`default`: `reminder`, `mahnung_1`, `lock`, `mahnung_2`, `collection`)"
)
Stage = ReservedStage | str
NoticeStatus = Literal["rendered", "sent"]
Route = Literal["court", "inkasso"]


class Out(BaseModel):
    """Base of every response model: unknown keys pass through (see the module docstring)."""

    model_config = ConfigDict(extra="allow")


def stage_field(**kw: Any) -> Any:
    return Field(description=STAGE_DESCRIPTION, examples=["mahnung_1"], **kw)


# -- the claim (SPEC.md §2 and the second wave's claim shape; domain/claim.py) ----------------


class InterestSpanOut(Out):
    """Days at one rate on one principal amount; `end` inclusive."""

    start: str = Field(description="ISO date")
    end: str = Field(description="ISO date, inclusive")
    days: int
    principal: int = Field(description="minor units the interest accrues on")
    rate_bp: int = Field(description="yearly rate in basis points: base rate + margin")
    base_bp: int = Field(description="§ 247 BGB base rate in basis points")
    exact: str = Field(description="unrounded interest in minor units as a fraction, `2181/73`")


class PaidPartsOut(Out):
    principal: int = 0
    interest: int = 0


class ClaimItemOut(Out):
    """One installment in the claim: what is open of it and what was paid on it."""

    installment: int
    due: str = Field(description="ISO date the installment fell due")
    amount: int = Field(description="minor units, as agreed")
    principal: int = Field(description="open principal, minor units")
    interest: int = Field(description="open interest, minor units")
    interest_periods: list[InterestSpanOut] = []
    paid: PaidPartsOut = Field(default_factory=PaidPartsOut)
    interest_from: str | None = Field(default=None, description="first interest day")
    interest_accrued: int | None = None
    interest_waived: int | None = None


class ChargeLineOut(Out):
    """A fee, a cost or a lump sum: charged, credited, waived, paid, and what is open."""

    key: str
    kind: str = Field(description="fee | return_debit | collection | information | lump_sum")
    label: str = Field(description='German label as in the Mahnantrag ("Mahnkosten", …)')
    on: str = Field(description="ISO date charged")
    amount: int
    credited: int = 0
    waived: int = 0
    paid: int = 0
    open: int = 0
    installment: int = 0
    stage: str = ""


class TotalsOut(Out):
    principal: int = 0
    interest: int = 0
    fees: int = 0
    costs: int = 0
    lump_sums: int = 0


class AllocationLineOut(Out):
    part: Literal["principal", "interest", "fees", "costs", "lump_sums"]
    key: str
    installment: int
    amount: int


class PaymentAllocationOut(Out):
    """Where one payment went (§§ 366, 367 BGB: costs → interest → principal, oldest first)."""

    key: str
    on: str
    amount: int
    parts: list[AllocationLineOut] = []
    prepaid: int = Field(default=0, description="to installments not yet due")
    credit: int = Field(default=0, description="more than everything owed: to be refunded")


class ClaimOut(Out):
    """The claim as of `as_of`; all amounts minor units; `total` is the sum of the parts.
    Contracts started before the claim model (issue 11) carry only the parts and `items`."""

    as_of: str = Field(description="ISO date (Europe/Berlin)")
    principal: int
    interest: int
    fees: int
    costs: int
    lump_sums: int
    total: int
    items: list[ClaimItemOut] = []
    customer_type: Literal["consumer", "business"] | None = None
    interest_mode: Literal["statutory", "none", "waived"] | None = None
    interest_until: str | None = Field(
        default=None, description='the last day interest is computed for; "" without interest'
    )
    missing_base_rate: str | None = Field(
        default=None, description="the 1 Jan / 1 Jul whose § 247 BGB base rate is not known"
    )
    fee_items: list[ChargeLineOut] = []
    cost_items: list[ChargeLineOut] = []
    lump_sum_items: list[ChargeLineOut] = []
    credited: int | None = Field(default=None, description="§ 288 (5) sentence 3 BGB crediting")
    paid: TotalsOut | None = None
    waived: TotalsOut | None = None
    prepaid: int | None = None
    credit: int | None = None
    payments: list[PaymentAllocationOut] = []


# -- GET /v1/contracts/{id} -------------------------------------------------------------------


class AttemptOut(Out):
    attempt: int = Field(description="0: the platform's own PaymentIntent at checkout")
    status: str = Field(
        description="submitting | processing | pending | succeeded | declined | failed | error "
        "(error: Stripe refused the request — our integration error, not a decline)",
        examples=["succeeded"],
    )
    amount: int
    payment_intent: str | None
    decline_code: str | None = Field(examples=["insufficient_funds"])
    failure_class: str | None = Field(
        description="domain/declines.py: soft | fix_data | never | customer_action"
    )
    attempted_at: str
    error: str | None = Field(description="Stripe's message when it refused the request")


class StalledOut(Out):
    code: str | None
    message: str


class InstallmentOut(Out):
    seq: int
    due_at: str = Field(description="RFC 3339")
    amount: int
    paid_amount: int
    status: InstallmentStatus
    attempts: list[AttemptOut]
    stalled: StalledOut | None = Field(
        description="why a `stalled` installment waits (Stripe's last refusal); else null"
    )
    ended: EndedOut | None = Field(
        default=None, description="how the installment ended (docs/endings.md); null while open"
    )
    refunded_amount: int = Field(default=0, description="refunded so far (minor units)")


class EndedOut(Out):
    how: str = Field(examples=["paid", "cancelled", "handed_off", "written_off", "refunded"])
    reason: str | None = Field(default=None, examples=["withdrawal", "paid"])
    at: str | None = Field(default=None, description="RFC 3339")


class ConsentOut(Out):
    """Consent evidence given at checkout (§ 356 (5), § 312f BGB; docs/endings.md)."""

    kind: str = Field(examples=["digital_content_early_start"])
    version: str
    text_hash: str
    given_at: str = Field(description="RFC 3339")
    ip: str | None = None


class DunningOut(Out):
    stage: Stage = stage_field()
    case_no: int = Field(description="dunning cases so far (0: never in dunning)")
    opened_at: str | None


class TermsOut(Out):
    """The customer's acceptance of the terms, as given at checkout (evidence)."""

    version: str | None = None
    accepted_at: str | None = None
    ip: str | None = None
    text_sha256: str | None = None


class CaseFileRefOut(Out):
    file_no: int = Field(description="0: the hand-off's file; 1, 2, …: follow-up files")
    installments: list[int] = Field(description="the installments handed over with it")
    case_id: int | None = Field(description="its collection_cases id, once built")
    delivered_at: str | None


class CaseStatusOut(Out):
    status: Literal["objection", "enforcement_order", "title", "uncollectible"]
    on: str = Field(description="ISO date it happened")
    reference: str
    note: str
    actor: str
    recorded_at: str | None


class DeliveryWaitingOut(Out):
    what: str = Field(examples=["case file 0", "case.payment"])
    rounds_failed: int
    last_error: str | None
    next_try_at: str | None = Field(description="null: in this pass")


class LimitationLineOut(Out):
    installment: int
    arose: str = Field(description="ISO date the claim arose (fell due)")
    ends: str = Field(description="ISO date: the last day of the limitation period")
    basis: str = Field(examples=["§§ 195, 199 Abs. 1 BGB"])


class TitleLimitationOut(Out):
    since: str = Field(description="ISO date the title became final")
    ends: str
    basis: str = Field(examples=["§§ 197 Abs. 1 Nr. 3, 201 BGB"])


class LimitationOut(Out):
    regular: list[LimitationLineOut] = Field(description="3 years from the end of the year")
    title: TitleLimitationOut | None = Field(description="30 years once a title is final")
    next_end: str | None = Field(description="the earliest last day that still matters")


class CollectionOut(Out):
    """The case at the collection partner (docs/collection.md); null before any hand-off."""

    case_no: int
    route: Route
    handed_off_at: str
    state: Literal["open", "paid", "recalled", "uncollectible"]
    closed_at: str | None
    installments: list[int]
    files: list[CaseFileRefOut]
    statuses: list[CaseStatusOut]
    payments_reported: int = Field(description="`case.payment` messages to the partner")
    deliveries_waiting: list[DeliveryWaitingOut]
    call_in: dict[str, Any] | None = Field(
        description="the § 498 BGB call-in (policy on_default: call_in): `status` "
        "not_allowed | notice_due | noticed | called_in | lapsed | business, with reasons, "
        "deadline and the installments concerned"
    )
    limitation: LimitationOut


class ContractOut(Out):
    """A contract as the ledger knows it (the workflow writes it on every change)."""

    contract_id: str = Field(examples=["ord-2026-0001"])
    seller_id: str = Field(
        examples=["default"], description="the contract's seller (creditor), docs/sellers.md"
    )
    kind: ContractKind
    status: ContractStatus
    policy: str = Field(examples=["default"])
    customer_id: str
    product_id: str
    currency: str = Field(examples=["eur"])
    access: Access
    paused: bool
    paused_until: str | None
    contested: bool
    dunning: DunningOut
    claim: ClaimOut
    schedule: list[InstallmentOut]
    terms: TermsOut | None
    consents: list[ConsentOut] = Field(default_factory=list)
    workflow_id: str = Field(examples=["contract-ord-2026-0001"])
    temporal_ui: str = Field(description="link to the contract's workflow in the Temporal UI")
    created_at: str
    collection: CollectionOut | None = Field(
        default=None, description="the case at the collection partner, after a hand-off"
    )


# -- GET /v1/contracts/{id}/events --------------------------------------------------------------


class TimelineEntryOut(Out):
    type: str = Field(
        description="what happened: `payment.succeeded`, `dunning.stage_changed`, "
        "`notice.sent`, `contract.paused`, … (docs/api.md lists them)",
        examples=["payment.failed"],
    )
    occurred_at: str = Field(description="RFC 3339")
    actor: str | None = Field(
        description="the API key's name for support actions; null for the contract itself"
    )
    data: dict[str, Any] = Field(description="the facts of this entry; depends on `type`")


class TimelineOut(Out):
    contract_id: str
    data: list[TimelineEntryOut] = Field(description="oldest first")


# -- support actions ---------------------------------------------------------------------------


class ActionPendingOut(Out):
    """202: the contract did not answer within MAHNWERK_ACTION_WAIT_SECONDS."""

    contract_id: str
    action: str
    idempotency_key: str
    state: Literal["pending"]
    status_url: str = Field(examples=["/v1/contracts/ord-2026-0001/actions/3f2c…"])
    message: str


class ActionStatusOut(Out):
    contract_id: str
    idempotency_key: str
    action: str
    state: Literal["pending", "done"]
    http_status: int | None = Field(description="the answer's status once `done`")
    response: dict[str, Any] | None = Field(
        description="the answer once `done`: the action's 200 body or an error body"
    )
    created_at: str
    completed_at: str | None


# -- GET /v1/contracts/{id}/collection-case -----------------------------------------------------


class CollectionCaseFileOut(Out):
    id: int
    file_no: int
    created_at: str
    delivered_at: str | None
    delivery_attempts: int
    last_error: str | None
    installments: list[int]
    joined_installments: list[int] = Field(description="follow-up files: who joined")


class CollectionCaseOut(Out):
    id: int
    contract_id: str
    case_no: int
    file_no: int = Field(
        default=0,
        description="0: the hand-off's file; a follow-up file when later "
        "installments joined the case (docs/collection.md)",
    )
    files: list[CollectionCaseFileOut] = Field(
        default_factory=list, description="every file of the latest case, oldest first"
    )
    route: Route
    created_at: str
    delivered_at: str | None = Field(description="acknowledged by MAHNWERK_COLLECTION_URL")
    delivery_attempts: int
    last_error: str | None
    file: dict[str, Any] = Field(
        description="the case file as stored and delivered (`schema` "
        "`mahnwerk.collection_case.v1`: creditor, debtor, contract, terms evidence, "
        "installments, interest, fees and costs, attempts, notices, route, Mahnantrag "
        "fields); docs/api.md describes it"
    )


# -- POST /v1/customers/{id}/erase ------------------------------------------------------------


class ErasureOut(Out):
    customer_id: str
    status: Literal["erased"]
    erased_at: str
    erased_by: str
    contracts: list[str]
    workflow_ids: list[str]
    shredded_keys: list[str]
    rows: dict[str, int] = Field(description="rows anonymised per ledger table")
    retention_years: int
    last_record_at: str | None


# -- health, webhooks ------------------------------------------------------------------------


class HealthOut(Out):
    status: Literal["ok"]


class ReadyOut(Out):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(examples=[{"database": "ok", "temporal": "ok"}])
    warnings: dict[str, str] | None = None


class StripeWebhookOut(Out):
    received: bool
    duplicate: bool
    ignored: bool | None = None


# -- invoices (issue 15, docs/invoices.md) -----------------------------------------------------


class InvoiceSummaryOut(Out):
    number: str = Field(examples=["RE-2026-000001"])
    kind: Literal["invoice", "credit_note"]
    seller_id: str = Field(examples=["default"])
    contract_id: str
    installment: int | None = Field(description="the installment / period / purchase invoiced")
    issue_date: str = Field(description="ISO date (Europe/Berlin)")
    currency: str = Field(examples=["eur"])
    net: int = Field(description="minor units")
    tax: int = Field(description="minor units")
    gross: int = Field(description="minor units")
    refers_to: str | None = Field(description="a credit note: the invoice it corrects")
    sha256: str = Field(description="hash of the stored, immutable document")


class InvoiceListOut(Out):
    contract_id: str
    data: list[InvoiceSummaryOut] = Field(description="in the order issued")


class InvoiceOut(InvoiceSummaryOut):
    document: dict[str, Any] = Field(
        description="the invoice as issued: seller, buyer, lines, tax breakdown, § 14 UStG "
        "elements (the PDF and XML are rendered from it)"
    )
