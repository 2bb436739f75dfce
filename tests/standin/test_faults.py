# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined, typeddict-item"
"""Fault injection (issue 5 item 7): 429s, 5xx, timeouts and dropped webhooks, seeded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from stripe_standin.__main__ import _parser
from stripe_standin.config import StandinConfig
from stripe_standin.testing import StandinHandle

from .helpers import API_KEY, Receiver, wait_until

NO_FAULTS: dict[str, Any] = {
    "fault_5xx": 0.0,
    "fault_429": 0.0,
    "fault_timeout": 0.0,
    "fault_timeout_seconds": 90.0,
    "webhook_drop": 0.0,
    "fault_seed": None,
}

DEBIT = {
    "amount": 4900,
    "currency": "eur",
    "payment_method": "pm_card_visa",
    "allowed_payment_method_types": ["card"],
    "confirm": True,
    "off_session": True,
    "metadata": {"contract_id": "c-faults"},
}


@pytest.fixture(autouse=True)
def _faults_off(standin: StandinHandle) -> Iterator[None]:
    # The stand-in is shared by the session: never leak a fault rate into the next test.
    standin.set_config(**NO_FAULTS)
    yield
    standin.set_config(**NO_FAULTS)


def _create(client: stripe.StripeClient, key: str) -> Any:
    return client.v1.payment_intents.create(params=DEBIT, options={"idempotency_key": key})


def test_429_has_stripes_body_creates_nothing_and_keeps_the_key(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    standin.set_config(fault_429=1.0)
    with pytest.raises(stripe.RateLimitError) as info:
        _create(client, "k-429")
    assert info.value.http_status == 429
    body = info.value.json_body["error"]
    assert body["type"] == "invalid_request_error" and body["code"] == "rate_limit"
    assert "rate limit" in body["message"].lower()
    standin.set_config(fault_429=0.0)
    assert client.v1.payment_intents.list().data == []  # nothing was created
    pi = _create(client, "k-429")  # the key was not consumed: the request now executes
    assert pi.status == "succeeded"
    assert len(standin.ledger(metadata_key="contract_id", metadata_value="c-faults")) == 1


def test_5xx_before_the_endpoint_creates_nothing_and_is_not_replayed(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    standin.set_config(fault_5xx=1.0)
    with pytest.raises(stripe.APIError) as info:
        _create(client, "k-500")
    assert info.value.http_status == 500
    assert info.value.json_body["error"]["type"] == "api_error"
    assert info.value.headers["Stripe-Should-Retry"] == "true"
    standin.set_config(fault_5xx=0.0)
    assert client.v1.payment_intents.list().data == []
    first = _create(client, "k-500")
    again = _create(client, "k-500")  # from here on the success is replayed
    assert first.id == again.id
    assert len(standin.ledger(metadata_key="contract_id", metadata_value="c-faults")) == 1


def test_faults_never_apply_to_control_routes(standin: StandinHandle) -> None:
    standin.set_config(fault_5xx=1.0, fault_429=1.0, webhook_drop=1.0)
    for path in ("/_standin/health", "/_standin/config", "/_standin/ledger", "/_standin/events"):
        assert httpx.get(f"{standin.url}{path}", timeout=5).status_code == 200
    assert standin.set_config(fault_5xx=0.0)["fault_5xx"] == 0.0


def _pattern(client: stripe.StripeClient, n: int) -> list[str]:
    out = []
    for i in range(n):
        try:
            client.v1.customers.create(params={"email": f"f{i}@example.org"})
            out.append("ok")
        except stripe.RateLimitError:
            out.append("429")
        except stripe.APIError:
            out.append("500")
    return out


def test_seeded_faults_are_reproducible(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    standin.set_config(fault_5xx=0.3, fault_429=0.3, fault_seed=42)
    first = _pattern(client, 40)
    standin.set_config(fault_seed=42)  # setting the seed again restarts the sequence
    second = _pattern(client, 40)
    assert first == second
    assert {"ok", "429", "500"} <= set(first)  # all three outcomes at these rates
    standin.set_config(fault_seed=43)
    assert _pattern(client, 40) != first


def test_timeout_holds_the_request_past_the_client_timeout(standin: StandinHandle) -> None:
    standin.set_config(fault_timeout=1.0, fault_timeout_seconds=1.0)
    short = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": standin.url},
        max_network_retries=0,
        http_client=stripe.HTTPXClient(timeout=0.3, allow_sync_methods=True),
    )
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        short.v1.payment_intents.create(params=DEBIT, options={"idempotency_key": "k-slow"})
    assert time.monotonic() - started < 1.0
    # The held request still completes on the stand-in: one debit; a retry with the same
    # key then replays it instead of debiting again.
    wait_until(lambda: len(standin.ledger(metadata_key="contract_id")) == 1, timeout=5)
    standin.set_config(fault_timeout=0.0)
    ok = stripe.StripeClient(API_KEY, base_addresses={"api": standin.url}, max_network_retries=0)
    pi = ok.v1.payment_intents.create(params=DEBIT, options={"idempotency_key": "k-slow"})
    assert pi.status == "succeeded"
    assert [d["payment_intent"] for d in standin.ledger(metadata_key="contract_id")] == [pi.id]


def test_dropped_webhooks_are_lost_entirely(
    client: stripe.StripeClient, standin: StandinHandle, receiver: Receiver
) -> None:
    standin.set_config(webhook_drop=1.0)
    customer = client.v1.customers.create(params={"email": "lost@example.org"})
    wait_until(lambda: standin.webhooks(type="customer.created")[0]["status"] == "dropped")
    time.sleep(0.3)  # longer than the retry backoff: no retry reaches the endpoint
    assert receiver.received == []
    log = standin.webhooks(type="customer.created")[0]
    assert log["attempts"] == 1 and log["status"] == "dropped"
    standin.set_config(webhook_drop=0.0)
    client.v1.customers.update(customer.id, params={"name": "Erika"})
    event = receiver.wait_for(lambda e: e["type"] == "customer.updated")
    assert event["data"]["object"]["id"] == customer.id


def test_partial_drop_rate_is_seeded(
    client: stripe.StripeClient, standin: StandinHandle, receiver: Receiver
) -> None:
    def run() -> list[str]:
        standin.reset()
        standin.set_config(webhook_drop=0.5, fault_seed=7)
        for i in range(12):
            client.v1.customers.create(params={"email": f"d{i}@example.org"})
        wait_until(lambda: standin.webhooks(status="pending") == [])
        wait_until(lambda: standin.webhooks(status="retrying") == [])
        return [d["status"] for d in standin.webhooks()]

    first = run()
    assert set(first) == {"succeeded", "dropped"}
    assert run() == first


def test_config_validates_rates_and_seed() -> None:
    cfg = StandinConfig.from_mapping({"fault_5xx": 0.25, "fault_seed": 3})
    assert cfg.fault_5xx == 0.25 and cfg.fault_seed == 3
    assert "fault_seed_generation" not in cfg.public()
    for bad in ({"fault_429": 1.5}, {"webhook_drop": -0.1}, {"fault_seed": "x"}):
        with pytest.raises(ValueError):
            StandinConfig.from_mapping(bad)


def test_cli_flags() -> None:
    args = _parser(12111).parse_args(
        ["--fault-5xx", "0.1", "--fault-429", "0.2", "--webhook-drop", "0.3", "--fault-seed", "9"]
    )
    assert (args.fault_5xx, args.fault_429, args.webhook_drop, args.fault_seed) == (
        0.1,
        0.2,
        0.3,
        9,
    )
