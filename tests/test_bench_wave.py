"""The due-wave bench's switches for the wave without the product's own work."""

from __future__ import annotations

from pathlib import Path

from bench.due_wave import quiet_policies
from domain.policy import MESSAGE_KINDS, load_policy


def test_quiet_policies_send_no_customer_message_and_keep_the_rest(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parent.parent / "policies"
    quiet = quiet_policies(tmp_path)
    names = sorted(p.stem for p in shipped.glob("*.yaml"))
    assert names and sorted(p.stem for p in quiet.glob("*.yaml")) == names
    for name in names:
        before, after = load_policy(name, shipped), load_policy(name, quiet)
        assert any(before.messages.enabled(k) for k in MESSAGE_KINDS), name
        assert not any(after.messages.enabled(k) for k in MESSAGE_KINDS), name
        # the dunning itself is the shipped policy's
        assert (after.retries, after.ladder, after.sepa) == (
            before.retries,
            before.ladder,
            before.sepa,
        )


def test_the_benchs_standin_refuses_over_the_configured_rates_and_counts_it(
    tmp_path: Path,
) -> None:
    """`bench.due_wave` runs the stand-in with Stripe's limits at the workers' configured
    rates (per account, per endpoint) and reports what it refused with 429."""
    import stripe

    from bench.common import Stack

    stk = Stack(tmp_path)
    try:
        stk.start_standin(None, (100, 2))  # 100/s per account, 2/s per endpoint
        assert stk.standin_refused() == {}
        client = stripe.StripeClient(
            "sk_test_bench",
            base_addresses={"api": stk.standin_url},
            max_network_retries=0,
        )
        refused = 0
        for _ in range(6):  # a burst of 6 against a bucket of 2 refilled at 2/s
            try:
                client.v1.customers.create()
            except stripe.RateLimitError:
                refused += 1
        assert refused >= 1  # 4 unless the burst took longer than the refill of a token
        assert stk.standin_refused() == {"POST /v1/customers": refused}
    finally:
        stk.close()


def test_the_refusals_cell() -> None:
    from bench.due_wave import refused_cell

    assert refused_cell(None, None) == "off"
    assert refused_cell({}, {}) == "0 / 0"
    wave = {"POST /v1/payment_intents": 3, "GET /v1/payment_methods/{id}": 1}
    assert refused_cell(wave, {"GET /v1/payment_methods/{id}": 5}) == "3 / 4 (set-up: 5)"


def test_events_by_type_counts_a_task_and_an_activity_once() -> None:
    from collections import Counter

    from bench.due_wave import events_by_type

    counts = Counter(
        {
            "WORKFLOW_TASK_SCHEDULED": 8,
            "WORKFLOW_TASK_STARTED": 8,
            "WORKFLOW_TASK_COMPLETED": 6,
            "WORKFLOW_TASK_TIMED_OUT": 2,
            "ACTIVITY_TASK_SCHEDULED": 4,
            "ACTIVITY_TASK_STARTED": 4,
            "ACTIVITY_TASK_COMPLETED": 4,
            "MARKER_RECORDED": 10,
        }
    )
    assert events_by_type(counts, 2) == (
        "MARKER_RECORDED 5.0, WORKFLOW_TASK_* 3.0, ACTIVITY_TASK_* 2.0, WORKFLOW_TASK_TIMED_OUT 1.0"
    )
