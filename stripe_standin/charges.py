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
    return dispute_charge(engine, ch, reason, amount)


def get_charge(engine: Engine, ch_id: str, param: str | None = "id") -> Obj:
    ch = engine.store.get(ch_id, "charge")
    if ch is None:
        raise no_such("charge", ch_id, param)
    return ch


def dispute_charge(engine: Engine, ch: Obj, reason: str, amount: int | None) -> Obj:
    """A dispute on a succeeded charge, at any time after it (card disputes come up to ~120
    days later, SEPA "unauthorised" refund claims up to 13 months later): emits
    `charge.dispute.created` and, as Stripe debits the disputed amount at once,
    `charge.dispute.funds_withdrawn` (docs.stripe.com/disputes/how-disputes-work)."""
    if ch["status"] != "succeeded":
        raise invalid_request(f"Charge {ch['id']} has not succeeded; it cannot be disputed.")
    if ch["disputed"]:
        raise invalid_request(f"Charge {ch['id']} is already disputed.")
    amount = amount or ch["amount"] - ch["amount_refunded"]
    if not 0 < amount <= ch["amount"]:
        raise invalid_request(f"Dispute amount {amount} is out of range for {ch['id']}.")
    dp = objects.dispute(engine.now(), ch, amount, reason)
    engine.store.put(dp, "dispute", f"dispute:charge:{ch['id']}")
    ch["disputed"] = True
    entry = engine.store.ledger_by_pi.get(ch["payment_intent"])
    if entry is not None:
        entry.disputed = True
        entry.dispute_status = dp["status"]
    engine.emit("charge.dispute.created", dp, NO_REQUEST)
    _withdraw(engine, dp)
    return dp


def _withdraw(engine: Engine, dp: Obj) -> None:
    txn = objects.balance_transaction(engine.now(), -dp["amount"], dp["currency"], "adjustment")
    dp["balance_transactions"] = [*dp["balance_transactions"], txn]
    engine.emit("charge.dispute.funds_withdrawn", dp, NO_REQUEST)


CLOSABLE = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")


def close_dispute(engine: Engine, dp_id: str, outcome: str) -> Obj:
    """The card network's decision (stand-in control; in Stripe the issuer decides):
    `won` reinstates the funds (`charge.dispute.funds_reinstated`), `lost` keeps them
    withdrawn; both emit `charge.dispute.closed`. SEPA disputes cannot be contested
    (docs.stripe.com/payments/sepa-debit: they are final), so they start `lost`."""
    dp = engine.store.get(dp_id, "dispute")
    if dp is None:
        raise no_such("dispute", dp_id)
    if outcome not in ("won", "lost"):
        raise invalid_request(f"outcome must be won or lost, not {outcome!r}", param="outcome")
    if dp["status"] not in CLOSABLE:
        raise invalid_request(
            f"Dispute {dp_id} is {dp['status']}; only an open dispute can be closed.",
            code="dispute_already_closed" if dp["status"] in ("won", "lost") else None,
        )
    previous = {"status": dp["status"]}
    dp["status"] = outcome
    dp["evidence_details"] = {**dp["evidence_details"], "due_by": None}
    entry = engine.store.ledger_by_pi.get(dp["payment_intent"])
    if entry is not None:
        entry.dispute_status = outcome
    engine.emit("charge.dispute.closed", dp, NO_REQUEST, previous)
    if outcome == "won":
        txn = objects.balance_transaction(engine.now(), dp["amount"], dp["currency"], "adjustment")
        dp["balance_transactions"] = [*dp["balance_transactions"], txn]
        dp["is_charge_refundable"] = False
        engine.emit("charge.dispute.funds_reinstated", dp, NO_REQUEST)
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
            account=engine.account,
        )
    )


def retrieve_charge(engine: Engine, call: Call, id: str) -> Obj:
    return get_charge(engine, id)


def list_charges(engine: Engine, call: Call) -> Obj:
    pi_id = call.params.get_str("payment_intent")
    index = f"charge:payment_intent:{pi_id}" if pi_id else "charge"
    return list_page(engine, call.params, index, "/v1/charges")


def revoke_mandate(engine: Engine, mandate_id: str) -> Obj:
    """The customer revokes the mandate (or their bank reports it void): status `inactive`
    and `mandate.updated` (Stripe's only mandate event), with the old status in
    `previous_attributes`. Later debits under it are refused (payments._require_active)."""
    mandate = engine.store.get(mandate_id, "mandate")
    if mandate is None:
        raise no_such("mandate", mandate_id)
    if mandate["status"] == "inactive":
        raise invalid_request(f"Mandate {mandate_id} is already inactive.")
    previous = {"status": mandate["status"]}
    mandate["status"] = "inactive"
    engine.emit("mandate.updated", mandate, NO_REQUEST, previous)
    return mandate


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


def retrieve_account(engine: Engine, call: Call) -> Obj:
    """`GET /v1/account`: the account the key belongs to (or the connected account the
    `Stripe-Account` header names), with what Mahnwerk reads of it — the SEPA creditor id
    Stripe debits under (`settings.sepa_debit_payments.creditor_id`)."""
    acct = engine.accounts[engine.account]
    creditor_id = engine.config.creditor_id if acct.kind == "platform" else acct.creditor_id
    return {
        "id": acct.id,
        "object": "account",
        "type": "standard",
        "country": "DE",
        "default_currency": "eur",
        "charges_enabled": True,
        "payouts_enabled": True,
        "settings": {"sepa_debit_payments": {"creditor_id": creditor_id}},
    }
