"""Refunds (`/v1/refunds`) and events (`/v1/events`).

A refund settles at once here (Stripe: SEPA refunds stay `pending` for days) and sends
`refund.created` and `charge.refunded`.
"""

from __future__ import annotations

from . import objects
from .charges import get_pi
from .engine import Engine, RequestRef
from .errors import invalid_param, invalid_request, no_such
from .http import Call
from .listing import list_page
from .params import apply_metadata
from .store import Obj


def create_refund(engine: Engine, call: Call) -> Obj:
    p = call.params
    pi_id = p.get_str("payment_intent") or None
    ch_id = p.get_str("charge") or None
    amount = p.get_int("amount")
    reason = p.enum("reason", ("duplicate", "fraudulent", "requested_by_customer"))
    metadata = apply_metadata({}, p.metadata())
    if pi_id is None and ch_id is None:
        raise invalid_param(
            "One of the following params should be provided for this request: "
            "payment_intent or charge.",
            "payment_intent",
        )
    if pi_id is not None:
        pi = get_pi(engine, pi_id, "payment_intent")
        ch = engine.store.get(pi["latest_charge"], "charge")
        if pi["status"] != "succeeded" or ch is None:
            raise invalid_request(
                f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                param="payment_intent",
                code="charge_not_refundable",
            )
    else:
        ch = engine.store.get(ch_id, "charge")
        if ch is None:
            raise no_such("charge", ch_id or "", "charge")
    return refund_charge(engine, ch, amount, reason, metadata, call.ref)


def refund_charge(
    engine: Engine,
    ch: Obj,
    amount: int | None,
    reason: str | None,
    metadata: dict[str, str],
    ref: RequestRef,
) -> Obj:
    """Refund (part of) a succeeded charge: `refund.created`, then `charge.refunded` with the
    charge's new `amount_refunded` / `refunded` (and their old values in
    `previous_attributes`). `ref` is NO_REQUEST for a refund made in the Dashboard."""
    if ch["status"] != "succeeded":
        raise invalid_request(
            f"Charge {ch['id']} has not succeeded and cannot be refunded.",
            code="charge_not_refundable",
        )
    if ch["disputed"]:
        raise invalid_request(
            f"Charge {ch['id']} has been charged back; cannot issue a refund.",
            code="charge_disputed",
        )
    remaining = ch["amount"] - ch["amount_refunded"]
    if remaining <= 0:
        raise invalid_request(
            f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded"
        )
    amount = remaining if amount is None else amount
    if amount <= 0:
        raise invalid_param("Invalid positive integer", "amount")
    if amount > remaining:
        raise invalid_request(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
            param="amount",
            code="amount_too_large",
        )
    re_ = objects.refund(engine.now(), ch, amount, reason, metadata)
    engine.store.put(re_, "refund", f"refund:payment_intent:{ch['payment_intent']}")
    previous = {"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
    ch["amount_refunded"] += amount
    ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
    entry = engine.store.ledger_by_pi.get(ch["payment_intent"])
    if entry is not None:
        entry.amount_refunded = ch["amount_refunded"]
    engine.emit("refund.created", re_, ref)
    engine.emit("charge.refunded", ch, ref, previous)
    return re_


def retrieve_refund(engine: Engine, call: Call, id: str) -> Obj:
    re_ = engine.store.get(id, "refund")
    if re_ is None:
        raise no_such("refund", id)
    return re_


def list_refunds(engine: Engine, call: Call) -> Obj:
    pi_id = call.params.get_str("payment_intent")
    index = f"refund:payment_intent:{pi_id}" if pi_id else "refund"
    return list_page(engine, call.params, index, "/v1/refunds")


def retrieve_event(engine: Engine, call: Call, id: str) -> Obj:
    evt = engine.event(id) if id in engine.store.index("event") else None
    if evt is None:
        raise no_such("event", id)
    return evt


def list_events(engine: Engine, call: Call) -> Obj:
    """Newest first; `type` may end in `*` (`charge.*`), and `types[]` lists several."""
    p = call.params
    type_ = p.get_str("type") or None
    wanted = [type_] if type_ else p.str_list("types") or []
    if len(wanted) == 1 and not wanted[0].endswith("*"):
        return list_page(engine, p, f"event:type:{wanted[0]}", "/v1/events", None, engine.event)
    if not wanted:
        return list_page(engine, p, "event", "/v1/events", None, engine.event)
    exact = {t for t in wanted if not t.endswith("*")}
    prefixes = tuple(t[:-1] for t in wanted if t.endswith("*"))
    types = engine.event_types

    def keep(evt_id: str) -> bool:
        evt_type = types[evt_id]
        return evt_type in exact or (bool(prefixes) and evt_type.startswith(prefixes))

    return list_page(engine, p, "event", "/v1/events", keep, engine.event)
