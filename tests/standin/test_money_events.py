# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined, typeddict-item"
"""Money-moving events and the control endpoints behind them (disputes closed won / lost,
Dashboard refunds and cancels), SEPA failure codes, the charge fields Mahnwerk reads, and
webhook redelivery."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import stripe

from stripe_standin.config import StandinConfig
from stripe_standin.sepa import expected_debit_date
from stripe_standin.testing import StandinHandle
from stripe_standin.testvalues import SEPA_TEST_IBANS, iban_is_valid
from stripe_standin.webhooks import retry_schedule

from .helpers import Receiver, wait_until


def _card_payment(client: stripe.StripeClient, amount: int = 4900) -> stripe.PaymentIntent:
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "eur",
            "customer": cus.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "metadata": {"contract_id": "c-money"},
        }
    )


def _sepa_payment(client: stripe.StripeClient, iban: str) -> stripe.PaymentIntent:
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": iban},
            "billing_details": {"name": "Kunde"},
        }
    )
    si = client.v1.setup_intents.create(
        params={
            "customer": cus.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
        }
    )
    return client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "eur",
            "customer": cus.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "mandate": si.mandate,
            "confirm": True,
            "off_session": True,
        }
    )


def _types(standin: StandinHandle, obj_id: str) -> list[str]:
    return [e["type"] for e in standin.events() if e["data"]["object"]["id"] == obj_id]


def test_dispute_nine_months_later_won(client: stripe.StripeClient, standin: StandinHandle) -> None:
    pi = _card_payment(client)
    standin.advance_clock(270 * 86400)  # disputes may come long after the debit
    dp = standin.dispute_charge(pi.latest_charge, reason="fraudulent")
    assert dp["status"] == "needs_response" and dp["amount"] == 4900
    assert dp["payment_intent"] == pi.id and dp["charge"] == pi.latest_charge
    assert _types(standin, dp["id"]) == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]
    assert client.v1.charges.retrieve(pi.latest_charge).disputed is True
    closed = standin.close_dispute(dp["id"], "won")
    assert closed["status"] == "won"
    assert _types(standin, dp["id"])[2:] == [
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
    ]
    closed_event = standin.events(type="charge.dispute.closed")[0]
    assert closed_event["data"]["previous_attributes"] == {"status": "needs_response"}
    assert closed_event["request"] == {"id": None, "idempotency_key": None}
    assert [t["amount"] for t in closed["balance_transactions"]] == [-4900, 4900]
    assert client.v1.disputes.retrieve(dp["id"]).status == "won"
    assert standin.ledger(payment_intent=pi.id)[0]["dispute_status"] == "won"


def test_dispute_lost_and_closing_twice(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    pi = _card_payment(client)
    dp = standin.dispute(pi.id)  # the older route by PaymentIntent still works
    assert standin.close_dispute(dp["id"], "lost")["status"] == "lost"
    assert "charge.dispute.funds_reinstated" not in _types(standin, dp["id"])
    with pytest.raises(Exception) as exc:
        standin.close_dispute(dp["id"], "won")
    assert "400" in str(exc.value)


def test_dashboard_refund(client: stripe.StripeClient, standin: StandinHandle) -> None:
    pi = _card_payment(client)
    partial = standin.refund(payment_intent=pi.id, amount=1000)
    assert partial["amount"] == 1000 and partial["status"] == "succeeded"
    refunded = standin.events(type="charge.refunded")
    assert refunded[0]["data"]["object"]["amount_refunded"] == 1000
    assert refunded[0]["data"]["object"]["refunded"] is False
    assert refunded[0]["data"]["previous_attributes"] == {"amount_refunded": 0, "refunded": False}
    assert refunded[0]["request"]["id"] is None  # made in the Dashboard, not through the API
    rest = standin.refund(charge=pi.latest_charge)
    assert rest["amount"] == 3900
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (4900, True)
    assert [e["data"]["object"]["id"] for e in standin.events(type="refund.created")] == [
        partial["id"],
        rest["id"],
    ]
    assert standin.ledger(payment_intent=pi.id)[0]["amount_refunded"] == 4900


def test_dashboard_cancel(client: stripe.StripeClient, standin: StandinHandle) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 900, "currency": "eur"})
    canceled = standin.cancel(pi.id, "abandoned")
    assert canceled["status"] == "canceled" and canceled["cancellation_reason"] == "abandoned"
    event = standin.events(type="payment_intent.canceled")[0]
    assert event["data"]["object"]["id"] == pi.id and event["request"]["id"] is None


@pytest.mark.parametrize(
    "iban, code",
    [
        ("DE65370400440000343434", "charge_exceeds_source_limit"),
        ("DE27370400440000121212", "charge_exceeds_weekly_limit"),
        ("AT981904300002222227", "insufficient_funds"),
        ("FR8420041010050500013M02607", "generic_could_not_process"),
    ],
)
def test_sepa_failure_codes_where_stripe_puts_them(
    client: stripe.StripeClient, iban: str, code: str
) -> None:
    pi = _sepa_payment(client, iban)
    assert pi.status == "processing"
    wait_until(lambda: client.v1.payment_intents.retrieve(pi.id).status != "processing")
    failed = client.v1.payment_intents.retrieve(pi.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.code == code
    assert failed.last_payment_error.payment_method.type == "sepa_debit"
    charge = client.v1.charges.retrieve(failed.latest_charge)
    assert (charge.status, charge.failure_code) == ("failed", code)
    assert charge.failure_message


def test_every_test_iban_is_valid_and_each_country_has_all_behaviours() -> None:
    assert all(iban_is_valid(iban) for iban in SEPA_TEST_IBANS)
    countries = {iban[:2] for iban in SEPA_TEST_IBANS}
    assert len(SEPA_TEST_IBANS) == 8 * len(countries)
    codes = {p.failure_code for p in SEPA_TEST_IBANS.values()}
    assert {"charge_exceeds_source_limit", "charge_exceeds_weekly_limit"} <= codes


def test_charge_details_mahnwerk_reads(client: stripe.StripeClient) -> None:
    sepa = _sepa_payment(client, "DE89370400440532013000")
    charge = client.v1.charges.retrieve(sepa.latest_charge)
    details = charge.payment_method_details
    assert details.type == "sepa_debit"
    assert details.sepa_debit.mandate.startswith("mandate_")
    assert (details.sepa_debit.last4, details.sepa_debit.bank_code) == ("3000", "37040044")
    assert details.sepa_debit.country == "DE"
    assert details.sepa_debit.expected_debit_date == expected_debit_date(charge.created)
    mandate = client.v1.mandates.retrieve(details.sepa_debit.mandate)
    assert (mandate.status, mandate.type) == ("active", "multi_use")
    assert mandate.payment_method_details.sepa_debit.reference

    card = client.v1.charges.retrieve(_card_payment(client).latest_charge)
    assert card.payment_method_details.type == "card"
    assert (card.payment_method_details.card.brand, card.payment_method_details.card.last4) == (
        "visa",
        "4242",
    )


def test_expected_debit_date_follows_the_target_calendar() -> None:
    def at(text: str) -> int:
        return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp())

    assert expected_debit_date(at("2026-03-03T09:00")) == "2026-03-04"  # Tue -> Wed
    assert expected_debit_date(at("2026-03-03T15:00")) == "2026-03-05"  # after the cut-off
    assert expected_debit_date(at("2026-03-06T09:00")) == "2026-03-09"  # Fri -> Mon
    assert expected_debit_date(at("2026-03-07T09:00")) == "2026-03-10"  # Sat: Mon's cycle
    # Easter 2026: Good Friday 3 April and Easter Monday 6 April are TARGET holidays.
    assert expected_debit_date(at("2026-04-02T09:00")) == "2026-04-07"
    assert expected_debit_date(at("2026-12-24T09:00")) == "2026-12-28"


def test_response_fields_exist_in_the_sdk_objects(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    """No invented fields (each is a field of the SDK's object class), and the fields
    Mahnwerk reads are there with the SDK's type."""
    pi = _card_payment(client)
    sepa = _sepa_payment(client, "DE89370400440532013000")
    charge = client.v1.charges.retrieve(sepa.latest_charge)
    dp = standin.dispute_charge(pi.latest_charge)
    objects: dict[type, dict[str, Any]] = {
        stripe.PaymentIntent: client.v1.payment_intents.retrieve(pi.id).to_dict(),
        stripe.Charge: charge.to_dict(),
        stripe.Mandate: client.v1.mandates.retrieve(
            charge.payment_method_details.sepa_debit.mandate
        ).to_dict(),
        stripe.PaymentMethod: client.v1.payment_methods.retrieve(pi.payment_method).to_dict(),
        stripe.SetupIntent: client.v1.setup_intents.list().data[0].to_dict(),
        stripe.Dispute: client.v1.disputes.retrieve(dp["id"]).to_dict(),
        stripe.Refund: client.v1.refunds.create(
            params={"charge": _card_payment(client).latest_charge}
        ).to_dict(),
        stripe.Event: client.v1.events.list(params={"limit": 1}).data[0].to_dict(),
    }
    for cls, obj in objects.items():
        fields = set(cls.__annotations__)
        assert set(obj) - fields == set(), cls.__name__
    reads = {
        stripe.PaymentIntent: {
            "id": str,
            "status": str,
            "amount": int,
            "metadata": dict,
            "latest_charge": str,
            "payment_method_types": list,
            "customer": str,
        },
        stripe.Charge: {"payment_method_details": dict, "failure_code": type(None)},
        stripe.Mandate: {"status": str, "payment_method_details": dict, "type": str},
        stripe.PaymentMethod: {"type": str, "card": dict, "customer": str},
        stripe.Dispute: {"payment_intent": str, "amount": int, "reason": str, "status": str},
        stripe.Event: {"id": str, "type": str, "data": dict},
    }
    for cls, wanted in reads.items():
        obj = objects[cls]
        for field, kind in wanted.items():
            assert isinstance(obj[field], kind), f"{cls.__name__}.{field}"
            assert field in cls.__annotations__


def test_declined_intent_names_the_method_type(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.attach(
        "pm_card_visa_chargeDeclinedLostCard", params={"customer": cus.id}
    )
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.create(
            params={
                "amount": 4900,
                "currency": "eur",
                "customer": cus.id,
                "payment_method": pm.id,
                "allowed_payment_method_types": ["card"],
                "confirm": True,
                "off_session": True,
            }
        )
    pi = client.v1.payment_intents.retrieve(exc.value.error.payment_intent.id)
    assert pi.last_payment_error.payment_method.type == "card"
    assert pi.last_payment_error.decline_code == "lost_card"
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.payment_method_details.type == "card"


def test_retry_schedule_live_like() -> None:
    from stripe_standin.__main__ import LIVE_WEBHOOK_SCHEDULE

    cfg = StandinConfig.from_mapping(LIVE_WEBHOOK_SCHEDULE)
    offsets = retry_schedule(cfg)
    gaps = [b - a for a, b in zip([0.0, *offsets], offsets, strict=False)]
    assert gaps[:3] == [60.0, 120.0, 240.0]
    assert max(gaps) == 12 * 3600.0
    assert offsets[-1] <= 3 * 86400 < offsets[-1] + 12 * 3600.0
    short = StandinConfig.from_mapping({"webhook_retry_delay": 1.0, "webhook_retry_horizon": 5})
    assert retry_schedule(short) == [1.0, 3.0]  # the next one (7 s) is past the horizon


def test_unacknowledged_delivery_is_retried_then_given_up(
    standin: StandinHandle, receiver: Receiver, client: stripe.StripeClient
) -> None:
    # The horizon is measured on the wall clock, with each POST's own time in it: the
    # margins are 0.2 s wide (at 0.05 s delays and a 0.2 s horizon a loaded CI machine's two
    # slow POSTs gave up after the second attempt).
    standin.set_config(webhook_max_attempts=5, webhook_retry_delay=0.2, webhook_retry_horizon=0.8)
    receiver.statuses = [500] * 10
    client.v1.customers.create()
    wait_until(lambda: [d["status"] for d in standin.webhooks()] == ["failed"])
    delivery = standin.webhooks()[0]
    # 0.2 + 0.4 fit in the 0.8 s horizon; the third retry (0.8 s later) would not
    assert delivery["attempts"] == 3 and delivery["http_status"] == 500
    assert delivery["next_attempt_at"] is None
