"""A payment method's lookup (activities/methods.py) paces its requests per Stripe endpoint:
a burst of new contracts looks their methods up at the endpoint's rate instead of being
refused by Stripe with 429 (the stand-in enforces Stripe's limits here)."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import stripe

from activities.methods import MethodActivities
from activities.payments import make_stripe_client
from activities.ratelimit import SharedRate
from workflows.types import PaymentMethodLookup

ENDPOINT_RATE = 4.0  # requests per second per endpoint, as the stand-in enforces below
LOOKUPS = 10


@pytest.fixture
def limited(standin: Any) -> Iterator[Any]:
    standin.set_config(rate_limit=True, rate_limit_endpoint=ENDPOINT_RATE, rate_limit_global=100)
    try:
        yield standin
    finally:
        standin.set_config(rate_limit=False)


def _burst(methods: MethodActivities) -> tuple[int, float]:
    """LOOKUPS lookups at once: (refused with 429, seconds taken)."""

    def one(i: int) -> bool:
        inp = PaymentMethodLookup(f"c-{i}", None, "pm_card_visa")
        try:
            info = methods.describe_payment_method(inp)
        except stripe.RateLimitError:
            return False
        assert info.kind == "card"
        return True

    t0 = time.monotonic()
    with ThreadPoolExecutor(LOOKUPS) as pool:
        done = list(pool.map(one, range(LOOKUPS)))
    return done.count(False), time.monotonic() - t0


def _client(standin: Any) -> stripe.StripeClient:
    # a key of its own: the stand-in's buckets are per key (account), fresh for this test
    return make_stripe_client(f"sk_test_methods_{uuid.uuid4().hex[:8]}", standin.url)


def test_lookups_take_their_endpoints_slots_and_are_not_refused(limited: Any) -> None:
    taken: list[str] = []

    class Recording(SharedRate):
        def acquire(self, key: str) -> float:
            taken.append(key)
            return super().acquire(key)

    methods = MethodActivities(_client(limited), endpoint_rate=Recording(None, ENDPOINT_RATE))
    refused, took = _burst(methods)
    assert refused == 0
    assert taken == ["platform GET /v1/payment_methods/{id}"] * LOOKUPS
    # paced: the first slot at once, the rest 1/rate apart
    assert took >= (LOOKUPS - 1) / ENDPOINT_RATE - 0.2


def test_without_the_endpoint_rate_stripe_refuses_the_burst(limited: Any) -> None:
    """What the pacing prevents (and what this test file would not notice without it)."""
    refused, took = _burst(MethodActivities(_client(limited)))
    # a bucket of ENDPOINT_RATE tokens, refilled at ENDPOINT_RATE/s while the burst lasted
    # (a slow machine's burst is longer): everything beyond it is refused
    admitted_at_most = ENDPOINT_RATE + math.ceil(ENDPOINT_RATE * took)
    assert refused >= 1
    assert refused >= LOOKUPS - admitted_at_most
