"""SEPA Direct Debit: `processing` at confirm, the bank's answer later.

Stripe reports a SEPA debit's outcome days later; here after `sepa_delay` seconds (the slow
test IBAN: `sepa_long_delay`) on an event-loop timer, so thousands can be pending. Success
books the debit and sends `payment_intent.succeeded`; failure sets `failure_code` on the
charge and `last_payment_error` on the PaymentIntent and sends `payment_intent.payment_failed`.
The dispute IBAN succeeds, then the debtor's bank reclaims the money (`charge.dispute.created`).
"""

from __future__ import annotations

from . import objects
from .charges import book, open_dispute, store_charge
from .engine import NO_REQUEST, Engine, RequestRef
from .ids import new_id
from .store import Obj
from .testvalues import SEPA_FAILURE_MESSAGES, SepaProfile


def start_sepa(engine: Engine, pi: Obj, pm: Obj, profile: SepaProfile, ref: RequestRef) -> None:
    mandate_id = engine.store.mandate_by_pm.get(pm["id"])
    if mandate_id is None:
        mandate = objects.mandate(engine.now(), pm, None)
        engine.store.put(mandate, "mandate")
        mandate_id = engine.store.mandate_by_pm[pm["id"]] = mandate["id"]
    ch = objects.charge(engine.now(), pi, pm, "pending", mandate_id)
    store_charge(engine, ch)
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
    book(engine, pi, ch)
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
