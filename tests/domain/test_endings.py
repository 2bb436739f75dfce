"""domain/endings.py: the cancellation reasons, what a withdrawal refunds (§§ 355, 357a BGB),
how a refund is spread over the payments; and the policy keys of issue 12."""

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from domain.endings import (
    REASONS,
    RULES,
    Refundable,
    RefundPart,
    allocate_refund,
    ends_now,
    pro_rata_value,
    withdrawal_refund,
)
from domain.interest import round_half_up
from domain.policy import (
    CancellationConfig,
    MessagesConfig,
    Policy,
    PolicyError,
    WithdrawalConfig,
    load_policy,
    parse_policy,
    policy_from_dict,
    policy_to_dict,
)

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
START = datetime(2027, 1, 1, tzinfo=UTC)
END = datetime(2028, 1, 1, tzinfo=UTC)  # 365 days


def test_the_closed_list_of_reasons_and_what_each_does() -> None:
    assert REASONS == ("withdrawal", "cancellation_button", "goodwill", "fraud", "other")
    assert set(RULES) == set(REASONS)
    assert [r for r in REASONS if ends_now(r)] == ["withdrawal", "goodwill", "fraud"]
    assert not ends_now("Kündigung")  # free text of an old request: not this path
    assert [r for r in REASONS if RULES[r].policy_refund] == ["withdrawal"]
    assert RULES["fraud"].access == "end"  # fraud always ends access, whatever the policy
    assert "357a" in RULES["withdrawal"].source and "312k" in RULES["cancellation_button"].source


def test_pro_rata_value_is_the_share_of_the_term_used() -> None:
    assert pro_rata_value(24000, START, END, START - timedelta(days=1)) == 0
    assert pro_rata_value(24000, START, END, END + timedelta(days=1)) == 24000
    at = START + timedelta(days=35)
    assert pro_rata_value(24000, START, END, at) == round_half_up(24000 * Fraction(35, 365))
    assert pro_rata_value(24000, START, END, at) == 2301  # 2301.37 → 2301
    half = START + (END - START) / 2
    assert pro_rata_value(1, START, END, half) == 1  # 0.5 rounds half up
    with pytest.raises(ValueError):
        pro_rata_value(100, END, START, START)


def test_what_a_withdrawal_refunds() -> None:
    at = START + timedelta(days=35)
    # full: everything paid that was not refunded yet
    assert withdrawal_refund("full", 4000, 0) == 4000
    assert withdrawal_refund("full", 4000, 2000) == 2000
    # pro rata (§ 357a (2) BGB): paid less the value of the 35 days used of the year
    assert withdrawal_refund("pro_rata", 4000, 0, price=24000, term=(START, END), at=at) == 1699
    assert withdrawal_refund("pro_rata", 4000, 1000, price=24000, term=(START, END), at=at) == 699
    # used more than paid: nothing to refund (the rest is not claimed here)
    late = START + timedelta(days=200)
    assert withdrawal_refund("pro_rata", 4000, 0, price=24000, term=(START, END), at=late) == 0
    # no term (a one-off purchase): as `full`
    assert withdrawal_refund("pro_rata", 4900, 0) == 4900
    with pytest.raises(ValueError, match="caller"):
        withdrawal_refund("caller", 4000, 0)
    with pytest.raises(ValueError, match="refund mode"):
        withdrawal_refund("half", 4000, 0)


def test_a_refund_gives_back_the_latest_payments_first() -> None:
    paid = [
        Refundable(1, 2000, "pi_1"),
        Refundable(2, 2000, "pi_2"),
        Refundable(3, 500, None),  # a settlement: outside Stripe
        Refundable(3, 1500, "pi_3"),
    ]
    plan = allocate_refund(3000, paid)
    assert plan.parts == [
        RefundPart(3, 1500, "pi_3"),
        RefundPart(3, 500, None),
        RefundPart(2, 1000, "pi_2"),
    ]
    assert (plan.stripe, plan.outside_stripe) == (2500, 500)
    assert allocate_refund(0, paid).parts == []
    assert sum(p.amount for p in allocate_refund(6000, paid).parts) == 6000
    with pytest.raises(ValueError, match="exceeds"):
        allocate_refund(6001, paid)
    with pytest.raises(ValueError):
        allocate_refund(-1, paid)


def test_policy_keys_default_and_parse() -> None:
    default = load_policy("default", POLICY_DIR)
    assert default.withdrawal == WithdrawalConfig(refund="full", access="end")
    assert default.cancellation == CancellationConfig(access="end")
    assert default.messages == MessagesConfig()
    assert all(default.messages.enabled(k) for k in ("payment_failed", "plan_completed"))
    assert not default.messages.enabled("unknown")
    # not written into a pinned policy while they are the defaults (pinned policies of
    # earlier releases stay byte for byte the same)
    data = policy_to_dict(default)
    assert not {"withdrawal", "cancellation", "messages"} & set(data)
    doc = {
        "name": "p",
        "retries": {"after": []},
        "ladder": [{"stage": "reminder", "after": "3d", "notice": "reminder"}],
        "withdrawal": {"refund": "pro_rata", "access": "keep"},
        "cancellation": {"access": "keep"},
        "messages": {"payment_failed": False},
    }
    policy = parse_policy(doc, "p.yaml")
    assert policy.withdrawal == WithdrawalConfig("pro_rata", "keep")
    assert policy.cancellation.access == "keep"
    assert not policy.messages.enabled("payment_failed")
    assert policy.messages.enabled("payment_received")
    data = policy_to_dict(policy)
    assert data["withdrawal"] == {"refund": "pro_rata", "access": "keep"}
    assert data["messages"]["payment_failed"] is False
    assert policy_from_dict(data) == policy == parse_policy(data, "p.yaml")
    # a policy pinned before these keys existed: the defaults
    assert policy_from_dict(policy_to_dict(default)).messages == MessagesConfig()


@pytest.mark.parametrize(
    ("section", "value", "key", "reason"),
    [
        ("withdrawal", {"refund": "half"}, "withdrawal.refund", "must be one of full, pro_rata"),
        ("withdrawal", {"access": "maybe"}, "withdrawal.access", "must be one of end, keep"),
        ("withdrawal", {"refunds": "full"}, "withdrawal.refunds", "unknown key"),
        ("cancellation", {"access": True}, "cancellation.access", "must be one of end, keep"),
        ("messages", {"payment_failed": "no"}, "messages.payment_failed", "true or false"),
        ("messages", {"newsletter": True}, "messages.newsletter", "unknown key"),
    ],
)
def test_bad_policy_keys_are_refused_naming_the_key(
    section: str, value: object, key: str, reason: str
) -> None:
    doc = {
        "name": "p",
        "retries": {"after": []},
        "ladder": [{"stage": "reminder", "after": "3d"}],
        section: value,
    }
    with pytest.raises(PolicyError) as excinfo:
        parse_policy(doc, "p.yaml")
    assert excinfo.value.key == key and reason in excinfo.value.reason


def test_policy_with_the_new_sections_round_trips_through_temporal_converter() -> None:
    converter = pytest.importorskip("temporalio.converter")
    policy = load_policy("default", POLICY_DIR)
    policy.messages = MessagesConfig(plan_completed=False)
    policy.withdrawal = WithdrawalConfig(refund="caller")
    payloads = converter.DataConverter.default.payload_converter.to_payloads([policy])
    (decoded,) = converter.DataConverter.default.payload_converter.from_payloads(payloads, [Policy])
    assert decoded == policy
