# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined, typeddict-item"
"""Customers, PaymentMethods, auth and the form encoding the SDK sends."""

from __future__ import annotations

import httpx
import pytest
import stripe

from stripe_standin.formparse import as_list, parse_form
from stripe_standin.testing import StandinHandle

from .helpers import API_KEY


def test_customer_create_retrieve_update(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(
        params={"email": "anna@example.de", "name": "Anna", "metadata": {"contract_id": "c-1"}}
    )
    assert cus.id.startswith("cus_")
    assert cus.object == "customer" and cus.livemode is False
    assert cus.metadata["contract_id"] == "c-1"

    got = client.v1.customers.retrieve(cus.id)
    assert got.email == "anna@example.de"

    updated = client.v1.customers.update(
        cus.id, params={"name": "Anna B", "metadata": {"contract_id": "", "plan": "pro"}}
    )
    assert updated.name == "Anna B"
    assert updated.metadata.to_dict() == {"plan": "pro"}  # "" deletes a key, as in Stripe


def test_attach_magic_card_creates_concrete_payment_method(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    assert pm.id.startswith("pm_") and pm.id != "pm_card_visa"
    assert pm.type == "card" and pm.card.brand == "visa" and pm.card.last4 == "4242"
    assert pm.customer == cus.id

    cus = client.v1.customers.update(
        cus.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    assert cus.invoice_settings.default_payment_method == pm.id

    listed = client.v1.customers.payment_methods.list(cus.id, params={"type": "card"})
    assert [p.id for p in listed.data] == [pm.id]
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id

    detached = client.v1.payment_methods.detach(pm.id)
    assert detached.customer is None
    assert client.v1.customers.payment_methods.list(cus.id).data == []
    assert client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method is None


def test_default_payment_method_must_be_attached(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    other = client.v1.customers.create()
    pm = client.v1.payment_methods.attach("pm_card_mastercard", params={"customer": other.id})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.update(
            cus.id, params={"invoice_settings": {"default_payment_method": pm.id}}
        )
    assert exc.value.param == "invoice_settings[default_payment_method]"


def test_sepa_payment_method(client: stripe.StripeClient) -> None:
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": "DE89 3704 0044 0532 0130 00"},
            "billing_details": {"name": "Anna B", "email": "anna@example.de"},
        }
    )
    assert pm.type == "sepa_debit"
    assert pm.sepa_debit.last4 == "3000"
    assert pm.sepa_debit.country == "DE"
    assert pm.sepa_debit.bank_code == "37040044"
    assert pm.sepa_debit.fingerprint
    assert pm.billing_details.email == "anna@example.de"


@pytest.mark.parametrize("iban", ["DE89370400440532013001", "DE8937040044053201300", "XX12"])
def test_invalid_iban_is_rejected(client: stripe.StripeClient, iban: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_methods.create(
            params={
                "type": "sepa_debit",
                "sepa_debit": {"iban": iban},
                "billing_details": {"name": "Anna B"},
            }
        )
    assert exc.value.http_status == 400
    assert exc.value.param == "sepa_debit[iban]"


def test_unknown_ids_are_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.retrieve("cus_missing")
    assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_methods.attach("pm_nope", params={"customer": "cus_x"})
    assert exc.value.code == "resource_missing"


def test_auth_is_required(standin: StandinHandle) -> None:
    bad = stripe.StripeClient(
        "sk_live_nope", base_addresses={"api": standin.url}, max_network_retries=0
    )
    with pytest.raises(stripe.AuthenticationError):
        bad.v1.customers.create()
    response = httpx.post(f"{standin.url}/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    # curl -u sk_test_...: works too
    response = httpx.post(f"{standin.url}/v1/customers", auth=(API_KEY, ""))
    assert response.status_code == 200


def test_unknown_route_is_stripe_shaped_404(standin: StandinHandle) -> None:
    response = httpx.get(
        f"{standin.url}/v1/nothing", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 404
    assert "Unrecognized request URL" in response.json()["error"]["message"]


def test_module_level_api_base(standin: StandinHandle) -> None:
    saved = (stripe.api_base, stripe.api_key, stripe.max_network_retries)
    stripe.api_base, stripe.api_key, stripe.max_network_retries = standin.url, API_KEY, 0
    try:
        cus = stripe.Customer.create(email="x@example.de")
        pm = stripe.PaymentMethod.attach("pm_card_amex", customer=cus.id)
        assert pm.card.brand == "amex"
    finally:
        stripe.api_base, stripe.api_key, stripe.max_network_retries = saved


def test_form_decoding() -> None:
    params = parse_form(
        "metadata[contract_id]=c1&metadata[0]=zero&expand[0]=a&expand[1]=b&types[]=x&types[]=y"
        "&sepa_debit[iban]=DE89&confirm=true&a[b][c]=d"
    )
    assert params["metadata"] == {"contract_id": "c1", "0": "zero"}
    assert as_list(params["expand"]) == ["a", "b"]
    assert as_list(params["types"]) == ["x", "y"]
    assert params["sepa_debit"] == {"iban": "DE89"}
    assert params["a"] == {"b": {"c": "d"}}
    assert params["confirm"] == "true"


def test_delete_customer(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    deleted = client.v1.customers.delete(cus.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(cus.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(cus.id, params={"name": "x"})
