"""The events Mahnwerk POSTs to the platform, as OpenAPI `webhooks` (issue 16 item 3).

Documentation only: the events are written by the ledger activity (activities/ledger.py,
one outbox row per fact that names an `event`) and delivered by activities/events.py. Each
webhook here is one event `type`; its request body is the envelope every event shares, with
the `data` of that type. tests/api/test_openapi.py checks that every `event="…"` the workflows
emit is documented here.

Fields of `data` depend on what happened (a debit's failure carries the decline, a
chargeback the dispute): every field is listed, and those not always present are optional.
Receivers must ignore fields they do not know: new ones are added, none renamed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.responses import Stage, stage_field


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow")


class ClaimParts(_Data):
    as_of: str = Field(description="ISO date (Europe/Berlin)")
    principal: int
    interest: int
    fees: int
    costs: int
    lump_sums: int
    total: int


# -- data of each event type -------------------------------------------------------------------


class AccessData(_Data):
    case: int | None = Field(default=None, description="the dunning case (locks, unlocks)")
    stage: Stage | None = stage_field(default=None)
    overdue_amount: int | None = Field(default=None, description="minor units, at the lock")
    reason: str | None = Field(
        default=None, examples=["paid"], description="why access changed (grant, unlock, revoke)"
    )


class PaymentSucceededData(_Data):
    """A debit succeeded (`method` `stripe`), a payment received outside Stripe was recorded
    (`method` `bank_transfer` | `cash` | `other`, with `reference` and `allocation`), or a
    chargeback was won (`dispute`)."""

    installment: int | None = None
    attempt: int | None = None
    amount: int = Field(description="minor units")
    fees: int | None = Field(default=None, description="part of a debit that paid fees")
    method: str | None = Field(default=None, examples=["stripe", "bank_transfer"])
    reason: str | None = Field(default=None, description="why the debit was made")
    payment_intent: str | None = None
    expected_debit_date: str | None = Field(default=None, description="SEPA: ISO date")
    reference: str | None = Field(default=None, description="settlements: the payer's reference")
    received_at: str | None = None
    allocation: dict[str, int] | None = Field(
        default=None,
        description="settlements: where the money went, `installment_<n>`, `interest_<n>`, "
        "`fees`, `costs`, `lump_sums`, `credit` (overpaid, to be refunded)",
    )
    claim_after: dict[str, Any] | None = None
    dispute: str | None = Field(default=None, description="a won chargeback: Stripe's dispute")
    credit: int | None = None


class PaymentFailedData(_Data):
    """A debit was declined (`code`, `failure_class`, the next retry), a SEPA debit was
    returned or a card payment disputed (`return_debit_costs`), or a mandate became inactive."""

    installment: int | None = None
    attempt: int | None = None
    amount: int | None = None
    code: str | None = Field(default=None, examples=["insufficient_funds"])
    failure_class: str | None = Field(
        default=None, description="soft | fix_data | never | customer_action (domain/declines)"
    )
    message: str | None = None
    next_retry_at: str | None = Field(default=None, description="null: no retry planned")
    retry: str | None = None
    payment_intent: str | None = None
    return_debit_costs: int | None = None
    mandate: str | None = None


class PaymentMethodRequiredData(_Data):
    installment: int | None = None
    code: str | None = Field(default=None, examples=["lost_card", "mandate_inactive"])
    failure_class: str | None = None
    mandate: str | None = None


class StallData(_Data):
    """Stripe could not be reached (`payment.stalled`, `payment.poll_failed`) or refused our
    request (`integration.error`, `installment.stalled`): nothing was decided, retried at
    `retry_at`."""

    installment: int | None = None
    attempt: int | None = None
    code: str | None = None
    message: str | None = None
    error: str | None = None
    http_status: int | None = None
    request_id: str | None = Field(default=None, description="Stripe's request id, for support")
    retry_at: str | None = None


class StageChangedData(_Data):
    case: int
    stage: Stage = stage_field()
    from_: Stage = Field(alias="from", description="the previous stage")
    reason: str | None = None


class HandoffData(_Data):
    case: int
    reason: str | None = None
    overdue_amount: int | None = None
    route: Literal["court", "inkasso"] | None = None
    route_offered: str | None = None
    missing: list[str] | None = Field(
        default=None, description="address_required: the missing address fields"
    )
    reminder: int | None = Field(default=None, description="approval reminders so far")
    waiting_since: str | None = None


class HandedOffData(_Data):
    case: int
    route: Literal["court", "inkasso"]
    overdue_amount: int
    principal: int
    fees: int
    claim: ClaimParts | None = None
    installments: list[int] | None = Field(
        default=None, description="the installments handed off (docs/collection.md)"
    )
    on_default: str | None = Field(
        default=None,
        examples=["keep_schedule"],
        description="what the policy does with the installments not yet due",
    )


class WrittenOffData(_Data):
    case: int
    amount: int
    principal: int
    reason: str | None = None
    claim: ClaimParts | None = None
    installments: list[int] | None = Field(default=None, description="those written off")
    on_default: str | None = None


class CallInData(_Data):
    """The rest of the plan is called in (§ 498 BGB for consumers; docs/collection.md)."""

    case: int
    installments: list[int] = Field(description="noticed: not yet due; called in: those called")
    arrears: int | None = Field(default=None, description="noticed: the claim in arrears")
    arrears_installments: list[int] | None = None
    remainder: int | None = Field(default=None, description="noticed: what falls due if unpaid")
    deadline: str | None = Field(default=None, description="the last day to pay the arrears")
    principal: int | None = Field(default=None, description="called in: principal called in")
    basis: str | None = None


class CaseData(_Data):
    """The case at the collection partner (docs/collection.md): closed (paid in full),
    recalled by an admin, or a status the partner or the court reported."""

    case: int
    route: Literal["court", "inkasso"] | None = None
    reason: str | None = None
    status: Literal["objection", "enforcement_order", "title", "uncollectible"] | None = None
    on: str | None = Field(default=None, description="case-status: the ISO date it happened")
    reference: str | None = None
    installments: list[int] | None = None
    overdue_amount: int | None = None


class DeliveryFailedData(_Data):
    """A round of delivering a case file or message to the collection partner failed: it is
    tried again at `retry_at` (1 h doubling up to a day) until it succeeds."""

    what: str = Field(examples=["case file 0", "case.payment"])
    key: str
    round: int
    error: str
    retry_at: str


class CompletedData(_Data):
    paid_total: int


class CancelledData(_Data):
    effective_at: str | None = None
    paid_total: int | None = None
    reason: str | None = Field(default=None, examples=["refunded"])
    refunded_total: int | None = None


class RefundData(_Data):
    installment: int
    amount: int
    refunded_total: int
    payment_intent: str | None = None
    source: str = Field(examples=["stripe"])


class NoticeData(_Data):
    stage: str = Field(examples=["mahnung_1", "sepa_prenotification_3_1"])
    template: str | None = None
    error: str | None = None
    attempt: int | None = None
    attempts: int | None = None
    permanent: bool | None = None
    retry_at: str | None = None
    ladder_held: Any = None
    failed_at: str | None = None


class InstallmentEndedData(_Data):
    """How an installment ended when not simply paid (issue 12): `cancelled` (a withdrawal,
    a cancellation, `stop` at a write-off), `handed_off`, `written_off`, `refunded`."""

    installment: int
    how: str = Field(examples=["cancelled", "handed_off", "written_off", "refunded"])
    reason: str | None = Field(default=None, examples=["withdrawal"])
    amount: int | None = Field(default=None, description="the installment's amount")
    outstanding: int | None = Field(default=None, description="what was open when it ended")
    due_at: str | None = None
    case: int | None = None


class RefundRequiredData(_Data):
    """A refund Mahnwerk cannot make through Stripe (the money came by bank transfer, or
    Stripe refused a part): the seller transfers it."""

    installment: int
    amount: int
    reason: str | None = Field(default=None, examples=["withdrawal"])
    why: str | None = None


class MessageFailedData(_Data):
    kind: str = Field(examples=["payment_failed", "plan_completed"])
    stage: str
    error: str | None = None


class InvoiceData(_Data):
    """An invoice or credit note was issued (docs/invoices.md); fetch the document with
    `GET /v1/invoices/{number}`."""

    number: str = Field(examples=["RE-2026-000001"])
    kind: str = Field(examples=["invoice", "credit_note"])
    installment: int | None = None
    issue_date: str = Field(description="ISO date (Europe/Berlin)")
    currency: str = Field(examples=["eur"])
    net: int
    tax: int
    gross: int
    refers_to: str | None = Field(default=None, description="a credit note: the invoice")
    seller_id: str | None = None


class ResidualData(_Data):
    case: int
    amount: int
    interest: int | None = None
    fees: int | None = None
    costs: int | None = None
    lump_sums: int | None = None
    threshold: int | None = None
    deadline: str | None = None
    reason: str | None = None


# event type → (data model, what it means)
EVENTS: dict[str, tuple[type[_Data], str]] = {
    "access.granted": (AccessData, "The customer may use the product (paid, or SEPA submitted)."),
    "access.locked": (
        AccessData,
        "Access locked by the dunning ladder, or revoked (`reason`) after a full refund.",
    ),
    "access.unlocked": (AccessData, "The dunning case ended (paid, deferred): access back."),
    "payment.succeeded": (
        PaymentSucceededData,
        "Money arrived: a debit, a settlement, a won dispute.",
    ),
    "payment.failed": (PaymentFailedData, "A debit failed, was returned or disputed."),
    "payment_method.required": (
        PaymentMethodRequiredData,
        "No more retries with this method (hard decline, inactive mandate): ask for a new one.",
    ),
    "payment.stalled": (StallData, "Stripe unreachable through every retry: the debit waits."),
    "payment.poll_failed": (StallData, "A processing debit's status could not be read: retried."),
    "integration.error": (StallData, "Stripe refused our request (400/401/403/404): ours to fix."),
    "installment.stalled": (
        StallData,
        "The installment waits for the integration error to be fixed (`retry-debit`).",
    ),
    "dunning.stage_changed": (StageChangedData, "The dunning case moved to another stage."),
    "handoff.approval_required": (
        HandoffData,
        "The hand-off waits for an admin's approval (`approve-handoff`); repeated as reminders.",
    ),
    "handoff.address_required": (
        HandoffData,
        "A court hand-off needs the debtor's postal address (`POST …/address`).",
    ),
    "contract.handed_off": (HandedOffData, "Handed to the court procedure or Inkasso."),
    "contract.written_off": (WrittenOffData, "The claim was written off."),
    "contract.completed": (CompletedData, "Everything was paid."),
    "contract.cancelled": (CancelledData, "Cancelled (subscription ended, refunded purchase)."),
    "refund.created": (RefundData, "A refund made in Stripe was recorded."),
    "installment.ended": (InstallmentEndedData, "An installment ended other than paid."),
    "refund.required": (
        RefundRequiredData,
        "A refund the seller must make outside Stripe (bank transfer, refused by Stripe).",
    ),
    "message.failed": (
        MessageFailedData,
        "A customer message (payment received, plan completed, …) could not be sent.",
    ),
    "invoice.issued": (InvoiceData, "An invoice was issued (installment, period, purchase)."),
    "credit_note.issued": (InvoiceData, "A credit note was issued (refund, withdrawal)."),
    "call_in.noticed": (
        CallInData,
        "The § 498 BGB notice went out: pay the arrears in two weeks or the rest falls due.",
    ),
    "contract.called_in": (CallInData, "The rest of the plan fell due and joined the case."),
    "case.closed": (CaseData, "The claim handed off was paid in full: the case is closed."),
    "case.recalled": (CaseData, "An admin recalled the case from the collection partner."),
    "case.status_changed": (CaseData, "The partner or the court reported a case status."),
    "collection.delivery_failed": (
        DeliveryFailedData,
        "A case file or message did not reach the collection partner: retried.",
    ),
    "notice.failed": (NoticeData, "A notice could not be delivered (retried unless permanent)."),
    "notice.delivered_late": (NoticeData, "A notice that had failed was delivered after all."),
    "claim.residual_claimed": (
        ResidualData,
        "Principal paid, interest/fees still open: a final notice claims them.",
    ),
    "claim.residual_unpaid": (ResidualData, "The residual claim's deadline passed unpaid."),
    "claim.residual_written_off": (ResidualData, "The residual claim was written off."),
}

_SIGNATURE_HEADERS = """
Headers of every delivery (verify one of the two signatures, then de-duplicate by `id`):

- `Mahnwerk-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` with MAHNWERK_EVENTS_SECRET;
  `Mahnwerk-Event-Id` = `id`.
- Standard Webhooks (https://www.standardwebhooks.com): `webhook-id` (= `id`),
  `webhook-timestamp` (unix seconds), `webhook-signature: v1,<base64 HMAC-SHA256 of
  "webhook-id.webhook-timestamp.body">`; verify with any Standard Webhooks library and the
  secret `whsec_…` that `mahnwerk events-secret` prints (docs/events.md).

Answer 2xx to acknowledge; anything else (or no answer within 10 s) is retried with backoff
(2 s doubling to 5 min), in order per contract.
"""


def _envelope(event_type: str, data: type[_Data], meaning: str) -> type[BaseModel]:
    name = "".join(p.capitalize() for p in event_type.replace(".", "_").split("_")) + "Event"
    fields: dict[str, Any] = {
        "id": (str, Field(description="unique; de-duplicate by it", examples=["evt_3f2c…"])),
        "type": (Literal[event_type], Field(description=meaning)),  # type: ignore[valid-type]
        "created": (str, Field(description="RFC 3339, UTC: when it happened")),
        "contract_id": (str, Field(examples=["ord-2026-0001"])),
        "seller_id": (
            str,
            Field(
                description="the contract's seller (docs/sellers.md); `default` for the "
                "deployment's own",
                examples=["default"],
            ),
        ),
        "customer_id": (str, Field(examples=["cus-42"])),
        "product_id": (str, Field(examples=["course-x"])),
        "data": (data, ...),
    }
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        name,
        __config__=ConfigDict(extra="allow"),
        __doc__=f"`{event_type}`: {meaning}",
        **fields,
    )
    return model


EVENT_MODELS: dict[str, type[BaseModel]] = {
    t: _envelope(t, data, meaning) for t, (data, meaning) in EVENTS.items()
}


def _webhook(app: FastAPI, event_type: str, model: type[BaseModel], meaning: str) -> None:
    async def receive(
        body: model,  # type: ignore[valid-type]
        mahnwerk_signature: Annotated[str, Header(alias="Mahnwerk-Signature")],
        mahnwerk_event_id: Annotated[str, Header(alias="Mahnwerk-Event-Id")],
        webhook_id: Annotated[str, Header(alias="webhook-id")],
        webhook_timestamp: Annotated[str, Header(alias="webhook-timestamp")],
        webhook_signature: Annotated[str, Header(alias="webhook-signature")],
    ) -> None: ...

    receive.__annotations__["body"] = model  # a local name: not resolvable from its string
    app.webhooks.post(
        event_type,
        summary=event_type,
        description=f"{meaning}\n{_SIGNATURE_HEADERS}",
        tags=["events"],
        operation_id=f"event_{event_type.replace('.', '_')}",
        status_code=204,
        responses={
            200: {"description": "Acknowledged (any 2xx)"},
            204: {"description": "Acknowledged (any 2xx)"},
        },
    )(receive)


def install(app: FastAPI) -> None:
    for event_type, model in EVENT_MODELS.items():
        _webhook(app, event_type, model, EVENTS[event_type][1])
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI documents a 422 for every operation with a body; a webhook's receiver is
        # the platform, whose answers we do not prescribe beyond "2xx acknowledges".
        schema = generate()
        for item in schema.get("webhooks", {}).values():
            for op in item.values():
                op["responses"].pop("422", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
