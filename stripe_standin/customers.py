"""Customers and PaymentMethods (`/v1/customers`, `/v1/payment_methods`).

Magic test ids such as `pm_card_visa` work wherever a PaymentMethod id is accepted, as in
Stripe test mode: each use creates a new concrete `pm_...` that keeps the test behaviour.
"""

from __future__ import annotations

from typing import Any

from .engine import Engine, RequestRef
from .errors import StripeError, invalid_param, invalid_request, no_such
from .http import Call
from .ids import new_id
from .listing import list_page
from .objects import billing_details, card_payment_method, customer, sepa_payment_method
from .params import Params, apply_metadata
from .store import Obj
from .testvalues import (
    CardProfile,
    iban_is_valid,
    magic_card,
    normalize_iban,
    sepa_profile,
)

# --- customers ---------------------------------------------------------------------------


def get_customer(engine: Engine, cus_id: str | None, param: str | None = "id") -> Obj:
    cus = engine.store.get(cus_id, "customer")
    if cus is None or cus.get("deleted"):
        raise no_such("customer", cus_id or "", param)
    return cus


def create_customer(engine: Engine, call: Call) -> Obj:
    p = call.params
    metadata = apply_metadata({}, p.metadata())
    email, name = p.get_str("email"), p.get_str("name")
    description, phone = p.get_str("description"), p.get_str("phone")
    pm_id = p.get_str("payment_method")
    default_pm = p.sub("invoice_settings").get_str("default_payment_method")
    cus_id = new_id("cus")
    if default_pm and default_pm != pm_id:
        raise _not_attached(default_pm, cus_id)
    pm = resolve_payment_method(engine, pm_id, "payment_method") if pm_id else None
    cus = customer(
        cus_id,
        engine.now(),
        email=email or None,
        name=name or None,
        description=description or None,
        phone=phone or None,
        metadata=metadata,
        default_payment_method=pm["id"] if pm is not None and default_pm else None,
    )
    engine.store.put(cus, "customer")
    engine.emit("customer.created", cus, call.ref)
    if pm is not None:
        _attach(engine, pm, cus, call.ref)
    return cus


def retrieve_customer(engine: Engine, call: Call, id: str) -> Obj:
    cus = engine.store.get(id, "customer")
    if cus is not None and cus.get("deleted"):
        return {"id": id, "object": "customer", "deleted": True}  # as Stripe answers
    return get_customer(engine, id)


def update_customer(engine: Engine, call: Call, id: str) -> Obj:
    cus = get_customer(engine, id)
    p = call.params
    changes = p.metadata()
    settings = p.sub("invoice_settings")
    previous: Obj = {}
    updates: Obj = {}
    for field in ("email", "name", "description", "phone"):
        if field in p:
            value = p.get_str(field) or None
            if value != cus[field]:
                previous[field] = cus[field]
                updates[field] = value
    default_pm = settings.get_str("default_payment_method")
    if default_pm:
        pm = engine.store.get(default_pm, "payment_method")
        if pm is None or pm["customer"] != cus["id"]:
            raise _not_attached(default_pm, cus["id"])
    if changes is not None:
        metadata = apply_metadata(cus["metadata"], changes)
        if metadata != cus["metadata"]:
            previous["metadata"] = cus["metadata"]
            updates["metadata"] = metadata
    cus.update(updates)
    current_default = cus["invoice_settings"]["default_payment_method"]
    if default_pm is not None and (default_pm or None) != current_default:
        previous["invoice_settings"] = dict(cus["invoice_settings"])
        cus["invoice_settings"] = {
            **cus["invoice_settings"],
            "default_payment_method": default_pm or None,
        }
    if previous:
        engine.emit("customer.updated", cus, call.ref, previous)
    return cus


def delete_customer(engine: Engine, call: Call, id: str) -> Obj:
    cus = get_customer(engine, id)
    cus["deleted"] = True
    engine.store.index("customer").remove(id)
    engine.emit("customer.deleted", cus, call.ref)
    return {"id": id, "object": "customer", "deleted": True}


def list_customers(engine: Engine, call: Call) -> Obj:
    email = call.params.get_str("email")
    store = engine.store
    keep = (lambda i: store.objects[i]["email"] == email) if email else None
    return list_page(engine, call.params, "customer", "/v1/customers", keep)


def _not_attached(pm_id: str, cus_id: str) -> StripeError:
    return invalid_request(
        f"No such PaymentMethod: '{pm_id}'; The customer {cus_id} does not have a payment "
        f"method with the ID {pm_id}. The payment method must be attached to the customer.",
        param="invoice_settings[default_payment_method]",
        code="resource_missing",
    )


# --- payment methods ---------------------------------------------------------------------


def resolve_payment_method(engine: Engine, pm_id: str, param: str) -> Obj:
    """A stored PaymentMethod, or a new concrete one for a magic test id."""
    pm = engine.store.get(pm_id, "payment_method")
    if pm is not None:
        return pm
    profile = magic_card(pm_id)
    if profile is None:
        raise no_such("PaymentMethod", pm_id, param)
    return _store_card(engine, profile, billing_details(), {})


def _store_card(
    engine: Engine, profile: CardProfile, billing: Obj, metadata: dict[str, str]
) -> Obj:
    year = engine.clock.timestamp() // (365 * 86400) + 1970 + 3
    pm = card_payment_method(engine.now(), profile, billing, metadata, year)
    engine.store.put(pm, "payment_method")
    engine.store.profiles[pm["id"]] = profile
    return pm


def create_payment_method(engine: Engine, call: Call) -> Obj:
    return build_payment_method(engine, call.params)


def build_payment_method(engine: Engine, p: Params) -> Obj:
    """A PaymentMethod from `type` and its details (`POST /v1/payment_methods`, or inline
    as `payment_method_data` of a PaymentIntent)."""
    kind = p.get_str("type", required=True)
    billing_in = p.sub("billing_details")
    billing = billing_details(billing_in.get_str("name"), billing_in.get_str("email"))
    metadata = apply_metadata({}, p.metadata())
    if kind == "sepa_debit":
        details = p.sub("sepa_debit")
        iban = normalize_iban(details.get_str("iban", required=True) or "")
        if not iban_is_valid(iban):
            raise invalid_param(
                "The IBAN you provided appears to be invalid.",
                details.name("iban"),
                "invalid_bank_account_iban",
            )
        if not billing["name"]:
            raise invalid_param(
                "Missing required param: billing_details[name].",
                billing_in.name("name"),
                "parameter_missing",
            )
        sepa = sepa_profile(iban)
        pm = sepa_payment_method(engine.now(), sepa, billing, metadata)
        engine.store.put(pm, "payment_method")
        engine.store.profiles[pm["id"]] = sepa
        return pm
    if kind == "card":
        card = p.sub("card")
        token = card.get_str("token") or ""
        profile = magic_card("pm_card_" + token[4:]) if token.startswith("tok_") else None
        if profile is None:
            raise invalid_param(
                "The stand-in creates card PaymentMethods only from test tokens "
                "(card[token]=tok_visa); use a magic id such as pm_card_visa instead.",
                card.prefix,
            )
        return _store_card(engine, profile, billing, metadata)
    raise invalid_param(
        f"Invalid type: the stand-in supports card and sepa_debit, not {kind!r}.", p.name("type")
    )


def retrieve_payment_method(engine: Engine, call: Call, id: str) -> Obj:
    pm = engine.store.get(id, "payment_method")
    if pm is None:
        profile = magic_card(id)
        if profile is None:
            raise no_such("PaymentMethod", id)
        return resolve_payment_method(engine, id, "id")
    return pm


def attach_payment_method(engine: Engine, call: Call, id: str) -> Obj:
    cus_id = call.params.get_str("customer", required=True)
    cus = get_customer(engine, cus_id, "customer")
    pm = engine.store.get(id, "payment_method")
    if pm is None and magic_card(id) is None:
        raise no_such("PaymentMethod", id)
    profile = engine.store.profiles.get(pm["id"]) if pm is not None else magic_card(id)
    if (
        engine.config.strict_attach
        and isinstance(profile, CardProfile)
        and profile.declines_on_attach
        and profile.decline is not None
    ):
        raise _attach_declined(profile)
    if pm is None:
        pm = resolve_payment_method(engine, id, "id")
    if pm["customer"] is not None and pm["customer"] != cus["id"]:
        raise invalid_request(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    if pm["customer"] is None:
        if pm["id"] in engine.store.consumed_pms:
            raise invalid_request(
                "This PaymentMethod was previously used without being attached to a Customer "
                "or was detached from a Customer, and may not be used again.",
                code="payment_method_unexpected_state",
            )
        _attach(engine, pm, cus, call.ref)
    return pm


def _attach_declined(profile: CardProfile) -> StripeError:
    decline = profile.decline
    assert decline is not None
    extra: dict[str, Any] = {"decline_code": decline.decline_code}
    if decline.advice_code:
        extra["advice_code"] = decline.advice_code
    return StripeError(
        402, "card_error", decline.message, code=decline.code, param=decline.param, **extra
    )


def _attach(engine: Engine, pm: Obj, cus: Obj, ref: RequestRef) -> None:
    pm["customer"] = cus["id"]
    engine.store.index(f"payment_method:customer:{cus['id']}").add(pm["id"])
    engine.emit("payment_method.attached", pm, ref)


def detach_payment_method(engine: Engine, call: Call, id: str) -> Obj:
    pm = engine.store.get(id, "payment_method")
    if pm is None:
        raise no_such("PaymentMethod", id)
    cus_id = pm["customer"]
    if cus_id is None:
        raise invalid_request(
            "The payment method you provided is not attached to a customer so detachment "
            "is impossible.",
            code="payment_method_unexpected_state",
        )
    engine.store.index(f"payment_method:customer:{cus_id}").remove(id)
    pm["customer"] = None
    engine.store.consumed_pms.add(id)
    cus = engine.store.get(cus_id, "customer")
    if cus is not None and cus["invoice_settings"]["default_payment_method"] == id:
        cus["invoice_settings"] = {**cus["invoice_settings"], "default_payment_method": None}
    engine.emit("payment_method.detached", pm, call.ref, {"customer": cus_id})
    return pm


def list_customer_payment_methods(engine: Engine, call: Call, id: str) -> Obj:
    get_customer(engine, id)
    return _list_pms(engine, call.params, id, f"/v1/customers/{id}/payment_methods")


def list_payment_methods(engine: Engine, call: Call) -> Obj:
    cus_id = call.params.get_str("customer")
    if not cus_id:
        raise invalid_param(
            "The stand-in lists payment methods of one customer: pass customer.", "customer"
        )
    get_customer(engine, cus_id, "customer")
    return _list_pms(engine, call.params, cus_id, "/v1/payment_methods")


def _list_pms(engine: Engine, params: Params, cus_id: str, url: str) -> Obj:
    kind = params.get_str("type")
    objects = engine.store.objects
    keep = (lambda i: objects[i]["type"] == kind) if kind else None
    return list_page(engine, params, f"payment_method:customer:{cus_id}", url, keep)
