"""Retry timing for failed debits (issue 5 item 2; DOMAIN.md §§ 4–6).

Calendar facts used below (1 Jan 2026 is a Thursday):
* TARGET closing days: weekends, 1 Jan, Good Friday, Easter Monday, 1 May, 25/26 Dec.
  2024: Good Friday 03-29, Easter Monday 04-01. 2026: 04-03 / 04-06. 2029: 03-30 / 04-02.
* Europe/Berlin is UTC+1 in winter, UTC+2 from the last Sunday of March (2026-03-29):
  10:00 Berlin is 09:00Z in winter and 08:00Z in summer.
* Payday window days (last TARGET day of a month + first three of each month):
  Dec 2026: 01, 02, 03 … 31 (Thu; 24 and 31 Dec are TARGET days).
  Jan 2027: 04 (Mon; 01 is closed, 02/03 weekend), 05, 06 … 29 (Fri; 30/31 weekend).
  Mar 2024: … 28 (Thu; 29 Good Friday, 30/31 weekend). Apr 2024: 02 (01 Easter Monday), 03, 04.
  Apr 2026: … 30 (Thu). May 2026: 04 (01 is Labour Day, a Friday; 02/03 weekend), 05, 06 … 29
  (Fri; 30/31 weekend). Mar 2026: … 31 (Tue). Apr 2029: 03 (01 Sun, 02 Easter Monday).
"""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from domain import declines
from domain.declines import CLASSIFICATION, CUSTOMER_ACTION, FIX_DATA, NEVER, SOFT
from domain.policy import MAX_RETRIES
from domain.retry_timing import (
    VISA_MAX_REATTEMPTS,
    RetryDecision,
    RetryPlanInput,
    is_payday_window_day,
    next_payday_window_day,
    next_retry,
    payday_window_position,
)
from domain.schedule import BERLIN

DEFAULT_OFFSETS = [timedelta(days=d) for d in (1, 3, 5, 7)]  # policies/default.yaml


def berlin(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A Berlin wall-clock time as an aware UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def local(dt: datetime | None) -> str:
    assert dt is not None
    return dt.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M")


def plan(
    *,
    scheme: str = "card",
    failure_class: str = SOFT,
    code: str | None = "do_not_honor",
    first_failed_at: datetime | None = None,
    previous_attempts: list[datetime] | None = None,
    offsets: list[timedelta] | None = None,
    retries_done: int = 0,
    payday_alignment: bool = False,
    now: datetime | None = None,
) -> RetryPlanInput:
    first = first_failed_at or berlin(2026, 12, 10)
    return RetryPlanInput(
        scheme=scheme,
        failure_class=failure_class,
        code=code,
        first_failed_at=first,
        previous_attempts=[first] if previous_attempts is None else previous_attempts,
        offsets=DEFAULT_OFFSETS if offsets is None else offsets,
        retries_done=retries_done,
        payday_alignment=payday_alignment,
        now=now or first + timedelta(seconds=5),
    )


# ---------------------------------------------------------------- hard classes


@pytest.mark.parametrize(
    ("scheme", "failure_class", "code", "expected"),
    [
        ("card", NEVER, "lost_card", "stop: Visa category 1 code lost_card — never retry"),
        ("card", NEVER, "stolen_card", "stop: Visa category 1 code stolen_card — never retry"),
        ("card", NEVER, "pickup_card", "stop: Visa category 1 code pickup_card — never retry"),
        ("card", NEVER, "highest_risk_level", "class never — never retry"),
        ("card", FIX_DATA, "expired_card", "class fix_data — ask for a new or corrected"),
        ("card", CUSTOMER_ACTION, "authentication_required", "class customer_action"),
        ("sepa", NEVER, "account_closed", "class never"),
        ("sepa", FIX_DATA, "bank_account_restricted", "class fix_data"),
        ("card", "weird", "lost_card", "unknown failure class 'weird'"),
    ],
)
def test_hard_failures_stop_with_a_reason_naming_the_class(
    scheme: str, failure_class: str, code: str, expected: str
) -> None:
    decision = next_retry(plan(scheme=scheme, failure_class=failure_class, code=code))
    assert decision.at is None and decision.stop
    assert decision.rule == "hard"
    assert expected in decision.reason
    assert decision.reason.startswith("stop: ")


@pytest.mark.parametrize("key", sorted(CLASSIFICATION))
def test_every_classified_code_takes_its_path(key: str) -> None:
    """The whole classification table: soft card codes and SEPA AM04 retry, the rest stop."""
    row = CLASSIFICATION[key]
    decision = next_retry(plan(scheme=row.scheme, failure_class=row.failure_class, code=row.code))
    if row.failure_class != SOFT:
        assert decision.stop and decision.rule == "hard"
        assert row.failure_class in decision.reason or "Visa category 1" in decision.reason
    elif row.scheme == "sepa" and row.code != "insufficient_funds":
        # generic_could_not_process: no R-code, not re-presented (DOMAIN.md §4).
        assert decision.stop and decision.rule == "sepa_code"
    else:
        assert decision.at is not None


# ---------------------------------------------------------------- policy offsets (cards)


@pytest.mark.parametrize(
    ("retries_done", "now", "expected"),
    [
        # failed Thu 2026-12-10 10:00 Berlin; offsets 1d/3d/5d/7d; each retry failed at once
        (0, berlin(2026, 12, 10, 10, 1), "2026-12-11 10:00"),
        (1, berlin(2026, 12, 11, 10, 1), "2026-12-13 10:00"),  # a Sunday: cards don't care
        (2, berlin(2026, 12, 13, 10, 1), "2026-12-15 10:00"),
        (3, berlin(2026, 12, 15, 10, 1), "2026-12-17 10:00"),
    ],
)
def test_soft_card_decline_follows_the_policy_offsets(
    retries_done: int, now: datetime, expected: str
) -> None:
    decision = next_retry(plan(retries_done=retries_done, now=now))
    assert local(decision.at) == expected
    assert decision.rule == "policy"
    assert decision.reason.startswith(f"soft decline do_not_honor: retry {retries_done + 1} of 4")
    assert decision.at is not None and decision.at.tzinfo == UTC


def test_offsets_exhausted_stops() -> None:
    decision = next_retry(plan(retries_done=4, now=berlin(2026, 12, 17, 10, 1)))
    assert decision.stop and decision.rule == "offsets_exhausted"
    assert decision.reason == "stop: all 4 policy retries done"


def test_a_policy_without_retries_stops() -> None:
    decision = next_retry(plan(offsets=[]))
    assert decision.stop and decision.reason == "stop: the policy has no retries"


def test_a_retry_is_never_scheduled_in_the_past() -> None:
    # The worker was down: the 1d retry (2026-12-11 10:00) is overdue on 2026-12-12 08:00.
    now = berlin(2026, 12, 12, 8)
    decision = next_retry(plan(now=now))
    assert decision.at == now


def test_cards_stop_after_stripes_eight_retries() -> None:
    offsets = [timedelta(days=d) for d in range(1, 11)]  # 10: more than the policy allows
    decision = next_retry(plan(offsets=offsets, retries_done=MAX_RETRIES))
    assert decision.stop and decision.rule == "stripe_max"
    assert "Stripe recommends at most 8" in decision.reason
    assert not next_retry(plan(offsets=offsets, retries_done=MAX_RETRIES - 1)).stop


@pytest.mark.parametrize(
    ("retries_done", "retried"),
    [(0, True), (1, True), (declines.MAX_UNKNOWN_RETRIES, False)],
)
def test_unknown_codes_get_few_retries(retries_done: int, retried: bool) -> None:
    assert declines.MAX_UNKNOWN_RETRIES == 2
    decision = next_retry(
        plan(code="brand_new_code", retries_done=retries_done, now=berlin(2026, 12, 16))
    )
    assert (decision.at is not None) is retried
    if retried:
        assert decision.reason.startswith("unknown code brand_new_code (soft, capped): retry ")
        assert f"of {declines.MAX_UNKNOWN_RETRIES}" in decision.reason
    else:
        assert decision.rule == "unknown_cap"
        assert decision.reason == (
            "stop: unknown code brand_new_code: 2 retries done, at most 2 for codes not in "
            "the classification table"
        )


def test_a_missing_code_counts_as_unknown() -> None:
    decision = next_retry(plan(code=None, retries_done=2))
    assert decision.rule == "unknown_cap" and "(no code)" in decision.reason


# ---------------------------------------------------------------- payday alignment


@pytest.mark.parametrize(
    ("scheme", "first_failed", "offset_days", "expected", "position"),
    [
        # 2026-12-10 + 1d = Fri 12-11 → next window day: Thu 2026-12-31 (24/31 Dec are TARGET
        # days; only 25/26 Dec close)
        ("card", berlin(2026, 12, 10), 1, "2026-12-31 10:00", "last TARGET day of the month"),
        ("sepa", berlin(2026, 12, 10), 1, "2026-12-31 10:00", "last TARGET day of the month"),
        # 2026-12-29 + 3d = Fri 2027-01-01 (closed) → Mon 2027-01-04
        ("card", berlin(2026, 12, 29), 3, "2027-01-04 10:00", "first TARGET day of the month"),
        # 2026-12-30 + 1d = 12-31: already in the window, stays
        ("card", berlin(2026, 12, 30), 1, "2026-12-31 10:00", "last TARGET day of the month"),
        # 2024-03-26 + 1d = 03-27 → Thu 03-28 (29 Good Friday, 30/31 weekend)
        ("card", berlin(2024, 3, 26), 1, "2024-03-28 10:00", "last TARGET day of the month"),
        # 2024-03-28 + 1d = Good Friday 03-29 → Tue 2024-04-02 (Easter Monday 04-01)
        ("sepa", berlin(2024, 3, 28), 1, "2024-04-02 10:00", "first TARGET day of the month"),
        # 2026-04-02 + 1d = Good Friday 2026-04-03 → Tue 04-07: Wed 01 and Thu 02 are the
        # first two TARGET days of April, 03–06 are closed, so 07 is the third: in the window
        ("sepa", berlin(2026, 4, 2), 1, "2026-04-07 10:00", "third TARGET day of the month"),
        # 2026-04-07 + 1d = 04-08, the fourth TARGET day → Thu 2026-04-30
        ("sepa", berlin(2026, 4, 7), 1, "2026-04-30 10:00", "last TARGET day of the month"),
        # 2026-05-01 + 1d = Sat 05-02 → Mon 05-04, the first TARGET day of May (1 May closed)
        ("card", berlin(2026, 5, 1), 1, "2026-05-04 10:00", "first TARGET day of the month"),
        # 2026-05-04 + 1d = 05-05: the second TARGET day of May is in the window
        ("card", berlin(2026, 5, 4), 1, "2026-05-05 10:00", "second TARGET day of the month"),
        # 2026-05-06 + 1d = 05-07 → Fri 05-29 (30/31 weekend)
        ("card", berlin(2026, 5, 6), 1, "2026-05-29 10:00", "last TARGET day of the month"),
        # 2029-03-29 + 1d = Good Friday 03-30 → Tue 2029-04-03 (01 Sunday, 02 Easter Monday)
        ("sepa", berlin(2029, 3, 29), 1, "2029-04-03 10:00", "first TARGET day of the month"),
        # DST: failed 2026-03-20 10:00 CET (09:00Z) + 1d = Sat 03-21 → Tue 03-31, still 10:00
        # Berlin, now CEST (08:00Z)
        ("card", berlin(2026, 3, 20), 1, "2026-03-31 10:00", "last TARGET day of the month"),
    ],
)
def test_insufficient_funds_is_aligned_to_the_next_payday_window(
    scheme: str, first_failed: datetime, offset_days: int, expected: str, position: str
) -> None:
    decision = next_retry(
        plan(
            scheme=scheme,
            code="insufficient_funds",
            first_failed_at=first_failed,
            offsets=[timedelta(days=offset_days)],
            payday_alignment=True,
        )
    )
    assert local(decision.at) == expected
    assert decision.rule == "payday"
    assert f"after payday on {expected[:10]} ({position}" in decision.reason


def test_payday_alignment_keeps_the_berlin_time_across_dst() -> None:
    decision = next_retry(
        plan(code="insufficient_funds", first_failed_at=berlin(2026, 3, 20), payday_alignment=True)
    )
    assert berlin(2026, 3, 20) == datetime(2026, 3, 20, 9, tzinfo=UTC)  # CET
    assert decision.at == datetime(2026, 3, 31, 8, tzinfo=UTC)  # CEST


def test_payday_reason_reads_well() -> None:
    # failed Tue 2026-12-29 10:00, +3d = 2027-01-01 (closed) → Mon 2027-01-04
    decision = next_retry(
        plan(
            code="insufficient_funds",
            first_failed_at=berlin(2026, 12, 29),
            offsets=[timedelta(days=3), timedelta(days=5)],
            payday_alignment=True,
        )
    )
    assert decision.reason == (
        "insufficient funds: retry after payday on 2027-01-04 (first TARGET day of the month; "
        "retry 1 of 2)"
    )
    assert decision.explain() == f"retry at 2027-01-04 10:00 Berlin — {decision.reason}"


def test_aligned_card_retries_walk_through_the_window() -> None:
    """Failed 2026-12-10: retries on 12-31, then 01-04, 01-05, 01-06 (the day after each
    failure is the next window day; two attempts never land on one day)."""
    expected = ["2026-12-31 10:00", "2027-01-04 10:00", "2027-01-05 10:00", "2027-01-06 10:00"]
    attempts = [berlin(2026, 12, 10)]
    now = attempts[0] + timedelta(seconds=5)
    for retries_done, when in enumerate(expected):
        decision = next_retry(
            plan(
                code="insufficient_funds",
                payday_alignment=True,
                retries_done=retries_done,
                previous_attempts=list(attempts),
                now=now,
            )
        )
        assert local(decision.at) == when
        assert decision.at is not None
        attempts.append(decision.at)
        now = decision.at + timedelta(seconds=5)  # that retry failed too
    final = next_retry(
        plan(
            code="insufficient_funds",
            payday_alignment=True,
            retries_done=4,
            previous_attempts=attempts,
            now=now,
        )
    )
    assert final.stop and final.rule == "offsets_exhausted"


def test_payday_alignment_is_off_without_the_policy_flag() -> None:
    decision = next_retry(plan(code="insufficient_funds", payday_alignment=False))
    assert local(decision.at) == "2026-12-11 10:00"
    assert decision.rule == "policy"


def test_payday_alignment_applies_to_insufficient_funds_only() -> None:
    decision = next_retry(plan(code="do_not_honor", payday_alignment=True))
    assert local(decision.at) == "2026-12-11 10:00"


@pytest.mark.parametrize(
    ("day", "in_window", "position"),
    [
        ("2026-12-01", True, "first TARGET day of the month"),
        ("2026-12-03", True, "third TARGET day of the month"),
        ("2026-12-04", False, "fourth TARGET day of the month"),
        ("2026-12-24", False, None),
        ("2026-12-31", True, "last TARGET day of the month"),
        ("2027-01-01", False, "not a TARGET day"),
        ("2027-01-04", True, "first TARGET day of the month"),
        ("2027-01-06", True, "third TARGET day of the month"),
        ("2027-01-07", False, "fourth TARGET day of the month"),
    ],
)
def test_payday_window_days(day: str, in_window: bool, position: str | None) -> None:
    d = date.fromisoformat(day)
    assert is_payday_window_day(d) is in_window
    if position is not None:
        assert payday_window_position(d) == position


def test_next_payday_window_day() -> None:
    assert next_payday_window_day(date(2026, 12, 4)) == date(2026, 12, 31)
    assert next_payday_window_day(date(2027, 1, 1)) == date(2027, 1, 4)


# ---------------------------------------------------------------- SEPA


def test_sepa_retry_on_good_friday_moves_to_tuesday() -> None:
    # failed Thu 2026-04-02 10:00 + 1d = Good Friday 04-03 → Sat, Sun, Easter Monday closed
    # → Tue 2026-04-07 10:00 CEST = 08:00Z
    decision = next_retry(
        plan(scheme="sepa", code="insufficient_funds", first_failed_at=berlin(2026, 4, 2))
    )
    assert decision.at == datetime(2026, 4, 7, 8, tzinfo=UTC)
    assert decision.rule == "target_day"
    assert decision.reason == (
        "SEPA insufficient funds: re-present once on 2026-04-07 (2026-04-03 is Good Friday, "
        "TARGET closed)"
    )


@pytest.mark.parametrize(
    ("first_failed", "offset_days", "expected", "rule"),
    [
        (berlin(2026, 12, 23), 1, "2026-12-24 10:00", "policy"),  # Christmas Eve: TARGET open
        (berlin(2026, 12, 23), 2, "2026-12-28 10:00", "target_day"),  # 25 Fri closed → Mon 28
        (berlin(2026, 12, 23), 3, "2026-12-28 10:00", "target_day"),  # Sat 26 (26 Dec) → Mon
        (berlin(2026, 12, 30), 1, "2026-12-31 10:00", "policy"),  # New Year's Eve: open
        (berlin(2026, 12, 30), 2, "2027-01-04 10:00", "target_day"),  # 1 Jan (Fri) → Mon 4
        (berlin(2026, 4, 29), 2, "2026-05-04 10:00", "target_day"),  # 1 May (Fri) → Mon 4
    ],
)
def test_sepa_retries_land_on_target_business_days(
    first_failed: datetime, offset_days: int, expected: str, rule: str
) -> None:
    decision = next_retry(
        plan(
            scheme="sepa",
            code="insufficient_funds",
            first_failed_at=first_failed,
            offsets=[timedelta(days=offset_days)],
        )
    )
    assert local(decision.at) == expected
    assert decision.rule == rule


def test_sepa_after_the_time_of_day_passed_takes_the_next_target_day() -> None:
    # Planned Fri 2026-12-11 10:00, but the workflow only asks at 15:00 that day: the Berlin
    # time of day is kept, so the next TARGET day, Mon 12-14 10:00.
    decision = next_retry(
        plan(scheme="sepa", code="insufficient_funds", now=berlin(2026, 12, 11, 15))
    )
    assert local(decision.at) == "2026-12-14 10:00"
    assert decision.rule == "target_day"
    assert decision.reason == (
        "SEPA insufficient funds: re-present once on 2026-12-14 (the next TARGET business day "
        "at the policy's time 10:00)"
    )


def test_sepa_re_presentation_leaves_time_for_a_fresh_pre_notification() -> None:
    # Failed Thu 2026-12-10 10:00, policy retry D+1 = Fri 12-11; with 5 days' notice the
    # announcement goes out now and the debit waits until Tue 12-15 10:00 (a TARGET day).
    inp = plan(scheme="sepa", code="do_not_honor")
    inp.code = "insufficient_funds"
    inp.now = berlin(2026, 12, 10, 10)
    inp.min_notice = timedelta(days=5)
    decision = next_retry(inp)
    assert local(decision.at) == "2026-12-15 10:00"
    assert "not before 2026-12-15 10:00: announced beforehand" in decision.reason
    # 2026-12-19 is a Saturday: 9 days' notice moves it to Mon 12-21
    inp.min_notice = timedelta(days=9)
    assert local(next_retry(inp).at) == "2026-12-21 10:00"
    # cards are not pre-notified: the notice period does not apply
    card = plan(code="insufficient_funds", now=berlin(2026, 12, 10, 10))
    card.min_notice = timedelta(days=5)
    assert local(next_retry(card).at) == "2026-12-11 10:00"


def test_sepa_is_re_presented_at_most_once() -> None:
    decision = next_retry(
        plan(
            scheme="sepa",
            code="insufficient_funds",
            retries_done=1,
            payday_alignment=True,
            now=berlin(2026, 12, 31, 12),
        )
    )
    assert declines.MAX_SEPA_RETRIES == 1
    assert decision.stop and decision.rule == "sepa_once"
    assert decision.reason == (
        "stop: SEPA debit already re-presented once — AM04 is re-presented at most once "
        "(DOMAIN.md §6)"
    )


@pytest.mark.parametrize("code", ["generic_could_not_process", "something_new", None])
def test_sepa_re_presents_only_insufficient_funds(code: str | None) -> None:
    decision = next_retry(plan(scheme="sepa", code=code))
    assert decision.stop and decision.rule == "sepa_code"
    assert "only insufficient_funds (AM04)" in decision.reason


def test_stripe_payment_method_type_sepa_debit_is_accepted() -> None:
    decision = next_retry(plan(scheme="sepa_debit", code="insufficient_funds"))
    assert decision.reason.startswith("SEPA insufficient funds: re-present once")


def test_sepa_is_not_subject_to_the_visa_cap() -> None:
    attempts = [berlin(2026, 12, 10) - timedelta(hours=h) for h in range(25)]
    decision = next_retry(
        plan(scheme="sepa", code="insufficient_funds", previous_attempts=attempts)
    )
    assert local(decision.at) == "2026-12-11 10:00"


# ---------------------------------------------------------------- Visa: 20 in 30 days


def daily(first: datetime, count: int) -> list[datetime]:
    return [first + timedelta(days=i) for i in range(count)]


LONG_OFFSETS = [timedelta(days=d) for d in (1, 3, 5, 7, 14, 21, 28)]


def test_nineteen_attempts_in_30_days_leave_room_for_one_more() -> None:
    # attempts daily 2026-06-03 … 06-21 10:00 (19); failed first on 06-15; candidate
    # 06-15 + 7d = 06-22 10:00 → 19 attempts in (05-23 10:00, 06-22 10:00]: allowed.
    decision = next_retry(
        plan(
            first_failed_at=berlin(2026, 6, 15),
            previous_attempts=daily(berlin(2026, 6, 3), 19),
            offsets=LONG_OFFSETS,
            retries_done=3,
            now=berlin(2026, 6, 21, 10, 1),
        )
    )
    assert local(decision.at) == "2026-06-22 10:00"
    assert decision.rule == "policy"


def test_twenty_attempts_in_30_days_push_the_retry() -> None:
    # 20 attempts daily 2026-06-02 … 06-21 10:00; candidate 06-22 10:00 would be the 21st in
    # 30 days. The oldest (06-02 10:00) leaves the window 30 days later: 07-02 10:00, which
    # is before the policy's last retry (06-15 + 28d = 07-13 10:00) → pushed.
    decision = next_retry(
        plan(
            first_failed_at=berlin(2026, 6, 15),
            previous_attempts=daily(berlin(2026, 6, 2), VISA_MAX_REATTEMPTS),
            offsets=LONG_OFFSETS,
            retries_done=3,
            now=berlin(2026, 6, 21, 10, 1),
        )
    )
    assert local(decision.at) == "2026-07-02 10:00"
    assert decision.rule == "visa_push"
    assert decision.reason.endswith(
        "; pushed from 2026-06-22 10:00: 20 attempts in the 30 days before (Visa cap)"
    )


def test_twenty_attempts_in_30_days_stop_when_the_push_leaves_the_policy_window() -> None:
    # Same attempts, default offsets: the policy's last retry is 06-15 + 7d = 06-22 10:00,
    # the window only frees up on 07-02 → stop.
    decision = next_retry(
        plan(
            first_failed_at=berlin(2026, 6, 15),
            previous_attempts=daily(berlin(2026, 6, 2), VISA_MAX_REATTEMPTS),
            retries_done=3,
            now=berlin(2026, 6, 21, 10, 1),
        )
    )
    assert decision.stop and decision.rule == "visa_cap"
    assert decision.reason.startswith("stop: 20 reattempts in 30 days reached (Visa)")
    assert "2026-07-02 10:00" in decision.reason and "2026-06-22 10:00" in decision.reason


def test_twenty_five_attempts_wait_for_six_to_leave_the_window() -> None:
    # 25 attempts every 12 h from 2026-06-09 10:00 to 06-21 10:00. The candidate 06-22 10:00
    # may have at most 19 in its window: the 6 oldest must leave, the 6th oldest is
    # 06-09 10:00 + 5·12 h = 06-11 22:00 → free from 07-11 22:00 (before 07-13 10:00).
    attempts = [berlin(2026, 6, 9) + timedelta(hours=12 * i) for i in range(25)]
    decision = next_retry(
        plan(
            first_failed_at=berlin(2026, 6, 15),
            previous_attempts=attempts,
            offsets=LONG_OFFSETS,
            retries_done=3,
            now=berlin(2026, 6, 21, 10, 1),
        )
    )
    assert local(decision.at) == "2026-07-11 22:00"
    assert decision.rule == "visa_push"


def test_attempts_30_days_old_no_longer_count() -> None:
    # 20 attempts, the oldest exactly 30 days before the candidate (2026-05-23 10:00 vs
    # 06-22 10:00): the window is the 30 days *before*, so only 19 count.
    attempts = [berlin(2026, 5, 23)] + daily(berlin(2026, 6, 3), 19)
    decision = next_retry(
        plan(
            first_failed_at=berlin(2026, 6, 15),
            previous_attempts=attempts,
            retries_done=3,
            now=berlin(2026, 6, 21, 10, 1),
        )
    )
    assert local(decision.at) == "2026-06-22 10:00"


def test_visa_push_is_realigned_to_the_payday_window() -> None:
    # insufficient_funds failed 2026-12-10, aligned candidate Thu 12-31 10:00. 20 attempts
    # daily 12-02 … 12-21 10:00 → the oldest frees up on 2027-01-01 10:00, a TARGET holiday
    # → next window day Mon 2027-01-04 10:00. The policy's last retry (12-10 + 28d =
    # 2027-01-07) aligns to Fri 2027-01-29, so the push stays inside it.
    decision = next_retry(
        plan(
            code="insufficient_funds",
            payday_alignment=True,
            previous_attempts=daily(berlin(2026, 12, 2), 20),
            offsets=LONG_OFFSETS,
            now=berlin(2026, 12, 21, 10, 1),
        )
    )
    assert local(decision.at) == "2027-01-04 10:00"
    assert decision.rule == "visa_push"
    assert decision.reason.startswith("insufficient funds: retry after payday on 2027-01-04")


# ---------------------------------------------------------------- input checks, payloads


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        next_retry(plan(now=datetime(2026, 12, 10, 10)))
    with pytest.raises(ValueError, match=r"previous_attempts\[0\]"):
        next_retry(plan(previous_attempts=[datetime(2026, 12, 10, 10)]))


def test_bad_scheme_and_negative_retries_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scheme 'paypal'"):
        next_retry(plan(scheme="paypal"))
    with pytest.raises(ValueError, match="retries_done"):
        next_retry(plan(retries_done=-1))


def test_inputs_in_other_offsets_give_utc_results() -> None:
    first = datetime(2026, 12, 10, 10, tzinfo=BERLIN)  # not converted to UTC
    decision = next_retry(
        plan(
            first_failed_at=first,
            previous_attempts=[first],
            now=first + timedelta(seconds=1),
        )
    )
    assert decision.at == datetime(2026, 12, 11, 9, tzinfo=UTC)
    assert decision.at.tzinfo == UTC


def test_stop_explain_is_the_reason() -> None:
    decision = next_retry(plan(failure_class=NEVER, code="lost_card"))
    assert decision.explain() == "stop: Visa category 1 code lost_card — never retry"


async def test_decision_round_trips_through_temporals_default_converter() -> None:
    from temporalio.converter import DataConverter

    decision = next_retry(plan(code="insufficient_funds", payday_alignment=True))
    payloads = await DataConverter.default.encode([decision])
    assert await DataConverter.default.decode(payloads, [RetryDecision]) == [decision]


def test_input_is_not_mutated() -> None:
    inp = plan(previous_attempts=daily(berlin(2026, 6, 2), 20), first_failed_at=berlin(2026, 6, 15))
    before = replace(inp, previous_attempts=list(inp.previous_attempts))
    next_retry(inp)
    assert inp == before
