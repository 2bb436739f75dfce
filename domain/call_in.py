"""Calling in the rest of an installment plan (Gesamtfälligstellung), § 498 BGB as data.

An installment purchase by a consumer at a price above the cash price is a paid financial
accommodation ("entgeltliche Finanzierungshilfe", a Teilzahlungsgeschäft): the consumer
credit rules apply to it, § 498 among them (§ 506 (1), (3) [BGB]; DOMAIN.md §1 "Paid
installment plan"). So the seller may call the whole remainder in for late payment only if

1. the consumer is in default, in whole or in part, with **at least two consecutive
   installments** (§ 498 (1) sentence 1 Nr. 1 a),
2. **and** with at least **10 %** of the nominal amount — **5 %** when the contract runs for
   more than three years (Nr. 1 b),
3. **and** the seller set a **two-week deadline** to pay the arrears, declaring that the
   whole remainder falls due if it is not paid in time, and it passed unpaid (Nr. 2). The
   seller should offer a conversation about an amicable arrangement with that notice at the
   latest (sentence 2).

Source: § 498 (1) [BGB] (statute text in ``kmein/gesetze`` ``laws/bgb.md`` at commit
``cce3209c``, gesetze-im-internet.de of 2026-08-19): "… nur dann kündigen, wenn 1. der
Darlehensnehmer a) mit mindestens zwei aufeinander folgenden Teilzahlungen ganz oder
teilweise in Verzug ist, b) bei einer Vertragslaufzeit bis zu drei Jahren mit mindestens 10
Prozent oder bei einer Vertragslaufzeit von mehr als drei Jahren mit mindestens 5 Prozent
des Nennbetrags des Darlehens in Verzug ist und 2. der Darlehensgeber dem Darlehensnehmer
erfolglos eine zweiwöchige Frist zur Zahlung des rückständigen Betrags mit der Erklärung
gesetzt hat, dass er bei Nichtzahlung innerhalb der Frist die gesamte Restschuld verlange."

Readings of this module (our judgement where the statute leaves room; documented in
docs/collection.md):

* the **nominal amount** of an installment purchase is what the plan costs in total (the
  sum of its installments, the Teilzahlungspreis);
* the **term** runs from the first to the last agreed due date;
* **in arrears** is principal of an installment whose debit failed (or was reclaimed) and
  that is still unpaid: a debit not yet attempted is no default (domain.claim.demanded);
  interest and fees do not count towards the 10 % / 5 %.

Business customers are not protected by § 498 (it protects consumers, § 491 (1) [BGB]): a
policy's ``on_default: call_in`` calls the remainder in at once for them.

Pure: no clock, no I/O; dates are ISO strings (Europe/Berlin).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from domain.interest import BUSINESS, check_amount, check_customer_type, iso_date

BASIS: Final = "§ 498 Abs. 1 BGB (via § 506 Abs. 1, 3 BGB)"
# § 498 (1) sentence 1 Nr. 1 a: consecutive installments in default, at least
MIN_CONSECUTIVE: Final = 2
# § 498 (1) sentence 1 Nr. 1 b: share of the nominal amount in default, in basis points
SHARE_BP: Final = 1000  # 10 % for a term of up to three years
SHARE_BP_LONG_TERM: Final = 500  # 5 % for a term of more than three years
LONG_TERM_YEARS: Final = 3
# § 498 (1) sentence 1 Nr. 2: the deadline to pay the arrears ("zweiwöchige Frist"),
# counted by §§ 187 (1), 188 (1), 193 BGB (domain.deadlines.deadline_after)
NOTICE_PERIOD_DAYS: Final = 14


@dataclass(frozen=True)
class Arrears:
    """One installment of the plan as § 498 looks at it: its agreed amount, its due date and
    how much of its principal is in default (0: paid, not due, or not attempted yet)."""

    seq: int
    due: str  # ISO date
    amount: int  # as agreed, minor units
    in_default: int  # minor units


@dataclass
class CallInCheck:
    """Whether the remainder may be called in now (``allowed``), and why (not)."""

    allowed: bool
    basis: str  # the rule applied
    consecutive: int  # the longest run of consecutive installments in default
    arrears: int  # principal in default, minor units
    nominal: int  # the plan's nominal amount (all installments as agreed)
    threshold: int  # what the arrears must reach (0: no threshold)
    share_bp: int  # the share of the nominal amount, basis points (0: none)
    long_term: bool  # the term runs for more than three years
    reasons: list[str] = field(default_factory=list)  # conditions not met (empty: allowed)
    installments: list[int] = field(default_factory=list)  # those in default


def term_over_years(first_due: str, last_due: str, years: int) -> bool:
    """Whether the term from ``first_due`` to ``last_due`` is longer than ``years``."""
    first = iso_date(first_due, "first_due")
    last = iso_date(last_due, "last_due")
    try:
        limit = first.replace(year=first.year + years)
    except ValueError:  # from 29 February: the years end on 28 February (§ 188 (3) BGB)
        limit = first.replace(year=first.year + years, day=28)
    return last > limit


def _ceil_share(nominal: int, share_bp: int) -> int:
    return -(-nominal * share_bp // 10_000)


def check_call_in(customer_type: str, plan: Sequence[Arrears]) -> CallInCheck:
    """May the remainder of ``plan`` (every installment of the contract) be called in now?

    Consumers: conditions 1 and 2 of the module docstring — the deadline of condition 3 is
    the caller's: send the notice when this says ``allowed``, call in once it passed unpaid.
    Business customers: allowed (no § 498 protection). Raises ValueError for bad input.
    """
    kind = check_customer_type(customer_type)
    ordered = sorted(plan, key=lambda i: i.seq)
    if not ordered:
        raise ValueError("a plan has at least one installment")
    for inst in ordered:
        check_amount(inst.amount, f"installment {inst.seq} amount")
        check_amount(inst.in_default, f"installment {inst.seq} in_default")
        if inst.in_default > inst.amount:
            raise ValueError(f"installment {inst.seq}: more in default than its amount")
    nominal = sum(i.amount for i in ordered)
    run = best = 0
    for inst in ordered:
        run = run + 1 if inst.in_default > 0 else 0
        best = max(best, run)
    arrears = sum(i.in_default for i in ordered)
    in_default = [i.seq for i in ordered if i.in_default > 0]
    long_term = term_over_years(ordered[0].due, ordered[-1].due, LONG_TERM_YEARS)
    if kind == BUSINESS:
        return CallInCheck(
            allowed=True,
            basis="business customer: § 498 BGB protects consumers only (§ 491 Abs. 1 BGB)",
            consecutive=best,
            arrears=arrears,
            nominal=nominal,
            threshold=0,
            share_bp=0,
            long_term=long_term,
            installments=in_default,
        )
    share = SHARE_BP_LONG_TERM if long_term else SHARE_BP
    threshold = _ceil_share(nominal, share)
    reasons = []
    if best < MIN_CONSECUTIVE:
        reasons.append(
            f"{best} consecutive installment(s) in default, § 498 (1) Nr. 1 a BGB needs "
            f"at least {MIN_CONSECUTIVE}"
        )
    if arrears < threshold:
        term = "more than three years" if long_term else "up to three years"
        reasons.append(
            f"{arrears} in default is less than {share // 100} % of the nominal amount "
            f"{nominal} ({threshold}; term {term}), § 498 (1) Nr. 1 b BGB"
        )
    return CallInCheck(
        allowed=not reasons,
        basis=BASIS,
        consecutive=best,
        arrears=arrears,
        nominal=nominal,
        threshold=threshold,
        share_bp=share,
        long_term=long_term,
        reasons=reasons,
        installments=in_default,
    )
