"""SetupIntents (`/v1/setup_intents`): how a platform collects a SEPA mandate at checkout.

As in Stripe, confirming a SetupIntent for a `sepa_debit` PaymentMethod creates a
multi-use Mandate (`mandate` on the SetupIntent; its reference in
`payment_method_details.sepa_debit.reference`) and, with `customer`, attaches the method to
the customer. Later off-session debits of that method use the same mandate. Mahnwerk finds
the mandate of a method by listing SetupIntents with `payment_method=` (a SEPA
pre-notification must name the mandate reference, DOMAIN.md §4).

Subset: `confirm=true` at create or `POST …/confirm`; no `next_action`, no `usage` rules, no
cancel. Cards confirm to `succeeded` without a mandate.
"""

from __future__ import annotations

from typing import Any

from . import objects
from .customers import _attach, get_customer, resolve_payment_method
from .engine import Engine
from .errors import invalid_param, invalid_request, no_such
from .http import Call
from .ids import new_id, secret_suffix
from .listing import list_page
from .params import Params, apply_metadata
from .store import Obj


def _get(engine: Engine, si_id: str) -> Obj:
    si = engine.store.get(si_id, "setup_intent")
    if si is None:
        raise no_such("setup_intent", si_id)
    return si


def create_setup_intent(engine: Engine, call: Call) -> Obj:
    p = call.params
    cus_id = p.get_str("customer") or None
    if cus_id:
        get_customer(engine, cus_id, "customer")
    pm_id = p.get_str("payment_method") or None
    pm = resolve_payment_method(engine, pm_id, "payment_method") if pm_id else None
    # `allowed_payment_method_types` at the pinned API version (`payment_method_types` is
    # refused as unknown by the parameter check, see sdkparams.py).
    types = p.str_list("allowed_payment_method_types") or ([pm["type"]] if pm else ["card"])
    si_id = new_id("seti")
    si: Obj = {
        "id": si_id,
        "object": "setup_intent",
        "allowed_payment_method_types": p.str_list("allowed_payment_method_types"),
        "application": None,
        "attach_to_self": None,
        "automatic_payment_methods": None,
        "cancellation_reason": None,
        "client_secret": f"{si_id}_secret_{secret_suffix()}",
        "created": engine.now(),
        "customer": cus_id,
        "customer_account": None,
        "description": p.get_str("description") or None,
        "excluded_payment_method_types": None,
        "flow_directions": None,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": apply_metadata({}, p.metadata()),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": pm["id"] if pm else None,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": types,
        "single_use_mandate": None,
        "status": "requires_confirmation" if pm else "requires_payment_method",
        "usage": p.get_str("usage") or "off_session",
    }
    indexes = ["setup_intent"]
    if pm is not None:
        indexes.append(f"setup_intent:payment_method:{pm['id']}")
    if cus_id:
        indexes.append(f"setup_intent:customer:{cus_id}")
    engine.store.put(si, *indexes)
    engine.emit("setup_intent.created", si, call.ref)
    if p.get_bool("confirm"):
        _confirm(engine, si, p, call)
    return si


def confirm_setup_intent(engine: Engine, call: Call, id: str) -> Obj:
    si = _get(engine, id)
    p = call.params
    pm_id = p.get_str("payment_method")
    if pm_id:
        pm = resolve_payment_method(engine, pm_id, "payment_method")
        si["payment_method"] = pm["id"]
        engine.store.index(f"setup_intent:payment_method:{pm['id']}").add(si["id"])
    _confirm(engine, si, p, call)
    return si


def _confirm(engine: Engine, si: Obj, p: Params, call: Call) -> None:
    if si["status"] not in ("requires_confirmation", "requires_payment_method"):
        raise invalid_request(
            f"This SetupIntent's status is {si['status']}; it cannot be confirmed.",
            code="setup_intent_unexpected_state",
        )
    pm = engine.store.get(si["payment_method"], "payment_method")
    if pm is None:
        raise invalid_param(
            "You cannot confirm this SetupIntent because it's missing a payment method.",
            "payment_method",
            "setup_intent_unexpected_state",
        )
    if pm["type"] == "sepa_debit":
        acceptance = mandate_acceptance(engine, p)
        mandate = objects.mandate(engine.now(), pm, acceptance)
        engine.store.put(mandate, "mandate")
        engine.store.mandate_by_pm[pm["id"]] = mandate["id"]
        si["mandate"] = mandate["id"]
    if si["customer"] and pm["customer"] is None:
        _attach(engine, pm, get_customer(engine, si["customer"], "customer"), call.ref)
    si["status"] = "succeeded"
    engine.emit("setup_intent.succeeded", si, call.ref)


def mandate_acceptance(engine: Engine, p: Params) -> dict[str, Any]:
    """The mandate's `customer_acceptance` from `mandate_data[customer_acceptance]`."""
    acc = p.sub("mandate_data").sub("customer_acceptance")
    kind = acc.get_str("type") or "offline"
    out: dict[str, Any] = {"accepted_at": engine.now(), "type": kind}
    if kind == "online":
        online = acc.sub("online")
        out["online"] = {
            "ip_address": online.get_str("ip_address"),
            "user_agent": online.get_str("user_agent"),
        }
    else:
        out["offline"] = {}
    return out


def retrieve_setup_intent(engine: Engine, call: Call, id: str) -> Obj:
    return _get(engine, id)


def list_setup_intents(engine: Engine, call: Call) -> Obj:
    p = call.params
    pm_id = p.get_str("payment_method")
    cus_id = p.get_str("customer")
    objects_ = engine.store.objects
    if pm_id:
        index = f"setup_intent:payment_method:{pm_id}"
        keep = (lambda i: objects_[i]["customer"] == cus_id) if cus_id else None
    elif cus_id:
        index, keep = f"setup_intent:customer:{cus_id}", None
    else:
        index, keep = "setup_intent", None
    return list_page(engine, p, index, "/v1/setup_intents", keep)
