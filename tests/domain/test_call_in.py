"""§ 498 BGB as data (domain.call_in): when the rest of an installment plan may be called in."""

from __future__ import annotations

from datetime import date

import pytest

from domain.call_in import (
    BASIS,
    MIN_CONSECUTIVE,
    NOTICE_PERIOD_DAYS,
    SHARE_BP,
    SHARE_BP_LONG_TERM,
    Arrears,
    check_call_in,
    term_over_years,
)


def plan(count: int, amount: int, in_default: dict[int, int], *, months: int = 1) -> list[Arrears]:
    out = []
    for n in range(count):
        year, month = divmod(n * months, 12)
        due = date(2027 + year, 1 + month, 1).isoformat()
        out.append(Arrears(n + 1, due, amount, in_default.get(n + 1, 0)))
    return out


def test_the_statute_numbers() -> None:
    # § 498 (1) sentence 1 Nr. 1 a, b and Nr. 2 BGB
    assert (MIN_CONSECUTIVE, SHARE_BP, SHARE_BP_LONG_TERM, NOTICE_PERIOD_DAYS) == (2, 1000, 500, 14)


def test_two_consecutive_and_ten_percent_allow_it() -> None:
    check = check_call_in("consumer", plan(12, 2000, {1: 2000, 2: 2000}))
    assert check.allowed and check.reasons == []
    assert (check.consecutive, check.arrears, check.nominal) == (2, 4000, 24000)
    assert check.threshold == 2400 and check.share_bp == 1000 and not check.long_term
    assert check.installments == [1, 2] and check.basis == BASIS


def test_one_installment_in_default_is_not_enough() -> None:
    check = check_call_in("consumer", plan(12, 2000, {1: 2000}))
    assert not check.allowed
    assert check.consecutive == 1
    assert "Nr. 1 a" in check.reasons[0]


def test_two_installments_that_are_not_consecutive_are_not_enough() -> None:
    check = check_call_in("consumer", plan(6, 10000, {1: 10000, 3: 10000}))
    assert not check.allowed and check.consecutive == 1 and check.arrears == 20000


def test_partly_in_default_counts_but_the_share_must_be_reached() -> None:
    # 24 × 99 €: two installments are 8.3 % of 2,376 € — below 10 % for a term of two years
    check = check_call_in("consumer", plan(24, 9900, {5: 9900, 6: 9900}))
    assert not check.allowed and check.consecutive == 2
    assert check.threshold == 23760 and "10 %" in check.reasons[0]
    # a third one: 12.5 %
    assert check_call_in("consumer", plan(24, 9900, {5: 9900, 6: 9900, 7: 9900})).allowed
    # "ganz oder teilweise": a partly paid installment is still in default
    assert check_call_in("consumer", plan(10, 10000, {1: 100, 2: 9900})).allowed


def test_exactly_ten_percent_is_enough() -> None:
    check = check_call_in("consumer", plan(20, 1000, {1: 1000, 2: 1000}))
    assert check.threshold == 2000 and check.arrears == 2000 and check.allowed


def test_a_term_over_three_years_needs_five_percent() -> None:
    # 48 monthly installments: the term (first to last due date) is almost four years
    long = plan(48, 5000, {1: 5000, 2: 5000, 3: 5000})
    check = check_call_in("consumer", long)
    assert check.long_term and check.share_bp == 500 and check.threshold == 12000
    assert check.arrears == 15000 and check.allowed
    assert not check_call_in("consumer", plan(48, 5000, {1: 5000, 2: 5000})).allowed


def test_the_term_boundary() -> None:
    assert not term_over_years("2027-01-01", "2030-01-01", 3)
    assert term_over_years("2027-01-01", "2030-01-02", 3)
    assert not term_over_years("2028-02-29", "2031-02-28", 3)


def test_business_customers_are_not_protected() -> None:
    check = check_call_in("business", plan(12, 2000, {1: 2000}))
    assert check.allowed and check.reasons == [] and "consumers only" in check.basis


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [Arrears(1, "2027-01-01", -1, 0)],
        [Arrears(1, "2027-01-01", 100, 200)],
        [Arrears(1, "not a date", 100, 0)],
    ],
)
def test_bad_input_is_refused(bad: list[Arrears]) -> None:
    with pytest.raises(ValueError):
        check_call_in("consumer", bad)
    with pytest.raises(ValueError):
        check_call_in("robot", plan(2, 100, {}))
