"""Default interest, § 288 BGB: hand-computed examples.

Formula per rate period (SPEC §2): amount × rate × days / 365, with the rate in basis points,
i.e. amount × rate_bp × days / (10,000 × 365) = amount × rate_bp × days / 3,650,000 cents.
Periods are summed exactly and rounded half-up once.
"""

import pickle
from fractions import Fraction

import pytest

from domain.interest import (
    BASE_RATES,
    BASE_RATES_LAST_CHECKED,
    BaseRate,
    MissingBaseRate,
    base_rate_on,
    claim_interest,
    default_interest,
    format_rate,
    rate_table,
    round_half_up,
    with_rates,
)

D = 3_650_000  # 10,000 bp × 365 days


def test_table_holds_domain_md_rates_and_stops_before_the_unverified_one() -> None:
    # DOMAIN.md §1 "Base rate § 247 BGB"; 2026-07-01 is unverified and must not be guessed
    assert [(row.effective, row.rate_bp) for row in BASE_RATES] == [
        ("2023-01-01", 162),
        ("2023-07-01", 312),
        ("2024-01-01", 362),
        ("2024-07-01", 337),
        ("2025-01-01", 227),
        ("2025-07-01", 127),
        ("2026-01-01", 127),
    ]
    assert all(row.source for row in BASE_RATES)
    # last checked 2026-12-05 (no stored source for the rate from 2026-07-01 yet)
    assert BASE_RATES_LAST_CHECKED == "2026-12-05"
    assert base_rate_on("2025-06-30") == 227
    assert base_rate_on("2025-07-01") == 127
    assert base_rate_on("2026-06-30") == 127


def test_consumer_across_the_2025_07_01_change() -> None:
    # 100.00 € due 2025-06-15, paid 2025-07-20, consumer (base + 5 pp):
    #   2025-06-16 … 2025-06-30: 15 days at 2.27 % + 5 = 7.27 % (727 bp)
    #     10,000 × 727 × 15 / 3,650,000 = 109,050,000 / 3,650,000 = 2181/73 ≈ 29.877 ct
    #   2025-07-01 … 2025-07-20: 20 days at 1.27 % + 5 = 6.27 % (627 bp)
    #     10,000 × 627 × 20 / 3,650,000 = 125,400,000 / 3,650,000 = 2508/73 ≈ 34.356 ct
    #   sum 4689/73 ≈ 64.233 ct → 64 ct
    result = default_interest(10_000, "2025-06-15", "2025-07-20", "consumer")
    assert [(p.start, p.end, p.days, p.base_bp, p.rate_bp) for p in result.periods] == [
        ("2025-06-16", "2025-06-30", 15, 227, 727),
        ("2025-07-01", "2025-07-20", 20, 127, 627),
    ]
    assert Fraction(result.periods[0].exact) == Fraction(10_000 * 727 * 15, D) == Fraction(2181, 73)
    assert Fraction(result.periods[1].exact) == Fraction(10_000 * 627 * 20, D) == Fraction(2508, 73)
    assert Fraction(result.exact) == Fraction(4689, 73)
    assert result.amount == 64
    assert result.days == 35
    assert (result.from_date, result.to_date) == ("2025-06-16", "2025-07-20")
    assert result.margin_bp == 500
    assert result.rate_text == "5 Prozentpunkte über dem Basiszinssatz (§ 288 Abs. 1 BGB)"
    assert result.rate_text_en == "5 percentage points above the base rate (§ 288 (1) BGB)"


def test_business_across_the_2025_07_01_change_rounds_once() -> None:
    # Same claim, business customer (base + 9 pp):
    #   15 days at 11.27 %: 10,000 × 1127 × 15 / 3,650,000 = 3381/73 ≈ 46.315 ct
    #   20 days at 10.27 %: 10,000 × 1027 × 20 / 3,650,000 = 4108/73 ≈ 56.274 ct
    #   sum 7489/73 ≈ 102.589 ct → 103 ct
    # Rounding each period first would give 46 + 56 = 102: SPEC says round once.
    result = default_interest(10_000, "2025-06-15", "2025-07-20", "business")
    assert [p.rate_bp for p in result.periods] == [1127, 1027]
    assert Fraction(result.periods[0].exact) == Fraction(3381, 73)
    assert Fraction(result.periods[1].exact) == Fraction(4108, 73)
    assert Fraction(result.exact) == Fraction(7489, 73)
    assert result.amount == 103
    assert result.margin_bp == 900
    assert result.rate_text == "9 Prozentpunkte über dem Basiszinssatz (§ 288 Abs. 2 BGB)"


def test_one_day() -> None:
    # 99.00 € due 2026-01-31, paid 2026-02-01: one day (2026-02-01) at 1.27 % + margin
    #   consumer: 9,900 × 627 × 1 / 3,650,000 = 6,207,300 / 3,650,000 ≈ 1.701 ct → 2 ct
    #   business: 9,900 × 1027 × 1 / 3,650,000 = 10,167,300 / 3,650,000 ≈ 2.786 ct → 3 ct
    consumer = default_interest(9_900, "2026-01-31", "2026-02-01", "consumer")
    assert [(p.start, p.end, p.days) for p in consumer.periods] == [("2026-02-01", "2026-02-01", 1)]
    assert Fraction(consumer.exact) == Fraction(6_207_300, D)
    assert consumer.amount == 2
    assert default_interest(9_900, "2026-01-31", "2026-02-01", "business").amount == 3


@pytest.mark.parametrize("paid", ["2026-01-31", "2026-01-15"])
def test_paid_on_or_before_the_due_date_is_zero(paid: str) -> None:
    result = default_interest(9_900, "2026-01-31", paid, "consumer")
    assert result.amount == 0
    assert result.days == 0
    assert result.periods == []
    assert result.exact == "0/1"


def test_equal_rates_in_adjacent_half_years_form_one_period() -> None:
    # 2025-07-01 and 2026-01-01 both 1.27 %: 100.00 € due 2025-12-15, paid 2026-01-10
    #   2025-12-16 … 2026-01-10 = 16 + 10 = 26 days at 6.27 %
    #   10,000 × 627 × 26 / 3,650,000 = 163,020,000 / 3,650,000 ≈ 44.663 ct → 45 ct
    result = default_interest(10_000, "2025-12-15", "2026-01-10", "consumer")
    assert [(p.start, p.end, p.days, p.rate_bp) for p in result.periods] == [
        ("2025-12-16", "2026-01-10", 26, 627)
    ]
    assert result.amount == 45


LEAP_RATES = (
    BaseRate("2027-07-01", 100, "test"),
    BaseRate("2028-01-01", 100, "test"),
    BaseRate("2028-07-01", 100, "test"),
)


def test_leap_year_still_divides_by_365() -> None:
    # 1,000.00 € due 2027-12-31, paid 2028-12-31; test base rate 1.00 % → consumer 6.00 %
    #   2028 has 366 days: 100,000 × 600 × 366 / 3,650,000 = 21,960,000,000 / 3,650,000
    #   ≈ 6016.438 ct → 6016 ct (a full "year" at /365 would be 6,000 ct)
    result = default_interest(100_000, "2027-12-31", "2028-12-31", "consumer", rates=LEAP_RATES)
    assert [(p.start, p.end, p.days) for p in result.periods] == [("2028-01-01", "2028-12-31", 366)]
    assert Fraction(result.exact) == Fraction(100_000 * 600 * 366, D)
    assert result.amount == 6016


def test_half_cent_rounds_up() -> None:
    # test base rate 0.00 % → consumer 5.00 %: amount × 500 × days / 3,650,000
    #   36.50 € for 1 day: 3,650 × 500 / 3,650,000 = 0.5 ct → 1 ct
    #   36.49 € for 1 day: 3,649 × 500 / 3,650,000 ≈ 0.49986 ct → 0 ct
    rates = (BaseRate("2030-01-01", 0, "test"),)
    assert default_interest(3_650, "2030-01-01", "2030-01-02", "consumer", rates).amount == 1
    assert default_interest(3_649, "2030-01-01", "2030-01-02", "consumer", rates).amount == 0
    assert round_half_up(Fraction(5, 2)) == 3
    assert round_half_up(Fraction(-5, 2)) == -2  # floor(x + 1/2)


def test_missing_base_rate_is_an_error_naming_the_date() -> None:
    # interest up to 2026-08-01 needs the base rate from 2026-07-01, which is not verified
    with pytest.raises(MissingBaseRate) as info:
        default_interest(9_900, "2026-06-15", "2026-08-01", "consumer")
    assert str(info.value) == (
        "no § 247 BGB base rate known for 2026-07-01; add it to domain/interest.py "
        "BASE_RATES (source: Bundesbank)"
    )
    assert info.value.rate_date == "2026-07-01"
    assert info.value.needed_for == "2026-07-01"
    assert isinstance(info.value, ValueError)
    # survives pickling (e.g. when raised inside an activity)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.rate_date, str(copy)) == ("2026-07-01", str(info.value))

    # a single interest day, 2026-08-01, needs it just the same
    with pytest.raises(MissingBaseRate, match="known for 2026-07-01") as info:
        default_interest(9_900, "2026-07-31", "2026-08-01", "business")
    assert info.value.needed_for == "2026-08-01"
    with pytest.raises(MissingBaseRate, match="2026-07-01"):
        base_rate_on("2026-08-01")


def test_missing_rate_before_the_table() -> None:
    # the table starts 2023-01-01: a day in December 2022 needs the 2022-07-01 rate
    with pytest.raises(MissingBaseRate, match="known for 2022-07-01"):
        default_interest(9_900, "2022-12-01", "2023-01-10", "consumer")


def test_supplied_rate_fills_the_gap() -> None:
    # with a 2026-07-01 row supplied (test value 1.00 %), the same period works:
    #   2026-06-16 … 2026-06-30: 15 days at 6.27 %: 9,900 × 627 × 15 = 93,109,500
    #   2026-07-01 … 2026-08-01: 32 days at 6.00 %: 9,900 × 600 × 32 = 190,080,000
    #   (93,109,500 + 190,080,000) / 3,650,000 = 283,189,500 / 3,650,000 ≈ 77.586 ct → 78 ct
    rates = with_rates([BaseRate("2026-07-01", 100, "test value")])
    result = default_interest(9_900, "2026-06-15", "2026-08-01", "consumer", rates=rates)
    assert [(p.days, p.rate_bp) for p in result.periods] == [(15, 627), (32, 600)]
    assert Fraction(result.exact) == Fraction(283_189_500, D)
    assert result.amount == 78
    assert rates[-1].effective == "2026-07-01"
    assert len(rates) == len(BASE_RATES) + 1


def test_rate_table_validation() -> None:
    with pytest.raises(ValueError, match="1 January and 1 July"):
        rate_table([BaseRate("2026-03-01", 100, "x")])
    with pytest.raises(ValueError, match="different rates"):
        with_rates([BaseRate("2026-01-01", 200, "x")])
    # the same row again is harmless
    assert with_rates([BaseRate("2026-01-01", 127, "x")]) == BASE_RATES


def test_claim_interest_per_installment() -> None:
    # two installments of 99.00 €, as of 2025-07-31, consumer:
    #   due 2025-06-01: 2025-06-02 … 06-30 = 29 days at 7.27 %: 9,900 × 727 × 29 = 208,721,700
    #                   2025-07-01 … 07-31 = 31 days at 6.27 %: 9,900 × 627 × 31 = 192,426,300
    #                   401,148,000 / 3,650,000 ≈ 109.904 ct → 110 ct
    #   due 2025-07-01: 2025-07-02 … 07-31 = 30 days at 6.27 %: 9,900 × 627 × 30 = 186,219,000
    #                   186,219,000 / 3,650,000 ≈ 51.019 ct → 51 ct
    results = claim_interest(
        [(9_900, "2025-06-01"), (9_900, "2025-07-01")], "2025-07-31", "consumer"
    )
    assert [(r.due_date, r.days, r.amount) for r in results] == [
        ("2025-06-01", 60, 110),
        ("2025-07-01", 30, 51),
    ]
    assert Fraction(results[0].exact) == Fraction(401_148_000, D)
    assert Fraction(results[1].exact) == Fraction(186_219_000, D)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, "2025-06-15", "2025-07-20", "consumer"), "must not be negative"),
        ((True, "2025-06-15", "2025-07-20", "consumer"), "integer in minor units"),
        ((100, "15.06.2025", "2025-07-20", "consumer"), "due_date must be an ISO date"),
        ((100, "2025-06-15", "2025-02-30", "consumer"), "paid_date is not a valid date"),
        ((100, "2025-06-15", "2025-07-20", "private"), "customer_type must be one of"),
    ],
)
def test_invalid_input(args: tuple[object, str, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        default_interest(*args)  # type: ignore[arg-type]


def test_format_rate() -> None:
    assert format_rate(727) == "7,27 %"
    assert format_rate(727, "en") == "7.27%"
    assert format_rate(-88, "de") == "-0,88 %"
    assert format_rate(1000, "de-DE") == "10,00 %"


# ---------------------------------------------------------------- coverage (mahnwerk base-rates)


def test_coverage_of_the_built_in_table() -> None:
    from domain.interest import BASE_RATES_LAST_CHECKED, base_rate_coverage

    # The table ends with 2026-01-01: 2026-12-05 lies in the half-year from 2026-07-01,
    # which has no row.
    cov = base_rate_coverage(BASE_RATES, "2026-12-05")
    assert not cov.covered
    assert cov.missing == ["2026-07-01"]
    assert cov.covered_until == "2026-06-30"
    assert (cov.next_change, cov.next_known) == ("2027-01-01", False)
    assert cov.checked == BASE_RATES_LAST_CHECKED
    # Earlier in 2026 today is covered, the next change is not known yet.
    cov = base_rate_coverage(BASE_RATES, "2026-03-05")
    assert cov.covered and cov.missing == [] and cov.next_change == "2026-07-01"
    assert not cov.next_known


def test_coverage_with_supplied_rows_and_a_gap() -> None:
    from domain.interest import base_rate_coverage

    rates = with_rates([BaseRate("2027-01-01", 127, "test")])
    cov = base_rate_coverage(rates, "2027-02-01")
    assert cov.covered  # 2027-01-01 is there …
    assert cov.missing == ["2026-07-01"]  # … but the half-year before it is not
    assert cov.covered_until == "2026-06-30" and cov.last == "2027-01-01"
    empty = base_rate_coverage([], "2027-02-01")
    assert not empty.covered and empty.missing == ["2027-01-01"] and empty.first == ""
