# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined"
"""SetupIntents: collecting a SEPA mandate before the first debit, as a platform does."""

from __future__ import annotations

import pytest
import stripe

from stripe_standin.testing import StandinHandle


def _sepa_pm(client: stripe.StripeClient) -> stripe.PaymentMethod:
    return client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": "DE89370400440532013000"},
            "billing_details": {"name": "Kunde", "email": "kunde@example.de"},
        }
    )


def test_confirmed_sepa_setup_intent_creates_a_mandate_and_attaches(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    cus = client.v1.customers.create(params={"email": "kunde@example.de"})
    pm = _sepa_pm(client)
    si = client.v1.setup_intents.create(
        params={
            "customer": cus.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {
                "customer_acceptance": {
                    "type": "online",
                    "online": {"ip_address": "203.0.113.7", "user_agent": "pytest"},
                }
            },
        }
    )
    assert si.status == "succeeded" and si.mandate
    mandate = client.v1.mandates.retrieve(si.mandate)
    ref = mandate.payment_method_details.sepa_debit.reference
    assert ref and len(ref) <= 35  # SEPA: a mandate reference has at most 35 characters
    assert mandate.customer_acceptance.online.ip_address == "203.0.113.7"
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id

    # found again by the payment method, as Mahnwerk looks it up
    listed = client.v1.setup_intents.list(params={"payment_method": pm.id})
    assert [s.id for s in listed.data] == [si.id]
    assert client.v1.setup_intents.list(params={"payment_method": "pm_other"}).data == []

    # the first debit of the method uses that same mandate
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "eur",
            "customer": cus.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "off_session": True,
        }
    )
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.payment_method_details.sepa_debit.mandate == si.mandate


def test_card_setup_intent_confirms_later_without_mandate(client: stripe.StripeClient) -> None:
    si = client.v1.setup_intents.create(params={"allowed_payment_method_types": ["card"]})
    assert si.status == "requires_payment_method"
    si = client.v1.setup_intents.confirm(si.id, params={"payment_method": "pm_card_visa"})
    assert si.status == "succeeded" and si.mandate is None
    assert client.v1.setup_intents.retrieve(si.id).status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.setup_intents.confirm(si.id)
    assert exc.value.code == "setup_intent_unexpected_state"


def test_unknown_setup_intent_is_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.setup_intents.retrieve("seti_nope")
    assert exc.value.code == "resource_missing"
