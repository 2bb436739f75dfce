"""Payment deadlines on the right day, and when notices may go out (issue 11).

The rules:

* A notice prints the **last day to pay** (a Europe/Berlin date): "bitte zahlen Sie bis
  spätestens 14.06.2026". A payment made on that day is in time, so the next ladder step
  (fee, lock, hand-off) may happen only once that day has ended: at **00:00 Berlin on the
  day after** the deadline, never on the deadline itself.
* A period counted from an event (a notice sent on 1 June, "within 14 days") starts on the
  day after the event (§ 187 (1) BGB: "wird der Tag, in welchen das Ereignis fällt, nicht
  mitgerechnet") and ends with the last day of the period (§ 188 (1) BGB).
* § 193 BGB: a deadline ending on a Saturday, Sunday or public holiday at the place of
  performance ends on the next working day instead (``domain.calendar.shift_deadline_193``;
  the Land from configuration, e.g. the seller's seat).
* Notices go out within the policy's send window (default: working days 08:00–18:00 Berlin),
  never at midnight: :func:`next_send_time`.

Pure functions, no clock: the workflow passes ``workflow.now()`` and the policy's values.
Results are UTC datetimes and ISO date strings, so they cross the Temporal boundary as they
are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from domain.calendar import is_working_day, non_working_reason, shift_deadline_193
from domain.schedule import BERLIN, berlin_midnight

# -- deadlines ---------------------------------------------------------------------------------


@dataclass
class Deadline:
    """A payment deadline as printed and as enforced.

    ``last_day`` is the last day to pay (ISO date, Berlin), after the § 193 BGB shift;
    ``next_step_at`` the earliest instant the next step may happen (UTC): 00:00 Berlin on
    the day after ``last_day``, or the planned step time if that is later. ``unshifted`` is
    the day before the shift and ``shift_reason`` why it moved ("Sonntag",
    "1. Weihnachtstag"), empty when it did not.
    """

    last_day: str
    next_step_at: datetime
    unshifted: str
    shift_reason: str = ""


def _require_aware(dt: datetime, what: str) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {dt.isoformat()}")


def _berlin_day(dt: datetime) -> date:
    return dt.astimezone(BERLIN).date()


def _deadline(unshifted: date, state: str, not_before: datetime | None) -> Deadline:
    last = shift_deadline_193(unshifted, state=state)
    reason = (non_working_reason(unshifted, state) or "") if last != unshifted else ""
    next_step = berlin_midnight(last + timedelta(days=1))
    if not_before is not None and not_before.astimezone(UTC) > next_step:
        next_step = not_before.astimezone(UTC)
    return Deadline(
        last_day=last.isoformat(),
        next_step_at=next_step,
        unshifted=unshifted.isoformat(),
        shift_reason=reason,
    )


def deadline_before(step_at: datetime, state: str = "", day_based: bool = True) -> Deadline:
    """The deadline a notice prints when the next ladder step is planned for ``step_at``.

    The last day to pay is the last whole Berlin day before ``step_at`` (a step at 00:00 on
    15 June → 14 June), moved by § 193 BGB; the step then happens at ``next_step_at``:
    ``step_at`` itself, or 00:00 after the shifted deadline when the shift moved it past
    ``step_at`` (a deadline on Sunday 14 June 2026 → Monday 15 June, step on 16 June 00:00).

    ``day_based=False`` is for ladders in seconds or minutes (the demo policy): the deadline
    is then the day of ``step_at`` and the step is not moved — a day-based deadline would
    push every demo step to the next midnight.
    """
    _require_aware(step_at, "step_at")
    if not day_based:
        day = _berlin_day(step_at).isoformat()
        return Deadline(last_day=day, next_step_at=step_at.astimezone(UTC), unshifted=day)
    unshifted = _berlin_day(step_at) - timedelta(days=1)
    return _deadline(unshifted, state, step_at)


def deadline_after(sent_at: datetime, days: int, state: str = "") -> Deadline:
    """The deadline of a period of ``days`` days from a notice sent at ``sent_at``.

    §§ 187 (1), 188 (1) BGB: the day of sending does not count, the period ends with its
    last day: sent on Monday 1 June 2026 with 14 days → Monday 15 June; then § 193 BGB.
    The next step may happen at 00:00 Berlin after that day.
    """
    _require_aware(sent_at, "sent_at")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    return _deadline(_berlin_day(sent_at) + timedelta(days=days), state, None)


def is_day_based(offsets: list[timedelta]) -> bool:
    """Whether every offset is a whole number of days: only then are deadlines printed as
    days (a ladder in seconds, as in the demo policy, has no calendar deadlines)."""
    return all(offset % timedelta(days=1) == timedelta(0) for offset in offsets)


# -- send window -------------------------------------------------------------------------------

WORKING: Final = "working"  # Monday–Friday, not a public holiday in the Land
WEEKDAYS: Final = "weekdays"  # Monday–Friday
ALL_DAYS: Final = "all"
SEND_DAYS: Final = (WORKING, WEEKDAYS, ALL_DAYS)
_HHMM_RE: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)|24:00")


@dataclass
class SendWindow:
    """When notices may go out (policy ``send_window``): ``start``–``end`` Berlin wall time
    ("08:00"–"18:00", ``end`` exclusive, "24:00" for the end of the day) on ``days``
    (``working`` | ``weekdays`` | ``all``).

    Default: working days 08:00–18:00 — a dunning letter that arrives at midnight or on a
    holiday reads as harassment, and a notice is better read on a day the customer's bank
    works.
    """

    start: str = "08:00"
    end: str = "18:00"
    days: str = WORKING

    def bounds(self) -> tuple[int, int]:
        """``(start, end)`` in minutes after midnight; raises ValueError when invalid."""
        start, end = parse_hhmm(self.start, "send_window.start"), parse_hhmm(self.end, "end")
        if start >= end:
            raise ValueError(f"send_window: start {self.start} must be before end {self.end}")
        if self.days not in SEND_DAYS:
            raise ValueError(f"send_window.days must be one of {', '.join(SEND_DAYS)}")
        return start, end


def parse_hhmm(value: object, what: str = "time") -> int:
    """``"08:30"`` → 510 minutes; ``"24:00"`` → 1440; raises ValueError naming ``what``."""
    if not isinstance(value, str) or not _HHMM_RE.fullmatch(value):
        raise ValueError(f"{what} must be a time HH:MM (00:00–24:00), got {value!r}")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _day_allowed(day: date, days: str, state: str) -> bool:
    if days == ALL_DAYS:
        return True
    if days == WEEKDAYS:
        return day.weekday() < 5
    return is_working_day(day, state)


def _at_minutes(day: date, minutes: int) -> datetime:
    if minutes >= 24 * 60:
        return berlin_midnight(day + timedelta(days=1))
    wall = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=BERLIN)
    return wall.astimezone(UTC)


def next_send_time(at: datetime, window: SendWindow, state: str = "") -> datetime:
    """``at`` if it lies inside the window, else the window's next opening (UTC).

    Sunday 14 June 2026 00:00 with the default window → Monday 15 June 08:00 Berlin;
    Thursday 24 December 2026 19:00 → Monday 28 December 08:00 (25 and 26 December are
    holidays, then the weekend).
    """
    _require_aware(at, "at")
    start, end = window.bounds()
    day = _berlin_day(at)
    for _ in range(32):  # at most a few days are skipped (Christmas and a weekend)
        if _day_allowed(day, window.days, state):
            opens, closes = _at_minutes(day, start), _at_minutes(day, end)
            if at < closes:
                return max(at.astimezone(UTC), opens)
        day += timedelta(days=1)
    raise ValueError(f"send window {window} never opens within a month of {at.isoformat()}")
