"""Banking and legal calendars: TARGET business days and German public holidays.

Two different calendars, on purpose (DOMAIN.md §4, last paragraph):

* **TARGET closing days** decide when a SEPA debit can be presented and how "business days"
  in SEPA processing windows are counted ("up to 14 business days", [S-SEPA]). TARGET is
  the Eurosystem's settlement system; it is closed on Saturdays, Sundays and six holidays:
  1 January, Good Friday, Easter Monday, 1 May, 25 and 26 December.
  Sources: ECB press release "Long-term calendar for TARGET closing days" (14 Dec 2000,
  ecb.europa.eu/press/pr/date/2000/html/pr001214_4.en.html: "from 2002 until further
  notice"); ECB "TARGET2 calendar" (ecb.europa.eu/paym/target/target2/profuse/calendar).
  German-only holidays (3 October, Ascension, Whit Monday) are **not** closing days, and
  neither are 24 and 31 December.
* **German public holidays** move legal deadlines: "fällt der bestimmte Tag oder der letzte
  Tag der Frist auf einen Sonntag, einen am Erklärungs- oder Leistungsort staatlich
  anerkannten allgemeinen Feiertag oder einen Sonnabend, so tritt an die Stelle eines
  solchen Tages der nächste Werktag" (§ 193 BGB). The holidays observed in all 16 Länder
  are always counted; those of one Land (Epiphany, Corpus Christi, Reformation Day, …) when
  the caller names the Land (``state``, ISO 3166-2:DE code without ``DE-``: ``BE``, ``BY``…),
  see :func:`state_holidays` for the table and its sources.

Pure functions on ``datetime.date`` (no clock, no I/O), safe in the Temporal workflow
sandbox. Judge an instant's date in Europe/Berlin (``domain.schedule.BERLIN``) before
calling them.
"""

from collections.abc import Collection
from datetime import date, timedelta
from functools import lru_cache
from typing import Final

_SATURDAY: Final = 5  # date.weekday(): Monday = 0 … Sunday = 6


def easter_sunday(year: int) -> date:
    """Easter Sunday of ``year`` in the Gregorian calendar (Western churches).

    The "anonymous Gregorian algorithm" (Meeus/Jones/Butcher: published anonymously in
    Nature, 20 April 1876; J. Meeus, *Astronomical Algorithms*, 2nd ed., ch. 8). Valid for
    every Gregorian year (1583 onwards).
    """
    if not 1583 <= year <= 9999:
        raise ValueError(f"year {year} is outside the Gregorian range 1583–9999")
    a = year % 19  # position in the 19-year Metonic cycle
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30  # epact: days from 21 March to the paschal full moon
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7  # days from the full moon to the next Sunday
    m = (a + 11 * h + 22 * el) // 451
    month, day0 = divmod(h + el - 7 * m + 114, 31)
    return date(year, month, day0 + 1)


def good_friday(year: int) -> date:
    return easter_sunday(year) - timedelta(days=2)


def easter_monday(year: int) -> date:
    return easter_sunday(year) + timedelta(days=1)


# --------------------------------------------------------------------------- TARGET


@lru_cache(maxsize=64)
def _target_closing(year: int) -> dict[date, str]:
    # ECB long-term calendar (press release 14 Dec 2000, in force since 2002; unchanged for
    # T2 since March 2023 per the ECB TARGET2/T2 calendar page).
    return {
        date(year, 1, 1): "New Year's Day",
        good_friday(year): "Good Friday",
        easter_monday(year): "Easter Monday",
        date(year, 5, 1): "Labour Day",
        date(year, 12, 25): "Christmas Day",
        date(year, 12, 26): "26 December",
    }


def target_closing_days(year: int) -> set[date]:
    """The six TARGET holidays of ``year`` (weekends are closed too, but not listed here)."""
    return set(_target_closing(year))


def target_closing_reason(d: date) -> str | None:
    """Why TARGET is closed on ``d`` ("Saturday", "Good Friday", …), or None if it is open."""
    holiday = _target_closing(d.year).get(d)
    if holiday is not None:
        return holiday
    if d.weekday() >= _SATURDAY:
        return d.strftime("%A")
    return None


def is_target_business_day(d: date) -> bool:
    """Whether TARGET settles on ``d``: Monday–Friday and not one of the six closing days."""
    return d.weekday() < _SATURDAY and d not in _target_closing(d.year)


def next_target_business_day(d: date, include_same_day: bool = True) -> date:
    """The first TARGET business day on or after ``d``; strictly after it if not
    ``include_same_day``.

    At most four days are skipped (Good Friday → Saturday → Sunday → Easter Monday), so the
    loop is short.
    """
    day = d if include_same_day else d + timedelta(days=1)
    while not is_target_business_day(day):
        day += timedelta(days=1)
    return day


def previous_target_business_day(d: date, include_same_day: bool = True) -> date:
    """The last TARGET business day on or before ``d``; strictly before it if not
    ``include_same_day``."""
    day = d if include_same_day else d - timedelta(days=1)
    while not is_target_business_day(day):
        day -= timedelta(days=1)
    return day


def add_target_business_days(d: date, n: int) -> date:
    """The ``n``-th TARGET business day after ``d`` (before it for negative ``n``).

    ``d`` itself is never counted, and it need not be a business day: one business day after
    Good Friday 2026-04-03 is Tuesday 2026-04-07, one after Thursday 2026-04-02 is
    2026-04-07 too. ``n == 0`` returns ``d`` unchanged. Use it for SEPA's "success or
    failure after up to 14 business days" ([S-SEPA]):
    ``add_target_business_days(submitted, 14)``.
    """
    day = d
    step = timedelta(days=1 if n >= 0 else -1)
    remaining = abs(n)
    while remaining:
        day += step
        if is_target_business_day(day):
            remaining -= 1
    return day


def target_business_days_between(a: date, b: date) -> int:
    """How many TARGET business days lie in ``(a, b]``: after ``a``, up to and including ``b``.

    The inverse of :func:`add_target_business_days`:
    ``target_business_days_between(d, add_target_business_days(d, n)) == n`` for ``n >= 0``.
    Negative if ``b`` is before ``a`` (``-target_business_days_between(b, a)``); 0 if equal.
    """
    if b < a:
        return -target_business_days_between(b, a)
    count = 0
    day = a
    while day < b:
        day += timedelta(days=1)
        if is_target_business_day(day):
            count += 1
    return count


# --------------------------------------------------------------------------- § 193 BGB


@lru_cache(maxsize=64)
def _german_holidays(year: int) -> dict[date, str]:
    # Holidays observed in all 16 Länder. Their legal basis is the Feiertagsgesetz of each
    # Land; 3 October is set by the Einigungsvertrag, Art. 2 (2). Movable feasts are counted
    # from Easter Sunday: Karfreitag −2, Ostermontag +1, Christi Himmelfahrt +39,
    # Pfingstmontag +50.
    easter = easter_sunday(year)
    days = {
        date(year, 1, 1): "Neujahr",
        easter - timedelta(days=2): "Karfreitag",
        easter + timedelta(days=1): "Ostermontag",
        date(year, 5, 1): "Tag der Arbeit",
        easter + timedelta(days=39): "Christi Himmelfahrt",
        easter + timedelta(days=50): "Pfingstmontag",
        date(year, 10, 3): "Tag der Deutschen Einheit",
        date(year, 12, 25): "1. Weihnachtstag",
        date(year, 12, 26): "2. Weihnachtstag",
    }
    if year == 2017:
        # 500 years of the Reformation: 31 Oct 2017 was a holiday in every Land, once.
        days[date(2017, 10, 31)] = "Reformationstag (2017, bundesweit)"
    return days


def german_holidays(year: int) -> set[date]:
    """Public holidays observed in all German Länder in ``year`` (see the module docstring)."""
    return set(_german_holidays(year))


def german_holiday_name(d: date) -> str | None:
    """The German name of the nationwide holiday on ``d`` ("Karfreitag", …), or None."""
    return _german_holidays(d.year).get(d)


# --------------------------------------------------------------------------- Länder

# The 16 Länder by their ISO 3166-2:DE codes (without the "DE-" prefix).
STATES: Final[dict[str, str]] = {
    "BW": "Baden-Württemberg",
    "BY": "Bayern",
    "BE": "Berlin",
    "BB": "Brandenburg",
    "HB": "Bremen",
    "HH": "Hamburg",
    "HE": "Hessen",
    "MV": "Mecklenburg-Vorpommern",
    "NI": "Niedersachsen",
    "NW": "Nordrhein-Westfalen",
    "RP": "Rheinland-Pfalz",
    "SL": "Saarland",
    "SN": "Sachsen",
    "ST": "Sachsen-Anhalt",
    "SH": "Schleswig-Holstein",
    "TH": "Thüringen",
}

# Fixed-date holidays of single Länder: (month, day, name, Länder, first year). Sources: the
# Feiertagsgesetz of each Land (BW FTG § 1; BayFTG Art. 1; Berlin FTG § 1; BbgFTG § 2;
# Bremen SFGG § 2; Hamburg FeiertagsG § 1; HFeiertagsG § 1; FTG M-V § 2; NFeiertagsG § 2;
# FTG NW § 2; RP LFtG § 2; SL SFG § 2; SächsSFG § 1; FeiertG LSA § 2; SH SFTG § 2;
# ThürFtG § 2; the current texts are linked from vacanza/holidays 0.109 ``germany.py``,
# against which this table was compared for 2016–2032: the only differences are the
# holidays of part of a Land, counted here on purpose, see _PARTIAL). Years: Reformationstag
# in HB, HH, NI and SH since 2018 (the 2017 Land amendments); Internationaler Frauentag in
# Berlin since 2019 and in M-V since 2023; Weltkindertag in Thüringen since 2019.
_FIXED_STATE_HOLIDAYS: Final[tuple[tuple[int, int, str, frozenset[str], int], ...]] = (
    (1, 6, "Heilige Drei Könige", frozenset({"BW", "BY", "ST"}), 1583),
    (3, 8, "Internationaler Frauentag", frozenset({"BE"}), 2019),
    (3, 8, "Internationaler Frauentag", frozenset({"MV"}), 2023),
    # BayFTG Art. 1 (2): only in the city of Augsburg; Art. 1 (1) Nr. 2: Mariä Himmelfahrt
    # only in communities with a mainly Catholic population (most of Bavaria). Counted for
    # the whole Land: see _PARTIAL below.
    (8, 8, "Augsburger Hohes Friedensfest", frozenset({"BY"}), 1583),
    (8, 15, "Mariä Himmelfahrt", frozenset({"BY", "SL"}), 1583),
    (9, 20, "Weltkindertag", frozenset({"TH"}), 2019),
    (10, 31, "Reformationstag", frozenset({"BB", "MV", "SN", "ST", "TH"}), 1583),
    (10, 31, "Reformationstag", frozenset({"HB", "HH", "NI", "SH"}), 2018),
    (11, 1, "Allerheiligen", frozenset({"BW", "BY", "NW", "RP", "SL"}), 1583),
)
# Fronleichnam (Easter Sunday + 60): a holiday of the whole Land in BW, BY, HE, NW, RP, SL;
# in parts of Sachsen (SächsSFG § 1 with the Feiertagsverordnung: the Sorbian Catholic
# communities) and Thüringen (ThürFtG § 2 (2): communities with a mainly Catholic population).
_CORPUS_CHRISTI: Final = frozenset({"BW", "BY", "HE", "NW", "RP", "SL", "SN", "TH"})
# Holidays observed only in part of a Land are counted for the whole Land on purpose: the
# place of performance may lie in that part, and a deadline moved one working day later is
# never wrong, while one that ends on a holiday there would be too early (§ 193 BGB).
_PARTIAL: Final = "counted for the whole Land (observed in part of it)"
# One-off holidays in Berlin (amendments of the Berlin FTG): the 75th and 80th anniversary of
# the liberation and the end of the Second World War in Europe, and the 75th anniversary of
# the uprising of 17 June 1953 (listed by vacanza/holidays 0.109, ``germany.py``
# ``special_be_public_holidays``; the 2028 amendment itself was not read here — counted, as a
# later deadline is never wrong).
_ONE_OFF: Final[dict[date, tuple[str, frozenset[str]]]] = {
    date(2020, 5, 8): ("Tag der Befreiung", frozenset({"BE"})),
    date(2025, 5, 8): ("Tag der Befreiung", frozenset({"BE"})),
    date(2028, 6, 17): ("75. Jahrestag des Aufstandes vom 17. Juni 1953", frozenset({"BE"})),
}


def check_state(state: str) -> str:
    """``""`` (nationwide holidays only) or one of :data:`STATES`; raises ValueError."""
    if state != "" and state not in STATES:
        raise ValueError(
            f"state must be a German Land code ({', '.join(STATES)}) or empty, got {state!r}"
        )
    return state


def repentance_day(year: int) -> date:
    """Buß- und Bettag: the Wednesday before 23 November (SächsSFG § 1: the Wednesday before
    the last Sunday of the church year). 2026 → 18 November."""
    nov22 = date(year, 11, 22)
    return nov22 - timedelta(days=(nov22.weekday() - 2) % 7)


@lru_cache(maxsize=256)
def _state_holidays(year: int, state: str) -> dict[date, str]:
    days = dict(_german_holidays(year))
    if not state:
        return days
    for month, day, name, states, since in _FIXED_STATE_HOLIDAYS:
        if state in states and year >= since:
            days.setdefault(date(year, month, day), name)
    if state in _CORPUS_CHRISTI:
        days.setdefault(easter_sunday(year) + timedelta(days=60), "Fronleichnam")
    if state == "SN":
        days.setdefault(repentance_day(year), "Buß- und Bettag")
    for day_, (name, states) in _ONE_OFF.items():
        if day_.year == year and state in states:
            days.setdefault(day_, name)
    return days


def state_holidays(year: int, state: str = "") -> dict[date, str]:
    """Public holidays in the Land ``state`` in ``year`` (date → German name), including the
    nationwide ones; ``state=""`` gives the nationwide ones only.

    Holidays that fall on a Sunday anyway (Ostersonntag, Pfingstsonntag in Brandenburg) are
    left out: § 193 BGB already skips Sundays. Holidays of part of a Land are counted for
    the whole Land (see ``_PARTIAL`` in the source).
    """
    return dict(_state_holidays(year, check_state(state)))


def holiday_name(d: date, state: str = "") -> str | None:
    """The holiday's German name on ``d`` in ``state`` (nationwide if empty), or None."""
    return _state_holidays(d.year, check_state(state)).get(d)


def is_working_day(d: date, state: str = "") -> bool:
    """Monday–Friday and no public holiday in ``state``: a day on which a § 193 BGB deadline
    may end and a notice may go out."""
    return d.weekday() < _SATURDAY and d not in _state_holidays(d.year, check_state(state))


def non_working_reason(d: date, state: str = "") -> str | None:
    """Why ``d`` is not a working day ("Samstag", "Sonntag" or the holiday's name), else None."""
    if d.weekday() == _SATURDAY:
        return "Samstag"
    if d.weekday() == _SATURDAY + 1:
        return "Sonntag"
    return holiday_name(d, state)


def shift_deadline_193(d: date, extra_holidays: Collection[date] = (), state: str = "") -> date:
    """Move a deadline (or a fixed performance day) off a Saturday, Sunday or holiday.

    § 193 BGB: a deadline ending on a Sunday, a public holiday recognised at the place of the
    declaration or performance, or a Saturday is replaced by the next working day. Saturday
    is a working day in general usage, but § 193 names it explicitly, so the result is the
    next Monday–Friday that is no holiday: Saturday 2026-09-19 → Monday 2026-09-21, Good
    Friday 2026-04-03 → Tuesday 2026-04-07 (Easter Monday in between).

    The nationwide holidays always count; ``state`` adds those of one Land
    (:func:`state_holidays`), ``extra_holidays`` any others.
    """
    check_state(state)
    day = d
    while not is_working_day(day, state) or day in extra_holidays:
        day += timedelta(days=1)
    return day


def sepa_collection_date(submitted_on: date) -> date:
    """The day a SEPA Core debit submitted on ``submitted_on`` (a Europe/Berlin date) is
    collected from the debtor's account: the next TARGET business day. SEPA Core needs the
    collection to reach the debtor bank one TARGET day before the due date (D-1, SEPA Core
    rulebook since November 2016; DOMAIN.md §4), and Stripe submits a debit when the
    PaymentIntent is confirmed. This is the date a pre-notification announces; the date
    Stripe reports on the charge (``payment_method_details.sepa_debit.expected_debit_date``)
    is recorded when the debit is submitted, and a difference is flagged."""
    return add_target_business_days(submitted_on, 1)
