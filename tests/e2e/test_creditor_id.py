"""Issue 10 item 8: the creditor id Mahnwerk announces is the one Stripe debits under. The
worker reads the Stripe account's `settings.sepa_debit_payments.creditor_id` at start-up
and refuses to start, with one line naming the variable, when it differs."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import stripe

from core.seller import DEMO_SELLER_ENV
from core.stripe_account import creditor_id_problem

OURS = "DE98ZZZ09999999999"
OTHER = "DE02ZZZ01234567890"


def _client(standin: Any) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": standin.url})


def test_the_check_compares_with_the_stripe_account(standin: Any) -> None:
    try:
        standin.set_config(creditor_id=None)  # not set up at Stripe: nothing to compare
        assert creditor_id_problem(_client(standin), OURS) is None
        standin.set_config(creditor_id="de98 zzz0 9999 9999 99")  # same id, other spelling
        assert creditor_id_problem(_client(standin), OURS) is None
        standin.set_config(creditor_id=OTHER)
        problem = creditor_id_problem(_client(standin), OURS)
        assert problem is not None and "MAHNWERK_SELLER_CREDITOR_ID" in problem
        assert OTHER in problem
    finally:
        standin.set_config(creditor_id=None)


def test_the_worker_refuses_to_start_with_another_creditor_id(standin: Any) -> None:
    standin.set_config(creditor_id=OTHER)
    try:
        env = {
            **os.environ,
            **DEMO_SELLER_ENV,
            "MAHNWERK_ENV": "dev",  # test secrets: only dev mode starts with them
            "STRIPE_API_BASE": standin.url,
            "STRIPE_API_KEY": "sk_test_mahnwerk",
            "MAHNWERK_SELLER_CREDITOR_ID": OURS,
            # never reached: the check comes before Temporal is contacted
            "TEMPORAL_ADDRESS": "127.0.0.1:1",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "core.cli", "worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        standin.set_config(creditor_id=None)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "MAHNWERK_SELLER_CREDITOR_ID" in lines[0], proc.stderr
