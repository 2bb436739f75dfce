"""Ending a contract early: the reasons a cancellation may give, what each one does, what a
withdrawal refunds, and how a refund is spread over the payments it gives back (issue 12
item 3). Pure data and arithmetic: the workflow (workflows/endings.py) sequences, the refund
activity (activities/refunds.py) calls Stripe.

Sources (keys as in DOMAIN.md): [BGB] = statute text in ``kmein/gesetze`` ``laws/*.md``.

* Withdrawal (Widerruf) § 355 (1), (3) [BGB]: the contract is unwound, "die empfangenen
  Leistungen sind unverzüglich zurückzugewähren"; § 357 (1) [BGB]: payments are returned at
  the latest 14 days after the withdrawal was received, § 357 (3) [BGB] with the means of
  payment the consumer used (so a Stripe payment is refunded through Stripe).
* Wertersatz for a service begun at the consumer's express request before the withdrawal
  period ended: § 357a (2) [BGB] — "der Wert … ist auf der Grundlage des vereinbarten
  Gesamtpreises zu berechnen": the share of the agreed total price the service performed up
  to the withdrawal represents. ``pro_rata`` computes it by time (the plan's term), the
  usual reading for courses and memberships that run over a term.
* Digital content: no Wertersatz (§ 357a (3) [BGB]); instead the withdrawal right lapses
  once delivery began with the consumer's express consent, their acknowledgement that the
  right is then lost, and the § 312f [BGB] confirmation (§ 356 (5) [BGB]; § 356 (6) since
  June 2026, DOMAIN.md §1). That evidence is kept with the contract (``consents``); whether a
  late withdrawal is still valid is the seller's decision — Mahnwerk records what it is told.
* Cancellation button (Kündigungsbutton) § 312k [BGB]: an ordinary termination of a
  continuing obligation, effective at the end of the period paid for.

Which reasons end what: :data:`RULES`. What a withdrawal refunds: :func:`withdrawal_refund`.
Which payments a refund gives back: :func:`allocate_refund`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Final

from domain.interest import round_half_up

WITHDRAWAL: Final = "withdrawal"
CANCELLATION_BUTTON: Final = "cancellation_button"
GOODWILL: Final = "goodwill"
FRAUD: Final = "fraud"
OTHER: Final = "other"
REASONS: Final = (WITHDRAWAL, CANCELLATION_BUTTON, GOODWILL, FRAUD, OTHER)

# policy `withdrawal.refund`
REFUND_FULL: Final = "full"  # everything paid (the default: § 355 (3) BGB)
REFUND_PRO_RATA: Final = "pro_rata"  # less the value of the term used (§ 357a (2) BGB)
REFUND_CALLER: Final = "caller"  # the caller names the amount (`refund` in the request)
REFUND_MODES: Final = (REFUND_FULL, REFUND_PRO_RATA, REFUND_CALLER)

# policy `withdrawal.access` / `cancellation.access`
ACCESS_END: Final = "end"
ACCESS_KEEP: Final = "keep"
ACCESS_MODES: Final = (ACCESS_END, ACCESS_KEEP)


@dataclass(frozen=True)
class CancelRule:
    """What a cancellation for one reason does.

    ``now``: it takes effect at once, every unpaid installment (scheduled or overdue) is
    cancelled, dunning stops and what the dunning added (fees, costs, interest) is given up;
    otherwise it ends the contract at the end of the period paid for (``at_period_end``,
    the default) or now, and what is already due stays owed (and dunned).
    ``policy_refund``: without an amount from the caller, the policy's ``withdrawal.refund``
    decides what is refunded; otherwise only the caller's ``refund`` is.
    ``access``: ``withdrawal`` / ``cancellation`` (that policy section's ``access``) or
    ``end`` (always)."""

    reason: str
    now: bool
    policy_refund: bool
    access: str
    source: str


RULES: Final[dict[str, CancelRule]] = {
    WITHDRAWAL: CancelRule(WITHDRAWAL, True, True, "withdrawal", "§§ 355, 357, 357a BGB"),
    CANCELLATION_BUTTON: CancelRule(
        CANCELLATION_BUTTON, False, False, "cancellation", "§ 312k BGB"
    ),
    GOODWILL: CancelRule(GOODWILL, True, False, "cancellation", "Kulanz (the seller's choice)"),
    FRAUD: CancelRule(FRAUD, True, False, ACCESS_END, "the seller's decision (fraud)"),
    OTHER: CancelRule(OTHER, False, False, "cancellation", "agreement or the seller's terms"),
}


def rule_for(reason: str) -> CancelRule | None:
    return RULES.get(reason)


def ends_now(reason: str) -> bool:
    """Whether a cancellation for ``reason`` takes effect at once (see :class:`CancelRule`)."""
    rule = RULES.get(reason)
    return rule is not None and rule.now


def pro_rata_value(price: int, start: datetime, end: datetime, at: datetime) -> int:
    """The share of ``price`` the time from ``start`` to ``at`` is of the term ``start`` to
    ``end`` (§ 357a (2) BGB: the value of what was performed, on the basis of the agreed total
    price), rounded half-up to the cent; 0 before the start, ``price`` after the end."""
    if price < 0:
        raise ValueError(f"price must be >= 0, got {price}")
    if end <= start:
        raise ValueError("the term must end after it starts")
    if at <= start:
        return 0
    if at >= end:
        return price
    used = Fraction(int((at - start).total_seconds()), int((end - start).total_seconds()))
    return round_half_up(price * used)


def withdrawal_refund(
    mode: str,
    paid: int,
    refunded: int,
    *,
    price: int = 0,
    term: tuple[datetime, datetime] | None = None,
    at: datetime | None = None,
) -> int:
    """What a withdrawal refunds under the policy's ``withdrawal.refund`` (minor units).

    ``paid``: everything received on the contract; ``refunded``: what was given back already.
    ``full``: all of it that was not refunded yet. ``pro_rata``: that less the value of the
    term used up to ``at`` (§ 357a (2) BGB: the agreed total ``price`` over ``term``);
    without a term (a one-off purchase) it is ``full``. ``caller``: not computed here (the
    caller must name the amount) — raises ValueError."""
    if mode not in REFUND_MODES:
        raise ValueError(f"refund mode must be one of {', '.join(REFUND_MODES)}, got {mode!r}")
    if mode == REFUND_CALLER:
        raise ValueError("withdrawal.refund is `caller`: the caller names the amount")
    left = max(paid - refunded, 0)
    if mode == REFUND_FULL or term is None or at is None:
        return left
    used = pro_rata_value(price, term[0], term[1], at)
    # What was paid beyond the value used; a value used beyond what was paid is not claimed
    # here (the unpaid installments are cancelled; the seller may claim Wertersatz apart).
    return max(paid - used - refunded, 0)


@dataclass(frozen=True)
class Refundable:
    """A payment that may be given back: an installment's Stripe payment (``payment_intent``
    set) or a payment received outside Stripe (``payment_intent`` None)."""

    installment: int
    amount: int  # paid and not yet refunded
    payment_intent: str | None
    paid_at: datetime | None = None


@dataclass(frozen=True)
class RefundPart:
    installment: int
    amount: int
    payment_intent: str | None  # None: outside Stripe (the seller transfers it)


@dataclass
class RefundPlan:
    """How a refund is given back: through Stripe per PaymentIntent, and what is left for the
    seller to transfer (payments received outside Stripe, § 357 (3) BGB: the same means)."""

    amount: int
    parts: list[RefundPart] = field(default_factory=list)

    @property
    def stripe(self) -> int:
        return sum(p.amount for p in self.parts if p.payment_intent)

    @property
    def outside_stripe(self) -> int:
        return sum(p.amount for p in self.parts if not p.payment_intent)


def refundable_total(payments: list[Refundable]) -> int:
    return sum(max(p.amount, 0) for p in payments)


def allocate_refund(amount: int, payments: list[Refundable]) -> RefundPlan:
    """Spread a refund of ``amount`` over the payments, the latest first (a pro-rata refund
    gives back the part of the term not used: the later installments), each up to what it
    has left; Stripe payments before payments made outside Stripe of the same installment.
    Raises ValueError if ``amount`` exceeds everything refundable."""
    if amount < 0:
        raise ValueError(f"refund must be >= 0, got {amount}")
    total = refundable_total(payments)
    if amount > total:
        raise ValueError(f"refund {amount} exceeds what was paid and not refunded ({total})")
    plan = RefundPlan(amount)
    left = amount
    ordered = sorted(
        payments, key=lambda p: (p.installment, p.payment_intent is not None), reverse=True
    )
    for p in ordered:
        if left == 0:
            break
        take = min(left, max(p.amount, 0))
        if take:
            plan.parts.append(RefundPart(p.installment, take, p.payment_intent))
            left -= take
    return plan
