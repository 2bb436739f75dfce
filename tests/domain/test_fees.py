"""Fees and costs: § 288 (5) BGB lump sum, return-debit costs, dunning-fee checks."""

from pathlib import Path

import pytest

from domain.fees import (
    B2B_LUMP_SUM,
    CONSUMER_FEE_CAP,
    RETURN_DEBIT_COST_DEFAULT,
    check_dunning_fee,
    lump_sums,
    pursuit_costs_after_lump_sum,
    return_debit_costs,
)
from domain.policy import load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_constants() -> None:
    assert B2B_LUMP_SUM == 4_000  # EUR 40, § 288 (5) BGB
    assert RETURN_DEBIT_COST_DEFAULT == 350  # EUR 3.50, Stripe SEPA failure fee
    assert CONSUMER_FEE_CAP == 250  # EUR 2.50, AG Brandenburg 31 C 190/06


@pytest.mark.parametrize(
    ("customer_type", "installments", "expected"),
    [
        ("business", 1, 4_000),
        ("business", 3, 12_000),  # per installment in default: 3 × 40 € = 120 €
        ("business", 0, 0),
        ("consumer", 3, 0),  # only when the debtor is not a consumer
    ],
)
def test_lump_sums(customer_type: str, installments: int, expected: int) -> None:
    assert lump_sums(customer_type, installments) == expected


def test_lump_sum_is_credited_against_costs_of_legal_pursuit() -> None:
    # § 288 (5) sentence 3 BGB: two Mahnungen at 2.50 € are covered by one 40 € lump sum
    assert pursuit_costs_after_lump_sum(250 + 250, 4_000) == 0
    # collection costs of 55.80 € against one lump sum: 5,580 − 4,000 = 1,580 ct on top
    assert pursuit_costs_after_lump_sum(5_580, 4_000) == 1_580
    # consumers: no lump sum, nothing credited
    assert pursuit_costs_after_lump_sum(500, lump_sums("consumer", 2)) == 500


def test_return_debit_costs() -> None:
    assert return_debit_costs(1) == 350
    assert return_debit_costs(2) == 700  # 2 × 3.50 €
    assert return_debit_costs(2, cost_per_return=900) == 1_800  # the bank's actual fee
    assert return_debit_costs(0) == 0
    with pytest.raises(ValueError, match="must not be negative"):
        return_debit_costs(-1)


def test_free_first_reminder_and_modest_mahnung_pass() -> None:
    assert check_dunning_fee(0, 0, "consumer") == []
    assert check_dunning_fee(250, 1, "consumer") == []
    assert check_dunning_fee(250, 2, "consumer") == []
    # the EUR 2.50 cap is a consumer rule
    assert check_dunning_fee(500, 1, "business") == []


def test_consumer_fee_above_cap_warns() -> None:
    warnings = check_dunning_fee(251, 1, "consumer")
    assert len(warnings) == 1
    assert "EUR 2.51" in warnings[0]
    assert "AG Brandenburg 31 C 190/06" in warnings[0]


@pytest.mark.parametrize("customer_type", ["consumer", "business"])
def test_charged_first_rung_warns(customer_type: str) -> None:
    warnings = check_dunning_fee(100, 0, customer_type)
    assert len(warnings) == 1
    assert "first reminder must be free" in warnings[0]


def test_both_warnings() -> None:
    assert len(check_dunning_fee(500, 0, "consumer")) == 2


@pytest.mark.parametrize("customer_type", ["consumer", "business"])
def test_shipped_default_policy_charges_what_the_law_allows(customer_type: str) -> None:
    policy = load_policy("default", POLICIES)
    for index, step in enumerate(policy.ladder):
        assert check_dunning_fee(step.fee, index, customer_type) == [], step.stage


def test_invalid() -> None:
    with pytest.raises(ValueError, match="customer_type"):
        lump_sums("private", 1)
    with pytest.raises(ValueError, match="fee must not be negative"):
        check_dunning_fee(-1, 1, "consumer")
