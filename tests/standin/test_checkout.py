# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined"
"""Checkout Sessions and the stand-in's hosted checkout page: created through the SDK as
Mahnwerk creates them, paid on the page with a test card or IBAN, `checkout.session.*`
webhooks and the redirect to `success_url`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from stripe_standin.testing import StandinHandle

from .helpers import Receiver

SUCCESS = "https://shop.example/pay/tok?checkout={CHECKOUT_SESSION_ID}"


def _payment_session(client: stripe.StripeClient, cus: str, **extra: Any) -> Any:
    return client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": cus,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "eur",
                        "unit_amount": 10150,
                        "product_data": {"name": "Offene Forderung ord-1"},
                    },
                }
            ],
            "payment_intent_data": {
                "setup_future_usage": "off_session",
                "metadata": {"contract_id": "ord-1", "mahnwerk_checkout": "ord-1"},
            },
            "metadata": {"contract_id": "ord-1"},
            "success_url": SUCCESS,
            "cancel_url": "https://shop.example/pay/tok",
            **extra,
        },
        options={"idempotency_key": f"co-{cus}"},
    )


def test_a_card_payment_on_the_hosted_page(
    client: stripe.StripeClient, standin: StandinHandle, receiver: Receiver
) -> None:
    cus = client.v1.customers.create(params={"email": "kunde@example.de"}).id
    session = _payment_session(client, cus)
    assert session.status == "open" and session.payment_status == "unpaid"
    assert session.amount_total == 10150 and session.url.startswith(standin.url)
    assert _payment_session(client, cus).id == session.id  # the same key: the same session

    page = httpx.get(session.url)
    assert page.status_code == 200 and "101,50 EUR" in page.text

    # a declined card: the page says why, the session stays open
    declined = httpx.post(session.url, data={"method": "pm_card_visa_chargeDeclinedLostCard"})
    assert declined.status_code == 402 and "declined" in declined.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    paid = httpx.post(session.url, data={"method": "pm_card_visa"})
    assert paid.status_code == 303
    assert paid.headers["location"] == SUCCESS.replace("{CHECKOUT_SESSION_ID}", session.id)
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    pi = client.v1.payment_intents.retrieve(done.payment_intent)
    assert pi.status == "succeeded" and pi.amount == 10150
    assert pi.metadata["mahnwerk_checkout"] == "ord-1"
    # setup_future_usage: the card is saved to the customer for later debits
    assert client.v1.payment_methods.retrieve(pi.payment_method).customer == cus

    event = receiver.wait_for(lambda e: e.type == "checkout.session.completed")
    assert event.data.object.id == session.id
    assert event.data.object.payment_intent == pi.id
    assert event.data.object.metadata["contract_id"] == "ord-1"
    receiver.wait_for(lambda e: e.type == "payment_intent.succeeded" and e.data.object.id == pi.id)
    assert [e["payment_intent"] for e in standin.ledger()] == [pi.id]  # one debit
    # the completed session's page goes back to success_url, it never pays twice
    again = httpx.post(session.url, data={"method": "pm_card_visa"})
    assert again.status_code == 303 and len(standin.ledger()) == 1


def test_sepa_on_the_page_completes_unpaid_then_async_succeeds(
    client: stripe.StripeClient, standin: StandinHandle, receiver: Receiver
) -> None:
    cus = client.v1.customers.create(params={"email": "kunde@example.de"}).id
    session = _payment_session(client, cus)
    bad = httpx.post(session.url, data={"method": "sepa_debit", "iban": "DE00", "name": "K"})
    assert bad.status_code == 402 and "IBAN" in bad.text
    resp = httpx.post(
        session.url,
        data={"method": "sepa_debit", "iban": "DE89370400440532013000", "name": "Erika"},
    )
    assert resp.status_code == 303
    completed = receiver.wait_for(lambda e: e.type == "checkout.session.completed")
    assert completed.data.object.payment_status == "unpaid"
    later = receiver.wait_for(lambda e: e.type == "checkout.session.async_payment_succeeded")
    assert later.data.object.payment_status == "paid"
    pi = client.v1.payment_intents.retrieve(completed.data.object.payment_intent)
    assert pi.status == "succeeded"
    # the mandate accepted on the page is kept for later debits of the saved method
    listed = client.v1.payment_methods.retrieve(pi.payment_method)
    assert listed.customer == cus and listed.type == "sepa_debit"


def test_setup_mode_saves_a_method_without_paying(
    client: stripe.StripeClient, standin: StandinHandle, receiver: Receiver
) -> None:
    cus = client.v1.customers.create(params={"email": "kunde@example.de"}).id
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "currency": "eur",
            "customer": cus,
            "metadata": {"contract_id": "ord-2"},
            "success_url": SUCCESS,
        }
    )
    assert session.payment_status == "no_payment_required"
    assert httpx.post(session.url, data={"method": "pm_card_mastercard"}).status_code == 303
    event = receiver.wait_for(lambda e: e.type == "checkout.session.completed")
    si = client.v1.setup_intents.retrieve(event.data.object.setup_intent)
    assert si.status == "succeeded" and si.customer == cus
    assert client.v1.payment_methods.retrieve(si.payment_method).customer == cus
    assert standin.ledger() == []  # nothing was charged


def test_sessions_refuse_what_stripe_refuses(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={}).id
    with pytest.raises(stripe.InvalidRequestError) as exc:
        _payment_session(client, cus, payment_method_types=["card"])  # not at this version
    assert exc.value.error.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.create(params={"mode": "payment", "success_url": SUCCESS})
    assert exc.value.error.param == "line_items"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.checkout.sessions.retrieve("cs_test_missing")
    assert exc.value.http_status == 404
