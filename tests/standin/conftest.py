"""Fixtures: one stand-in per test session (reset before every test), an SDK client pointed
at it, and a tiny webhook receiver that records what the stand-in delivers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from stripe_standin.testing import StandinHandle, start_standin

from .helpers import API_KEY, WEBHOOK_SECRET, Receiver

# Short timings so SEPA debits settle and webhook retries happen within a test.
TEST_CONFIG: dict[str, Any] = {
    "sepa_delay": 0.2,
    "sepa_long_delay": 0.6,
    "dispute_delay": 0.2,
    "webhook_retry_delay": 0.05,
    "webhook_max_attempts": 3,
    "webhook_secret": WEBHOOK_SECRET,
    "webhook_url": None,
    "connect_webhook_url": None,
    "strict_attach": False,
    "latency": 0.0,
    "idempotency_ttl": 24 * 3600.0,
}


@pytest.fixture(scope="session")
def standin() -> Iterator[StandinHandle]:
    handle = start_standin(**TEST_CONFIG)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def _fresh_standin(standin: StandinHandle) -> None:
    standin.set_config(**TEST_CONFIG)
    standin.reset()


@pytest.fixture
def client(standin: StandinHandle) -> stripe.StripeClient:
    # No SDK retries: each test sees exactly the stand-in's first answer.
    return stripe.StripeClient(API_KEY, base_addresses={"api": standin.url}, max_network_retries=0)


@pytest.fixture
def receiver(standin: StandinHandle) -> Iterator[Receiver]:
    rec = Receiver()
    standin.set_config(webhook_url=rec.url)
    yield rec
    standin.set_config(webhook_url=None)
    rec.close()
