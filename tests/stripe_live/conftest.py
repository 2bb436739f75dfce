"""The Stripe contract suite (issue 10 item 9): the same scenarios and assertions against
the stand-in (always) and against Stripe itself in test mode when `STRIPE_LIVE_TEST_KEY`
(an `sk_test_…` key) is set. Without the key the live half is skipped, and the run's summary
says so."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import stripe

LIVE_KEY = os.environ.get("STRIPE_LIVE_TEST_KEY", "")
_skipped_live: list[str] = []


@dataclass
class Backend:
    name: str  # standin | live
    client: stripe.StripeClient
    api_key: str
    api_base: str | None
    # How long a SEPA debit may stay `processing` before the test gives up: the stand-in
    # settles in seconds; Stripe's test mode takes about three minutes.
    sepa_timeout: float


@pytest.fixture(params=["standin", "live"])
def backend(request: pytest.FixtureRequest, standin: Any) -> Iterator[Backend]:
    if request.param == "live":
        if not LIVE_KEY:
            _skipped_live.append(request.node.nodeid)
            pytest.skip("STRIPE_LIVE_TEST_KEY is not set: Stripe itself not contacted")
        if not LIVE_KEY.startswith("sk_test_"):
            pytest.fail("STRIPE_LIVE_TEST_KEY must be a test-mode key (sk_test_…)")
        client = stripe.StripeClient(LIVE_KEY, max_network_retries=2)
        yield Backend("live", client, LIVE_KEY, None, sepa_timeout=600)
        return
    key = "sk_test_mahnwerk"
    client = stripe.StripeClient(key, base_addresses={"api": standin.url}, max_network_retries=0)
    yield Backend("standin", client, key, standin.url, sepa_timeout=30)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped_live:
        terminalreporter.write_line(
            f"stripe_live: {len(_skipped_live)} scenarios against Stripe itself skipped "
            "(set STRIPE_LIVE_TEST_KEY=sk_test_… to run them; the stand-in half ran)"
        )
