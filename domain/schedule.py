"""Due dates: API due values, installment schedules, Europe/Berlin calendar arithmetic.

SPEC §2: "Times are RFC 3339 with offset; dates are ISO dates interpreted in Europe/Berlin.
Intervals are ISO 8601 durations; a monthly schedule keeps the day of month
(31 Jan → 28/29 Feb → 31 Mar)."

All results are UTC-aware datetimes (DESIGN.md: "UTC inside, Europe/Berlin for due dates
and notices"). No clock reads here: callers in workflows pass ``workflow.now()``.
"""

import calendar
import re
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from domain.durations import Interval, parse_interval

# The tz database ships with the ``tzdata`` package (a project dependency), so this works
# on machines without /usr/share/zoneinfo as well.
# Workflows must import ``domain`` passed through the sandbox (DESIGN.md decision 10): the
# Temporal sandbox wraps ZoneInfo instances created inside it in a proxy that datetime
# rejects ("tzinfo argument must be None or of a tzinfo subclass").
BERLIN: Final = ZoneInfo("Europe/Berlin")

_ISO_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
# RFC 3339 §5.6 date-time; seconds made optional and "T" may be a space (RFC 3339 §5.6 NOTE).
_RFC3339_RE: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})"
)


def _require_aware(dt: datetime, what: str) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {dt.isoformat()}")


def _add_months(local: datetime, months: int) -> datetime:
    """Move a Berlin wall-clock time by whole months, clamping the day to the month's end."""
    year, month0 = divmod(local.month - 1 + months, 12)
    year += local.year
    if not 1 <= year <= 9999:
        raise ValueError(f"date out of range: {months} months from {local.date().isoformat()}")
    day = min(local.day, calendar.monthrange(year, month0 + 1)[1])
    return local.replace(year=year, month=month0 + 1, day=day)


def shift(start: datetime, interval: Interval, n: int) -> datetime:
    """The n-th occurrence of ``interval`` after ``start`` (n=0 → start), as UTC.

    * months/years are counted from the ORIGINAL start in Europe/Berlin local time, so the
      day of month is kept: 31 Jan → 28/29 Feb → 31 Mar → 30 Apr → 31 May (clamped to the
      month's last day); the local wall time is kept across DST changes;
    * days are calendar days in local time (00:00 Berlin stays 00:00 Berlin across DST);
    * seconds are exact elapsed seconds, added after the calendar part.

    A local time that does not exist (02:30 on the last Sunday of March) resolves to the
    instant one hour later in summer time (03:30 CEST); an ambiguous one (02:30 on the last
    Sunday of October) to its first, summer-time occurrence — the zoneinfo ``fold=0`` rule.
    A negative ``n`` counts backwards.
    """
    _require_aware(start, "start")
    if n == 0:
        return start.astimezone(UTC)
    try:
        local = start.astimezone(BERLIN)
        if interval.months or interval.days:
            wall = local.replace(tzinfo=None, fold=0)
            if interval.months:
                wall = _add_months(wall, interval.months * n)
            if interval.days:
                wall = wall + timedelta(days=interval.days * n)
            result = wall.replace(tzinfo=BERLIN).astimezone(UTC)
        else:
            result = local.astimezone(UTC)
        if interval.seconds:
            result = result + timedelta(seconds=interval.seconds * n)
        return result
    except OverflowError:
        raise ValueError(f"date out of range: occurrence {n} of {interval} from {start}") from None


def due_instant(value: str) -> datetime:
    """Parse an API due value into a UTC instant.

    An ISO date (``2026-12-01``) means 00:00 Europe/Berlin on that date (SPEC §2); an
    RFC 3339 date-time with offset (``2026-12-01T10:00:00+01:00`` or ``…Z``) is taken as is.
    A date-time without offset is rejected: it names no instant.
    """
    if not isinstance(value, str):
        raise ValueError(f"invalid due value {value!r}: expected an ISO date or RFC 3339 time")
    if _ISO_DATE_RE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"invalid date {value!r}") from None
        return berlin_midnight(day)
    if _RFC3339_RE.fullmatch(value):
        try:
            parsed = datetime.fromisoformat(value.upper())
        except ValueError:
            raise ValueError(f"invalid date-time {value!r}") from None
        return parsed.astimezone(UTC)
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        naive = None
    if naive is not None and naive.tzinfo is None:
        raise ValueError(
            f"date-time {value!r} has no UTC offset: give one (e.g. +01:00 or Z) or a plain date"
        )
    raise ValueError(
        f"invalid due value {value!r}: expected an ISO date (2026-12-01) or an RFC 3339 "
        "date-time with offset (2026-12-01T10:00:00+01:00)"
    )


def berlin_midnight(day: date) -> datetime:
    """00:00 Europe/Berlin on ``day``, as UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(UTC)


def installment_due_times(first_due: str, interval: str, count: int) -> list[datetime]:
    """Due instants of ``count`` installments every ``interval`` from ``first_due`` (UTC).

    Each one is computed from ``first_due`` (not from its predecessor), so a plan starting
    on the 31st returns to the 31st whenever the month has one.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"installment count must be a positive integer, got {count!r}")
    start = due_instant(first_due)
    step = parse_interval(interval)
    return [shift(start, step, n) for n in range(count)]


def berlin_date(dt: datetime) -> str:
    """The ISO date (``YYYY-MM-DD``) of the instant ``dt`` in Europe/Berlin."""
    _require_aware(dt, "dt")
    return dt.astimezone(BERLIN).date().isoformat()
