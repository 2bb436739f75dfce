"""Card and SEPA scenarios through Mahnwerk's own Stripe activities (`charge`,
`payment_status`, `describe_payment_method`), each run against the stand-in and — with
`STRIPE_LIVE_TEST_KEY` — against Stripe's test mode, with the same assertions: what the
stand-in answers must be what Stripe answers.

Test values are Stripe's documented ones (docs.stripe.com/testing: test cards by
PaymentMethod alias; SEPA test IBANs), listed in README's Stripe section."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from activities.methods import MethodActivities
from activities.payments import PaymentActivities
from domain import declines
from tests.activities.test_payments import _contract
from tests.stripe_live.conftest import Backend
from workflows.types import (
    ChargeInput,
    ChargeResult,
    PaymentMethodInfo,
    PaymentMethodLookup,
    PaymentStatusInput,
)


class Scenario:
    """One customer with one saved method, debited as Mahnwerk debits."""

    def __init__(self, backend: Backend, sessions: sessionmaker[Session]) -> None:
        self.backend = backend
        self.client = backend.client
        self.pay = PaymentActivities(self.client, sessions)
        self.methods = MethodActivities(self.client)
        self.contract_id = _contract(sessions)
        self.customer = str(
            self.client.v1.customers.create(
                params={"name": "Erika Mustermann", "email": "erika@example.org"}
            ).id
        )

    def card(self, alias: str) -> str:
        """Stripe's test card (`pm_card_…`) saved on the customer, as a platform does."""
        pm = self.client.v1.payment_methods.attach(alias, params={"customer": self.customer})
        return str(pm.id)

    def sepa(self, iban: str) -> str:
        """A SEPA method with a mandate the customer accepted online (SetupIntent)."""
        pm = self.client.v1.payment_methods.create(
            params={
                "type": "sepa_debit",
                "sepa_debit": {"iban": iban},
                "billing_details": {"name": "Erika Mustermann", "email": "erika@example.org"},
            }
        )
        self.client.v1.setup_intents.create(
            params={
                "customer": self.customer,
                "payment_method": pm.id,
                "allowed_payment_method_types": ["sepa_debit"],
                "confirm": True,
                "mandate_data": {
                    "customer_acceptance": {
                        "type": "online",
                        "online": {"ip_address": "203.0.113.7", "user_agent": "mahnwerk test"},
                    }
                },
            }
        )
        return str(pm.id)

    def describe(self, pm: str) -> PaymentMethodInfo:
        return self.methods.describe_payment_method(
            PaymentMethodLookup(self.contract_id, self.customer, pm)
        )

    def charge(self, pm: str, amount: int = 9900) -> ChargeResult:
        info = self.describe(pm)
        return self.pay.charge(
            ChargeInput(
                contract_id=self.contract_id,
                installment_seq=1,
                attempt=1,
                idempotency_key=f"{self.contract_id}:1:1:{uuid.uuid4().hex[:6]}",
                amount=amount,
                currency="eur",
                stripe_customer=self.customer,
                payment_method=pm,
                description="Mahnwerk contract test",
                method_type=info.kind,
                mandate=info.mandate,
            )
        )

    def settle(self, res: ChargeResult) -> ChargeResult:
        """Poll a `processing` debit as the workflow does, until Stripe decides."""
        assert res.payment_intent
        deadline = time.monotonic() + self.backend.sepa_timeout
        while res.status == "processing" and time.monotonic() < deadline:
            time.sleep(1 if self.backend.name == "standin" else 10)
            res = self.pay.payment_status(
                PaymentStatusInput(self.contract_id, res.payment_intent, "sepa")
            )
        return res


@pytest.fixture
def scenario(backend: Backend, sessions: sessionmaker[Session]) -> Scenario:
    return Scenario(backend, sessions)


def test_card_success(scenario: Scenario) -> None:
    res = scenario.charge(scenario.card("pm_card_visa"))
    assert res.status == "succeeded" and res.scheme == "card" and res.amount == 9900


@pytest.mark.parametrize(
    ("alias", "code", "failure_class"),
    [
        ("pm_card_visa_chargeDeclinedInsufficientFunds", "insufficient_funds", declines.SOFT),
        ("pm_card_visa_chargeDeclinedLostCard", "lost_card", None),
        ("pm_card_authenticationRequired", "authentication_required", declines.CUSTOMER_ACTION),
    ],
    ids=["soft", "hard", "authentication"],
)
def test_card_declines(scenario: Scenario, alias: str, code: str, failure_class: Any) -> None:
    res = scenario.charge(scenario.card(alias))
    assert res.status == "declined", res
    assert res.code == code and res.scheme == "card"
    expected = failure_class or declines.classify(code, "card")
    assert res.failure_class == expected
    if failure_class is None:
        assert declines.is_hard(expected)


def test_sepa_processing_then_succeeded(scenario: Scenario) -> None:
    pm = scenario.sepa("DE89370400440532013000")
    info = scenario.describe(pm)
    assert info.kind == "sepa_debit" and info.mandate and info.mandate_status == "active"
    assert info.last4 == "3000" and info.mandate_reference
    res = scenario.charge(pm)
    assert res.status == "processing" and res.scheme == "sepa"
    assert res.expected_debit_date  # the day Stripe collects
    assert scenario.settle(res).status == "succeeded"


def test_sepa_processing_then_failed(scenario: Scenario) -> None:
    res = scenario.charge(scenario.sepa("DE62370400440532013001"))
    assert res.status == "processing"
    final = scenario.settle(res)
    assert final.status == "declined" and final.scheme == "sepa"
    assert final.code and final.failure_class == declines.classify(final.code, "sepa")


def test_sepa_debit_disputed(scenario: Scenario) -> None:
    res = scenario.settle(scenario.charge(scenario.sepa("DE35370400440532013002")))
    assert res.status == "succeeded"
    assert res.payment_intent
    deadline = time.monotonic() + scenario.backend.sepa_timeout
    disputed = False
    while not disputed and time.monotonic() < deadline:
        pi = scenario.client.v1.payment_intents.retrieve(
            res.payment_intent, params={"expand": ["latest_charge"]}
        )
        disputed = bool(getattr(pi.latest_charge, "disputed", False))
        if not disputed:
            time.sleep(1 if scenario.backend.name == "standin" else 10)
    assert disputed, "no dispute opened for the DE35… test IBAN"


def test_a_400_is_never_a_decline(scenario: Scenario) -> None:
    """A method that does not exist is refused with a 4xx by Stripe and the stand-in alike:
    our integration error, never the customer's decline."""
    res = scenario.pay.charge(
        ChargeInput(
            contract_id=scenario.contract_id,
            installment_seq=1,
            attempt=1,
            idempotency_key=f"{scenario.contract_id}:1:1:{uuid.uuid4().hex[:6]}",
            amount=9900,
            currency="eur",
            stripe_customer=scenario.customer,
            payment_method="pm_doesnotexist123",
            description="Mahnwerk contract test",
            method_type="card",
        )
    )
    assert res.status == "error" and res.failure_class is None
    assert res.http_status in (400, 404) and res.request_id
