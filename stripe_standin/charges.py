"""Charges, the ledger of successful debits, disputes, and their read endpoints.

A charge is what a confirmed PaymentIntent produces (`latest_charge`); every succeeded charge
is booked in the ledger that `/_standin/ledger` shows, which is how tests assert that a
contract was debited exactly once.
"""

from __future__ import annotations

from . import objects
from .engine import NO_REQUEST, Engine, RequestRef
from .errors import invalid_request, no_such
from .http import Call
from .listing import list_page
from .store import LedgerEntry, Obj


def get_pi(engine: Engine, pi_id: str | None, param: str | None = "id") -> Obj:
    pi = engine.store.get(pi_id, "payment_intent")
    if pi is None:
        raise no_such("payment_intent", pi_id or "", param)
    return pi


def record_success(engine: Engine, pi: Obj, pm: Obj, ref: RequestRef) -> None:
    ch = objects.charge(engine.now(), pi, pm, "succeeded")
    store_charge(engine, ch)
    pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=ch["id"])
    book(engine, pi, ch)
    engine.emit("charge.succeeded", ch, ref)
    engine.emit("payment_intent.succeeded", pi, ref)


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


def store_charge(engine: Engine, ch: Obj) -> None:
    engine.store.put(ch, "charge", f"charge:payment_intent:{ch['payment_intent']}")


def book(engine: Engine, pi: Obj, ch: Obj) -> None:
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
