"""Issue 10 items 5 and 6 on the time-skipping server: every money-moving Stripe webhook
ends in the right ledger state and events — a won dispute, a refund made in Stripe, a
dispute nine months after the contract finished, a revoked SEPA mandate.

Each event is the stand-in's own (a dispute opened and closed, a Dashboard refund, a revoked
mandate, through its control API), signed and POSTed to /v1/webhooks/stripe as Stripe
delivers it (`deliver`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import stripe

from domain.schedule import berlin_date
from tests.conftest import PLATFORM, SUPPORT, contract_body
from tests.stack import Stack, unique_email
from tests.workflows.ladder import interest
from tests.workflows.test_payments import deliver, sepa_mandate, timeline, until_settled_at_bank


def _client(stack: Stack) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": stack.standin.url})


async def _paid_card_contract(stack: Stack, email: str, **kw: Any) -> tuple[str, str]:
    cid, _ = await stack.start(email=email, **kw)
    await stack.env.sleep(timedelta(hours=1))
    (debit,) = stack.debits(cid)
    return cid, str(debit["payment_intent"])


async def test_a_won_dispute_settles_the_amount_again(stack: Stack) -> None:
    email = unique_email()
    cid, pi = await _paid_card_contract(stack, email, count=1)
    assert (await stack.contract(cid))["status"] == "completed"
    dispute = stack.standin.dispute(pi, reason="fraudulent")
    created = stack.standin.events("charge.dispute.created")[-1]
    disputed_on = await stack.today()
    await deliver(stack, created)
    await stack.env.sleep(timedelta(days=5))
    c = await stack.contract(cid)
    # the principal again, with § 288 interest from the day after the chargeback (the
    # seller had the money until then; issue 11), no costs for a card
    claim = c["claim"]
    assert c["status"] == "in_dunning" and claim["principal"] == 9900 and claim["costs"] == 0
    expected = interest(9900, disputed_on, claim["as_of"], stack.settings.base_rates)
    assert claim["interest"] == expected > 0 and claim["total"] == 9900 + expected
    # The seller's evidence wins: Stripe closes the dispute as won and reinstates the
    # funds (two events; the amount is settled once).
    stack.standin.close_dispute(dispute["id"], "won")
    await deliver(stack, stack.standin.events("charge.dispute.closed")[-1])
    await deliver(stack, stack.standin.events("charge.dispute.funds_reinstated")[-1])
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "completed", c
    assert c["schedule"][0]["status"] == "paid" and c["schedule"][0]["paid_amount"] == 9900
    assert c["claim"]["total"] == 0 and c["access"] == "granted"
    won = await timeline(stack, cid, "payment.dispute_won")
    assert len(won) == 1 and won[0]["data"]["amount"] == 9900
    assert won[0]["data"]["credit"] == 0
    assert len(stack.debits(cid)) == 1  # never re-debited


async def test_a_lost_dispute_keeps_the_claim(stack: Stack) -> None:
    cid, pi = await _paid_card_contract(stack, unique_email(), count=1)
    dispute = stack.standin.dispute(pi, reason="fraudulent")
    await deliver(stack, stack.standin.events("charge.dispute.created")[-1])
    stack.standin.close_dispute(dispute["id"], "lost")
    await deliver(stack, stack.standin.events("charge.dispute.closed")[-1])
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "in_dunning" and c["claim"]["total"] == 9900
    assert len(await timeline(stack, cid, "payment.dispute_lost")) == 1


async def test_a_dashboard_refund_of_a_one_off_purchase_ends_it(stack: Stack) -> None:
    cid, pi = await _paid_card_contract(stack, unique_email(), kind="one_off", amount=49700)
    c = await stack.contract(cid)
    assert c["status"] == "completed" and c["access"] == "granted"
    # The seller refunds in the Stripe Dashboard: Stripe sends charge.refunded.
    stack.standin.refund(payment_intent=pi)
    refunded = stack.standin.events("charge.refunded")[-1]
    await deliver(stack, refunded)
    await deliver(stack, refunded)  # redelivered: recorded once
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "cancelled" and c["access"] == "none", c
    assert c["schedule"][0]["status"] == "refunded"
    (refund,) = await timeline(stack, cid, "refund.created")
    assert refund["data"]["amount"] == 49700 and refund["data"]["source"] == "stripe"
    access = await stack.http.get(f"/v1/access/{c['customer_id']}/course-x", headers=PLATFORM)
    assert access.json()["access"] == "none"


async def test_a_partial_refund_of_an_installment_is_recorded_and_the_plan_goes_on(
    stack: Stack,
) -> None:
    cid, pi = await _paid_card_contract(stack, unique_email(), count=3)
    _client(stack).v1.refunds.create(params={"payment_intent": pi, "amount": 1900})
    await deliver(stack, stack.standin.events("charge.refunded")[-1])
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "active" and c["schedule"][0]["status"] == "paid"
    (refund,) = await timeline(stack, cid, "refund.created")
    assert refund["data"]["amount"] == 1900
    await stack.env.sleep(timedelta(days=32))
    assert len(stack.debits(cid)) == 2  # the next installment is debited as agreed


async def test_a_dispute_nine_months_after_the_contract_finished_reopens_it(
    stack: Stack,
) -> None:
    cid, pi = await _paid_card_contract(stack, unique_email(), count=1)
    await stack.env.sleep(timedelta(days=270))
    assert (await stack.contract(cid))["status"] == "completed"
    stack.standin.dispute(pi, reason="fraudulent")
    await deliver(stack, stack.standin.events("charge.dispute.created")[-1])
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "in_dunning" and c["schedule"][0]["status"] == "open"
    assert c["claim"]["total"] == 9900
    assert len(await timeline(stack, cid, "payment.disputed")) == 1


async def test_a_revoked_mandate_stops_sepa_debits_and_asks_for_a_new_method(
    stack: Stack,
) -> None:
    stack.standin.set_config(sepa_delay=0.2)
    try:
        customer = _client(stack).v1.customers.create(params={"name": "Erika Mustermann"})
        pm, _ = sepa_mandate(stack, "DE89370400440532013000", customer=str(customer.id))
        email = unique_email()
        cid, _ = await stack.start(
            count=3, payment_method=pm, stripe_customer=str(customer.id), email=email
        )
        await stack.env.sleep(timedelta(hours=1))
        await until_settled_at_bank(stack, cid)
        await stack.env.sleep(timedelta(days=1))
        assert len(stack.debits(cid)) == 1
        si = _client(stack).v1.setup_intents.list(params={"payment_method": pm, "limit": 1})
        mandate_id = str(si.data[0].mandate)
        # The debtor revokes the mandate at their bank; Stripe marks it inactive.
        stack.standin.revoke_mandate(mandate_id)
        await deliver(stack, stack.standin.events("mandate.updated")[-1])
        await stack.env.sleep(timedelta(hours=1))
        required = await timeline(stack, cid, "payment_method.required")
        assert len(required) == 1 and required[0]["data"]["code"] == "mandate_inactive"
        # the next installment falls due: not debited, the customer asked for a new method
        await stack.env.sleep(timedelta(days=31))
        assert len(stack.debits(cid)) == 1
        c = await stack.contract(cid)
        assert c["schedule"][1]["status"] == "open" and c["status"] == "in_dunning"
        failed = await timeline(stack, cid, "payment.failed")
        assert failed and failed[-1]["data"]["code"] == "payment_intent_mandate_invalid"
    finally:
        stack.standin.set_config(sepa_delay=2.0)


async def test_a_canceled_checkout_intent_fails_the_one_off_purchase(stack: Stack) -> None:
    """The platform created the PaymentIntent at checkout (Mahnwerk only watches it); it is
    canceled (abandoned, or in the Dashboard): `payment_intent.canceled` ends the watch."""
    client = _client(stack)
    customer = client.v1.customers.create(params={"name": "Erika Mustermann"})
    pi = client.v1.payment_intents.create(
        params={
            "amount": 49700,
            "currency": "eur",
            "customer": str(customer.id),
            "allowed_payment_method_types": ["card"],
        }
    )
    body = contract_body(kind="one_off", amount=49700, stripe_customer=str(customer.id))
    body["payment"]["payment_intent"] = pi.id
    resp = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid = body["contract_id"]
    await stack.env.sleep(timedelta(minutes=5))
    assert (await stack.contract(cid))["access"] == "none"
    stack.standin.cancel(pi.id, reason="abandoned")
    await deliver(stack, stack.standin.events("payment_intent.canceled")[-1])
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["access"] == "none" and c["schedule"][0]["status"] != "paid"
    (failed,) = await timeline(stack, cid, "payment.failed")
    assert failed["data"]["payment_intent"] == pi.id
    assert not stack.debits(cid)


async def test_a_residue_under_stripes_minimum_is_not_debited(stack: Stack) -> None:
    """A partial settlement leaves 30 cents of an installment: Stripe would refuse a debit
    under 50 cents (`amount_too_small`), so none is sent; the residue stays in the claim."""
    cid, _ = await stack.start(count=2, first_due=await _in_days(stack, 3))
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/settlements",
        json={"amount": 9870, "method": "bank_transfer", "reference": "Überweisung 1"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    await stack.env.sleep(timedelta(days=4))
    c = await stack.contract(cid)
    assert not stack.debits(cid)
    assert c["schedule"][0]["status"] == "open" and c["schedule"][0]["attempts"] == []
    (below,) = await timeline(stack, cid, "payment.below_minimum")
    assert below["data"] == {"installment": 1, "amount": 30, "minimum": 50}
    assert c["claim"]["principal"] == 30


async def _in_days(stack: Stack, days: int) -> str:
    return berlin_date(await stack.env.get_current_time() + timedelta(days=days))
