"""SEPA Direct Debit: `processing` at confirm, the bank's answer later.

Stripe reports a SEPA debit's outcome days later; here after `sepa_delay` seconds (the slow
test IBAN: `sepa_long_delay`) on an event-loop timer, so thousands can be pending. Success
books the debit and sends `payment_intent.succeeded`; failure sets `failure_code` on the
charge and `last_payment_error` on the PaymentIntent and sends `payment_intent.payment_failed`.
The dispute IBAN succeeds, then the debtor's bank reclaims the money (`charge.dispute.created`).

The charge names the mandate and, as Stripe does, the date the bank account will be debited
(`payment_method_details.sepa_debit.expected_debit_date`, `YYYY-MM-DD`). Simplified rule
here: a debit created on a TARGET business day before `SEPA_CUTOFF_HOUR` (UTC) is collected
on the next TARGET business day, a later one on the business day after that. TARGET closing
days (ECB): weekends, 1 January, Good Friday, Easter Monday, 1 May, 25 and 26 December.
"""

from __future__ import annotations

import datetime as dt

from . import objects
from .charges import book, open_dispute, store_charge
from .engine import NO_REQUEST, Engine, RequestRef
from .ids import new_id
from .store import Obj
from .testvalues import SepaProfile, sepa_failure_message

SEPA_CUTOFF_HOUR = 14  # UTC; the stand-in's simplification of Stripe's daily cut-off


def _easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def is_target_day(day: dt.date) -> bool:
    if day.weekday() >= 5:
        return False
    easter = _easter(day.year)
    closed = {
        dt.date(day.year, 1, 1),
        easter - dt.timedelta(days=2),
        easter + dt.timedelta(days=1),
        dt.date(day.year, 5, 1),
        dt.date(day.year, 12, 25),
        dt.date(day.year, 12, 26),
    }
    return day not in closed


def next_target_day(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while not is_target_day(day):
        day += dt.timedelta(days=1)
    return day


def expected_debit_date(created: int) -> str:
    """When a debit created at `created` (unix time) is collected, as `YYYY-MM-DD`."""
    moment = dt.datetime.fromtimestamp(created, dt.UTC)
    collected = next_target_day(moment.date())
    if not is_target_day(moment.date()) or moment.hour >= SEPA_CUTOFF_HOUR:
        collected = next_target_day(collected)
    return collected.isoformat()


def start_sepa(
    engine: Engine, pi: Obj, pm: Obj, profile: SepaProfile, mandate: Obj, ref: RequestRef
) -> None:
    now = engine.now()
    ch = objects.charge(now, pi, pm, "pending", mandate["id"], expected_debit_date(now))
    store_charge(engine, ch)
    pi.update(status="processing", latest_charge=ch["id"])
    engine.emit("charge.pending", ch, ref)
    engine.emit("payment_intent.processing", pi, ref)
    cfg = engine.config
    late = profile.outcome in ("succeed_late", "fail_late")
    delay = cfg.effective_sepa_long_delay if late else cfg.sepa_delay
    engine.scheduler.call_later(delay, settle_sepa, engine, pi["id"], profile.failure_code, None)


def payment_settled(engine: Engine, pi: Obj, succeeded: bool) -> None:
    from .checkout import payment_settled as checkout_settled  # checkout imports payments

    checkout_settled(engine, pi, succeeded)


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
        message = sepa_failure_message(failure_code)
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
        payment_settled(engine, pi, succeeded=False)
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
    payment_settled(engine, pi, succeeded=True)
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
