"""Stripe client discipline (issue 5 item 6): the client-side token bucket, and transport
faults (429, 5xx) raising out of the charge activity so Temporal retries them with the same
idempotency key — which debits exactly once."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.payments import PaymentActivities, TokenBucket, make_stripe_client
from core.models import PaymentAttempt
from core.settings import ConfigError, Settings, load_settings
from tests.conftest import insert_ledger_contract
from workflows.types import ChargeInput

NO_FAULTS: dict[str, Any] = {"fault_5xx": 0.0, "fault_429": 0.0, "fault_seed": None}


class FakeClock:
    """time.monotonic and time.sleep for the bucket: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


@pytest.mark.parametrize(
    ("rate", "burst", "n"), [(25.0, 5.0, 105), (100.0, 20.0, 420), (2.0, 1.0, 9)]
)
def test_bucket_n_calls_take_at_least_n_minus_burst_over_rate(
    rate: float, burst: float, n: int
) -> None:
    fake = FakeClock()
    bucket = TokenBucket(rate, burst, clock=fake.clock, sleep=fake.sleep)
    start = fake.now
    for _ in range(n):
        bucket.acquire()
    elapsed = fake.now - start
    assert elapsed >= (n - burst) / rate - 1e-9
    assert elapsed <= (n - burst) / rate + 1 / rate  # and not much slower than the rate


def test_bucket_burst_is_free_then_refills() -> None:
    fake = FakeClock()
    bucket = TokenBucket(10.0, 3.0, clock=fake.clock, sleep=fake.sleep)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.1)
    fake.now += 10  # idle: refills only up to the burst
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() > 0


def test_bucket_is_shared_safely_by_threads() -> None:
    fake = FakeClock()
    bucket = TokenBucket(50.0, 5.0, clock=fake.clock, sleep=fake.sleep)
    threads = [
        threading.Thread(target=lambda: [bucket.acquire() for _ in range(25)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.now - 1000.0 >= (200 - 5) / 50.0 - 1e-9


def test_rate_limit_setting_and_defaults() -> None:
    assert load_settings(stripe_api_key="sk_test_x").effective_stripe_rate_limit == 25.0
    assert load_settings(stripe_api_key="rk_test_x").effective_stripe_rate_limit == 25.0
    assert load_settings(stripe_api_key="sk_live_x").effective_stripe_rate_limit == 100.0
    assert load_settings(stripe_api_key="rk_live_x").effective_stripe_rate_limit == 100.0
    custom = load_settings(stripe_api_key="sk_live_x", stripe_rate_limit=7.5)
    assert custom.effective_stripe_rate_limit == 7.5
    assert TokenBucket.for_api_key("sk_live_x").rate == 100.0
    assert TokenBucket.for_api_key("sk_test_x", 3.0).rate == 3.0


def test_rate_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAHNWERK_STRIPE_RATE_LIMIT", "12")
    assert load_settings().effective_stripe_rate_limit == 12.0
    monkeypatch.setenv("MAHNWERK_STRIPE_RATE_LIMIT", "0")
    with pytest.raises(ConfigError, match="MAHNWERK_STRIPE_RATE_LIMIT"):
        load_settings()


# -- the charge activity against the stand-in ---------------------------------------------


@pytest.fixture
def faults_off(standin: Any) -> Iterator[Any]:
    standin.set_config(**NO_FAULTS)
    yield standin
    standin.set_config(**NO_FAULTS)


@pytest.fixture
def pay(settings: Settings, sessions: sessionmaker[Session]) -> PaymentActivities:
    client = make_stripe_client(
        settings.stripe_api_key.get_secret_value(), settings.stripe_api_base
    )
    return PaymentActivities(client, sessions)


def _contract(sessions: sessionmaker[Session]) -> str:
    cid = f"pay-{uuid.uuid4().hex[:10]}"
    insert_ledger_contract(sessions, cid, status="active")
    return cid


def _input(cid: str) -> ChargeInput:
    return ChargeInput(
        contract_id=cid,
        installment_seq=1,
        attempt=1,
        idempotency_key=f"{cid}:1:1",
        amount=9900,
        currency="eur",
        stripe_customer=None,
        payment_method="pm_card_visa",
        description="faults test",
    )


def test_default_limiter_follows_the_clients_key(pay: PaymentActivities) -> None:
    assert pay.limiter.rate == 25.0  # sk_test_…


def test_charge_raises_rate_limit_error_on_429(
    pay: PaymentActivities, sessions: sessionmaker[Session], faults_off: Any
) -> None:
    cid = _contract(sessions)
    faults_off.set_config(fault_429=1.0)
    with pytest.raises(stripe.RateLimitError):
        pay.charge(_input(cid))
    faults_off.set_config(fault_429=0.0)
    assert faults_off.ledger(metadata_key="contract_id", metadata_value=cid) == []


def test_charge_through_5xx_with_the_same_key_debits_once(
    pay: PaymentActivities, sessions: sessionmaker[Session], faults_off: Any
) -> None:
    cid = _contract(sessions)
    faults_off.set_config(fault_5xx=0.5, fault_seed=1)
    inp = _input(cid)
    failures = 0
    for _ in range(30):  # what Temporal's CHARGE retry policy does, minus the backoff
        try:
            res = pay.charge(inp)
            break
        except stripe.APIError:
            failures += 1
    else:
        pytest.fail("never succeeded")
    faults_off.set_config(**NO_FAULTS)
    assert failures >= 1  # seed 1: the first attempt fails (deterministic)
    assert res.status == "succeeded"
    debits = faults_off.ledger(metadata_key="contract_id", metadata_value=cid)
    assert len(debits) == 1 and debits[0]["payment_intent"] == res.payment_intent
    # a later retry of the same activity (a lost completion) finds the same PaymentIntent
    assert pay.charge(inp).payment_intent == res.payment_intent
    assert len(faults_off.ledger(metadata_key="contract_id", metadata_value=cid)) == 1


# -- when the charge looks the key up at Stripe before creating (DESIGN.md decision 3) -----


def _in_activity(attempt: int, scheduled: datetime) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        attempt=attempt,
        scheduled_time=scheduled,
        current_attempt_scheduled_time=scheduled,
    )
    return env


def _count_searches(pay: PaymentActivities, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    searched: list[str] = []
    real = pay._find_existing

    def spy(key: str, *account: Any) -> Any:
        searched.append(key)
        return real(key, *account)

    monkeypatch.setattr(pay, "_find_existing", spy)
    return searched


def test_first_try_of_a_new_key_creates_without_searching(
    pay: PaymentActivities,
    sessions: sessionmaker[Session],
    faults_off: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    searched = _count_searches(pay, monkeypatch)
    cid = _contract(sessions)
    now = datetime.now(UTC)
    inp = dataclasses.replace(_input(cid), attempted_at=now)
    res = _in_activity(1, now).run(pay.charge, inp)
    assert res.status == "succeeded" and searched == []
    # a retry of the same execution within Stripe's 24 h: the key dedupes, no search either
    again = _in_activity(2, now).run(pay.charge, inp)
    assert again.payment_intent == res.payment_intent and searched == []
    assert len(faults_off.ledger(metadata_key="contract_id", metadata_value=cid)) == 1
    with sessions() as s:
        row = s.scalar(select(PaymentAttempt).where(PaymentAttempt.contract_id == cid))
        assert row is not None and row.status == "succeeded"


def test_a_key_that_may_be_older_than_24h_is_searched_first(
    pay: PaymentActivities,
    sessions: sessionmaker[Session],
    faults_off: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    searched = _count_searches(pay, monkeypatch)
    cid = _contract(sessions)
    first = datetime.now(UTC) - timedelta(days=2)
    inp = dataclasses.replace(_input(cid), attempted_at=first)
    res = _in_activity(1, first).run(pay.charge, inp)
    assert searched == []
    # the same execution's retry, but its first attempt is 2 days old: Stripe may have
    # forgotten the key, so the search must find the PaymentIntent
    assert _in_activity(5, first).run(pay.charge, inp).payment_intent == res.payment_intent
    assert searched == [inp.idempotency_key]
    # a reset workflow re-issuing the key (another execution: another attempted_at)
    later = datetime.now(UTC)
    reissued = dataclasses.replace(inp, attempted_at=later)
    assert _in_activity(1, later).run(pay.charge, reissued).payment_intent == res.payment_intent
    assert searched == [inp.idempotency_key] * 2
    # a retry that finds no row: its earlier try ran without writing one and may have sent
    other = dataclasses.replace(_input(_contract(sessions)), attempted_at=later)
    _in_activity(2, later).run(pay.charge, other)
    assert searched[-1] == other.idempotency_key
    assert len(faults_off.ledger(metadata_key="contract_id", metadata_value=cid)) == 1


def test_the_row_is_written_before_stripe_is_called(
    pay: PaymentActivities,
    sessions: sessionmaker[Session],
    faults_off: Any,
) -> None:
    cid = _contract(sessions)
    faults_off.set_config(fault_429=1.0)
    now = datetime.now(UTC)
    with pytest.raises(stripe.RateLimitError):
        _in_activity(1, now).run(pay.charge, dataclasses.replace(_input(cid), attempted_at=now))
    faults_off.set_config(fault_429=0.0)
    with sessions() as s:
        row = s.scalar(select(PaymentAttempt).where(PaymentAttempt.contract_id == cid))
        assert row is not None and row.status == "submitting"


def test_creditor_id_setting_is_checked() -> None:
    from core.settings import ConfigError, load_settings

    assert load_settings(seller_creditor_id="de98zzz09999999999").seller_creditor_id == (
        "DE98ZZZ09999999999"
    )
    assert load_settings(seller_creditor_id="").seller_creditor_id == ""
    for bad, reason in (("DE98ZZZ0999", "18 characters"), ("12345", "SEPA creditor id")):
        with pytest.raises(ConfigError) as exc:
            load_settings(seller_creditor_id=bad)
        assert "MAHNWERK_SELLER_CREDITOR_ID" in str(exc.value) and reason in str(exc.value)


def test_unknown_decline_code_is_soft_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from activities.payments import result_from_intent

    pi = SimpleNamespace(
        id="pi_123",
        status="requires_payment_method",
        amount=9900,
        payment_method_types=["card"],
        last_payment_error=SimpleNamespace(
            decline_code="brand_new_code", code="card_declined", message="Declined."
        ),
    )
    with caplog.at_level("WARNING", logger="activities.payments"):
        res = result_from_intent(pi)
    assert res.status == "declined" and res.code == "brand_new_code"
    assert res.failure_class == "soft"
    assert "unknown card decline code 'brand_new_code' on pi_123" in caplog.text
    caplog.clear()
    pi.last_payment_error.decline_code = "insufficient_funds"
    with caplog.at_level("WARNING", logger="activities.payments"):
        assert result_from_intent(pi).failure_class == "soft"
    assert caplog.text == ""  # known codes are not reported


def test_same_key_still_running_at_stripe_is_retried_not_given_up(
    pay: PaymentActivities, sessions: sessionmaker[Session], faults_off: Any
) -> None:
    """Our try timed out while Stripe kept working on it; the retry with the same key meets
    409 `idempotency_error` (request in progress). The SDK raises that as `APIError` (only
    400/404 become `IdempotencyError`, which the activity treats as a non-retryable
    parameter mismatch), so Temporal retries it, and the next retry gets that request's
    PaymentIntent — one debit, no stall."""
    cid = _contract(sessions)
    now = datetime.now(UTC)
    inp = dataclasses.replace(_input(cid), attempted_at=now)
    faults_off.set_config(latency=1.5)
    first: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: first.update(res=_in_activity(1, now).run(pay.charge, inp))
    )
    thread.start()
    try:
        # the first request is at Stripe (held by the latency) before the retry is sent
        deadline = time.monotonic() + 10
        while not faults_off.idempotency(inp.idempotency_key)["in_flight"]:
            assert time.monotonic() < deadline, "the first request never reached Stripe"
            time.sleep(0.02)
        faults_off.set_config(latency=0.0)  # the retry reaches Stripe while the first runs
        with pytest.raises(stripe.APIError) as exc:
            _in_activity(2, now).run(pay.charge, inp)
        assert exc.value.http_status == 409
        assert not isinstance(exc.value, stripe.IdempotencyError)
    finally:
        thread.join(10)
        faults_off.set_config(latency=0.0)
    again = _in_activity(3, now).run(pay.charge, inp)
    assert again.status == "succeeded" and again.payment_intent == first["res"].payment_intent
    assert len(faults_off.ledger(metadata_key="contract_id", metadata_value=cid)) == 1
