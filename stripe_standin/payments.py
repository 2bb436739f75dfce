"""PaymentIntents and what happens when they are confirmed.

Cards settle at once: succeeded, or a 402 `card_error` whose body carries the PaymentIntent
(now `requires_payment_method`, `last_payment_error` set, `payment_method` unset) exactly as
Stripe answers an off-session decline. SEPA debits go `processing` and settle later on a
timer (`sepa_delay`), then send `payment_intent.succeeded` or `payment_intent.payment_failed`;
the dispute IBAN opens a dispute after `dispute_delay` more seconds.
"""

from __future__ import annotations

import re

from . import objects
from .customers import get_customer, resolve_payment_method
from .engine import NO_REQUEST, Engine, RequestRef
from .errors import StripeError, invalid_param, invalid_request, no_such, unexpected_state
from .http import Call
from .ids import new_id
from .listing import list_page
from .params import Params, apply_metadata
from .search import search_payment_intents
from .store import LedgerEntry, Obj
from .testvalues import (
    AUTHENTICATION_REQUIRED,
    SEPA_FAILURE_MESSAGES,
    CardProfile,
    Decline,
    SepaProfile,
)

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
)
_MIN_AMOUNT = {"eur": 50, "usd": 50, "chf": 50, "gbp": 30}
_OFF_SESSION_WORDS = ("one_off", "recurring")


def get_pi(engine: Engine, pi_id: str | None, param: str | None = "id") -> Obj:
    pi = engine.store.get(pi_id, "payment_intent")
    if pi is None:
        raise no_such("payment_intent", pi_id or "", param)
    return pi


# --- create / retrieve / update / list ----------------------------------------------------


def create_payment_intent(engine: Engine, call: Call) -> Obj:
    p = call.params
    amount = p.req_int("amount")
    currency = p.req_str("currency").lower()
    if not re.fullmatch(r"[a-z]{3}", currency):
        raise invalid_param(f"Invalid currency: {currency}", "currency")
    _check_amount(amount, currency)
    customer_id = p.get_str("customer") or None
    metadata = apply_metadata({}, p.metadata())
    confirm = p.get_bool("confirm")
    off_session = _off_session(p)
    if off_session and not confirm:
        raise invalid_param(
            "You can only use `off_session` when `confirm` is set to true.", "off_session"
        )
    if p.enum("capture_method", ("automatic", "automatic_async", "manual")) == "manual":
        raise invalid_param(
            "The stand-in does not support capture_method=manual.", "capture_method"
        )
    setup_future_usage = p.enum("setup_future_usage", ("off_session", "on_session"))
    types = p.str_list("payment_method_types")
    auto = p.sub("automatic_payment_methods")
    if types and auto.get_bool("enabled"):
        raise invalid_param(
            "You may only specify one of these parameters: automatic_payment_methods, "
            "payment_method_types.",
            "payment_method_types",
        )
    automatic = None
    if not types:
        # Since API version 2023-08-16 Stripe enables automatic payment methods by default.
        types = ["card", "sepa_debit"]
        automatic = {
            "allow_redirects": auto.get_str("allow_redirects") or "always",
            "enabled": True,
        }
    pm_id = p.get_str("payment_method") or None
    if customer_id:
        get_customer(engine, customer_id, "customer")
    pm = resolve_payment_method(engine, pm_id, "payment_method") if pm_id else None
    if pm is not None:
        _check_usable(engine, pm, customer_id, types)
    pi = objects.payment_intent(
        engine.now(),
        amount=amount,
        currency=currency,
        customer=customer_id,
        payment_method=pm["id"] if pm is not None else None,
        payment_method_types=types,
        automatic=automatic,
        description=p.get_str("description") or None,
        metadata=metadata,
        receipt_email=p.get_str("receipt_email") or None,
        setup_future_usage=setup_future_usage,
        statement_descriptor=p.get_str("statement_descriptor") or None,
    )
    indexes = ["payment_intent"]
    if customer_id:
        indexes.append(f"payment_intent:customer:{customer_id}")
    engine.store.put(pi, *indexes)
    engine.store.index_pi_metadata(pi["id"], {}, metadata)
    engine.emit("payment_intent.created", pi, call.ref)
    if confirm:
        _confirm(engine, pi, p, call.ref, off_session)
    return pi


def retrieve_payment_intent(engine: Engine, call: Call, id: str) -> Obj:
    return get_pi(engine, id)


def update_payment_intent(engine: Engine, call: Call, id: str) -> Obj:
    pi = get_pi(engine, id)
    p = call.params
    changes = p.metadata()
    settled = pi["status"] in ("succeeded", "canceled", "processing")
    restricted = [k for k in ("amount", "currency", "customer", "payment_method") if k in p]
    if settled and restricted:
        raise unexpected_state(
            f"You cannot update {restricted[0]} on this PaymentIntent because it has a status "
            f"of {pi['status']}."
        )
    updates: Obj = {}
    if "amount" in p:
        updates["amount"] = p.req_int("amount")
        _check_amount(updates["amount"], pi["currency"])
    if "currency" in p:
        updates["currency"] = p.req_str("currency").lower()
    for field in ("description", "receipt_email", "statement_descriptor"):
        if field in p:
            updates[field] = p.get_str(field) or None
    if "customer" in p:
        cus_id = p.get_str("customer") or None
        if cus_id:
            get_customer(engine, cus_id, "customer")
        updates["customer"] = cus_id
    if "payment_method" in p:
        pm_id = p.get_str("payment_method") or None
        pm = resolve_payment_method(engine, pm_id, "payment_method") if pm_id else None
        if pm is not None:
            customer = updates.get("customer", pi["customer"])
            _check_usable(engine, pm, customer, pi["payment_method_types"])
        updates["payment_method"] = pm["id"] if pm is not None else None
        updates["status"] = "requires_confirmation" if pm else "requires_payment_method"
    if "customer" in updates and updates["customer"] and updates["customer"] != pi["customer"]:
        engine.store.index(f"payment_intent:customer:{updates['customer']}").add(pi["id"])
    if changes is not None:
        metadata = apply_metadata(pi["metadata"], changes)
        engine.store.index_pi_metadata(pi["id"], pi["metadata"], metadata)
        updates["metadata"] = metadata
    pi.update(updates)
    return pi


def list_payment_intents(engine: Engine, call: Call) -> Obj:
    cus_id = call.params.get_str("customer")
    index = f"payment_intent:customer:{cus_id}" if cus_id else "payment_intent"
    objects_ = engine.store.objects
    keep = (lambda i: objects_[i]["customer"] == cus_id) if cus_id else None
    return list_page(engine, call.params, index, "/v1/payment_intents", keep)


def search(engine: Engine, call: Call) -> Obj:
    return search_payment_intents(engine, call.params)


# --- confirm / cancel ---------------------------------------------------------------------


def confirm_payment_intent(engine: Engine, call: Call, id: str) -> Obj:
    pi = get_pi(engine, id)
    _confirm(engine, pi, call.params, call.ref, _off_session(call.params))
    return pi


def cancel_payment_intent(engine: Engine, call: Call, id: str) -> Obj:
    pi = get_pi(engine, id)
    reason = call.params.enum(
        "cancellation_reason", ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
    )
    if pi["status"] not in CANCELABLE:
        raise unexpected_state(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. "
            f"Only a PaymentIntent with one of the following statuses may be canceled: "
            f"{', '.join(CANCELABLE)}."
        )
    pi.update(
        status="canceled", canceled_at=engine.now(), cancellation_reason=reason, next_action=None
    )
    engine.emit("payment_intent.canceled", pi, call.ref)
    return pi


def _off_session(p: Params) -> bool:
    value = p.get_str("off_session")
    if value in _OFF_SESSION_WORDS:
        return True
    return p.get_bool("off_session")


def _check_amount(amount: int, currency: str) -> None:
    minimum = _MIN_AMOUNT.get(currency, 1)
    if amount < minimum:
        raise invalid_param(
            f"Amount must be at least {minimum} {currency} (smallest currency unit).",
            "amount",
            "amount_too_small",
        )
    if amount > 99_999_999:
        raise invalid_param("Amount must be no more than 99999999.", "amount", "amount_too_large")


def _check_usable(engine: Engine, pm: Obj, customer: str | None, types: list[str]) -> None:
    """Stripe's checks before a PaymentMethod may pay a PaymentIntent."""
    if pm["type"] not in types:
        raise invalid_request(
            f"The PaymentMethod provided ({pm['type']}) is not allowed for this PaymentIntent. "
            f"Please attach a PaymentMethod of one of the following types: {', '.join(types)}. "
            f'Alternatively, update the allowed payment_method_types to include "{pm["type"]}".',
            param="payment_method",
            code="payment_intent_incompatible_payment_method",
        )
    owner = pm["customer"]
    if owner is not None and customer is None:
        raise invalid_request(
            "The provided PaymentMethod was previously attached to a Customer. To use a "
            "PaymentMethod that is attached to a Customer, you must also pass the Customer ID "
            "in the `customer` parameter.",
            param="payment_method",
        )
    if owner is not None and owner != customer:
        raise invalid_request(
            f"The provided PaymentMethod {pm['id']} does not belong to the Customer "
            f"{customer}. Please use the Customer that the PaymentMethod is attached to.",
            param="payment_method",
        )
    if owner is None and pm["id"] in engine.store.consumed_pms:
        raise invalid_request(
            "This PaymentMethod was previously used without being attached to a Customer or "
            "was detached from a Customer, and may not be used again.",
            param="payment_method",
            code="payment_method_unexpected_state",
        )


def _confirm(engine: Engine, pi: Obj, p: Params, ref: RequestRef, off_session: bool) -> None:
    if pi["status"] not in CONFIRMABLE:
        raise unexpected_state(
            f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}. "
            "Only a PaymentIntent with one of the following statuses may be confirmed: "
            f"{', '.join(CONFIRMABLE)}."
        )
    pm_id = p.get_str("payment_method") or pi["payment_method"]
    if not pm_id:
        raise invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "Update the PaymentIntent with a payment method and then confirm it again.",
            code="payment_intent_unexpected_state",
        )
    return_url = p.get_str("return_url") or None
    pm = resolve_payment_method(engine, pm_id, "payment_method")
    _check_usable(engine, pm, pi["customer"], pi["payment_method_types"])
    if pm["customer"] is None:
        engine.store.consumed_pms.add(pm["id"])
    pi.update(payment_method=pm["id"], last_payment_error=None, next_action=None)
    profile = engine.store.profiles.get(pm["id"])
    if isinstance(profile, SepaProfile):
        _start_sepa(engine, pi, pm, profile, ref)
    else:
        _charge_card(engine, pi, pm, profile, off_session, return_url, ref)


# --- cards --------------------------------------------------------------------------------


def _charge_card(
    engine: Engine,
    pi: Obj,
    pm: Obj,
    profile: CardProfile | None,
    off_session: bool,
    return_url: str | None,
    ref: RequestRef,
) -> None:
    outcome = profile.outcome if profile is not None else "succeed"
    needs_auth = outcome == "authenticate" or (
        outcome == "authenticate_on_session" and not off_session
    )
    if needs_auth and off_session:
        _decline(engine, pi, pm, AUTHENTICATION_REQUIRED, ref)
    if needs_auth:
        pi.update(status="requires_action", next_action=_next_action(pi, return_url))
        engine.emit("payment_intent.requires_action", pi, ref)
        return
    if outcome == "decline" and profile is not None and profile.decline is not None:
        _decline(engine, pi, pm, profile.decline, ref)
    _succeed(engine, pi, pm, ref)


def _next_action(pi: Obj, return_url: str | None) -> Obj:
    url = f"https://hooks.stripe.com/3d_secure_2/hosted?payment_intent={pi['id']}"
    if return_url:
        return {
            "type": "redirect_to_url",
            "redirect_to_url": {"return_url": return_url, "url": url},
        }
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url},
    }


def _succeed(engine: Engine, pi: Obj, pm: Obj, ref: RequestRef) -> None:
    ch = objects.charge(engine.now(), pi, pm, "succeeded")
    _store_charge(engine, ch)
    pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=ch["id"])
    _book(engine, pi, ch)
    engine.emit("charge.succeeded", ch, ref)
    engine.emit("payment_intent.succeeded", pi, ref)


def _decline(engine: Engine, pi: Obj, pm: Obj, decline: Decline, ref: RequestRef) -> None:
    """Record a declined attempt and raise the 402 Stripe answers with."""
    ch = objects.charge(engine.now(), pi, pm, "failed")
    objects.fail_charge(ch, decline.code, decline.message, decline)
    _store_charge(engine, ch)
    error: Obj = {
        "charge": ch["id"],
        "code": decline.code,
        "decline_code": decline.decline_code,
        "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
        "message": decline.message,
    }
    if decline.advice_code:
        error["advice_code"] = decline.advice_code
    if decline.param:
        error["param"] = decline.param
    error["payment_method"] = objects.snapshot(pm)
    error["type"] = "card_error"
    pi.update(
        status="requires_payment_method",
        payment_method=None,
        latest_charge=ch["id"],
        last_payment_error=error,
        next_action=None,
    )
    engine.emit("charge.failed", ch, ref)
    engine.emit("payment_intent.payment_failed", pi, ref)
    extra = {k: v for k, v in error.items() if k not in ("code", "message", "param", "type")}
    extra.pop("doc_url")
    raise StripeError(
        402,
        "card_error",
        decline.message,
        code=decline.code,
        param=decline.param,
        payment_intent=pi,
        **extra,
    )


def authenticate(engine: Engine, pi_id: str, succeed: bool) -> Obj:
    """Stand-in extension: the customer completes (or fails) 3-D Secure on `requires_action`."""
    pi = get_pi(engine, pi_id)
    if pi["status"] != "requires_action":
        raise unexpected_state(
            f"PaymentIntent {pi_id} has status {pi['status']}, not requires_action."
        )
    pm = engine.store.get(pi["payment_method"], "payment_method")
    assert pm is not None
    if succeed:
        pi["next_action"] = None
        _succeed(engine, pi, pm, NO_REQUEST)
        return pi
    pi.update(
        status="requires_payment_method",
        payment_method=None,
        next_action=None,
        last_payment_error={
            "code": "payment_intent_authentication_failure",
            "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
            "message": "The provided PaymentMethod has failed authentication. You can provide "
            "payment_method_data or a new PaymentMethod to attempt to fulfill this "
            "PaymentIntent again.",
            "payment_method": objects.snapshot(pm),
            "type": "invalid_request_error",
        },
    )
    engine.emit("payment_intent.payment_failed", pi, NO_REQUEST)
    return pi


# --- SEPA ---------------------------------------------------------------------------------


def _start_sepa(engine: Engine, pi: Obj, pm: Obj, profile: SepaProfile, ref: RequestRef) -> None:
    mandate_id = engine.store.mandate_by_pm.get(pm["id"])
    if mandate_id is None:
        mandate = objects.mandate(engine.now(), pm, None)
        engine.store.put(mandate, "mandate")
        mandate_id = engine.store.mandate_by_pm[pm["id"]] = mandate["id"]
    ch = objects.charge(engine.now(), pi, pm, "pending", mandate_id)
    _store_charge(engine, ch)
    pi.update(status="processing", latest_charge=ch["id"])
    engine.emit("charge.pending", ch, ref)
    engine.emit("payment_intent.processing", pi, ref)
    cfg = engine.config
    delay = cfg.effective_sepa_long_delay if profile.outcome == "succeed_late" else cfg.sepa_delay
    engine.scheduler.call_later(delay, settle_sepa, engine, pi["id"], profile.failure_code, None)


def settle_sepa(
    engine: Engine, pi_id: str, failure_code: str | None, dispute: bool | None
) -> Obj | None:
    """The bank's answer to a `processing` SEPA debit (timer, or `/_standin/.../settle`).

    `dispute=None` follows the IBAN's test behaviour (the dispute IBAN opens one later).
    """
    pi = engine.store.get(pi_id, "payment_intent")
    if pi is None or pi["status"] != "processing":
        return None
    ch = engine.store.objects[pi["latest_charge"]]
    pm = engine.store.objects[ch["payment_method"]]
    if failure_code is not None:
        message = SEPA_FAILURE_MESSAGES.get(failure_code, "The payment could not be processed.")
        objects.fail_charge(ch, failure_code, message, None)
        pi.update(
            status="requires_payment_method",
            payment_method=None,
            last_payment_error={
                "code": failure_code,
                "doc_url": "https://stripe.com/docs/error-codes",
                "message": message,
                "payment_method": objects.snapshot(pm),
                "type": "card_error",
            },
        )
        engine.emit("charge.failed", ch, NO_REQUEST)
        engine.emit("payment_intent.payment_failed", pi, NO_REQUEST)
        return pi
    ch.update(
        status="succeeded",
        paid=True,
        captured=True,
        amount_captured=ch["amount"],
        balance_transaction=new_id("txn"),
        outcome=objects.approved_outcome(),
    )
    pi.update(status="succeeded", amount_received=pi["amount"])
    _book(engine, pi, ch)
    engine.emit("charge.succeeded", ch, NO_REQUEST)
    engine.emit("payment_intent.succeeded", pi, NO_REQUEST)
    profile = engine.store.profiles.get(pm["id"])
    if dispute is None:
        dispute = isinstance(profile, SepaProfile) and profile.outcome == "dispute"
    if dispute:
        engine.scheduler.call_later(
            engine.config.effective_dispute_delay, _timed_dispute, engine, pi_id
        )
    return pi


def _timed_dispute(engine: Engine, pi_id: str) -> None:
    pi = engine.store.get(pi_id, "payment_intent")
    if pi is not None and pi["status"] == "succeeded":
        ch = engine.store.objects[pi["latest_charge"]]
        if not ch["disputed"]:
            open_dispute(engine, pi_id, "general", None)


# --- disputes, charges, ledger -------------------------------------------------------------


def open_dispute(engine: Engine, pi_id: str, reason: str, amount: int | None) -> Obj:
    """The payer's bank reclaims the money (SEPA refund right) or the card holder disputes."""
    pi = get_pi(engine, pi_id)
    ch = engine.store.get(pi["latest_charge"], "charge")
    if pi["status"] != "succeeded" or ch is None or ch["status"] != "succeeded":
        raise invalid_request(f"PaymentIntent {pi_id} has no successful charge to dispute.")
    if ch["disputed"]:
        raise invalid_request(f"Charge {ch['id']} is already disputed.")
    dp = objects.dispute(engine.now(), ch, amount or ch["amount"], reason)
    engine.store.put(dp, "dispute")
    ch["disputed"] = True
    entry = engine.store.ledger_by_pi.get(pi_id)
    if entry is not None:
        entry.disputed = True
    engine.emit("charge.dispute.created", dp, NO_REQUEST)
    return dp


def _store_charge(engine: Engine, ch: Obj) -> None:
    engine.store.put(ch, "charge", f"charge:payment_intent:{ch['payment_intent']}")


def _book(engine: Engine, pi: Obj, ch: Obj) -> None:
    pm = engine.store.objects.get(ch["payment_method"], {})
    engine.store.add_ledger(
        LedgerEntry(
            payment_intent=pi["id"],
            charge=ch["id"],
            amount=pi["amount"],
            currency=pi["currency"],
            customer=pi["customer"],
            payment_method=ch["payment_method"],
            payment_method_type=pm.get("type", "card"),
            metadata=dict(pi["metadata"]),
            succeeded_at=engine.now(),
        )
    )


def retrieve_charge(engine: Engine, call: Call, id: str) -> Obj:
    ch = engine.store.get(id, "charge")
    if ch is None:
        raise no_such("charge", id)
    return ch


def list_charges(engine: Engine, call: Call) -> Obj:
    pi_id = call.params.get_str("payment_intent")
    index = f"charge:payment_intent:{pi_id}" if pi_id else "charge"
    return list_page(engine, call.params, index, "/v1/charges")


def retrieve_mandate(engine: Engine, call: Call, id: str) -> Obj:
    mandate = engine.store.get(id, "mandate")
    if mandate is None:
        raise no_such("mandate", id)
    return mandate


def retrieve_dispute(engine: Engine, call: Call, id: str) -> Obj:
    dp = engine.store.get(id, "dispute")
    if dp is None:
        raise no_such("dispute", id)
    return dp
