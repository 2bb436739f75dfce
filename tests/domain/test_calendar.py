"""TARGET business days and German holidays (DOMAIN.md §4; § 193 BGB).

Weekdays used below, worked out from 1 Jan 2026 = Thursday (2026 is no leap year, so
31 Dec 2026 is a Thursday as well, and 1 Jan 2027 a Friday):
April 2026: Thu 02, Fri 03 (Good Friday), Sat 04, Sun 05 (Easter), Mon 06 (Easter Monday),
Tue 07. December 2026: Thu 24, Fri 25, Sat 26, Sun 27, Mon 28, Thu 31. January 2027: Fri 01,
Sat 02, Sun 03, Mon 04.
"""

from datetime import date, timedelta

import pytest

from domain.calendar import (
    add_target_business_days,
    easter_monday,
    easter_sunday,
    german_holiday_name,
    german_holidays,
    good_friday,
    is_target_business_day,
    next_target_business_day,
    previous_target_business_day,
    shift_deadline_193,
    target_business_days_between,
    target_closing_days,
    target_closing_reason,
)

D = date.fromisoformat


# ---------------------------------------------------------------- Easter


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        # Anonymous Gregorian algorithm by hand, 2026:
        #   a = 2026 % 19 = 12; b, c = 20, 26; d, e = 5, 0; f = 28 // 25 = 1;
        #   g = (20 - 1 + 1) // 3 = 6; h = (19·12 + 20 - 5 - 6 + 15) % 30 = 252 % 30 = 12;
        #   i, k = 6, 2; l = (32 + 0 + 12 - 12 - 2) % 7 = 30 % 7 = 2;
        #   m = (12 + 132 + 44) // 451 = 0; (12 + 2 + 114) = 128 = 4·31 + 4 → April, 4 + 1 = 5
        (2026, "2026-04-05"),
        # 2024: a = 10, b, c = 20, 24; d, e = 5, 0; f = 1; g = 6;
        #   h = (190 + 20 - 5 - 6 + 15) % 30 = 214 % 30 = 4; i, k = 6, 0;
        #   l = (32 + 12 - 4 - 0) % 7 = 40 % 7 = 5; m = (10 + 44 + 110) // 451 = 0;
        #   4 + 5 + 114 = 123 = 3·31 + 30 → March, 30 + 1 = 31
        (2024, "2024-03-31"),
        # 2025: a = 11; h = (209 + 24) % 30 = 233 % 30 = 23; i, k = 6, 1;
        #   l = (32 + 12 - 23 - 1) % 7 = 20 % 7 = 6; m = (11 + 253 + 132) // 451 = 0;
        #   23 + 6 + 114 = 143 = 4·31 + 19 → April 20
        (2025, "2025-04-20"),
        # 2027: a = 13; h = (247 + 24) % 30 = 271 % 30 = 1; i, k = 6, 3;
        #   l = (32 + 12 - 1 - 3) % 7 = 40 % 7 = 5; 1 + 5 + 114 = 120 = 3·31 + 27 → March 28
        (2027, "2027-03-28"),
        # 2028: a = 14; h = (266 + 24) % 30 = 290 % 30 = 20; i, k = 7, 0;
        #   l = (32 + 14 - 20 - 0) % 7 = 26 % 7 = 5; 20 + 5 + 114 = 139 = 4·31 + 15 → April 16
        (2028, "2028-04-16"),
        # 2029: a = 15; h = (285 + 24) % 30 = 309 % 30 = 9; i, k = 7, 1;
        #   l = (32 + 14 - 9 - 1) % 7 = 36 % 7 = 1; 9 + 1 + 114 = 124 = 4·31 + 0 → April 1
        (2029, "2029-04-01"),
        # 2030: a = 16; h = (304 + 24) % 30 = 328 % 30 = 28; i, k = 7, 2;
        #   l = (32 + 14 - 28 - 2) % 7 = 16 % 7 = 2; m = (16 + 308 + 44) // 451 = 0;
        #   28 + 2 + 114 = 144 = 4·31 + 20 → April 21
        (2030, "2030-04-21"),
    ],
)
def test_easter_sunday(year: int, expected: str) -> None:
    easter = easter_sunday(year)
    assert easter == D(expected)
    assert easter.weekday() == 6  # a Sunday


@pytest.mark.parametrize(
    ("year", "friday", "monday"),
    [
        # DOMAIN.md §4 "Good Friday / Easter Monday (computed)"
        (2025, "2025-04-18", "2025-04-21"),
        (2026, "2026-04-03", "2026-04-06"),
        (2027, "2027-03-26", "2027-03-29"),
    ],
)
def test_good_friday_and_easter_monday_match_domain_md(year: int, friday: str, monday: str) -> None:
    assert good_friday(year) == D(friday)
    assert easter_monday(year) == D(monday)


def test_easter_outside_the_gregorian_calendar_is_rejected() -> None:
    with pytest.raises(ValueError, match="Gregorian"):
        easter_sunday(1582)


def test_easter_is_always_between_22_march_and_25_april() -> None:
    for year in range(1900, 2200):
        assert D(f"{year}-03-22") <= easter_sunday(year) <= D(f"{year}-04-25")


# ---------------------------------------------------------------- TARGET closing days


def test_target_closing_days_2026() -> None:
    assert target_closing_days(2026) == {
        D("2026-01-01"),  # New Year's Day
        D("2026-04-03"),  # Good Friday
        D("2026-04-06"),  # Easter Monday
        D("2026-05-01"),  # Labour Day
        D("2026-12-25"),  # Christmas Day
        D("2026-12-26"),  # 26 December
    }


def test_target_closing_days_returns_a_fresh_set() -> None:
    days = target_closing_days(2027)
    days.clear()
    assert len(target_closing_days(2027)) == 6


@pytest.mark.parametrize(
    ("day", "open_"),
    [
        ("2026-04-02", True),  # Thursday before Easter
        ("2026-04-03", False),  # Good Friday
        ("2026-04-04", False),  # Saturday
        ("2026-04-05", False),  # Easter Sunday
        ("2026-04-06", False),  # Easter Monday
        ("2026-04-07", True),  # Tuesday
        ("2026-05-01", False),  # Labour Day, a Friday
        ("2026-05-14", True),  # Ascension: a German holiday, not a TARGET one
        ("2026-05-25", True),  # Whit Monday: likewise
        ("2025-10-03", True),  # German Unity Day (a Friday in 2025): TARGET open
        ("2026-12-24", True),  # Christmas Eve (Thursday): TARGET open
        ("2026-12-25", False),  # Christmas Day
        ("2026-12-28", True),  # Monday after Christmas
        ("2026-12-31", True),  # New Year's Eve (Thursday): TARGET open
        ("2027-01-01", False),  # New Year's Day (Friday)
        ("2027-01-04", True),  # first TARGET day of 2027
        ("2027-03-26", False),  # Good Friday 2027
        ("2027-03-29", False),  # Easter Monday 2027
        ("2028-12-26", False),  # 26 December on a Tuesday
    ],
)
def test_is_target_business_day(day: str, open_: bool) -> None:
    assert is_target_business_day(D(day)) is open_


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        ("2026-04-03", "Good Friday"),
        ("2026-04-04", "Saturday"),
        ("2026-04-05", "Sunday"),
        ("2026-12-26", "26 December"),  # a Saturday too: the holiday is named
        ("2026-12-24", None),
    ],
)
def test_target_closing_reason(day: str, reason: str | None) -> None:
    assert target_closing_reason(D(day)) == reason


@pytest.mark.parametrize(
    ("day", "include_same_day", "expected"),
    [
        ("2026-04-03", True, "2026-04-07"),  # Good Fri → Sat → Sun → Easter Mon → Tue
        ("2026-04-02", False, "2026-04-07"),  # strictly after Thursday: same four closed days
        ("2026-04-07", True, "2026-04-07"),  # open: stays
        ("2026-12-24", False, "2026-12-28"),  # 25 (Fri) closed, 26/27 weekend
        ("2026-12-31", False, "2027-01-04"),  # 1 Jan (Fri) closed, 2/3 weekend
    ],
)
def test_next_target_business_day(day: str, include_same_day: bool, expected: str) -> None:
    assert next_target_business_day(D(day), include_same_day) == D(expected)


def test_previous_target_business_day() -> None:
    assert previous_target_business_day(D("2026-04-06")) == D("2026-04-02")
    assert previous_target_business_day(D("2026-04-07"), include_same_day=False) == D("2026-04-02")
    assert previous_target_business_day(D("2026-12-31")) == D("2026-12-31")


@pytest.mark.parametrize(
    ("day", "n", "expected"),
    [
        ("2026-04-02", 1, "2026-04-07"),  # Thu + 1 skips Good Friday … Easter Monday
        ("2026-04-04", 1, "2026-04-07"),  # from a Saturday: the first open day after it
        ("2026-04-04", 0, "2026-04-04"),  # n = 0: unchanged
        ("2026-04-07", -1, "2026-04-02"),  # backwards
        # SEPA "up to 14 business days" from Friday 2026-12-18:
        #   21(1) 22(2) 23(3) 24(4) [25 closed, 26/27 weekend] 28(5) 29(6) 30(7) 31(8)
        #   [1 Jan closed, 2/3 weekend] 4(9) 5(10) 6(11) 7(12) 8(13) [9/10 weekend] 11(14)
        ("2026-12-18", 14, "2027-01-11"),
        # 6 business days (SPEC: SEPA success after 6 business days) from Wed 2026-04-01:
        #   Thu 02(1) [03–06 closed] 07(2) 08(3) 09(4) 10(5) [11/12 weekend] 13(6)
        ("2026-04-01", 6, "2026-04-13"),
    ],
)
def test_add_target_business_days(day: str, n: int, expected: str) -> None:
    assert add_target_business_days(D(day), n) == D(expected)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("2026-04-02", "2026-04-07", 1),  # only Tue 07 is open in (02, 07]
        ("2026-04-02", "2026-04-06", 0),
        ("2026-12-18", "2027-01-11", 14),  # as counted above
        ("2027-01-11", "2026-12-18", -14),
        ("2026-12-31", "2026-12-31", 0),
    ],
)
def test_target_business_days_between(a: str, b: str, expected: int) -> None:
    assert target_business_days_between(D(a), D(b)) == expected


def test_between_inverts_add_over_two_years() -> None:
    start = D("2026-01-01")
    for offset in range(0, 730, 7):
        day = start + timedelta(days=offset)
        for n in (0, 1, 5, 14):
            assert target_business_days_between(day, add_target_business_days(day, n)) == n


# ---------------------------------------------------------------- German holidays, § 193 BGB


def test_german_holidays_2026() -> None:
    # Easter 2026-04-05: Karfreitag −2 = 04-03, Ostermontag +1 = 04-06,
    # Christi Himmelfahrt +39 = 04-05 + 25 (→ 04-30) + 14 = 05-14 (a Thursday),
    # Pfingstmontag +50 = 05-25 (a Monday).
    assert german_holidays(2026) == {
        D("2026-01-01"),
        D("2026-04-03"),
        D("2026-04-06"),
        D("2026-05-01"),
        D("2026-05-14"),
        D("2026-05-25"),
        D("2026-10-03"),
        D("2026-12-25"),
        D("2026-12-26"),
    }


def test_german_holidays_2027() -> None:
    # Easter 2027-03-28: Himmelfahrt +39 = 03-28 + 3 (→ 03-31) + 30 (→ 04-30) + 6 = 05-06,
    # Pfingstmontag +50 = 05-17.
    assert german_holidays(2027) == {
        D("2027-01-01"),
        D("2027-03-26"),
        D("2027-03-29"),
        D("2027-05-01"),
        D("2027-05-06"),
        D("2027-05-17"),
        D("2027-10-03"),
        D("2027-12-25"),
        D("2027-12-26"),
    }


def test_reformation_day_2017_was_nationwide_once() -> None:
    assert german_holiday_name(D("2017-10-31")) == "Reformationstag (2017, bundesweit)"
    assert D("2018-10-31") not in german_holidays(2018)


def test_german_holiday_names() -> None:
    assert german_holiday_name(D("2026-05-14")) == "Christi Himmelfahrt"
    assert german_holiday_name(D("2026-12-24")) is None


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2026-09-16", "2026-09-16"),  # Wednesday stays
        ("2026-09-19", "2026-09-21"),  # Sat → Mon
        ("2026-09-20", "2026-09-21"),  # Sun → Mon
        ("2026-05-23", "2026-05-26"),  # Sat → Sun → Whit Monday → Tue
        ("2026-04-03", "2026-04-07"),  # Good Friday → Sat → Sun → Easter Monday → Tue
        ("2026-05-14", "2026-05-15"),  # Ascension (Thu) → Fri
        ("2025-10-03", "2025-10-06"),  # German Unity Day (Fri) → Mon: not TARGET, but § 193
        ("2026-10-03", "2026-10-05"),  # German Unity Day on a Saturday → Mon
        ("2026-12-24", "2026-12-24"),  # Christmas Eve is no holiday
        ("2026-12-25", "2026-12-28"),  # Fri 25 → Sat 26 → Sun 27 → Mon 28
        ("2026-12-31", "2026-12-31"),  # New Year's Eve is no holiday
        ("2027-01-01", "2027-01-04"),  # Fri holiday → weekend → Mon
    ],
)
def test_shift_deadline_193(day: str, expected: str) -> None:
    assert shift_deadline_193(D(day)) == D(expected)


def test_shift_deadline_193_with_a_regional_holiday() -> None:
    # Reformationstag 2025-10-31 (Friday) is a holiday in e.g. Saxony, not nationwide.
    assert shift_deadline_193(D("2025-10-31")) == D("2025-10-31")
    assert shift_deadline_193(D("2025-10-31"), extra_holidays={D("2025-10-31")}) == D("2025-11-03")


# ---------------------------------------------------------------- Länder (§ 193 BGB with a state)


def test_state_holidays_2026_by_hand() -> None:
    # Easter Sunday 2026-04-05: Fronleichnam + 60 = 2026-06-04. Buß- und Bettag: the
    # Wednesday before 23 November; 22 Nov 2026 is a Sunday → Wednesday 18 November.
    from domain.calendar import repentance_day, state_holidays

    assert repentance_day(2026) == D("2026-11-18")
    nationwide = set(german_holidays(2026))
    assert set(state_holidays(2026)) == nationwide
    extra = {st: set(state_holidays(2026, st)) - nationwide for st in ("BY", "BE", "SN", "NI")}
    assert extra["BY"] == {
        D("2026-01-06"),  # Heilige Drei Könige
        D("2026-06-04"),  # Fronleichnam
        D("2026-08-08"),  # Augsburger Friedensfest (city of Augsburg: counted for the Land)
        D("2026-08-15"),  # Mariä Himmelfahrt (Catholic communities: counted for the Land)
        D("2026-11-01"),  # Allerheiligen
    }
    assert extra["BE"] == {D("2026-03-08")}  # Internationaler Frauentag (since 2019)
    assert extra["SN"] == {D("2026-06-04"), D("2026-10-31"), D("2026-11-18")}
    assert extra["NI"] == {D("2026-10-31")}  # Reformationstag since 2018


def test_holidays_that_began_later_are_not_counted_before() -> None:
    from domain.calendar import holiday_name

    assert holiday_name(D("2017-10-31"), "NI") == "Reformationstag (2017, bundesweit)"
    assert holiday_name(D("2016-10-31"), "NI") is None  # Lower Saxony: only since 2018
    assert holiday_name(D("2018-10-31"), "NI") == "Reformationstag"
    assert holiday_name(D("2022-03-08"), "MV") is None  # M-V: only since 2023
    assert holiday_name(D("2023-03-08"), "MV") == "Internationaler Frauentag"
    assert holiday_name(D("2025-05-08"), "BE") == "Tag der Befreiung"
    assert holiday_name(D("2025-05-08"), "BB") is None


def test_shift_with_a_state() -> None:
    # Thursday 2026-06-04 is Fronleichnam in NW: → Friday 06-05; in Berlin it stays.
    assert shift_deadline_193(D("2026-06-04"), state="NW") == D("2026-06-05")
    assert shift_deadline_193(D("2026-06-04"), state="BE") == D("2026-06-04")
    # Saturday 2026-10-31 (Reformationstag in SN) → Monday 11-02 either way
    assert shift_deadline_193(D("2026-10-31"), state="SN") == D("2026-11-02")


def test_unknown_state_is_refused() -> None:
    from domain.calendar import is_working_day

    with pytest.raises(ValueError, match="German Land code"):
        is_working_day(D("2026-06-04"), "XX")
    with pytest.raises(ValueError, match="German Land code"):
        shift_deadline_193(D("2026-06-04"), state="Berlin")
