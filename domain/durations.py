"""Durations in policies and intervals in the API.

Two different notations, on purpose:

* policy durations (SPEC §3): ``<int><unit>`` with unit ``s``, ``m``, ``h``, ``d``, ``w``,
  e.g. ``3d`` or ``90s``. They are exact elapsed time (``timedelta``).
* contract intervals (SPEC §2): ISO 8601 durations such as ``P1M``, ``P1Y``, ``P14D``,
  ``PT30S``. Months and days are *calendar* steps, so they cannot be a ``timedelta``;
  :class:`Interval` keeps months, days and seconds apart and :func:`domain.schedule.shift`
  applies them in Europe/Berlin local time.

Pure functions, safe inside the Temporal workflow sandbox.
"""

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

DURATION_FORM: Final = "<int><unit> with unit s, m, h, d or w (e.g. 90s, 3d, 2w)"

_DURATION_RE: Final = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS: Final[dict[str, int]] = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}


def parse_duration(text: str) -> timedelta:
    """Parse a policy duration (``3d``, ``90s``, ``2w``, ``0s``) into a timedelta.

    Raises ``ValueError`` naming the value and the expected form.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration {DURATION_FORM}, got {text!r}")
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected {DURATION_FORM}")
    amount, unit = int(match.group(1)), match.group(2)
    try:
        return timedelta(seconds=amount * _UNIT_SECONDS[unit])
    except OverflowError:
        raise ValueError(f"duration {text!r} is too large") from None


def format_duration(delta: timedelta) -> str:
    """Inverse of :func:`parse_duration`: the largest unit that divides the value exactly.

    ``timedelta(days=14)`` → ``2w``, ``timedelta(hours=36)`` → ``36h``. Sub-second and
    negative values are rejected (policy durations cannot express them).
    """
    if delta < timedelta(0) or delta.microseconds:
        raise ValueError(f"cannot express {delta!r} as a policy duration")
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Interval:
    """A calendar interval: whole months, calendar days and exact seconds.

    ``P1Y`` is 12 months, ``P2W`` 14 days, ``PT1H`` 3600 seconds. Only ints, so it also
    passes through Temporal's default JSON converter unchanged.
    """

    months: int = 0
    days: int = 0
    seconds: int = 0

    @property
    def is_zero(self) -> bool:
        return self.months == 0 and self.days == 0 and self.seconds == 0


# ISO 8601-1:2019 §5.5.2.4 duration "PnYnMnWnDTnHnMnS" (integer components only; weeks
# may be combined with other components as ISO 8601-2 allows).
_INTERVAL_RE: Final = re.compile(
    r"P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?"
)
INTERVAL_FORM: Final = "an ISO 8601 duration such as P1M, P3M, P1Y, P14D, P2W, PT30S or P1DT12H"


def parse_interval(text: str) -> Interval:
    """Parse an ISO 8601 duration as used in the API (``P1M``, ``P1Y``, ``P14D``, ``PT30S``).

    Raises ``ValueError`` naming the value for malformed, fractional or zero intervals.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid interval {text!r}: expected {INTERVAL_FORM}")
    match = _INTERVAL_RE.fullmatch(text)
    # "P" and "P1DT" match the regex but are not valid durations: at least one component,
    # and a "T" must be followed by at least one time component.
    groups: dict[str, str | None] = match.groupdict() if match is not None else {}
    if not any(groups.values()) or text.endswith("T"):
        raise ValueError(f"invalid interval {text!r}: expected {INTERVAL_FORM}")

    def part(name: str) -> int:
        value = groups[name]
        return int(value) if value is not None else 0

    interval = Interval(
        months=part("Y") * 12 + part("M"),
        days=part("W") * 7 + part("D"),
        seconds=part("h") * 3600 + part("m") * 60 + part("s"),
    )
    if interval.is_zero:
        raise ValueError(f"invalid interval {text!r}: must not be zero")
    return interval
