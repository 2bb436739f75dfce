"""Issue 10 items 1, 3, 4 at the activity: the debit request Stripe documents for a saved
method, Stripe's 4xx as *our* integration error (never a decline), and the scheme taken from
the payment method's own type — also when the PaymentIntent is only found by search or poll.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.payments import PaymentActivities, make_stripe_client, off_session_debit_params
from core.db import transaction
from core.models import PaymentAttempt
from core.settings import Settings
from domain import declines
from tests.activities.test_payments import NO_FAULTS, _contract, _input
from workflows.types import ChargeInput, PaymentStatusInput


@pytest.fixture
def faults_off(standin: Any) -> Iterator[Any]:
    standin.set_config(**NO_FAULTS, fault_400=0.0)
    yield standin
    standin.set_config(**NO_FAULTS, fault_400=0.0)


@pytest.fixture
def client(settings: Settings) -> stripe.StripeClient:
    return make_stripe_client(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)


@pytest.fixture
def pay(client: stripe.StripeClient, sessions: sessionmaker[Session]) -> PaymentActivities:
    return PaymentActivities(client, sessions)


def _with(inp: ChargeInput, **changes: Any) -> ChargeInput:
    return ChargeInput(**{**inp.__dict__, **changes})


def test_debit_names_the_method_type_customer_and_mandate() -> None:
    card = _with(_input("c1"), method_type="card", stripe_customer="cus_1")
    p = off_session_debit_params(card)
    assert p["allowed_payment_method_types"] == ["card"]
    assert p["confirm"] is True and p["off_session"] is True
    assert p["customer"] == "cus_1"
    assert "automatic_payment_methods" not in p and "mandate" not in p
    sepa = _with(card, method_type="sepa_debit", mandate="mandate_1")
    p = off_session_debit_params(sepa)
    assert p["allowed_payment_method_types"] == ["sepa_debit"] and p["mandate"] == "mandate_1"
    # unknown type: automatic methods, but never a redirect (no return_url needed)
    p = off_session_debit_params(_input("c1"))
    assert p["automatic_payment_methods"] == {"enabled": True, "allow_redirects": "never"}
    assert "allowed_payment_method_types" not in p


def test_card_debit_with_its_type_succeeds(
    pay: PaymentActivities, sessions: sessionmaker[Session], faults_off: Any
) -> None:
    cid = _contract(sessions)
    res = pay.charge(_with(_input(cid), method_type="card"))
    assert res.status == "succeeded" and res.scheme == "card"
    assert len(faults_off.ledger(metadata_key="contract_id", metadata_value=cid)) == 1


def test_a_400_is_an_integration_error_not_a_decline(
    pay: PaymentActivities, sessions: sessionmaker[Session], faults_off: Any
) -> None:
    cid = _contract(sessions)
    faults_off.set_config(fault_400=1.0)
    res = pay.charge(_with(_input(cid), method_type="card"))
    faults_off.set_config(fault_400=0.0)
    assert res.status == "error", res
    assert res.failure_class is None  # no decline class: the customer is not involved
    assert res.code == "parameter_unknown" and res.http_status == 400
    assert res.request_id and res.request_id.startswith("req_")
    assert faults_off.ledger(metadata_key="contract_id", metadata_value=cid) == []
    with sessions() as s:
        row = s.scalar(select(PaymentAttempt).where(PaymentAttempt.contract_id == cid))
    assert row is not None and row.status == "error" and row.decline_code == "parameter_unknown"


def test_unknown_payment_method_is_an_integration_error(
    pay: PaymentActivities, sessions: sessionmaker[Session], faults_off: Any
) -> None:
    """A method Stripe does not know (a 404 `resource_missing`) is ours to sort out — the
    old code told the customer to replace their card and started the ladder."""
    cid = _contract(sessions)
    res = pay.charge(_with(_input(cid), payment_method="pm_doesnotexist123", method_type="card"))
    assert res.status == "error", res
    assert res.code == "resource_missing"
    assert res.failure_class is None


def _declined_card_intent(client: stripe.StripeClient, key: str, cid: str) -> str:
    """A PaymentIntent that *may* use card or SEPA, declined with a lost card: what the
    search and the poll find when the charge activity's own answer was lost."""
    try:
        client.v1.payment_intents.create(
            params={
                "amount": 9900,
                "currency": "eur",
                "allowed_payment_method_types": ["card", "sepa_debit"],
                "payment_method": "pm_card_visa_chargeDeclinedLostCard",
                "confirm": True,
                "off_session": True,
                "metadata": {"contract_id": cid, "idempotency_key": key},
            },
            options={"idempotency_key": key},
        )
    except stripe.CardError as exc:
        pi = exc.error.payment_intent if exc.error else None
        assert pi is not None
        return str(pi.id)
    pytest.fail("the lost card was not declined")


def test_declined_card_found_by_search_keeps_its_card_classification(
    pay: PaymentActivities,
    client: stripe.StripeClient,
    sessions: sessionmaker[Session],
    faults_off: Any,
) -> None:
    cid = _contract(sessions)
    key = f"{cid}:1:1"
    pi_id = _declined_card_intent(client, key, cid)
    # the row an earlier try left: this call must search Stripe for the key first
    with transaction(sessions) as s:
        s.add(
            PaymentAttempt(
                contract_id=cid,
                installment_seq=1,
                attempt=1,
                idempotency_key=key,
                amount=9900,
                currency="eur",
                status="submitting",
            )
        )
    res = pay.charge(_input(cid))  # no method type known: only the intent can tell
    assert res.payment_intent == pi_id
    assert res.status == "declined" and res.code == "lost_card"
    assert res.scheme == "card"
    assert res.failure_class == declines.classify("lost_card", "card") != declines.SOFT


def test_declined_card_found_by_poll_keeps_its_card_classification(
    pay: PaymentActivities, client: stripe.StripeClient, faults_off: Any
) -> None:
    cid = f"poll-{uuid.uuid4().hex[:8]}"
    pi_id = _declined_card_intent(client, f"{cid}:1:1", cid)
    res = pay.payment_status(PaymentStatusInput(cid, pi_id))
    assert res.status == "declined" and res.code == "lost_card" and res.scheme == "card"
    assert res.failure_class != declines.SOFT


def test_poll_of_an_unknown_intent_is_an_integration_error(
    pay: PaymentActivities, faults_off: Any
) -> None:
    res = pay.payment_status(PaymentStatusInput("c", "pi_doesnotexist123"))
    assert res.status == "error" and res.code == "resource_missing"
