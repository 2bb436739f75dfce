"""Statutory default interest, § 288 BGB, across changes of the § 247 BGB base rate.

The rule (SPEC §2 "Claim"), in the law's words and ours:

* § 288 (1) BGB: "Eine Geldschuld ist während des Verzugs zu verzinsen. Der Verzugszinssatz
  beträgt für das Jahr fünf Prozentpunkte über dem Basiszinssatz." → consumers: base + 5 pp.
* § 288 (2) BGB: "Bei Rechtsgeschäften, an denen ein Verbraucher nicht beteiligt ist, beträgt
  der Zinssatz für Entgeltforderungen neun Prozentpunkte über dem Basiszinssatz."
  → businesses: base + 9 pp (our claims are always Entgeltforderungen: the price of a product).
* § 289 BGB: "Von Zinsen sind Verzugszinsen nicht zu entrichten." → interest accrues on the
  principal only, never on interest, fees or costs. The functions here take the principal
  of one installment; callers must not feed them anything else.
* § 247 (1) BGB: the base rate changes on 1 January and 1 July of each year (by the change of
  the ECB main refinancing rate); § 247 (2): the Bundesbank publishes it in the Bundesanzeiger.

Day count (SPEC §2): each day from the day after the due date (§ 187 (1) BGB: the day of the
event does not count) up to **and including** the day of payment counts, at the rate in force
on that day; per rate period ``amount × rate × days / 365``; the periods are summed exactly
(``Fraction``) and rounded half-up to the cent **once**. A leap year still divides by 365 (SPEC:
"/ 365"), so 366 days in 2028 give slightly more than a year's interest. Payment on or before
the due date → 0. Rounding is once per installment: each installment is its own debt
(§ 366 BGB) and the notices and the Mahnantrag list interest per installment.

Rates are integers in basis points (1 bp = 0.01 %; 1.27 % = 127), money in minor units, dates
ISO strings: no floats, nothing that the Temporal workflow sandbox or the JSON converter
would trip over.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, Final

CONSUMER: Final = "consumer"
BUSINESS: Final = "business"
CUSTOMER_TYPES: Final = (CONSUMER, BUSINESS)

# § 288 (1) BGB: 5 percentage points above the base rate; § 288 (2) BGB: 9 when no consumer
# is involved (Entgeltforderungen). In basis points.
MARGIN_BP: Final[dict[str, int]] = {CONSUMER: 500, BUSINESS: 900}

DAYS_PER_YEAR: Final = 365  # SPEC §2: "amount × rate × days / 365", also in leap years
_BP_PER_UNIT: Final = 10_000  # 100 % = 10,000 bp

_ISO_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_date(value: object, what: str = "date") -> date:
    """Parse a strict ISO date ``YYYY-MM-DD``; raises ValueError naming ``what`` and the value."""
    if not isinstance(value, str) or not _ISO_DATE_RE.fullmatch(value):
        raise ValueError(f"{what} must be an ISO date (YYYY-MM-DD), got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} is not a valid date: {value!r}") from None


def check_amount(value: object, what: str = "amount") -> int:
    """An int ≥ 0 in minor units (bool is not an amount); returns it or raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer in minor units, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


def check_customer_type(value: object) -> str:
    if value not in CUSTOMER_TYPES:
        raise ValueError(f"customer_type must be one of {', '.join(CUSTOMER_TYPES)}, got {value!r}")
    assert isinstance(value, str)
    return value


def round_half_up(value: Fraction) -> int:
    """Round to the nearest integer, .5 upwards: ``floor(value + 1/2)``.

    The same rule as § 2 (2) RVG / § 34 (2) GKG ("0,5 Cent werden aufgerundet"); used for
    every cent rounding in ``domain/``.
    """
    return (2 * value.numerator + value.denominator) // (2 * value.denominator)


# --------------------------------------------------------------------------- base rate table


@dataclass(frozen=True)
class BaseRate:
    """One row of the § 247 BGB base-rate table: in force from ``effective`` for a half-year."""

    effective: str  # ISO date, always 1 January or 1 July (§ 247 (1) BGB)
    rate_bp: int  # base rate in basis points; may be negative (e.g. -88 in 2016–2022)
    source: str


_CSV = "siraleks/zinsrechner basiszins_bundesbank.csv (Bundesbank series)"

# § 247 BGB base rate, as gathered in /work/shared/DOMAIN.md §1. Rates reset on 1 January
# and 1 July (§ 247 (1) BGB); every half-year needs its own row, even when the rate did not
# change, so a missing row is an error and never silently the previous rate.
# The rate from 2026-07-01 is *unverified* (no stored source): deliberately not in the table.
# Add it (with its source, the Bundesbank's Bundesanzeiger notice) as soon as it is checked.
BASE_RATES: Final[tuple[BaseRate, ...]] = (
    BaseRate("2023-01-01", 162, f"{_CSV}; stb-bruns.com 'basiszinssatz-wurde-angepasst'"),
    BaseRate("2023-07-01", 312, _CSV),
    BaseRate("2024-01-01", 362, _CSV),
    BaseRate("2024-07-01", 337, _CSV),
    BaseRate("2025-01-01", 227, _CSV),
    BaseRate("2025-07-01", 127, _CSV),
    BaseRate(
        "2026-01-01",
        127,
        "Bundesbank press release 'Bekanntgabe des Basiszinssatzes zum 1. Januar 2026: "
        "Basiszinssatz bleibt unverändert bei 1,27 %' (…-1-27--973974); reported by "
        "state-of.biz/bbk/bekanntgabe-des-basiszinssatzes-zum-1-januar-2026-basiszinssatz-"
        "bleibt-unveraendert-bei-127 (ECB main refinancing rate 2.15 % since July 2025)",
    ),
)
# When the table above was last checked against its sources: 2026-12-05, searching the
# stored public pages for the Bundesbank's announcement of the rate from 1 July 2026 — none
# found, so that row is still missing and `mahnwerk base-rates` / base_rate_coverage say so.
# Machine feed for a later check: Bundesbank time series
# BBSIS.D.I.ZST.ZI.EUR.S1311.B.A604.R01XX.R.A.A._Z._Z.A (unverified).
BASE_RATES_LAST_CHECKED: Final = "2026-12-05"


class MissingBaseRate(ValueError):
    """Interest needs a base rate the table does not have (a future or unverified one).

    ``rate_date`` is the 1 January / 1 July the missing rate would start on; ``needed_for``
    the first interest day that needs it.
    """

    def __init__(self, rate_date: str, needed_for: str = "") -> None:
        super().__init__(
            f"no § 247 BGB base rate known for {rate_date}; add it to domain/interest.py "
            "BASE_RATES (source: Bundesbank)"
        )
        self.rate_date = rate_date
        self.needed_for = needed_for or rate_date

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.rate_date, self.needed_for))


def _half_year_start(day: date) -> date:
    """The 1 January or 1 July on or before ``day``: the start of its § 247 period."""
    return date(day.year, 1 if day.month < 7 else 7, 1)


def _next_half_year(start: date) -> date:
    return date(start.year, 7, 1) if start.month == 1 else date(start.year + 1, 1, 1)


def rate_table(rates: Sequence[BaseRate]) -> dict[date, int]:
    """Validate a base-rate table and index it by its effective date.

    Raises ValueError for a row not starting on 1 January / 1 July, a non-integer rate, or
    two rows for the same half-year with different rates.
    """
    table: dict[date, int] = {}
    for row in rates:
        effective = iso_date(row.effective, "base rate effective date")
        if (effective.month, effective.day) not in ((1, 1), (7, 1)):
            raise ValueError(
                f"base rate effective {row.effective}: § 247 BGB rates change only on "
                "1 January and 1 July"
            )
        if isinstance(row.rate_bp, bool) or not isinstance(row.rate_bp, int):
            raise ValueError(
                f"base rate {row.effective}: rate_bp must be an int, got {row.rate_bp!r}"
            )
        if table.get(effective, row.rate_bp) != row.rate_bp:
            raise ValueError(f"base rate {row.effective} given twice with different rates")
        table[effective] = row.rate_bp
    return table


def with_rates(
    extra: Sequence[BaseRate], rates: Sequence[BaseRate] = BASE_RATES
) -> tuple[BaseRate, ...]:
    """``rates`` extended by ``extra`` (e.g. from configuration), sorted by date.

    A row in ``extra`` for a half-year already in ``rates`` must carry the same rate.
    """
    merged = {row.effective: row for row in rates}
    combined = tuple(rates) + tuple(extra)
    rate_table(combined)  # validates, including conflicting duplicates
    for row in extra:
        merged.setdefault(row.effective, row)
    return tuple(sorted(merged.values(), key=lambda row: row.effective))


def pinned_rates(rates: Sequence[BaseRate]) -> list[BaseRate]:
    """The rows as a contract pins them (its workflow input, its state and the claim facts of
    every ledger write): the half-year and the rate, without the source. Interest needs only
    those two; the source stays with the table here and with MAHNWERK_BASE_RATES (``mahnwerk
    base-rates`` prints it). The citations were 750 of the table's 1,130 bytes, repeated in
    every workflow input, every ledger write's payload and every contract's stored claim
    facts (issue 17)."""
    return [BaseRate(row.effective, row.rate_bp, "") for row in rates]


def base_rate_on(day: str, rates: Sequence[BaseRate] = BASE_RATES) -> int:
    """The § 247 BGB base rate (bp) in force on ``day``; MissingBaseRate if the table lacks it."""
    when = iso_date(day, "day")
    start = _half_year_start(when)
    table = rate_table(rates)
    if start not in table:
        raise MissingBaseRate(start.isoformat(), when.isoformat())
    return table[start]


@dataclass
class BaseRateCoverage:
    """Whether the table covers ``today`` and the next half-year (``/readyz``, a metric and
    ``mahnwerk base-rates`` read this).

    ``missing``: every 1 January / 1 July from the table's first row up to and including
    today's half-year that has no row (interest on those days cannot be computed);
    ``next_change``: the next 1 January / 1 July after today and ``next_known`` whether it
    already has a row (the Bundesbank announces it a few days before).
    """

    today: str
    covered: bool  # today's half-year has a row
    missing: list[str]
    first: str  # the table's first half-year ("" for an empty table)
    last: str  # the table's last half-year
    covered_until: str  # the last day of the contiguous coverage from ``first`` ("" if none)
    next_change: str
    next_known: bool
    checked: str  # BASE_RATES_LAST_CHECKED (when the built-in rows were checked)


def base_rate_coverage(
    rates: Sequence[BaseRate], today: str, checked: str = BASE_RATES_LAST_CHECKED
) -> BaseRateCoverage:
    """What the table ``rates`` covers as seen on ``today`` (ISO date); pure, no clock."""
    day = iso_date(today, "today")
    table = rate_table(rates)
    current = _half_year_start(day)
    upcoming = _next_half_year(current)
    if not table:
        return BaseRateCoverage(
            today=day.isoformat(),
            covered=False,
            missing=[current.isoformat()],
            first="",
            last="",
            covered_until="",
            next_change=upcoming.isoformat(),
            next_known=False,
            checked=checked,
        )
    first, last = min(table), max(table)
    missing: list[str] = []
    covered_until = ""
    start = first
    while start <= max(current, last):
        if start not in table:
            if start <= current:
                missing.append(start.isoformat())
        elif not missing:
            covered_until = (_next_half_year(start) - timedelta(days=1)).isoformat()
        start = _next_half_year(start)
    return BaseRateCoverage(
        today=day.isoformat(),
        covered=current in table,
        missing=missing,
        first=first.isoformat(),
        last=last.isoformat(),
        covered_until=covered_until,
        next_change=upcoming.isoformat(),
        next_known=upcoming in table,
        checked=checked,
    )


# --------------------------------------------------------------------------- interest


@dataclass
class InterestPeriod:
    """Days at one rate. ``end`` is inclusive; ``exact`` is the unrounded interest in minor
    units as a reduced fraction (``"2181/73"``), ``Fraction(exact)`` reads it back."""

    start: str
    end: str
    days: int
    rate_bp: int  # base + margin: the rate actually applied
    base_bp: int
    exact: str


@dataclass
class InterestResult:
    """Default interest on one principal amount from ``from_date`` to ``to_date`` (inclusive).

    ``amount`` is rounded half-up to the cent once, from the exact sum of the periods
    (``exact``, a fraction of minor units). ``rate_text`` / ``rate_text_en`` name the legal
    rate for notices; the rate per period is in ``periods``.
    """

    principal: int
    due_date: str
    from_date: str  # the day after the due date: the first interest day
    to_date: str  # the day of payment (or the as-of date): the last interest day
    customer_type: str
    margin_bp: int
    days: int
    amount: int
    exact: str
    rate_text: str
    rate_text_en: str
    periods: list[InterestPeriod] = field(default_factory=list)


def margin_bp(customer_type: str) -> int:
    """5 pp (500 bp) for consumers, 9 pp (900 bp) for businesses (§ 288 (1), (2) BGB)."""
    return MARGIN_BP[check_customer_type(customer_type)]


def rate_text(customer_type: str, locale: str = "de") -> str:
    """The legal rate for notices: ``5 Prozentpunkte über dem Basiszinssatz (§ 288 Abs. 1 BGB)``."""
    pp = margin_bp(customer_type) // 100
    paragraph = 1 if check_customer_type(customer_type) == CONSUMER else 2
    if locale.strip().lower()[:2] == "de":
        return f"{pp} Prozentpunkte über dem Basiszinssatz (§ 288 Abs. {paragraph} BGB)"
    return f"{pp} percentage points above the base rate (§ 288 ({paragraph}) BGB)"


def format_rate(rate_bp: int, locale: str = "de") -> str:
    """``727`` → ``7,27 %`` (de) / ``7.27%`` (en); integer arithmetic, sign kept."""
    whole, frac = divmod(abs(rate_bp), 100)
    sign = "-" if rate_bp < 0 else ""
    if locale.strip().lower()[:2] == "de":
        return f"{sign}{whole},{frac:02d} %"
    return f"{sign}{whole}.{frac:02d}%"


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def default_interest(
    amount: int,
    due_date: str,
    paid_date: str,
    customer_type: str,
    rates: Sequence[BaseRate] = BASE_RATES,
) -> InterestResult:
    """Default interest (§ 288 BGB) on ``amount`` due on ``due_date``, paid on ``paid_date``.

    Days from the day after ``due_date`` up to and including ``paid_date`` count, each at the
    base rate of its half-year plus the margin; adjacent half-years with the same base rate
    form one period. Raises :class:`MissingBaseRate` when a day needs a rate not in ``rates``.
    """
    principal = check_amount(amount, "amount")
    due = iso_date(due_date, "due_date")
    paid = iso_date(paid_date, "paid_date")
    kind = check_customer_type(customer_type)
    margin = MARGIN_BP[kind]
    table = rate_table(rates)

    first = due + timedelta(days=1)
    periods: list[InterestPeriod] = []
    total = Fraction(0)
    # (start, end, base) spans, split at every 1 Jan / 1 Jul and merged when the rate is equal
    spans: list[tuple[date, date, int]] = []
    day = first
    while day <= paid:
        start = _half_year_start(day)
        if start not in table:
            raise MissingBaseRate(start.isoformat(), day.isoformat())
        end = min(paid, _next_half_year(start) - timedelta(days=1))
        base = table[start]
        if spans and spans[-1][2] == base and spans[-1][1] + timedelta(days=1) == day:
            spans[-1] = (spans[-1][0], end, base)
        else:
            spans.append((day, end, base))
        day = end + timedelta(days=1)

    for start, end, base in spans:
        days = (end - start).days + 1
        rate = base + margin
        # amount × rate/10,000 × days/365, exactly
        exact = Fraction(principal * rate * days, _BP_PER_UNIT * DAYS_PER_YEAR)
        total += exact
        periods.append(
            InterestPeriod(
                start=start.isoformat(),
                end=end.isoformat(),
                days=days,
                rate_bp=rate,
                base_bp=base,
                exact=_fraction_text(exact),
            )
        )

    return InterestResult(
        principal=principal,
        due_date=due.isoformat(),
        from_date=first.isoformat(),
        to_date=paid.isoformat(),
        customer_type=kind,
        margin_bp=margin,
        days=sum(p.days for p in periods),
        amount=round_half_up(total),
        exact=_fraction_text(total),
        rate_text=rate_text(kind, "de"),
        rate_text_en=rate_text(kind, "en"),
        periods=periods,
    )


def claim_interest(
    items: Sequence[tuple[int, str]],
    as_of: str,
    customer_type: str,
    rates: Sequence[BaseRate] = BASE_RATES,
) -> list[InterestResult]:
    """Interest per unpaid installment ``(amount, due_date)`` up to and including ``as_of``.

    One result per item, in the given order, each rounded on its own (see the module
    docstring). The claim's interest is ``sum(r.amount for r in results)``.
    """
    return [
        default_interest(amount, due_date, as_of, customer_type, rates)
        for amount, due_date in items
    ]
