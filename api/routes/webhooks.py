"""POST /v1/webhooks/stripe: Stripe's events, verified, each processed once.

Stripe delivers at least once and in any order (DOMAIN.md §5), so: verify the signature
on the raw body, acknowledge the event types we do not act on at once (no database work),
skip event ids already processed, map the PaymentIntent to its contract (metadata, or the
attempts ledger for PaymentIntents the platform created), and signal the workflow, which
ignores outcomes it already knows.

**Sellers (issue 14).** An event only ever reaches contracts of the sellers whose Stripe
account it happened on — its *scope*: a Connect event (signed with
STRIPE_CONNECT_WEBHOOK_SECRET or STRIPE_WEBHOOK_SECRET, carrying `account`) the sellers on
that connected account; an event of the platform's own account (no `account`) the sellers
without an account of their own (the default seller among them); an event posted to
`/v1/webhooks/stripe/sellers/{id}` (signed with that seller's own secret) that seller.
A seller controls its own Stripe account and can make it send any event, with any
metadata: without the scope, a `payment_intent.succeeded` of account B naming a contract of
seller A in its metadata would mark A's debit paid.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace
from typing import Any

import stripe
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.deps import StateDep, TemporalDep
from api.errors import ApiError
from api.responses import StripeWebhookOut
from core.db import transaction
from core.models import Contract, PaymentAttempt, WebhookEvent
from core.sellers import SELLER_ID, SellerConfigError, resolve_secret
from workflows.base import FINAL
from workflows.types import (
    ActionResult,
    MandateUpdate,
    PaymentMethodRequest,
    PaymentUpdate,
    RefundInfo,
    SettlementRequest,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_OUTCOMES = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    # A PaymentIntent canceled while we watch it (a platform's checkout intent abandoned,
    # or canceled in the Dashboard): it will never succeed.
    "payment_intent.canceled": "failed",
}
_CARD_UPDATED = "payment_method.automatically_updated"
_ATTACHED = "payment_method.attached"
_CUSTOMER_UPDATED = "customer.updated"
_DISPUTE = "charge.dispute.created"
# A dispute decided: `won` gives the money back (Stripe also sends
# `charge.dispute.funds_reinstated`); `lost` keeps it reclaimed (already so since `created`).
_DISPUTE_CLOSED = "charge.dispute.closed"
_DISPUTE_REINSTATED = "charge.dispute.funds_reinstated"
# A refund made at Stripe (the Dashboard, or the platform): the charge's `amount_refunded`.
_REFUNDED = "charge.refunded"
# A SEPA mandate changed status: `inactive` (revoked by the debtor) stops debits.
_MANDATE = "mandate.updated"
# The payment page's Checkout Sessions (issue 16): a payment of the claim (mode `payment`;
# SEPA pays later: `async_payment_succeeded`), or a new payment method only (mode `setup`).
_CHECKOUT_COMPLETED = "checkout.session.completed"
_CHECKOUT_ASYNC_PAID = "checkout.session.async_payment_succeeded"
_CHECKOUT_MARK = "mahnwerk_checkout"  # metadata of the page's sessions and their intents
# The event types we act on. Everything else (Stripe sends `payment_intent.created` and
# `charge.succeeded` with every card debit, two of its three events) is acknowledged at once,
# before any database work: nothing to de-duplicate when nothing is done.
HANDLED = frozenset(
    {
        *_OUTCOMES,
        _CARD_UPDATED,
        _ATTACHED,
        _CUSTOMER_UPDATED,
        _DISPUTE,
        _DISPUTE_CLOSED,
        _DISPUTE_REINSTATED,
        _REFUNDED,
        _MANDATE,
        _CHECKOUT_COMPLETED,
        _CHECKOUT_ASYNC_PAID,
    }
)


def _new_default_method(data: dict[str, Any]) -> str | None:
    """`customer.updated` that changed the customer's default payment method: the new one."""
    previous = data.get("previous_attributes") or {}
    if not isinstance(previous, dict) or "invoice_settings" not in previous:
        return None
    new = ((data.get("object") or {}).get("invoice_settings") or {}).get("default_payment_method")
    old = (previous.get("invoice_settings") or {}).get("default_payment_method")
    return new if isinstance(new, str) and new and new != old else None


def _failure_code(pi: dict[str, Any]) -> str | None:
    err = pi.get("last_payment_error") or {}
    return err.get("decline_code") or err.get("code")


@dataclass(frozen=True)
class Source:
    """Where an event comes from: the sellers it may touch, and how to ask Stripe more."""

    sellers: tuple[str, ...] | None  # None: those of `account` (looked up when needed)
    api_key: str | None = None  # None: the platform's key
    account: str | None = None  # Connect: the connected account

    @property
    def scope(self) -> tuple[str, ...]:
        assert self.sellers is not None
        return self.sellers


def _verify(payload: bytes, header: str | None, secrets: list[str], tolerance: int) -> Any:
    """The event, if one of `secrets` signed it (400 otherwise)."""
    for n, secret in enumerate(secrets):
        try:
            return stripe.Webhook.construct_event(
                payload.decode("utf-8"), header, secret, tolerance=tolerance
            )
        except stripe.SignatureVerificationError:
            if n == len(secrets) - 1:
                raise ApiError(
                    400, "bad_signature", "Stripe-Signature verification failed"
                ) from None
        except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
            # AttributeError/TypeError: signed JSON that is no object (`[]`, `null`, …); the
            # Stripe library assumes a dict and raised them, which answered 500.
            raise ApiError(400, "bad_request", "body is not a JSON Stripe event") from None
    raise ApiError(400, "bad_signature", "Stripe-Signature verification failed")


@router.post(
    "/stripe",
    summary="Stripe webhook endpoint (signature-verified)",
    response_model=StripeWebhookOut,
    response_model_exclude_unset=True,
)
async def stripe_webhook(request: Request, state: StateDep, client: TemporalDep) -> dict[str, Any]:
    """The platform's endpoint: its own account's events and, signed with the Connect
    endpoint's secret or its own, the events of connected accounts (`account`)."""
    settings = state.settings
    secrets = [settings.stripe_webhook_secret.get_secret_value()]
    if settings.stripe_connect_webhook_secret is not None:
        secrets.append(settings.stripe_connect_webhook_secret.get_secret_value())
    event = _verify(
        await request.body(),
        request.headers.get("stripe-signature"),
        secrets,
        settings.stripe_webhook_tolerance,
    )
    account = event.to_dict().get("account")
    if account is not None and (not isinstance(account, str) or not account.startswith("acct_")):
        raise ApiError(400, "bad_request", "`account` of the event is not an account id")
    return await _process(state, client, event, Source(None, account=account))


@router.post(
    "/stripe/sellers/{seller_id}",
    summary="Stripe webhook endpoint of a seller with its own Stripe account",
    response_model=StripeWebhookOut,
    response_model_exclude_unset=True,
)
async def seller_stripe_webhook(
    seller_id: str, request: Request, state: StateDep, client: TemporalDep
) -> dict[str, Any]:
    """For a seller with its own Stripe key (no Connect): its account's endpoint, signed
    with the secret its `stripe_webhook_secret_ref` names. Its events touch its contracts
    only."""
    seller = None
    if re.fullmatch(SELLER_ID, seller_id):  # never a NUL or such into the database
        seller = await run_in_threadpool(state.sellers().get, seller_id)
    if seller is None or not seller.stripe_api_key_ref or not seller.stripe_webhook_secret_ref:
        # Nobody can sign for it: the same answer as a wrong signature (ids do not leak).
        raise ApiError(400, "bad_signature", "Stripe-Signature verification failed")
    try:
        secret = resolve_secret(seller.stripe_webhook_secret_ref)
        api_key = resolve_secret(seller.stripe_api_key_ref)
    except SellerConfigError as exc:
        # Not recorded: Stripe redelivers once the variable is set.
        raise ApiError(503, "unavailable", f"seller {seller_id}: {exc}") from None
    event = _verify(
        await request.body(),
        request.headers.get("stripe-signature"),
        [secret],
        state.settings.stripe_webhook_tolerance,
    )
    return await _process(state, client, event, Source((seller.id,), api_key=api_key))


async def _process(
    state: StateDep, client: TemporalDep, event: Any, source: Source
) -> dict[str, Any]:
    raw = event.to_dict()
    event_id, event_type = raw.get("id"), raw.get("type")
    data = raw.get("data")
    if (
        not isinstance(event_id, str)
        or not event_id
        or not isinstance(event_type, str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        # Signed, but no event: without these checks a KeyError (500) below.
        raise ApiError(400, "bad_request", "body is not a Stripe event (id, type, data.object)")
    if event_type not in HANDLED or (
        event_type == _CUSTOMER_UPDATED and _new_default_method(data) is None
    ):
        return {"received": True, "duplicate": False, "ignored": True}
    # The database work runs in the threadpool: the driver is synchronous and would block
    # the event loop (and every other request) for each round trip.
    if await run_in_threadpool(_seen, state, event_id):
        return {"received": True, "duplicate": True}
    if source.sellers is None:
        found = await run_in_threadpool(state.sellers().for_source, source.account or "platform")
        source = replace(source, sellers=tuple(found))

    outcome = _OUTCOMES.get(event_type)
    if outcome is not None and _CHECKOUT_MARK in (data["object"].get("metadata") or {}):
        # A payment of the payment page: not one of the contract's debits. Succeeded, it is
        # recorded as the checkout session's settlement (once, whichever event comes
        # first); failed, the claim simply stays open.
        pi = event["data"]["object"].to_dict()
        if outcome == "succeeded":
            await _checkout_paid(state, client, source, event_id, pi)
    elif outcome is not None:
        pi = event["data"]["object"].to_dict()
        await _signal_outcome(state, client, source, event_id, pi, outcome)
    elif event_type in (_CHECKOUT_COMPLETED, _CHECKOUT_ASYNC_PAID):
        session = event["data"]["object"].to_dict()
        await _checkout_session(state, client, source, event_id, session)
    elif event_type == _CARD_UPDATED:
        # The card network updated the card (new expiry or number): debit the open amounts
        # of the customer's contracts in dunning again at once.
        pm = event["data"]["object"].to_dict()
        await _signal_new_method(state, client, source, pm.get("id") or "", pm.get("customer"))
    elif event_type == _ATTACHED:
        # A method attached is not yet the one to use: only the customer's *default* is.
        # Usually it becomes the default later (customer.updated, below); if it already is
        # (attached and made default in one step), act now.
        pm = event["data"]["object"].to_dict()
        pm_id, customer = pm.get("id") or "", pm.get("customer")
        if pm_id and customer:
            if await run_in_threadpool(_is_default, state, source, pm_id, customer):
                await _signal_new_method(state, client, source, pm_id, customer)
    elif event_type == _CUSTOMER_UPDATED:
        cus = event["data"]["object"].to_dict()
        new_method = _new_default_method(data) or ""
        await _signal_new_method(state, client, source, new_method, cus.get("id"))
    elif event_type == _DISPUTE:
        # A SEPA refund by the debtor's bank or a card dispute: the money is gone again.
        dispute = event["data"]["object"].to_dict()
        pi_id = dispute.get("payment_intent") or ""
        await _signal_outcome(
            state,
            client,
            source,
            event_id,
            {"id": pi_id, "metadata": {}},
            "disputed",
            code=dispute.get("reason") or "debit_disputed",
            amount=int(dispute.get("amount") or 0),
        )

    elif event_type in (_DISPUTE_CLOSED, _DISPUTE_REINSTATED):
        dispute = event["data"]["object"].to_dict()
        won = event_type == _DISPUTE_REINSTATED or dispute.get("status") == "won"
        lost = event_type == _DISPUTE_CLOSED and dispute.get("status") == "lost"
        if won or lost:
            await _signal_outcome(
                state,
                client,
                source,
                event_id,
                {"id": dispute.get("payment_intent") or "", "metadata": {}},
                "dispute_won" if won else "dispute_lost",
                code=dispute.get("reason"),
                amount=int(dispute.get("amount") or 0),
                dispute=dispute.get("id"),
            )
    elif event_type == _REFUNDED:
        charge = event["data"]["object"].to_dict()
        pi_id = charge.get("payment_intent") or ""
        # Each refund by its id (issue 12): the workflow records a refund once, whether it
        # made it itself (metadata `mahnwerk_refund`) or it was made at Stripe.
        refunds = await run_in_threadpool(_refunds_of, state, source, pi_id, charge)
        await _signal_outcome(
            state,
            client,
            source,
            event_id,
            {"id": pi_id, "metadata": charge.get("metadata") or {}},
            "refunded",
            amount=int(charge.get("amount_refunded") or 0),
            refunds=refunds,
        )
    elif event_type == _MANDATE:
        mandate = event["data"]["object"].to_dict()
        await _signal_mandate(state, client, source, event_id, mandate)

    await run_in_threadpool(_mark_processed, state, event_id, event_type)
    return {"received": True, "duplicate": False}


def _is_default(state: StateDep, source: Source, pm_id: str, customer: str) -> bool:
    try:
        stripe_client = state.stripe(api_key=source.api_key, account=source.account)
        cus = stripe_client.v1.customers.retrieve(customer)
    except stripe.InvalidRequestError:
        return False  # the customer is gone: nothing to debit
    except stripe.StripeError as exc:
        # Not recorded as processed: Stripe redelivers and we ask again.
        raise ApiError(503, "unavailable", f"Stripe: {exc}") from None
    settings = getattr(cus, "invoice_settings", None)
    return getattr(settings, "default_payment_method", None) == pm_id


def _refunds_of(
    state: StateDep, source: Source, pi_id: str, charge: dict[str, Any]
) -> list[RefundInfo]:
    """The charge's refunds: from the event when it carries them (API versions before
    2022-11-15 embed `refunds`), else listed at Stripe (`GET /v1/refunds?payment_intent=`).
    Stripe away: 503, not recorded as processed, so Stripe redelivers."""
    embedded = (charge.get("refunds") or {}).get("data") if isinstance(charge, dict) else None
    if isinstance(embedded, list) and embedded:
        rows: list[Any] = embedded
    elif not pi_id:
        return []
    else:
        try:
            # on the account the event came from (issue 14)
            stripe_client = state.stripe(api_key=source.api_key, account=source.account)
            page = stripe_client.v1.refunds.list(params={"payment_intent": pi_id, "limit": 100})
        except stripe.InvalidRequestError:
            return []  # unknown to Stripe: the charge's cumulative amount is all there is
        except stripe.StripeError as exc:
            raise ApiError(503, "unavailable", f"Stripe: {exc}") from None
        rows = [r.to_dict() for r in page.data]
    out = []
    for r in rows:
        metadata = r.get("metadata") or {}
        out.append(
            RefundInfo(
                id=str(r.get("id") or ""),
                amount=int(r.get("amount") or 0),
                status=str(r.get("status") or "succeeded"),
                reason=str(r.get("reason") or ""),
                ref=str(metadata.get("mahnwerk_refund") or ""),
            )
        )
    return [r for r in out if r.id]


def _seen(state: StateDep, event_id: str) -> bool:
    with state.sessions() as s:
        return s.get(WebhookEvent, event_id) is not None


def _mark_processed(state: StateDep, event_id: str, event_type: str) -> None:
    try:
        with transaction(state.sessions) as s:
            s.add(WebhookEvent(id=event_id, type=event_type))
    except IntegrityError:
        pass  # a concurrent delivery of the same event: the workflow de-duplicates too


def _contract_of(
    state: StateDep, sellers: tuple[str, ...], pi_id: str, contract_id: str | None, outcome: str
) -> tuple[Contract | None, bool, bool]:
    """The contract a PaymentIntent belongs to (None: unknown, or a contract of a seller
    outside the event's scope), whether its workflow already knows the outcome (a card debit
    the charge activity settled synchronously), and whether the PaymentIntent is none of
    ours (no attempt: the platform's, by metadata)."""
    with state.sessions() as s:
        attempt = s.scalar(
            select(PaymentAttempt)
            .join(Contract, Contract.id == PaymentAttempt.contract_id)
            .where(PaymentAttempt.payment_intent == pi_id, Contract.seller_id.in_(sellers))
            .limit(1)
        )
        if attempt is not None:
            final = attempt.status in ("succeeded", "declined") and attempt.attempt > 0
            # Only a debit's own outcome can be known already; what happens to a settled
            # payment later (disputes, refunds) is always news to the workflow.
            if final and outcome in ("succeeded", "failed"):
                return None, True, False  # settled synchronously (cards): the workflow knows
            contract_id = attempt.contract_id
        contract = s.get(Contract, contract_id) if contract_id else None
        if contract is not None and contract.seller_id not in sellers:
            return None, False, False  # another seller's contract: never from this account
        return contract, False, attempt is None


# A card debit's outcome reaches us twice: as the answer to the charge activity's request
# (which the workflow acts on) and as Stripe's webhook, which often arrives first, while the
# activity is still writing the answer to the ledger. Signalled then, it cost the workflow a
# task of its own to learn nothing (issue 17: 31 of 50 workflows in a due wave). So a
# webhook for an attempt still `submitting` waits for the ledger, briefly: once the activity
# recorded a final outcome the workflow knows it; still in flight after the wait (the
# activity slow or gone), the signal goes as before — it is never lost, only not repeated.
IN_FLIGHT_WAITS = (0.02, 0.04, 0.08, 0.15, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5)  # seconds: ~3 s


def _attempt_status(state: StateDep, idempotency_key: str) -> str | None:
    with state.sessions() as s:
        return s.scalar(
            select(PaymentAttempt.status).where(PaymentAttempt.idempotency_key == idempotency_key)
        )


async def _await_recorded(state: StateDep, idempotency_key: str) -> None:
    """Wait (up to ~3 s) while the charge activity of this key has not recorded its answer."""
    for pause in IN_FLIGHT_WAITS:
        status = await run_in_threadpool(_attempt_status, state, idempotency_key)
        if status != "submitting":
            return
        await asyncio.sleep(pause)


async def _signal_outcome(
    state: StateDep,
    client: Any,
    source: Source,
    event_id: str,
    pi: dict[str, Any],
    outcome: str,
    *,
    code: str | None = None,
    amount: int = 0,
    dispute: str | None = None,
    refunds: list[RefundInfo] | None = None,
) -> None:
    pi_id = pi.get("id", "")
    contract_id = (pi.get("metadata") or {}).get("contract_id")
    key = (pi.get("metadata") or {}).get("idempotency_key")
    if key and outcome in ("succeeded", "failed"):
        await _await_recorded(state, str(key))
    contract, settled, external = await run_in_threadpool(
        _contract_of, state, source.scope, pi_id, contract_id, outcome
    )
    if settled:
        return
    if contract is None:
        log.info("webhook %s for unknown PaymentIntent %s ignored", event_id, pi_id)
        return
    if outcome == "succeeded" and external:
        # issue 12: the customer paid through a PaymentIntent the platform created for the
        # contract (metadata.contract_id): a payment of the claim, for what was received.
        amount = int(pi.get("amount_received") or 0)
    update = PaymentUpdate(
        event_id=event_id,
        payment_intent=pi_id,
        status=outcome,
        code=code or (_failure_code(pi) if outcome == "failed" else None),
        amount=amount,
        dispute=dispute,
        refunds=list(refunds or []),
        external=outcome == "succeeded" and external,
    )
    try:
        await client.get_workflow_handle(contract.workflow_id).signal("payment_update", update)
    except RPCError as exc:
        if "already completed" in str(exc).lower() or "not found" in str(exc).lower():
            # A contract keeps listening 13 months after its last payment (the SEPA
            # limit for unauthorised debits); anything later needs a human.
            log.warning(
                "webhook %s (%s of %s): contract %s no longer running; not applied",
                event_id,
                outcome,
                pi_id,
                contract.id,
            )
            return
        # Not recorded as processed: Stripe redelivers and we try again.
        raise ApiError(503, "unavailable", f"Temporal: {exc}") from None


async def _signal_new_method(
    state: StateDep,
    client: Any,
    source: Source,
    payment_method: str,
    stripe_customer: str | None,
) -> None:
    if not payment_method or not stripe_customer:
        return
    workflow_ids = await run_in_threadpool(_in_dunning, state, source.scope, stripe_customer)
    req = PaymentMethodRequest(payment_method=payment_method, actor="stripe")
    await _signal_each(client, workflow_ids, "payment_method_updated", req)


async def _signal_each(client: Any, workflow_ids: list[str], signal: str, arg: Any) -> None:
    """Signal every running one; a workflow that has ended meanwhile is skipped. Temporal
    away: 503, not recorded as processed, so Stripe redelivers and we try again."""
    for wf_id in workflow_ids:
        try:
            await client.get_workflow_handle(wf_id).signal(signal, arg)
        except RPCError as exc:
            if "already completed" in str(exc).lower() or "not found" in str(exc).lower():
                continue
            raise ApiError(503, "unavailable", f"Temporal: {exc}") from None


def _in_dunning(state: StateDep, sellers: tuple[str, ...], stripe_customer: str) -> list[str]:
    with state.sessions() as s:
        return list(
            s.scalars(
                select(Contract.workflow_id).where(
                    Contract.payment["stripe_customer"].as_string() == stripe_customer,
                    Contract.status == "in_dunning",
                    Contract.seller_id.in_(sellers),
                )
            )
        )


async def _signal_mandate(
    state: StateDep, client: Any, source: Source, event_id: str, mandate: dict[str, Any]
) -> None:
    """Tell every running contract debiting with the mandate's payment method."""
    mandate_id, status = mandate.get("id") or "", mandate.get("status") or ""
    pm = mandate.get("payment_method")
    pm_id = pm if isinstance(pm, str) else (pm or {}).get("id")
    if not mandate_id or not status or not pm_id:
        return
    workflow_ids = await run_in_threadpool(_using_method, state, source.scope, pm_id)
    update = MandateUpdate(
        event_id=event_id, mandate=mandate_id, status=status, payment_method=pm_id
    )
    await _signal_each(client, workflow_ids, "mandate_updated", update)


def _using_method(state: StateDep, sellers: tuple[str, ...], payment_method: str) -> list[str]:
    with state.sessions() as s:
        return list(
            s.scalars(
                select(Contract.workflow_id).where(
                    Contract.payment["payment_method"].as_string() == payment_method,
                    Contract.status.not_in(FINAL),
                    Contract.seller_id.in_(sellers),
                )
            )
        )


# -- the payment page's Checkout Sessions (issue 16) ------------------------------------------


def _page_contract(state: StateDep, sellers: tuple[str, ...], metadata: Any) -> Contract | None:
    """The contract a payment-page session or intent names, if it is in the event's scope."""
    if not isinstance(metadata, dict) or _CHECKOUT_MARK not in metadata:
        return None  # not the payment page's: another integration's Checkout
    contract_id = metadata.get("contract_id")
    if not isinstance(contract_id, str) or not contract_id:
        return None
    with state.sessions() as s:
        contract = s.get(Contract, contract_id)
        if contract is None or contract.seller_id not in sellers:
            return None
        return contract


def _retrieve(state: StateDep, source: Source, kind: str, obj_id: str) -> dict[str, Any]:
    """A PaymentIntent or SetupIntent the event names, from the account it came from.
    Stripe away: 503, not recorded as processed, so Stripe redelivers."""
    try:
        stripe_client = state.stripe(api_key=source.api_key, account=source.account)
        service = getattr(stripe_client.v1, kind)
        found: dict[str, Any] = service.retrieve(obj_id).to_dict()
        return found
    except stripe.StripeError as exc:
        raise ApiError(503, "unavailable", f"Stripe: {exc}") from None


def _id_of(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


async def _checkout_session(
    state: StateDep, client: Any, source: Source, event_id: str, session: dict[str, Any]
) -> None:
    """`checkout.session.completed` / `…async_payment_succeeded` of the payment page.

    Mode `payment`, paid: the payment is recorded (`_checkout_paid`). Paid later (SEPA:
    `payment_status` `unpaid` at completion): nothing yet; the PaymentIntent's success or
    `async_payment_succeeded` records it. Mode `setup`: the new method becomes the
    contract's (the `payment_method_updated` signal, as for a new default method at
    Stripe), which debits what is open with it."""
    contract = await run_in_threadpool(_page_contract, state, source.scope, session.get("metadata"))
    if contract is None:
        log.info(
            "webhook %s: checkout session %s is not the payment page's", event_id, session.get("id")
        )
        return
    if session.get("mode") == "setup":
        si_id = _id_of(session.get("setup_intent"))
        if not si_id:
            return
        si = await run_in_threadpool(_retrieve, state, source, "setup_intents", si_id)
        if si.get("status") != "succeeded":
            return
        method = _id_of(si.get("payment_method"))
        if method:
            req = PaymentMethodRequest(payment_method=method, actor="customer")
            await _signal_each(client, [contract.workflow_id], "payment_method_updated", req)
        return
    if session.get("payment_status") != "paid":
        return  # SEPA: processing; its success comes as its own event
    pi_id = _id_of(session.get("payment_intent"))
    if not pi_id:
        return
    pi = await run_in_threadpool(_retrieve, state, source, "payment_intents", pi_id)
    await _checkout_paid(state, client, source, event_id, pi)


async def _checkout_paid(
    state: StateDep, client: Any, source: Source, event_id: str, pi: dict[str, Any]
) -> None:
    """Record a payment made on the payment page as a settlement of the contract (allocated
    by §§ 366, 367 BGB like any payment received), then make its saved method the
    contract's (`payment_method_updated`).

    Once per PaymentIntent: the settlement carries `checkout:<pi>` as its request id and
    Update id, so `checkout.session.completed`, `async_payment_succeeded` and
    `payment_intent.succeeded` of the same payment, in any order and redelivered, record
    it once (the workflow remembers the applied id, Temporal the Update id)."""
    pi_id = _id_of(pi.get("id"))
    if pi.get("status") != "succeeded" or not pi_id:
        return
    contract = await run_in_threadpool(_page_contract, state, source.scope, pi.get("metadata"))
    if contract is None:
        log.info("webhook %s: PaymentIntent %s is not the payment page's", event_id, pi_id)
        return
    amount = int(pi.get("amount_received") or pi.get("amount") or 0)
    ref = f"checkout:{pi_id}"
    req = SettlementRequest(
        amount=amount, method="stripe", reference=pi_id, actor="customer", request_id=ref
    )
    handle = client.get_workflow_handle(contract.workflow_id)
    try:
        await handle.execute_update("settle", req, id=ref, result_type=ActionResult)
    except WorkflowUpdateFailedError as exc:
        # Refused (the contract ended meanwhile, or was paid otherwise so this exceeds what
        # is payable): the money is at Stripe and must be handled by a person — never
        # dropped silently, never retried into a loop.
        log.error(
            "payment page: %s of %s for contract %s (PaymentIntent %s) not recorded: %s; "
            "refund or record it by hand",
            amount,
            pi.get("currency"),
            contract.id,
            pi_id,
            exc.cause or exc,
        )
        return
    except RPCError as exc:
        if "already completed" in str(exc).lower() or "not found" in str(exc).lower():
            log.error(
                "payment page: contract %s no longer running; payment %s (%s) not recorded",
                contract.id,
                pi_id,
                amount,
            )
            return
        raise ApiError(503, "unavailable", f"Temporal: {exc}") from None
    method = _id_of(pi.get("payment_method"))
    if method and method != (contract.payment or {}).get("payment_method"):
        # saved with setup_future_usage: the method for the installments still to come
        req_pm = PaymentMethodRequest(payment_method=method, actor="customer")
        await _signal_each(client, [contract.workflow_id], "payment_method_updated", req_pm)
