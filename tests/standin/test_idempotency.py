# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined, typeddict-item"
"""Idempotency-Key as Stripe honours it: replay, mismatch, in-flight conflict, pruning."""

from __future__ import annotations

import threading

import httpx
import pytest
import stripe

from stripe_standin.testing import StandinHandle

from .helpers import API_KEY, wait_until

DEBIT = {
    "amount": 4900,
    "currency": "eur",
    "payment_method": "pm_card_visa",
    "allowed_payment_method_types": ["card"],
    "confirm": True,
    "off_session": True,
    "metadata": {"contract_id": "c-1", "attempt": "1"},
}


def _post(standin: StandinHandle, path: str, data: dict[str, str], key: str) -> httpx.Response:
    return httpx.post(
        f"{standin.url}{path}",
        data=data,
        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key},
        timeout=10,
    )


def test_replay_returns_same_payment_intent_and_debits_once(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    first = client.v1.payment_intents.create(params=DEBIT, options={"idempotency_key": "k-1"})
    again = client.v1.payment_intents.create(params=DEBIT, options={"idempotency_key": "k-1"})
    assert again.id == first.id and again.status == "succeeded"
    assert len(standin.ledger(metadata_key="contract_id", metadata_value="c-1")) == 1
    assert len(client.v1.payment_intents.list().data) == 1


def test_replay_is_byte_identical_with_header(standin: StandinHandle) -> None:
    form = {"amount": "4900", "currency": "eur", "metadata[contract_id]": "c-9"}
    first = _post(standin, "/v1/payment_intents", form, "k-raw")
    second = _post(standin, "/v1/payment_intents", form, "k-raw")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Original-Request"] == first.headers["Request-Id"]


def test_declines_are_replayed_too(client: stripe.StripeClient, standin: StandinHandle) -> None:
    params = {**DEBIT, "payment_method": "pm_card_visa_chargeDeclinedInsufficientFunds"}
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as exc:
            client.v1.payment_intents.create(params=params, options={"idempotency_key": "k-402"})
        errors.append(exc.value)
    assert errors[0].http_body == errors[1].http_body
    assert errors[0].error.payment_intent.id == errors[1].error.payment_intent.id
    assert len(client.v1.payment_intents.list().data) == 1


def test_same_key_other_params_is_idempotency_error(client: stripe.StripeClient) -> None:
    client.v1.payment_intents.create(params=DEBIT, options={"idempotency_key": "k-2"})
    with pytest.raises(stripe.IdempotencyError) as exc:
        client.v1.payment_intents.create(
            params={**DEBIT, "amount": 5000}, options={"idempotency_key": "k-2"}
        )
    assert exc.value.http_status == 400
    assert "same parameters" in str(exc.value)
    with pytest.raises(stripe.IdempotencyError):  # same key, other endpoint
        client.v1.customers.create(options={"idempotency_key": "k-2"})


def test_keys_are_scoped_per_api_key(standin: StandinHandle) -> None:
    form = {"amount": "4900", "currency": "eur"}
    first = _post(standin, "/v1/payment_intents", form, "k-scope")
    other = httpx.post(
        f"{standin.url}/v1/customers",
        headers={"Authorization": "Bearer sk_test_other", "Idempotency-Key": "k-scope"},
    )
    assert first.status_code == 200 and other.status_code == 200


def test_concurrent_request_with_same_key_is_409(standin: StandinHandle) -> None:
    standin.set_config(latency=0.5)
    form = {"amount": "4900", "currency": "eur"}
    results: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: results.append(_post(standin, "/v1/payment_intents", form, "k-busy"))
    )
    thread.start()
    wait_until(lambda: standin.idempotency("k-busy")["in_flight"])  # the first one runs
    conflict = _post(standin, "/v1/payment_intents", form, "k-busy")
    thread.join()
    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "idempotency_key_in_use")
    assert "another in-progress request" in error["message"]
    assert results[0].status_code == 200
    standin.set_config(latency=0.0)
    replay = _post(standin, "/v1/payment_intents", form, "k-busy")
    assert replay.content == results[0].content


def test_validation_errors_are_not_saved(standin: StandinHandle) -> None:
    bad = _post(standin, "/v1/payment_intents", {"currency": "eur"}, "k-val")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "amount"
    # Stripe saves a result only once the endpoint ran: the corrected request may reuse the key.
    good = _post(standin, "/v1/payment_intents", {"amount": "100", "currency": "eur"}, "k-val")
    assert good.status_code == 200


def test_keys_are_pruned_after_24_hours(standin: StandinHandle) -> None:
    form = {"amount": "4900", "currency": "eur"}
    first = _post(standin, "/v1/payment_intents", form, "k-old")
    standin.advance_clock(24 * 3600 + 1)
    again = _post(standin, "/v1/payment_intents", form, "k-old")
    assert again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
