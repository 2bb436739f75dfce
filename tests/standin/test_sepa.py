# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined, typeddict-item"
"""SEPA debits: processing, then the bank's answer on a timer, sent as signed webhooks."""

from __future__ import annotations

import time

import pytest
import stripe

from stripe_standin.testing import StandinHandle
from stripe_standin.webhooks import sign

from .helpers import WEBHOOK_SECRET, Receiver, wait_until


def _sepa_debit(
    client: stripe.StripeClient, iban: str, contract: str = "c-7"
) -> stripe.PaymentIntent:
    cus = client.v1.customers.create(params={"email": "kunde@example.de"})
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": iban},
            "billing_details": {"name": "Kunde", "email": "kunde@example.de"},
        }
    )
    client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    return client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "eur",
            "customer": cus.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "off_session": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
            "metadata": {"contract_id": contract},
        }
    )


def _of(pi_id: str, type_: str):  # type: ignore[no-untyped-def]
    return lambda e: e.type == type_ and e.data.object.id == pi_id


def test_processing_then_succeeded_webhook(
    client: stripe.StripeClient, standin: StandinHandle, receiver: Receiver
) -> None:
    pi = _sepa_debit(client, "DE89370400440532013000")
    assert pi.status == "processing"
    assert pi.latest_charge
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "pending"
    mandate = charge.payment_method_details.sepa_debit.mandate
    assert client.v1.mandates.retrieve(mandate).payment_method_details.sepa_debit.reference
    assert standin.ledger() == []

    processing = receiver.wait_for(_of(pi.id, "payment_intent.processing"))
    assert processing.data.object.status == "processing"
    succeeded = receiver.wait_for(_of(pi.id, "payment_intent.succeeded"))
    assert succeeded.object == "event" and succeeded.livemode is False
    assert succeeded.data.object.status == "succeeded"
    assert succeeded.data.object.metadata["contract_id"] == "c-7"
    assert succeeded.request.id is None  # settled by the bank, not by an API request
    assert succeeded.api_version
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    assert len(standin.ledger(metadata_key="contract_id", metadata_value="c-7")) == 1
    # The same event is retrievable through the API.
    assert client.v1.events.retrieve(succeeded.id).type == "payment_intent.succeeded"
    wait_until(lambda: any(d["status"] == "succeeded" for d in standin.webhooks()))


def test_created_event_carries_request_and_idempotency_key(
    client: stripe.StripeClient, receiver: Receiver
) -> None:
    pi = client.v1.payment_intents.create(
        params={"amount": 900, "currency": "eur"}, options={"idempotency_key": "create-1"}
    )
    created = receiver.wait_for(_of(pi.id, "payment_intent.created"))
    assert created.request.idempotency_key == "create-1"
    assert created.request.id and created.request.id.startswith("req_")


def test_inline_payment_method_data(client: stripe.StripeClient, standin: StandinHandle) -> None:
    cus = client.v1.customers.create()
    pi = client.v1.payment_intents.create(
        params={
            "amount": 1200,
            "currency": "eur",
            "customer": cus.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "payment_method_data": {
                "type": "sepa_debit",
                "sepa_debit": {"iban": "DE65370400440002222227"},
                "billing_details": {"name": "Kunde"},
            },
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
            "confirm": True,
        }
    )
    assert pi.status == "processing"
    wait_until(lambda: client.v1.payment_intents.retrieve(pi.id).status != "processing")
    failed = client.v1.payment_intents.retrieve(pi.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.code == "insufficient_funds"


def test_long_delay_iban(client: stripe.StripeClient, standin: StandinHandle) -> None:
    standin.set_config(sepa_long_delay=1.2)
    pi = _sepa_debit(client, "DE08370400440532013003")
    time.sleep(0.5)  # longer than sepa_delay (0.2), shorter than sepa_long_delay
    assert client.v1.payment_intents.retrieve(pi.id).status == "processing"
    wait_until(lambda: client.v1.payment_intents.retrieve(pi.id).status == "succeeded")


@pytest.mark.parametrize(
    ("iban", "failure_code"),
    [
        ("DE62370400440532013001", "generic_could_not_process"),
        ("DE65370400440002222227", "insufficient_funds"),
    ],
)
def test_failing_ibans(
    client: stripe.StripeClient,
    standin: StandinHandle,
    receiver: Receiver,
    iban: str,
    failure_code: str,
) -> None:
    pi = _sepa_debit(client, iban)
    assert pi.status == "processing"
    failed = receiver.wait_for(_of(pi.id, "payment_intent.payment_failed"))
    assert failed.data.object.status == "requires_payment_method"
    assert failed.data.object.last_payment_error.code == failure_code
    charge_failed = receiver.wait_for(lambda e: e.type == "charge.failed")
    assert charge_failed.data.object.failure_code == failure_code
    assert client.v1.payment_intents.retrieve(pi.id).last_payment_error.code == failure_code
    assert standin.ledger() == []


def test_dispute_iban(
    client: stripe.StripeClient, standin: StandinHandle, receiver: Receiver
) -> None:
    pi = _sepa_debit(client, "DE35370400440532013002")
    receiver.wait_for(_of(pi.id, "payment_intent.succeeded"))
    dispute = receiver.wait_for(lambda e: e.type == "charge.dispute.created")
    assert dispute.data.object.payment_intent == pi.id
    assert dispute.data.object.reason == "general"
    assert dispute.data.object.status == "lost"  # SEPA disputes are final
    assert client.v1.disputes.retrieve(dispute.data.object.id).charge == pi.latest_charge
    assert client.v1.charges.retrieve(pi.latest_charge).disputed is True
    assert standin.ledger()[0]["disputed"] is True


def test_forced_dispute_and_settle(client: stripe.StripeClient, standin: StandinHandle) -> None:
    standin.set_config(sepa_delay=60)
    pi = _sepa_debit(client, "DE89370400440532013000")
    settled = standin.settle(pi.id)
    assert settled["status"] == "succeeded"
    dispute = standin.dispute(pi.id, reason="debit_not_authorized")
    assert dispute["reason"] == "debit_not_authorized"
    assert [e["data"]["object"]["id"] for e in standin.events("charge.dispute.created")] == [
        dispute["id"]
    ]
    other = _sepa_debit(client, "DE89370400440532013000", contract="c-8")
    failed = standin.settle(other.id, failure_code="account_closed")
    assert failed["last_payment_error"]["code"] == "account_closed"


def test_webhook_retries_until_2xx(
    client: stripe.StripeClient, standin: StandinHandle, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    cus = client.v1.customers.create()
    wait_until(lambda: len(receiver.received) >= 3)
    log = standin.webhooks(event=None, type="customer.created")
    wait_until(lambda: standin.webhooks(type="customer.created")[0]["status"] == "succeeded")
    log = standin.webhooks(type="customer.created")
    assert log[0]["attempts"] == 3
    assert [h["http_status"] for h in log[0]["history"]] == [500, 503, 200]
    ids = {e.data.object.id for e in receiver.events()}
    assert ids == {cus.id}


def test_signature_matches_stripe_library() -> None:
    payload = '{\n  "id": "evt_1",\n  "object": "event"\n}'
    header = sign(payload, WEBHOOK_SECRET)
    event = stripe.Webhook.construct_event(payload, header, WEBHOOK_SECRET)
    assert event.id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")


def test_many_pending_debits_settle(client: stripe.StripeClient, standin: StandinHandle) -> None:
    standin.set_config(sepa_delay=0.3)
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": "DE89370400440532013000"},
            "billing_details": {"name": "Kunde"},
        }
    )
    # The mandate comes from a SetupIntent, as a platform collects it at checkout.
    client.v1.setup_intents.create(
        params={
            "customer": cus.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
        }
    )
    for i in range(200):
        client.v1.payment_intents.create(
            params={
                "amount": 1000 + i,
                "currency": "eur",
                "customer": cus.id,
                "payment_method": pm.id,
                "allowed_payment_method_types": ["sepa_debit"],
                "confirm": True,
                "off_session": True,
            }
        )
    wait_until(lambda: len(standin.ledger()) == 200, timeout=10)
