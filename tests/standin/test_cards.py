# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined, typeddict-item"
"""Card outcomes of Stripe's magic test PaymentMethods, off and on session."""

from __future__ import annotations

import pytest
import stripe

from stripe_standin.testing import StandinHandle

SUCCEEDING = ["pm_card_visa", "pm_card_mastercard", "pm_card_amex", "pm_card_de"]
DECLINING = [
    ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_visa_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_visa_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeCustomerFail", "card_declined", "generic_decline"),
    ("pm_card_decline_do_not_honor", "card_declined", "do_not_honor"),  # stand-in extension
    ("pm_card_authenticationRequired", "authentication_required", "authentication_required"),
]


def _customer_with(client: stripe.StripeClient, magic: str) -> tuple[str, str]:
    cus = client.v1.customers.create(params={"email": "kunde@example.de"})
    pm = client.v1.payment_methods.attach(magic, params={"customer": cus.id})
    return cus.id, pm.id


def _debit(client: stripe.StripeClient, cus: str, pm: str, **extra: object) -> stripe.PaymentIntent:
    params: dict[str, object] = {
        "amount": 4900,
        "currency": "eur",
        "customer": cus,
        "payment_method": pm,
        "allowed_payment_method_types": ["card"],
        "confirm": True,
        "off_session": True,
        "metadata": {"contract_id": "c-42"},
    }
    params.update(extra)
    return client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]


@pytest.mark.parametrize("magic", SUCCEEDING)
def test_succeeding_cards(client: stripe.StripeClient, standin: StandinHandle, magic: str) -> None:
    cus, pm = _customer_with(client, magic)
    pi = _debit(client, cus, pm)
    assert pi.status == "succeeded"
    assert pi.amount_received == 4900
    assert pi.latest_charge and pi.latest_charge.startswith("ch_")
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "succeeded" and charge.paid and charge.payment_intent == pi.id
    ledger = standin.ledger()
    assert [(e["payment_intent"], e["amount"], e["customer"]) for e in ledger] == [
        (pi.id, 4900, cus)
    ]
    assert ledger[0]["metadata"] == {"contract_id": "c-42"}


@pytest.mark.parametrize(("magic", "code", "decline_code"), DECLINING)
def test_declining_cards(
    client: stripe.StripeClient, standin: StandinHandle, magic: str, code: str, decline_code: str
) -> None:
    cus, pm = _customer_with(client, magic)  # attaching works (strict_attach is off)
    with pytest.raises(stripe.CardError) as exc:
        _debit(client, cus, pm)
    err = exc.value
    assert err.http_status == 402
    assert err.code == code
    assert err.error is not None
    assert err.error.decline_code == decline_code
    assert err.error.type == "card_error"
    assert err.error.doc_url
    assert err.error.payment_method is not None and err.error.payment_method.id == pm
    failed = err.error.payment_intent
    assert failed is not None
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.decline_code == decline_code

    # The PaymentIntent exists, is retrievable and searchable, and nothing was debited.
    stored = client.v1.payment_intents.retrieve(failed.id)
    assert stored.status == "requires_payment_method"
    assert stored.last_payment_error.code == code
    found = client.v1.payment_intents.search(params={"query": "metadata['contract_id']:'c-42'"})
    assert [p.id for p in found.data] == [failed.id]
    assert standin.ledger() == []
    assert [e["type"] for e in standin.events("payment_intent.payment_failed")] == [
        "payment_intent.payment_failed"
    ]


def test_magic_id_directly_in_payment_intent(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "allowed_payment_method_types": ["card"],
            "confirm": True,
        }
    )
    assert pi.status == "succeeded"
    assert pi.payment_method != "pm_card_visa"  # a concrete pm_..., as in Stripe test mode
    assert client.v1.charges.retrieve(pi.latest_charge).payment_method == pi.payment_method
    assert client.v1.payment_methods.retrieve(pi.payment_method).card.last4 == "4242"
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "eur",
                "payment_method": "pm_card_visa_chargeDeclinedLostCard",
                "allowed_payment_method_types": ["card"],
                "confirm": True,
            }
        )
    assert exc.value.error.decline_code == "lost_card"


def test_authentication_required_on_session(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    cus, pm = _customer_with(client, "pm_card_authenticationRequired")
    pi = _debit(client, cus, pm, off_session=False)
    assert pi.status == "requires_action"
    assert pi.next_action.type == "use_stripe_sdk"
    assert standin.ledger() == []
    # The customer comes back and authenticates (stand-in control route).
    done = standin.authenticate(pi.id)
    assert done["status"] == "succeeded"
    assert len(standin.ledger(payment_intent=pi.id)) == 1


def test_confirm_later_and_cancel(client: stripe.StripeClient) -> None:
    cus, pm = _customer_with(client, "pm_card_visa")
    pi = client.v1.payment_intents.create(
        params={
            "amount": 700,
            "currency": "eur",
            "customer": cus,
            "payment_method": pm,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )
    assert pi.status == "requires_confirmation"
    pi = client.v1.payment_intents.confirm(pi.id, params={"off_session": True})
    assert pi.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.cancel(pi.id)
    assert exc.value.code == "payment_intent_unexpected_state"

    other = client.v1.payment_intents.create(params={"amount": 700, "currency": "eur"})
    canceled = client.v1.payment_intents.cancel(
        other.id, params={"cancellation_reason": "abandoned"}
    )
    assert canceled.status == "canceled" and canceled.cancellation_reason == "abandoned"


def test_retry_after_decline_with_new_card(client: stripe.StripeClient) -> None:
    cus, bad = _customer_with(client, "pm_card_visa_chargeDeclinedInsufficientFunds")
    with pytest.raises(stripe.CardError) as exc:
        _debit(client, cus, bad)
    pi_id = exc.value.error.payment_intent.id
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus})
    pi = client.v1.payment_intents.confirm(
        pi_id, params={"payment_method": good.id, "off_session": True}
    )
    assert pi.status == "succeeded" and pi.last_payment_error is None


def test_strict_attach_declines_like_stripe_card_check(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    standin.set_config(strict_attach=True)
    cus = client.v1.customers.create()
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": cus.id})
    assert exc.value.code == "card_declined"
    # ... but the "decline after attaching" card attaches.
    client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": cus.id})


def test_payment_method_of_another_customer_is_refused(client: stripe.StripeClient) -> None:
    _, pm = _customer_with(client, "pm_card_visa")
    stranger = client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as exc:
        _debit(client, stranger.id, pm)
    assert exc.value.param == "payment_method"


def test_incompatible_payment_method_type(client: stripe.StripeClient) -> None:
    cus, pm = _customer_with(client, "pm_card_visa")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        _debit(client, cus, pm, allowed_payment_method_types=["sepa_debit"])
    assert exc.value.code == "payment_intent_incompatible_payment_method"


def test_error_on_requires_action_fails_instead_of_waiting(client: stripe.StripeClient) -> None:
    cus, pm = _customer_with(client, "pm_card_authenticationRequired")
    with pytest.raises(stripe.CardError) as exc:
        _debit(client, cus, pm, off_session=False, error_on_requires_action=True)
    assert exc.value.code == "authentication_required"


def test_payment_method_types_is_not_a_parameter_at_the_pinned_version(
    client: stripe.StripeClient,
) -> None:
    """stripe 16 pins an API version that takes `allowed_payment_method_types`; the old
    `payment_method_types` is refused as Stripe refuses an unknown parameter."""
    cus, pm = _customer_with(client, "pm_card_visa")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(
            params={  # type: ignore[typeddict-unknown-key]
                "amount": 1000,
                "currency": "eur",
                "customer": cus,
                "payment_method": pm,
                "payment_method_types": ["card"],
                "confirm": True,
            }
        )
    assert exc.value.http_status == 400
    assert (exc.value.code, exc.value.param) == ("parameter_unknown", "payment_method_types")
    pi = _debit(client, cus, pm)
    assert pi.status == "succeeded" and pi.payment_method_types == ["card"]
    assert pi.allowed_payment_method_types == ["card"] and pi.automatic_payment_methods is None
    auto = client.v1.payment_intents.create(params={"amount": 1000, "currency": "eur"})
    assert auto.automatic_payment_methods.enabled is True
    assert auto.allowed_payment_method_types is None


def test_scripted_outcomes_decline_matching_debits_in_order(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    """Stand-in extension: the next debits of one contract decline as scripted, then the
    payment method's own behaviour applies again; other contracts are untouched."""
    standin.script({"contract_id": "c-script"}, ["insufficient_funds", "do_not_honor"])
    cus, pm = _customer_with(client, "pm_card_visa")

    def debit(contract: str) -> stripe.PaymentIntent:
        return client.v1.payment_intents.create(
            params={
                "amount": 4900,
                "currency": "eur",
                "customer": cus,
                "payment_method": pm,
                "allowed_payment_method_types": ["card"],
                "confirm": True,
                "off_session": True,
                "metadata": {"contract_id": contract},
            }
        )

    assert debit("c-other").status == "succeeded"
    codes = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as exc:
            debit("c-script")
        codes.append(exc.value.error.decline_code)
    assert codes == ["insufficient_funds", "do_not_honor"]
    assert debit("c-script").status == "succeeded"
    assert len(standin.ledger(metadata_key="contract_id", metadata_value="c-script")) == 1
