"""The claim, exact: one function computes it as of a day from what happened (SPEC §2 "Claim",
issue 11). Workflow, notices, API, receivables report, ``OverdueAmount`` and case file all read
the same :class:`Claim`; nothing else computes interest.

The parts, each with its rule:

* **principal** per installment: the agreed amount less what was allocated to it.
* **interest** (§ 288 (1), (2) BGB via ``domain.interest``) per installment, on the principal
  *actually open that day*: each day from the day after the due date (§ 187 (1) BGB) up to
  and including the day of payment counts at the rate in force that day, ``amount × rate ×
  days / 365`` per rate period. A partial payment on day P reduces the principal from P + 1
  (P itself still counts on the old amount), so every cent of principal bears interest from
  the day after the due date up to and including the day it was paid. The exact sum
  (``Fraction``) is rounded half-up to the cent once per installment; what was paid or waived
  is deducted from that rounded figure, never from a re-rounded part. No interest on
  interest, fees or costs (§ 289 BGB).
* **fees**: the policy's dunning fees (Mahnkosten), with the date charged.
* **costs**, kept apart from fees: bank return-debit costs (damage, §§ 280, 286 BGB; not costs
  of legal pursuit), collection and information costs (costs of legal pursuit).
* **lump sums** (§ 288 (5) BGB): EUR 40 for each installment in default, business customers
  only, arising on the first day of default (the day after the due date, § 286 (2) Nr. 1
  BGB) if the installment was not paid in full by the end of its due date. Sentence 3: the
  lump sums are credited against the costs of legal pursuit (dunning fees, collection and
  information costs): the creditor gets the larger of the two, not both
  (``domain.fees.lump_sum_credit``). The credit is taken from the open pursuit costs, oldest
  first; what they cannot absorb because they were already paid is taken from the open lump
  sums. A waiver gives up what is open; it never revives what the crediting absorbed.
* **payments**: a debit of one installment pays that installment's principal first (the
  debtor's mandate or card authorised that amount for it: a determination, § 366 (1) BGB);
  anything else, and any excess, is allocated by § 367 (1) BGB: costs (fees, costs, lump
  sums) → interest → principal, within each kind oldest first and equal ages proportionally
  (§ 366 (2) BGB, ``domain.allocation.allocate``). What is left after every due part is paid
  prepays the next installments (§ 271 (2) BGB: the debtor may perform early); beyond that
  it is ``credit`` (to be refunded).
* **waivers** (support): fees, costs, lump sums and/or interest open on that day are given
  up; an interest waiver also stops interest from accruing after that day.

Facts are dated in Europe/Berlin (ISO dates); facts after ``as_of`` are ignored. On one day
they apply in this order: lump sums arising, then by each fact's ``order`` (the caller's
sequence, e.g. the workflow's event counter), then charges before payments before waivers.

A § 247 BGB base rate missing from the table is never guessed: interest is computed up to
the day before the first half-year without a rate (``interest_until``) and the claim names
the missing half-year (``missing_base_rate``) so notices can say the rest is calculated
separately.

All dataclasses hold str/int/bool/list fields only (dates as ISO strings), so they cross the
Temporal boundary and serialise with ``dataclasses.asdict`` to the SPEC claim shape. No
clock, randomness or I/O: safe in the workflow sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction
from typing import Final

from domain import allocation
from domain.collection import (
    AUSKUNFTSKOSTEN,
    INKASSOKOSTEN,
    MAHNKOSTEN,
    RUECKLASTSCHRIFTKOSTEN,
    VERZUGSPAUSCHALE,
)
from domain.fees import B2B_LUMP_SUM, lump_sum_credit
from domain.interest import (
    BASE_RATES,
    BUSINESS,
    BaseRate,
    check_amount,
    check_customer_type,
    default_interest,
    iso_date,
    rate_table,
    round_half_up,
)
from domain.policy import COLLECT_CLAIM, COLLECT_PRINCIPAL

# -- kinds -------------------------------------------------------------------------------------

FEE: Final = "fee"  # a dunning fee of the policy (Mahnkosten)
RETURN_DEBIT: Final = "return_debit"  # bank costs of a returned SEPA debit
COLLECTION: Final = "collection"  # costs of a collection agency or lawyer (Inkassokosten)
INFORMATION: Final = "information"  # address enquiries and the like (Auskunftskosten)
LUMP_SUM: Final = "lump_sum"  # § 288 (5) BGB
COST_KINDS: Final = (RETURN_DEBIT, COLLECTION, INFORMATION)
LABELS: Final[dict[str, str]] = {
    FEE: MAHNKOSTEN,
    RETURN_DEBIT: RUECKLASTSCHRIFTKOSTEN,
    COLLECTION: INKASSOKOSTEN,
    INFORMATION: AUSKUNFTSKOSTEN,
    LUMP_SUM: VERZUGSPAUSCHALE,
}
# "Kosten der Rechtsverfolgung" (§ 288 (5) sentence 3 BGB): the lump sums absorb these.
PURSUIT_KINDS: Final = frozenset({FEE, COLLECTION, INFORMATION})

STATUTORY: Final = "statutory"
NONE: Final = "none"
WAIVED: Final = "waived"
INTEREST_MODES: Final = (STATUTORY, NONE)

# Parts of a payment's allocation (AllocationLine.part), as named in the claim.
PARTS: Final = ("principal", "interest", "fees", "costs", "lump_sums")

# -- facts (input) -----------------------------------------------------------------------------


@dataclass
class InstallmentFact:
    """One installment (or a subscription period, or the one-off amount) as agreed."""

    seq: int  # 1-based, unique
    due: str  # ISO date (Europe/Berlin) it fell or falls due
    amount: int  # the agreed amount, minor units


@dataclass
class PaymentFact:
    """Money received: a debit that succeeded, a settlement, a new payment method's debit."""

    key: str  # unique, e.g. the PaymentIntent id or the settlement's reference
    on: str  # ISO date received (Berlin): the last interest day for what it pays
    amount: int
    installment: int = 0  # > 0: a debit of this installment (its principal first)
    order: int = 0  # tie-break among facts of the same day (the caller's sequence)


@dataclass
class FeeFact:
    """A dunning fee charged (the policy's ``fee`` when a stage was reached)."""

    key: str  # unique, e.g. "2:mahnung_1" (case and stage)
    on: str  # ISO date charged
    amount: int
    stage: str = ""  # the ladder stage, for notices
    order: int = 0


@dataclass
class CostFact:
    """A cost charged: ``return_debit`` | ``collection`` | ``information``."""

    key: str
    on: str
    amount: int
    kind: str = RETURN_DEBIT
    installment: int = 0  # the installment it arose with (a returned debit's), 0 if none
    order: int = 0


@dataclass
class WaiverFact:
    """Support gave up what was open of these parts on ``on``."""

    key: str
    on: str
    fees: bool = False
    costs: bool = False
    lump_sums: bool = False
    interest: bool = False  # also stops interest accruing after ``on`` (see stop_interest)
    order: int = 0
    # False: give up only the interest open on ``on`` and let interest accrue afterwards as
    # before — the write-off of a residual once the principal is paid (policy
    # ``residual.write_off_below``) must not stop interest on installments that fall into
    # default later. True (a support waiver): no interest after ``on`` at all.
    stop_interest: bool = True
    # Installments whose open principal is given up (a write-off, issue 12): it bears
    # interest up to and including ``on``, none afterwards; counted in ``waived.principal``.
    principal: list[int] = field(default_factory=list)


@dataclass
class ClaimFacts:
    """Everything :func:`compute_claim` needs. ``rates`` is the § 247 BGB table in force
    (``domain.interest.BASE_RATES`` plus ``MAHNWERK_BASE_RATES``); ``interest`` the policy's
    mode (``statutory`` | ``none``); ``lump_sums`` whether § 288 (5) lump sums are claimed
    from business customers."""

    customer_type: str
    installments: list[InstallmentFact] = field(default_factory=list)
    payments: list[PaymentFact] = field(default_factory=list)
    fees: list[FeeFact] = field(default_factory=list)
    costs: list[CostFact] = field(default_factory=list)
    waivers: list[WaiverFact] = field(default_factory=list)
    interest: str = STATUTORY
    lump_sums: bool = True
    rates: list[BaseRate] = field(default_factory=lambda: list(BASE_RATES))


# -- the claim (output) ------------------------------------------------------------------------


@dataclass
class InterestSpan:
    """Days at one rate on one principal amount; ``end`` inclusive; ``exact`` the unrounded
    interest in minor units as a fraction (``"2181/73"``)."""

    start: str
    end: str
    days: int
    principal: int
    rate_bp: int  # base + margin
    base_bp: int
    exact: str


@dataclass
class PaidParts:
    principal: int = 0
    interest: int = 0


@dataclass
class ClaimItem:
    """One installment in the claim: what is open of it and what was paid on it."""

    installment: int
    due: str
    amount: int  # as agreed
    principal: int  # open
    interest: int  # open: interest_accrued − paid.interest − interest_waived
    interest_periods: list[InterestSpan] = field(default_factory=list)
    paid: PaidParts = field(default_factory=PaidParts)
    interest_from: str = ""  # the first interest day (the day after the due date)
    interest_accrued: int = 0  # rounded once, up to the claim's interest_until
    interest_waived: int = 0


@dataclass
class ChargeLine:
    """A fee, a cost or a lump sum: charged, absorbed by the § 288 (5) sentence 3 crediting,
    waived, paid, and what is still ``open``."""

    key: str
    kind: str  # fee | return_debit | collection | information | lump_sum
    label: str  # German label as in the Mahnantrag ("Mahnkosten", "Rücklastschriftkosten")
    on: str
    amount: int
    credited: int = 0
    waived: int = 0
    paid: int = 0
    open: int = 0
    installment: int = 0  # lump sums and return-debit costs: the installment
    stage: str = ""  # fees: the ladder stage


@dataclass
class Totals:
    principal: int = 0
    interest: int = 0
    fees: int = 0
    costs: int = 0
    lump_sums: int = 0


@dataclass
class AllocationLine:
    part: str  # principal | interest | fees | costs | lump_sums
    key: str  # the charge's key, or "" for principal and interest
    installment: int  # the installment (principal, interest, lump sums), else 0
    amount: int


@dataclass
class PaymentAllocation:
    """Where one payment went. ``prepaid``: to installments not yet due; ``credit``: more
    than everything owed and scheduled (to be refunded)."""

    key: str
    on: str
    amount: int
    parts: list[AllocationLine] = field(default_factory=list)
    prepaid: int = 0
    credit: int = 0


@dataclass
class Claim:
    """The claim as of ``as_of``: ``total = principal + interest + fees + costs + lump_sums``,
    all open amounts in minor units (SPEC "Extensions agreed for the second wave")."""

    as_of: str
    principal: int
    interest: int
    fees: int
    costs: int
    lump_sums: int
    total: int
    items: list[ClaimItem] = field(default_factory=list)
    customer_type: str = "consumer"
    interest_mode: str = STATUTORY  # statutory | none (policy) | waived
    interest_until: str = ""  # the last day interest is computed for; "" without interest
    missing_base_rate: str = ""  # the 1 Jan / 1 Jul whose § 247 rate the table lacks
    fee_items: list[ChargeLine] = field(default_factory=list)
    cost_items: list[ChargeLine] = field(default_factory=list)
    lump_sum_items: list[ChargeLine] = field(default_factory=list)
    credited: int = 0  # § 288 (5) sentence 3 BGB crediting, in total
    paid: Totals = field(default_factory=Totals)
    waived: Totals = field(default_factory=Totals)
    prepaid: int = 0  # paid towards installments not yet due
    credit: int = 0  # overpaid
    payments: list[PaymentAllocation] = field(default_factory=list)

    def item(self, installment: int) -> ClaimItem | None:
        for item in self.items:
            if item.installment == installment:
                return item
        return None


# -- computation -------------------------------------------------------------------------------


class _Installment:
    """Mutable working state of one installment while the facts are replayed."""

    def __init__(self, fact: InstallmentFact) -> None:
        self.seq = fact.seq
        self.due = iso_date(fact.due, f"installment {fact.seq} due")
        self.amount = fact.amount
        self.open = fact.amount
        self.paid = PaidParts()
        self.waived_interest = 0
        # Interest: closed segments (exact sum and spans) and the current one.
        self.closed_exact = Fraction(0)
        self.closed_spans: list[InterestSpan] = []
        self.seg_start = self.due + timedelta(days=1)
        self.seg_amount = fact.amount


class _Run:
    """Replays the facts in order; one instance per :func:`compute_claim` call."""

    def __init__(self, facts: ClaimFacts, as_of: date) -> None:
        self.facts = facts
        self.as_of = as_of
        self.kind = check_customer_type(facts.customer_type)
        if facts.interest not in INTEREST_MODES:
            raise ValueError(
                f"interest must be one of {', '.join(INTEREST_MODES)}, got {facts.interest!r}"
            )
        self.rates = tuple(facts.rates)
        self.table = rate_table(self.rates)
        self.insts: dict[int, _Installment] = {}
        for fact in facts.installments:
            if isinstance(fact.seq, bool) or not isinstance(fact.seq, int) or fact.seq < 1:
                raise ValueError(f"installment seq must be a positive integer, got {fact.seq!r}")
            if fact.seq in self.insts:
                raise ValueError(f"installment {fact.seq} given twice")
            check_amount(fact.amount, f"installment {fact.seq} amount")
            self.insts[fact.seq] = _Installment(fact)
        self.charges: list[ChargeLine] = []
        self.charge_keys: set[tuple[str, str]] = set()
        self.credited = 0
        self.payments: list[PaymentAllocation] = []
        self.prepaid = 0
        self.credit = 0
        self.waived = Totals()
        self.interest_stop: date | None = None  # an interest waiver: no interest after it
        self.interest_on = facts.interest == STATUTORY
        self.limit, self.missing = self._rate_limit()

    # -- interest ----------------------------------------------------------------------------

    def _rate_limit(self) -> tuple[date | None, str]:
        """The last day a base rate is known for (None: no limit), and the first missing
        half-year, over the days interest may need."""
        if not self.interest_on or not self.insts:
            return None, ""
        day = min(i.due for i in self.insts.values()) + timedelta(days=1)
        start = date(day.year, 1 if day.month < 7 else 7, 1)
        while start <= self.as_of:
            if start not in self.table:
                return start - timedelta(days=1), start.isoformat()
            start = date(start.year, 7, 1) if start.month == 1 else date(start.year + 1, 1, 1)
        return None, ""

    def _last_interest_day(self, day: date) -> date:
        last = day
        if self.limit is not None:
            last = min(last, self.limit)
        if self.interest_stop is not None:
            last = min(last, self.interest_stop)
        return last

    def _segment(self, amount: int, start: date, end: date) -> tuple[Fraction, list[InterestSpan]]:
        if not self.interest_on or amount == 0 or end < start:
            return Fraction(0), []
        result = default_interest(
            amount,
            (start - timedelta(days=1)).isoformat(),
            end.isoformat(),
            self.kind,
            self.rates,
        )
        spans = [
            InterestSpan(
                start=p.start,
                end=p.end,
                days=p.days,
                principal=amount,
                rate_bp=p.rate_bp,
                base_bp=p.base_bp,
                exact=p.exact,
            )
            for p in result.periods
        ]
        return Fraction(result.exact), spans

    def accrued(self, inst: _Installment, day: date) -> tuple[int, list[InterestSpan]]:
        """Interest on ``inst`` up to and including ``day``: rounded once, and its spans."""
        exact, spans = self._segment(inst.seg_amount, inst.seg_start, self._last_interest_day(day))
        return round_half_up(inst.closed_exact + exact), inst.closed_spans + spans

    def interest_open(self, inst: _Installment, day: date) -> int:
        if day <= inst.due:
            return 0
        amount, _ = self.accrued(inst, day)
        return amount - inst.paid.interest - inst.waived_interest

    def reduce_principal(self, inst: _Installment, amount: int, day: date) -> None:
        """``amount`` of the principal paid on ``day``: it bears interest up to and including
        ``day``, the rest from ``day + 1`` on."""
        inst.open -= amount
        inst.paid.principal += amount
        new_start = day + timedelta(days=1)
        if new_start > inst.seg_start:
            exact, spans = self._segment(
                inst.seg_amount, inst.seg_start, self._last_interest_day(day)
            )
            inst.closed_exact += exact
            inst.closed_spans += spans
            inst.seg_start = new_start
        inst.seg_amount = inst.open

    # -- charges and crediting ---------------------------------------------------------------

    def add_charge(self, line: ChargeLine) -> None:
        ident = (line.kind if line.kind in (FEE, LUMP_SUM) else "cost", line.key)
        if ident in self.charge_keys:
            raise ValueError(f"{line.kind} {line.key!r} given twice")
        self.charge_keys.add(ident)
        line.open = line.amount
        self.charges.append(line)
        self._credit_lump_sums()

    def _credit_lump_sums(self) -> None:
        """§ 288 (5) sentence 3 BGB: bring the crediting up to min(lump sums, pursuit costs)."""
        lumps = sum(c.amount for c in self.charges if c.kind == LUMP_SUM)
        pursuit = sum(c.amount - c.waived for c in self.charges if c.kind in PURSUIT_KINDS)
        delta = lump_sum_credit(lumps, pursuit) - self.credited
        if delta <= 0:  # never un-credit (module docstring)
            return
        order = [c for c in self.charges if c.kind in PURSUIT_KINDS]
        order += [c for c in reversed(self.charges) if c.kind == LUMP_SUM]
        for line in order:
            take = min(delta, line.open)
            line.credited += take
            line.open -= take
            self.credited += take
            delta -= take
            if delta == 0:
                return

    # -- events ------------------------------------------------------------------------------

    def lump_sum(self, inst: _Installment) -> None:
        """Default begins the day after the due date: § 288 (5) lump sum if still unpaid."""
        if inst.open > 0:
            on = (inst.due + timedelta(days=1)).isoformat()
            self.add_charge(
                ChargeLine(
                    key=f"lump_sum:{inst.seq}",
                    kind=LUMP_SUM,
                    label=LABELS[LUMP_SUM],
                    on=on,
                    amount=B2B_LUMP_SUM,
                    installment=inst.seq,
                )
            )

    def pay(self, fact: PaymentFact, day: date) -> None:
        alloc = PaymentAllocation(key=fact.key, on=day.isoformat(), amount=fact.amount)
        left = fact.amount
        if fact.installment:
            inst = self.insts.get(fact.installment)
            if inst is None:
                raise ValueError(
                    f"payment {fact.key!r} names installment {fact.installment}, "
                    "which is not among the installments"
                )
            take = min(left, inst.open)
            if take:
                self.reduce_principal(inst, take, day)
                alloc.parts.append(AllocationLine("principal", "", inst.seq, take))
                left -= take
        if left:
            left = self._allocate_367(left, day, alloc)
        for inst in sorted(self.insts.values(), key=lambda i: (i.due, i.seq)):
            if left == 0:
                break
            if inst.due > day and inst.open:  # § 271 (2) BGB: early performance
                take = min(left, inst.open)
                self.reduce_principal(inst, take, day)
                alloc.parts.append(AllocationLine("principal", "", inst.seq, take))
                alloc.prepaid += take
                left -= take
        alloc.credit = left
        self.prepaid += alloc.prepaid
        self.credit += left
        self.payments.append(alloc)

    def _allocate_367(self, amount: int, day: date, alloc: PaymentAllocation) -> int:
        """§§ 366 (2), 367 (1) BGB via ``domain.allocation``; returns what is left over."""
        charges = {f"{c.kind}:{c.key}": c for c in self.charges if c.open > 0}
        due = [i for i in self.insts.values() if i.due <= day]
        interest = {i.seq: self.interest_open(i, day) for i in due}
        claim = allocation.Claim(
            costs=[allocation.Item(k, c.open, c.on) for k, c in charges.items()],
            interest=[
                allocation.Item(f"interest:{i.seq}", interest[i.seq], i.due.isoformat())
                for i in due
                if interest[i.seq] > 0
            ],
            principal=[
                allocation.Item(f"principal:{i.seq}", i.open, i.due.isoformat())
                for i in due
                if i.open > 0
            ],
        )
        result = allocation.allocate(amount, claim)
        for part in result.parts:
            if part.kind == allocation.COSTS:
                line = charges[part.key]
                line.paid += part.amount
                line.open -= part.amount
                name = (
                    "lump_sums"
                    if line.kind == LUMP_SUM
                    else "fees"
                    if line.kind == FEE
                    else "costs"
                )
                alloc.parts.append(AllocationLine(name, line.key, line.installment, part.amount))
            elif part.kind == allocation.INTEREST:
                inst = self.insts[int(part.key.split(":")[1])]
                inst.paid.interest += part.amount
                alloc.parts.append(AllocationLine("interest", "", inst.seq, part.amount))
            else:
                inst = self.insts[int(part.key.split(":")[1])]
                self.reduce_principal(inst, part.amount, day)
                alloc.parts.append(AllocationLine("principal", "", inst.seq, part.amount))
        return result.remainder

    def waive_principal(self, inst: _Installment, day: date) -> None:
        """Give up ``inst``'s open principal on ``day`` (interest on it up to ``day``)."""
        amount = inst.open
        if not amount:
            return
        new_start = day + timedelta(days=1)
        if new_start > inst.seg_start:
            exact, spans = self._segment(
                inst.seg_amount, inst.seg_start, self._last_interest_day(day)
            )
            inst.closed_exact += exact
            inst.closed_spans += spans
            inst.seg_start = new_start
        inst.open = 0
        inst.seg_amount = 0
        self.waived.principal += amount

    def waive(self, fact: WaiverFact, day: date) -> None:
        for seq in fact.principal:
            inst = self.insts.get(seq)
            if inst is None:
                raise ValueError(
                    f"waiver {fact.key!r} names installment {seq}, which is not among the "
                    "installments"
                )
            self.waive_principal(inst, day)
        for line in self.charges:
            give_up = (
                (fact.fees and line.kind == FEE)
                or (fact.costs and line.kind in COST_KINDS)
                or (fact.lump_sums and line.kind == LUMP_SUM)
            )
            if give_up and line.open:
                amount = line.open
                line.waived += amount
                line.open = 0
                if line.kind == FEE:
                    self.waived.fees += amount
                elif line.kind == LUMP_SUM:
                    self.waived.lump_sums += amount
                else:
                    self.waived.costs += amount
        if fact.interest and self.interest_on:
            for inst in self.insts.values():
                amount = self.interest_open(inst, day)
                inst.waived_interest += amount
                self.waived.interest += amount
            if fact.stop_interest and (self.interest_stop is None or day < self.interest_stop):
                self.interest_stop = day


def _checked_key(key: object, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what} key must be a non-empty string, got {key!r}")
    return key


def _order(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} order must be an integer, got {value!r}")
    return value


def compute_claim(facts: ClaimFacts, as_of: str) -> Claim:
    """The claim as of the Berlin day ``as_of`` (ISO date): interest up to and including it.

    Raises ValueError naming the fact for bad input (a date that is no ISO date, a negative
    amount, a duplicate key, an unknown cost kind or customer type, a payment naming an
    installment not given).
    """
    day = iso_date(as_of, "as_of")
    run = _Run(facts, day)
    # (date, order, rank, index, action): rank 0 lump sums, 1 charges, 2 payments, 3 waivers
    events: list[tuple[date, int, int, int, object]] = []
    for n, inst in enumerate(sorted(run.insts.values(), key=lambda i: (i.due, i.seq))):
        if run.kind == BUSINESS and facts.lump_sums:
            events.append((inst.due + timedelta(days=1), -(2**62), 0, n, inst))
    for n, fee in enumerate(facts.fees):
        key = _checked_key(fee.key, "fee")
        when = iso_date(fee.on, f"fee {key!r} on")
        check_amount(fee.amount, f"fee {key!r} amount")
        events.append((when, _order(fee.order, f"fee {key!r}"), 1, n, fee))
    for n, cost in enumerate(facts.costs):
        key = _checked_key(cost.key, "cost")
        when = iso_date(cost.on, f"cost {key!r} on")
        check_amount(cost.amount, f"cost {key!r} amount")
        if cost.kind not in COST_KINDS:
            raise ValueError(
                f"cost {key!r} kind must be one of {', '.join(COST_KINDS)}, got {cost.kind!r}"
            )
        events.append((when, _order(cost.order, f"cost {key!r}"), 1, n, cost))
    keys: set[str] = set()
    for n, payment in enumerate(facts.payments):
        key = _checked_key(payment.key, "payment")
        if key in keys:
            raise ValueError(f"payment {key!r} given twice")
        keys.add(key)
        when = iso_date(payment.on, f"payment {key!r} on")
        check_amount(payment.amount, f"payment {key!r} amount")
        check_amount(payment.installment, f"payment {key!r} installment")
        events.append((when, _order(payment.order, f"payment {key!r}"), 2, n, payment))
    for n, waiver in enumerate(facts.waivers):
        key = _checked_key(waiver.key, "waiver")
        when = iso_date(waiver.on, f"waiver {key!r} on")
        events.append((when, _order(waiver.order, f"waiver {key!r}"), 3, n, waiver))

    for when, _, rank, _, action in sorted(events, key=lambda e: e[:4]):
        if when > day:
            continue
        if isinstance(action, _Installment):
            run.lump_sum(action)
        elif isinstance(action, FeeFact):
            run.add_charge(
                ChargeLine(
                    key=action.key,
                    kind=FEE,
                    label=LABELS[FEE],
                    on=when.isoformat(),
                    amount=action.amount,
                    stage=action.stage,
                )
            )
        elif isinstance(action, CostFact):
            run.add_charge(
                ChargeLine(
                    key=action.key,
                    kind=action.kind,
                    label=LABELS[action.kind],
                    on=when.isoformat(),
                    amount=action.amount,
                    installment=action.installment,
                )
            )
        elif isinstance(action, PaymentFact):
            run.pay(action, when)
        elif isinstance(action, WaiverFact):
            run.waive(action, when)
        else:  # pragma: no cover - the list above holds nothing else
            raise AssertionError(f"unexpected event rank {rank}")
    return _result(run, facts)


def _result(run: _Run, facts: ClaimFacts) -> Claim:
    day = run.as_of
    items: list[ClaimItem] = []
    paid = Totals()
    for inst in sorted(run.insts.values(), key=lambda i: (i.due, i.seq)):
        paid.principal += inst.paid.principal
        paid.interest += inst.paid.interest
        if inst.due > day:
            continue
        accrued, spans = run.accrued(inst, day) if day > inst.due else (0, [])
        interest = accrued - inst.paid.interest - inst.waived_interest
        if inst.open == 0 and interest == 0:
            continue
        items.append(
            ClaimItem(
                installment=inst.seq,
                due=inst.due.isoformat(),
                amount=inst.amount,
                principal=inst.open,
                interest=interest,
                interest_periods=spans,
                paid=PaidParts(inst.paid.principal, inst.paid.interest),
                interest_from=(inst.due + timedelta(days=1)).isoformat(),
                interest_accrued=accrued,
                interest_waived=inst.waived_interest,
            )
        )
    fee_items = [c for c in run.charges if c.kind == FEE]
    cost_items = [c for c in run.charges if c.kind in COST_KINDS]
    lump_items = [c for c in run.charges if c.kind == LUMP_SUM]
    paid.fees = sum(c.paid for c in fee_items)
    paid.costs = sum(c.paid for c in cost_items)
    paid.lump_sums = sum(c.paid for c in lump_items)
    parts = Totals(
        principal=sum(i.principal for i in items),
        interest=sum(i.interest for i in items),
        fees=sum(c.open for c in fee_items),
        costs=sum(c.open for c in cost_items),
        lump_sums=sum(c.open for c in lump_items),
    )
    if not run.interest_on:
        mode, until = NONE, ""
    else:
        mode = WAIVED if run.interest_stop is not None else STATUTORY
        until = run._last_interest_day(day).isoformat()
    return Claim(
        as_of=day.isoformat(),
        principal=parts.principal,
        interest=parts.interest,
        fees=parts.fees,
        costs=parts.costs,
        lump_sums=parts.lump_sums,
        total=parts.principal + parts.interest + parts.fees + parts.costs + parts.lump_sums,
        items=items,
        customer_type=run.kind,
        interest_mode=mode,
        interest_until=until,
        missing_base_rate=run.missing,
        fee_items=fee_items,
        cost_items=cost_items,
        lump_sum_items=lump_items,
        credited=run.credited,
        paid=paid,
        waived=run.waived,
        prepaid=run.prepaid,
        credit=run.credit,
        payments=run.payments,
    )


# -- what the callers ask of a claim ---------------------------------------------------------


def debit_amount(claim: Claim, collect: str, installment: int) -> int:
    """What a debit (retry) of ``installment`` takes under the policy's ``collect``:

    * ``principal``: that installment's open principal — the card or SEPA mandate authorises
      the agreed amounts, not interest, fees or costs (record the payment with
      ``installment`` set);
    * ``claim``: the whole claim (record the payment with ``installment=0``: § 367 BGB).
    """
    if collect == COLLECT_CLAIM:
        return claim.total
    if collect != COLLECT_PRINCIPAL:
        raise ValueError(f"collect must be principal or claim, got {collect!r}")
    item = claim.item(installment)
    return item.principal if item is not None else 0


RESIDUAL_NONE: Final = "none"  # principal still open, or nothing open at all
RESIDUAL_WRITE_OFF: Final = "write_off"
RESIDUAL_CLAIM: Final = "claim"  # a final notice claims it, with its own deadline


def residual_action(claim: Claim, write_off_below: int) -> str:
    """What happens to what stays open once the principal is paid (policy
    ``residual.write_off_below``): ``write_off`` when the rest is below the threshold,
    ``claim`` (a final notice) otherwise; ``none`` while principal is open or nothing is."""
    threshold = check_amount(write_off_below, "write_off_below")
    if claim.principal > 0 or claim.total == 0:
        return RESIDUAL_NONE
    return RESIDUAL_WRITE_OFF if claim.total < threshold else RESIDUAL_CLAIM


def demanded(claim: Claim, collecting: Mapping[int, bool]) -> Claim:
    """The claim as a notice demands it, the API shows it and ``OverdueAmount`` counts it:
    without what is being collected. ``collecting`` maps installments whose debit is in
    flight or not attempted yet to whether they were in default before (a failed debit, a
    chargeback):

    * their open principal is left out — it is being debited; demanding it as well could
      make the customer pay twice;
    * an installment never in default also leaves out its interest and § 288 (5) lump sum:
      with a direct debit (or a card charge) agreed the creditor collects the money — the
      debt becomes a "Holschuld", the debtor only has to keep it available — so the debtor
      is not in default while the creditor has not tried (the prevailing view on the
      Lastschriftabrede; no statute says it) — e.g. a debit Stripe refused as our
      integration error.

    ``total`` stays the sum of the parts; every other field is the claim's."""
    if not any(item.installment in collecting for item in claim.items) and not any(
        line.installment in collecting and not collecting[line.installment] and line.open
        for line in claim.lump_sum_items
    ):
        return claim
    items: list[ClaimItem] = []
    for item in claim.items:
        if item.installment not in collecting:
            items.append(item)
        elif collecting[item.installment] and item.interest:
            items.append(replace(item, principal=0))
    lumps = [
        line
        for line in claim.lump_sum_items
        if line.installment not in collecting or collecting[line.installment]
    ]
    principal = sum(item.principal for item in items)
    interest = sum(item.interest for item in items)
    lump_sums = sum(line.open for line in lumps)
    return replace(
        claim,
        items=items,
        lump_sum_items=lumps,
        principal=principal,
        interest=interest,
        lump_sums=lump_sums,
        total=principal + interest + claim.fees + claim.costs + lump_sums,
    )


def oldest_open_due(claim: Claim) -> str:
    """The due date of the oldest installment with anything open ("" if none): the age of
    the claim for the receivables report (``domain.collection.age_bucket``)."""
    return min((item.due for item in claim.items), default="")


def claim_parts(claim: Claim) -> Sequence[tuple[str, int]]:
    """``(part, amount)`` in the order notices list them: principal, interest, fees, costs,
    lump sums."""
    return [(part, getattr(claim, part)) for part in PARTS]
