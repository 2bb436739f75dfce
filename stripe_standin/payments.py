"""PaymentIntents and what happens when they are confirmed.

Cards settle at once: succeeded, or a 402 `card_error` whose body carries the PaymentIntent
(now `requires_payment_method`, `last_payment_error` set, `payment_method` unset) exactly as
Stripe answers an off-session decline. SEPA debits go `processing` (see sepa.py).
"""

from __future__ import annotations

import re

from . import objects
from .charges import get_pi, record_success, store_charge
from .customers import _attach, build_payment_method, get_customer, resolve_payment_method
from .engine import NO_REQUEST, Engine, RequestRef
from .errors import StripeError, invalid_param, invalid_request, no_such, unexpected_state
from .http import Call
from .listing import list_page
from .params import Params, apply_metadata
from .search import search_payment_intents
from .sepa import start_sepa
from .setup_intents import mandate_acceptance
from .store import Obj
from .testvalues import AUTHENTICATION_REQUIRED, CardProfile, Decline, SepaProfile, card_declined

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
)
_MIN_AMOUNT = {"eur": 50, "usd": 50, "chf": 50, "gbp": 30}
_OFF_SESSION_WORDS = ("one_off", "recurring")


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
    for only_with_confirm in ("mandate", "mandate_data", "return_url", "error_on_requires_action"):
        if only_with_confirm in p and not confirm:
            # Stripe: "The parameter `mandate` cannot be passed when creating a PaymentIntent
            # unless `confirm` is set to true." (quoted in opencollective-api#9603)
            raise invalid_param(
                f"The parameter `{only_with_confirm}` cannot be passed when creating a "
                "PaymentIntent unless `confirm` is set to true.",
                only_with_confirm,
            )
    if p.enum("capture_method", ("automatic", "automatic_async", "manual")) == "manual":
        raise invalid_param(
            "The stand-in does not support capture_method=manual.", "capture_method"
        )
    setup_future_usage = p.enum("setup_future_usage", ("off_session", "on_session"))
    method_types = _method_types(p) or _automatic_types([], p.sub("automatic_payment_methods"))
    types = method_types["payment_method_types"]
    if customer_id:
        get_customer(engine, customer_id, "customer")
    pm = _payment_method_param(engine, p)
    if pm is not None:
        _check_usable(engine, pm, customer_id, types)
    pi = objects.payment_intent(
        engine.now(),
        amount=amount,
        currency=currency,
        customer=customer_id,
        payment_method=pm["id"] if pm is not None else None,
        description=p.get_str("description") or None,
        metadata=metadata,
        receipt_email=p.get_str("receipt_email") or None,
        setup_future_usage=setup_future_usage,
        statement_descriptor=p.get_str("statement_descriptor") or None,
    )
    pi.update(method_types)
    indexes = ["payment_intent"]
    if customer_id:
        indexes.append(f"payment_intent:customer:{customer_id}")
    engine.store.put(pi, *indexes)
    engine.store.index_pi_metadata(pi["id"], {}, metadata)
    engine.emit("payment_intent.created", pi, call.ref)
    if confirm:
        _confirm(engine, pi, pi["payment_method"], p, call.ref, off_session)
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
    method_types = _method_types(p)
    if method_types is not None:
        if settled:
            raise unexpected_state(
                f"You cannot update the payment method types of this PaymentIntent because it "
                f"has a status of {pi['status']}."
            )
        updates.update(method_types)
    types: list[str] = (method_types or pi)["payment_method_types"]
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
            _check_usable(engine, pm, customer, types)
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
    p = call.params
    method_types = _method_types(p)
    pm = _payment_method_param(engine, p)
    if method_types is not None and pi["status"] in CONFIRMABLE:
        pi.update(method_types)
    pm_id = pm["id"] if pm is not None else pi["payment_method"]
    _confirm(engine, pi, pm_id, p, call.ref, _off_session(p))
    return pi


def cancel_payment_intent(engine: Engine, call: Call, id: str) -> Obj:
    reason = call.params.enum(
        "cancellation_reason", ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
    )
    return cancel(engine, id, reason, call.ref)


def cancel(engine: Engine, pi_id: str, reason: str | None, ref: RequestRef) -> Obj:
    """Cancel a PaymentIntent (API, or in the Dashboard with NO_REQUEST):
    `payment_intent.canceled`."""
    pi = get_pi(engine, pi_id)
    if pi["status"] not in CANCELABLE:
        raise unexpected_state(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. "
            f"Only a PaymentIntent with one of the following statuses may be canceled: "
            f"{', '.join(CANCELABLE)}."
        )
    pi.update(
        status="canceled", canceled_at=engine.now(), cancellation_reason=reason, next_action=None
    )
    engine.emit("payment_intent.canceled", pi, ref)
    return pi


SUPPORTED_TYPES = ("card", "sepa_debit")


def _method_types(p: Params) -> Obj | None:
    """The PaymentIntent fields set by the payment method type params, None if none given.

    Older API versions took `payment_method_types`; the version stripe 16 pins
    (2026-10-28) takes `allowed_payment_method_types` and `excluded_payment_method_types`
    (the parameter check refuses `payment_method_types` as unknown), and the response lists
    the usable ones in `payment_method_types`.
    """
    requested = p.str_list("allowed_payment_method_types")
    excluded = p.str_list("excluded_payment_method_types") or []
    auto = p.sub("automatic_payment_methods")
    if not requested and not excluded and not auto.data:
        return None
    if requested and auto.get_bool("enabled"):
        raise invalid_param(
            "You may only specify one of these parameters: automatic_payment_methods, "
            "allowed_payment_method_types.",
            "automatic_payment_methods",
        )
    if not requested:
        return _automatic_types(excluded, auto)
    return {
        "allowed_payment_method_types": requested,
        "automatic_payment_methods": None,
        "excluded_payment_method_types": excluded or None,
        "payment_method_types": [t for t in requested if t not in excluded],
    }


def _automatic_types(excluded: list[str], auto: Params) -> Obj:
    """Stripe enables automatic payment methods by default since API version 2023-08-16."""
    return {
        "allowed_payment_method_types": None,
        "automatic_payment_methods": {
            "allow_redirects": auto.get_str("allow_redirects") or "always",
            "enabled": True,
        },
        "excluded_payment_method_types": excluded or None,
        "payment_method_types": [t for t in SUPPORTED_TYPES if t not in excluded],
    }


def _payment_method_param(engine: Engine, p: Params) -> Obj | None:
    """`payment_method` (an id or a magic test id) or inline `payment_method_data`."""
    data = p.sub("payment_method_data")
    if data.data:
        return build_payment_method(engine, data)
    pm_id = p.get_str("payment_method") or None
    return resolve_payment_method(engine, pm_id, "payment_method") if pm_id else None


def _off_session(p: Params) -> bool:
    value = p.get_str("off_session")
    if value in _OFF_SESSION_WORDS:
        return True
    return p.get_bool("off_session")


_SYMBOL = {"eur": "€", "usd": "$", "gbp": "£", "chf": "CHF "}
MAX_AMOUNT = 99_999_999  # "The amount value supports up to eight digits" (Stripe API docs)


def _money(amount: int, currency: str) -> str:
    return f"{_SYMBOL.get(currency, '')}{amount // 100:,}.{amount % 100:02d}"


def _check_amount(amount: int, currency: str) -> None:
    """Stripe's minimum charge amounts (docs.stripe.com/currencies#minimum-and-maximum-charge-
    amounts: 0.50 EUR/USD/CHF, 0.30 GBP) and its eight-digit maximum, with its messages
    (`Amount must be at least €0.50 eur`)."""
    minimum = _MIN_AMOUNT.get(currency, 1)
    if amount < minimum:
        raise invalid_param(
            f"Amount must be at least {_money(minimum, currency)} {currency}",
            "amount",
            "amount_too_small",
        )
    if amount > MAX_AMOUNT:
        raise invalid_param(
            f"Amount must be no more than {_money(MAX_AMOUNT, currency)}",
            "amount",
            "amount_too_large",
        )


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


def _confirm(
    engine: Engine, pi: Obj, pm_id: str | None, p: Params, ref: RequestRef, off_session: bool
) -> None:
    """Attempt the payment; `p` supplies `return_url` and `error_on_requires_action`."""
    fail_on_action = off_session or p.get_bool("error_on_requires_action")
    return_url = p.get_str("return_url") or None
    if pi["status"] not in CONFIRMABLE:
        raise unexpected_state(
            f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}. "
            "Only a PaymentIntent with one of the following statuses may be confirmed: "
            f"{', '.join(CONFIRMABLE)}."
        )
    if not pm_id:
        raise invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "Update the PaymentIntent with a payment method and then confirm it again.",
            code="payment_intent_unexpected_state",
        )
    _check_redirects(pi, return_url)
    pm = resolve_payment_method(engine, pm_id, "payment_method")
    _check_usable(engine, pm, pi["customer"], pi["payment_method_types"])
    if off_session and pi["customer"] and pm["customer"] is None:
        # Stripe charges a saved method off-session only as the customer's: the method must
        # be attached to the customer the PaymentIntent names (docs.stripe.com/payments/
        # save-and-reuse, "charge the saved payment method later"). Message: stand-in's own.
        raise invalid_request(
            f"The provided PaymentMethod {pm['id']} is not attached to the Customer "
            f"{pi['customer']}. To charge a PaymentMethod off-session, attach it to the "
            "Customer first.",
            param="payment_method",
        )
    mandate = _mandate_for(engine, pi, pm, p, off_session)
    if pi.get("setup_future_usage") and pi["customer"] and pm["customer"] is None:
        # setup_future_usage saves the method: Stripe attaches it to the customer.
        _attach(engine, pm, get_customer(engine, pi["customer"], "customer"), ref)
    if pm["customer"] is None:
        engine.store.consumed_pms.add(pm["id"])
    pi.update(payment_method=pm["id"], last_payment_error=None, next_action=None)
    profile = engine.store.profiles.get(pm["id"])
    scripted = engine.store.scripted_outcome(pi.get("metadata") or {})
    if scripted is not None and scripted != "succeed" and not isinstance(profile, SepaProfile):
        _decline(engine, pi, pm, card_declined(scripted), ref)
    if isinstance(profile, SepaProfile):
        assert mandate is not None
        start_sepa(engine, pi, pm, profile, mandate, ref)
    else:
        _charge_card(engine, pi, pm, profile, fail_on_action, return_url, ref)


def _check_redirects(pi: Obj, return_url: str | None) -> None:
    """With automatic payment methods on (the default since API version 2023-08-16) and
    redirects allowed, Stripe refuses to confirm without a `return_url`, whatever the method
    (the message is Stripe's, quoted in aschmelyun/laravel-vue-stripe-cashier#4 and
    opencollective-frontend#12346). Stripe's `code`/`param` for this error are not
    documented anywhere we found; the stand-in answers `parameter_missing` on `return_url`.
    """
    auto = pi.get("automatic_payment_methods")
    if not auto or not auto.get("enabled") or auto.get("allow_redirects") == "never":
        return
    if return_url:
        return
    raise invalid_param(
        "A `return_url` must be specified because this Payment Intent is configured to "
        "automatically accept the payment methods enabled in the Dashboard, some of which may "
        "require a full page redirect to succeed. If you do not want to accept redirect-based "
        "payment methods, set `automatic_payment_methods[enabled]` to `true` and "
        "`automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents "
        "and Payment Intents.",
        "return_url",
        "parameter_missing",
    )


def _mandate_for(engine: Engine, pi: Obj, pm: Obj, p: Params, off_session: bool) -> Obj | None:
    """The mandate a debit of `pm` runs under (SEPA needs one; cards: only if named).

    In order: the `mandate` param (must be this method's and active), `mandate_data` (a new
    mandate accepted now, e.g. with `setup_future_usage`), or the active mandate Stripe holds
    for the method (from a succeeded SetupIntent or an earlier PaymentIntent with
    `setup_future_usage`). Errors name the param; the wording is the stand-in's unless noted.
    """
    mandate_id = p.get_str("mandate") or None
    if mandate_id is not None:
        mandate = engine.store.get(mandate_id, "mandate")
        if mandate is None:
            raise no_such("mandate", mandate_id, "mandate")
        if mandate["payment_method"] != pm["id"]:
            raise invalid_param(
                f"The mandate {mandate_id} does not belong to the PaymentMethod {pm['id']}; "
                "use the mandate created for this PaymentMethod.",
                "mandate",
            )
        _require_active(mandate)
        return mandate
    if pm["type"] != "sepa_debit":
        return None
    if p.sub("mandate_data").data:
        acceptance = mandate_acceptance(engine, p)
        # Without `setup_future_usage` the mandate covers this payment only (single_use).
        reusable = bool(pi.get("setup_future_usage"))
        single_use = None if reusable else {"amount": pi["amount"], "currency": pi["currency"]}
        mandate = objects.mandate(engine.now(), pm, acceptance, single_use)
        engine.store.put(mandate, "mandate")
        if reusable:
            engine.store.mandate_by_pm[pm["id"]] = mandate["id"]
        return mandate
    if pi.get("setup_future_usage"):
        # Quoted from Stripe (laravel/cashier-stripe#1515).
        raise invalid_param(
            "When confirming a PaymentIntent with a `sepa_debit` PaymentMethod and "
            "`setup_future_usage`, `mandate_data` is required.",
            "mandate_data",
            "parameter_missing",
        )
    held = engine.store.get(engine.store.mandate_by_pm.get(pm["id"]), "mandate")
    if held is None:
        raise invalid_param(
            f"The PaymentMethod {pm['id']} has no mandate: a `sepa_debit` payment needs "
            "`mandate_data` (the customer accepts a mandate now) or a mandate set up earlier "
            "(a SetupIntent, or a PaymentIntent with `setup_future_usage`); pass its id as "
            "`mandate`.",
            "mandate" if off_session else "mandate_data",
            "parameter_missing",
        )
    _require_active(held)
    return held


def _require_active(mandate: Obj) -> None:
    if mandate["status"] != "active":
        raise invalid_param(
            f"The mandate {mandate['id']} is {mandate['status']} and cannot be used for "
            "payments; the customer must accept a new mandate.",
            "mandate",
        )


# --- cards --------------------------------------------------------------------------------


def _charge_card(
    engine: Engine,
    pi: Obj,
    pm: Obj,
    profile: CardProfile | None,
    fail_on_action: bool,
    return_url: str | None,
    ref: RequestRef,
) -> None:
    """Off session (or with `error_on_requires_action`) a 3-D Secure card fails with
    `authentication_required`; on session the PaymentIntent waits in `requires_action`."""
    outcome = profile.outcome if profile is not None else "succeed"
    needs_auth = outcome == "authenticate" or (
        outcome == "authenticate_on_session" and not fail_on_action
    )
    if needs_auth and fail_on_action:
        _decline(engine, pi, pm, AUTHENTICATION_REQUIRED, ref)
    if needs_auth:
        pi.update(status="requires_action", next_action=_next_action(pi, return_url))
        engine.emit("payment_intent.requires_action", pi, ref)
        return
    if outcome == "decline" and profile is not None and profile.decline is not None:
        _decline(engine, pi, pm, profile.decline, ref)
    record_success(engine, pi, pm, ref)


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


def _decline(engine: Engine, pi: Obj, pm: Obj, decline: Decline, ref: RequestRef) -> None:
    """Record a declined attempt and raise the 402 Stripe answers with."""
    ch = objects.charge(engine.now(), pi, pm, "failed")
    objects.fail_charge(ch, decline.code, decline.message, decline)
    store_charge(engine, ch)
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
        record_success(engine, pi, pm, NO_REQUEST)
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
