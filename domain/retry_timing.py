"""When to retry a failed debit (issue 5 item 2; DOMAIN.md §§ 4–6).

:func:`next_retry` takes what the workflow knows about a failed debit and returns the instant
of the next attempt, or ``None`` with the reason to stop. The rules, in the order applied:

1. **Only soft failures are retried.** ``fix_data``, ``never`` and ``customer_action`` stop at
   once (:mod:`domain.declines`; SPEC §3): Visa category 1 codes are never reattempted
   (Visa Core Rules 2026-04-18 ID# 0030640 [IFD]); Stripe lists lost/stolen/pickup card,
   incorrect number, revocations, ``authentication_required`` and ``highest_risk_level`` as
   non-retryable [S-RETRY].
2. **SEPA re-presents only AM04 ``insufficient_funds``, and only once** (DOMAIN.md §4 R-code
   table: every other return is "No"; §6 derived default "re-present **once** after payday";
   :data:`domain.declines.MAX_SEPA_RETRIES`). Each re-presentation costs a failure fee and
   needs a fresh pre-notification: it is never planned earlier than ``now + min_notice``
   (the policy's ``sepa.pre_notification``), so the announcement can go out in time.
3. **Count caps.** Unknown codes (not in the classification table) get at most
   :data:`domain.declines.MAX_UNKNOWN_RETRIES` retries; cards at most
   :data:`domain.policy.MAX_RETRIES` (8, Stripe's recommended maximum [IFD stripe.json,
   quoting docs.stripe.com/declines/card]); everyone at most one retry per policy offset.
4. **Policy time.** Retry number ``k`` (0-based ``retries_done``) is planned at
   ``first_failed_at + offsets[k]`` (policy ``retries.after``, SPEC §3), never before ``now``.
5. **Calendar moves**, judged on the Europe/Berlin date and keeping the Berlin time of day of
   the policy time:

   * *payday alignment* (policy flag, code ``insufficient_funds``, card or SEPA): German
     wages are paid after each period (§ 614 BGB), so pay lands at the end of a month or at
     the start of the next (DOMAIN.md §6). The retry moves to the first **payday-window
     day** at or after the policy time: a day is in a payday window if it is a TARGET
     business day and either the **last** TARGET business day of its month or one of the
     **first three** TARGET business days of its month (:func:`is_payday_window_day`). So
     the window around the turn of December 2026 is Thu 2026-12-31, Mon 2027-01-04,
     Tue 01-05, Wed 01-06 (1 January is a TARGET holiday, 2/3 January a weekend);
   * *SEPA* without payday alignment: the first TARGET business day at or after the policy
     time (never on a weekend or TARGET closing day; ECB TARGET calendar, see
     :mod:`domain.calendar`). Payday-window days are TARGET business days anyway.

   If the policy's time of day has already passed on the chosen day (because ``now`` is
   later), the next qualifying day is taken. So when an aligned retry fails at the policy's
   time, the next one goes to the *next* window day instead of straight after it: a
   failure on 2026-12-10 with offsets 1d/3d/5d/7d retries on 12-31, 01-04, 01-05, 01-06.
   Cards without alignment are retried at the policy time, or at ``now`` if that is later.
6. **Visa's excessive-reattempt cap (cards)**: at most 20 reattempts in 30 days for
   categories 2–4 (Visa Core Rules 2026-04-18; 15 before; DOMAIN.md §5). Every earlier
   attempt on this card in ``previous_attempts`` within the 30 days before the candidate
   counts — the original attempt too, which makes us one attempt stricter than the rule and
   therefore always inside it. With 20 or more, the candidate is pushed to the instant
   enough of them have left the window (and the calendar moves are applied again); if that
   is later than the policy's own last retry (after its calendar moves), we stop instead:
   the cap must not stretch the retry period.

Everything here is pure (``now`` is a parameter) and safe in the Temporal workflow sandbox:
the dataclasses hold only str/int/bool/list/datetime/timedelta fields. Datetimes must be
aware; results are UTC.

Sources (keys as in DOMAIN.md and :mod:`domain.declines`): [S-RETRY], [S-SEPA], [IFD],
§§ 193, 614 BGB ([BGB]), ECB TARGET calendar.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from domain import declines
from domain.calendar import (
    is_target_business_day,
    next_target_business_day,
    target_business_days_between,
    target_closing_reason,
)
from domain.durations import format_duration
from domain.policy import MAX_RETRIES
from domain.schedule import BERLIN

CARD: Final = "card"
SEPA: Final = "sepa"

# Visa Core Rules 2026-04-18 (ID# 0030640 excessive reattempts): categories 2–4 at most 20
# reattempts in 30 days (15 before) [IFD data/visa.json; DOMAIN.md §5].
VISA_MAX_REATTEMPTS: Final = 20
VISA_WINDOW: Final = timedelta(days=30)

# The only code aligned to paydays (DOMAIN.md §5 "Soft: retry on a payday schedule"; §4 AM04
# "Yes, after the next payday").
PAYDAY_CODE: Final = "insufficient_funds"
# First TARGET business days of a month that belong to the payday window (DOMAIN.md §6
# derived default: "then on the 1st–3rd banking day of the next month").
PAYDAY_FIRST_DAYS: Final = 3

# SEPA returns worth re-presenting: AM04 only (DOMAIN.md §4 R-code table).
SEPA_RETRYABLE_CODES: Final = frozenset({"insufficient_funds"})

_ORDINALS: Final = ("first", "second", "third", "fourth", "fifth")


@dataclass
class RetryPlanInput:
    """What the workflow knows after a failed debit attempt.

    Built inside the workflow from its state and the pinned policy; not meant as a Temporal
    payload (Temporal's default JSON converter cannot encode ``timedelta``).
    """

    scheme: str  # "card" | "sepa" ("sepa_debit" accepted)
    failure_class: str  # domain.declines: soft | fix_data | never | customer_action
    code: str | None  # Stripe decline_code / code (card) or failure_code (SEPA)
    first_failed_at: datetime  # the failure that opened this series; offsets count from it
    # Every attempt so far on this card / for this installment, including the failed one.
    # Used for Visa's 20-in-30-days cap, so pass all attempts on the card you know of.
    previous_attempts: list[datetime]
    offsets: list[timedelta]  # the policy's retries.after (Policy.retry_offsets())
    retries_done: int  # retries already made in this series (0 after the first failure)
    payday_alignment: bool  # policy flag: align insufficient_funds retries to paydays
    now: datetime
    # SEPA: a re-presentation needs a fresh pre-notification this long before it (policy
    # sepa.pre_notification, DOMAIN.md §§ 4, 6); the retry is never earlier than now + this.
    min_notice: timedelta = timedelta(0)


@dataclass
class RetryDecision:
    """The next attempt (``at``, UTC) or ``None`` to stop, with a human-readable reason.

    ``rule`` is a short stable key for metrics and tests: ``policy``, ``payday``,
    ``target_day``, ``visa_push`` when retrying; ``hard``, ``sepa_code``, ``sepa_once``,
    ``unknown_cap``, ``stripe_max``, ``offsets_exhausted``, ``visa_cap`` when stopping.
    """

    at: datetime | None
    reason: str
    rule: str = ""

    @property
    def stop(self) -> bool:
        return self.at is None

    def explain(self) -> str:
        """One line for the Temporal UI, e.g. ``workflow.sleep(delay, summary=d.explain())``,
        and for query results and logs."""
        if self.at is None:
            return self.reason
        return f"retry at {_local(self.at)} Berlin — {self.reason}"


# --------------------------------------------------------------------------- payday windows


def target_business_day_of_month(d: date) -> int:
    """1 for the month's first TARGET business day, 2 for the second, …; 0 if ``d`` is closed."""
    if not is_target_business_day(d):
        return 0
    return target_business_days_between(d.replace(day=1) - timedelta(days=1), d)


def is_last_target_business_day_of_month(d: date) -> bool:
    return is_target_business_day(d) and next_target_business_day(d, False).month != d.month


def is_payday_window_day(d: date) -> bool:
    """Whether ``d`` is in a payday window: the last TARGET business day of its month, or one
    of the first :data:`PAYDAY_FIRST_DAYS` TARGET business days of its month (§ 614 BGB,
    DOMAIN.md §6)."""
    if not is_target_business_day(d):
        return False
    return (
        is_last_target_business_day_of_month(d)
        or target_business_day_of_month(d) <= PAYDAY_FIRST_DAYS
    )


def payday_window_position(d: date) -> str:
    """``"last TARGET day of the month"``, ``"first TARGET day of the month"``, …"""
    if is_last_target_business_day_of_month(d):
        return "last TARGET day of the month"
    n = target_business_day_of_month(d)
    if n == 0:
        return "not a TARGET day"
    ordinal = _ORDINALS[n - 1] if n <= len(_ORDINALS) else f"{n}th"
    return f"{ordinal} TARGET day of the month"


def next_payday_window_day(d: date) -> date:
    """The first payday-window day on or after ``d`` (at most about five weeks later)."""
    day = d
    while not is_payday_window_day(day):
        day += timedelta(days=1)
    return day


# --------------------------------------------------------------------------- the decision


def next_retry(inp: RetryPlanInput) -> RetryDecision:
    """When to retry the failed debit described by ``inp`` — see the module docstring.

    Raises ``ValueError`` only for malformed input (naive datetimes, negative
    ``retries_done``, unknown scheme); every business outcome is a :class:`RetryDecision`.
    """
    _validate(inp)
    scheme = _scheme(inp.scheme)
    code = inp.code.strip().lower() if inp.code else None
    shown = code or "(no code)"

    # 1. Hard classes never retry.
    if inp.failure_class != declines.SOFT:
        return RetryDecision(None, _hard_reason(scheme, inp.failure_class, code), "hard")

    # 2. SEPA: only AM04 is re-presented.
    if scheme == SEPA and code not in SEPA_RETRYABLE_CODES:
        return RetryDecision(
            None,
            f"stop: SEPA failure {shown} is not re-presented — only insufficient_funds "
            "(AM04) is (DOMAIN.md §4)",
            "sepa_code",
        )

    # 3. Count caps, the most specific first so the reason names the binding rule.
    n = inp.retries_done
    known = declines.is_known(code, scheme)
    caps: list[tuple[int, str, str]] = []
    if scheme == SEPA:
        caps.append(
            (
                declines.MAX_SEPA_RETRIES,
                "sepa_once",
                "stop: SEPA debit already re-presented once — AM04 is re-presented at most "
                f"{_times(declines.MAX_SEPA_RETRIES)} (DOMAIN.md §6)",
            )
        )
    if not known:
        caps.append(
            (
                declines.MAX_UNKNOWN_RETRIES,
                "unknown_cap",
                f"stop: unknown code {shown}: {n} retries done, at most "
                f"{declines.MAX_UNKNOWN_RETRIES} for codes not in the classification table",
            )
        )
    if scheme == CARD:
        caps.append(
            (
                MAX_RETRIES,
                "stripe_max",
                f"stop: {n} retries done — Stripe recommends at most {MAX_RETRIES}",
            )
        )
    caps.append(
        (
            len(inp.offsets),
            "offsets_exhausted",
            "stop: the policy has no retries"
            if not inp.offsets
            else f"stop: all {len(inp.offsets)} policy retries done",
        )
    )
    for cap, rule, reason in caps:
        if n >= cap:
            return RetryDecision(None, reason, rule)
    total = min(cap for cap, _, _ in caps)

    # 4. Policy time, never in the past.
    planned = _utc(inp.first_failed_at + inp.offsets[n])
    notice_until = _utc(inp.now) + (inp.min_notice if scheme == SEPA else timedelta(0))
    earliest = max(planned, notice_until)
    align = inp.payday_alignment and code == PAYDAY_CODE
    at = _place(planned, earliest, scheme, align)

    # 6. Visa's 20 reattempts in 30 days (cards).
    pushed_from: datetime | None = None
    if scheme == CARD:
        window_end_planned = _utc(inp.first_failed_at + max(inp.offsets))
        window_end = _place(window_end_planned, window_end_planned, scheme, align)
        while True:
            freed = _visa_frees_at(at, inp.previous_attempts)
            if freed is None:
                break
            if pushed_from is None:
                pushed_from = at
            at = _place(planned, freed, scheme, align)
            if at > window_end:
                return RetryDecision(
                    None,
                    f"stop: {VISA_MAX_REATTEMPTS} reattempts in 30 days reached (Visa); the "
                    f"next free slot {_local(at)} is after the policy's last retry "
                    f"{_local(window_end)}",
                    "visa_cap",
                )

    # 5./reason: describe where the attempt landed and why.
    what = _describe(scheme, code, known)
    verb = "re-present once" if scheme == SEPA else f"retry {n + 1} of {total}"
    day = at.astimezone(BERLIN).date()
    if align:
        position = payday_window_position(day)
        if scheme == SEPA:
            reason = f"{what}: re-present once after payday on {day.isoformat()} ({position})"
        else:
            reason = (
                f"{what}: retry after payday on {day.isoformat()} ({position}; "
                f"retry {n + 1} of {total})"
            )
        rule = "payday"
    elif scheme == SEPA:
        wanted = earliest.astimezone(BERLIN).date()
        closed = target_closing_reason(wanted)
        rule = "target_day"
        if closed:
            why = f"{wanted.isoformat()} is {closed}, TARGET closed"
        elif day != wanted:
            why = f"the next TARGET business day at the policy's time {_local(planned)[11:]}"
        else:
            why, rule = "TARGET business day", "policy"
        reason = f"{what}: {verb} on {day.isoformat()} ({why})"
    else:
        reason = (
            f"{what}: {verb} on {_local(at)} Berlin "
            f"({format_duration(inp.offsets[n])} after the first failure)"
        )
        rule = "policy"
    if scheme == SEPA and inp.min_notice > timedelta(0) and notice_until > planned:
        reason += f"; not before {_local(notice_until)}: announced beforehand (pre-notification)"
    if pushed_from is not None:
        reason += (
            f"; pushed from {_local(pushed_from)}: {VISA_MAX_REATTEMPTS} attempts in the "
            "30 days before (Visa cap)"
        )
        rule = "visa_push"
    return RetryDecision(at, reason, rule)


# --------------------------------------------------------------------------- helpers


def _validate(inp: RetryPlanInput) -> None:
    for name, value in (("first_failed_at", inp.first_failed_at), ("now", inp.now)):
        _require_aware(value, name)
    for i, t in enumerate(inp.previous_attempts):
        _require_aware(t, f"previous_attempts[{i}]")
    if isinstance(inp.retries_done, bool) or inp.retries_done < 0:
        raise ValueError(f"retries_done must be a non-negative integer, got {inp.retries_done!r}")


def _require_aware(dt: datetime, what: str) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {dt.isoformat()}")


def _scheme(value: str) -> str:
    scheme = value.strip().lower()
    if scheme == "sepa_debit":  # Stripe's PaymentMethod type
        return SEPA
    if scheme not in (CARD, SEPA):
        raise ValueError(f"unknown scheme {value!r}: expected 'card' or 'sepa'")
    return scheme


def _hard_reason(scheme: str, failure_class: str, code: str | None) -> str:
    shown = code or "(no code)"
    if failure_class == declines.NEVER:
        row = declines.lookup(code, scheme)
        if scheme == CARD and row is not None and "cat. 1" in row.source:
            return f"stop: Visa category 1 code {shown} — never retry"
        return f"stop: code {shown} is class never — never retry this payment method"
    if failure_class == declines.FIX_DATA:
        return f"stop: code {shown} is class fix_data — ask for a new or corrected payment method"
    if failure_class == declines.CUSTOMER_ACTION:
        return (
            f"stop: code {shown} is class customer_action — the customer must act "
            "(authenticate); send a payment link"
        )
    return f"stop: unknown failure class {failure_class!r} for code {shown} — treated as hard"


def _describe(scheme: str, code: str | None, known: bool) -> str:
    prefix = "SEPA " if scheme == SEPA else ""
    if code == PAYDAY_CODE:
        return f"{prefix}insufficient funds"
    if not known:
        return f"unknown code {code or '(no code)'} (soft, capped)"
    return f"soft decline {code}"


def _place(planned: datetime, earliest: datetime, scheme: str, align: bool) -> datetime:
    """Apply the calendar moves: the first qualifying Berlin day, at ``planned``'s time of
    day, that is not before ``earliest``. Without a move, ``earliest`` itself."""
    if align:
        return _first_day_at(earliest, planned.astimezone(BERLIN).time(), is_payday_window_day)
    if scheme == SEPA:
        return _first_day_at(earliest, planned.astimezone(BERLIN).time(), is_target_business_day)
    return earliest


def _first_day_at(earliest: datetime, tod: time, accept: Callable[[date], bool]) -> datetime:
    day = earliest.astimezone(BERLIN).date()
    while True:
        if accept(day):
            # TARGET days are weekdays and DST switches on Sundays, so the wall time exists.
            at = datetime.combine(day, tod, tzinfo=BERLIN).astimezone(UTC)
            if at >= earliest:
                return at
        day += timedelta(days=1)


def _visa_frees_at(candidate: datetime, attempts: Iterable[datetime]) -> datetime | None:
    """None if ``candidate`` keeps within Visa's cap, else the first instant that would.

    Counted: attempts in the 30 days before ``candidate`` (and any later ones, to be safe).
    Allowed: fewer than :data:`VISA_MAX_REATTEMPTS` such attempts.
    """
    recent = sorted(t for t in (_utc(a) for a in attempts) if t > candidate - VISA_WINDOW)
    excess = len(recent) - (VISA_MAX_REATTEMPTS - 1)
    if excess <= 0:
        return None
    return recent[excess - 1] + VISA_WINDOW


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)


def _local(dt: datetime) -> str:
    return dt.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M")


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"
