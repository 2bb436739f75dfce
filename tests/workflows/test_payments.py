"""SEPA's slow truth and chargebacks, on the time-skipping server with the real worker.

Stripe's webhooks are delivered to the API the way Stripe delivers them: the stand-in's own
event, signed with the webhook secret, POSTed to /v1/webhooks/stripe."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import stripe

from tests.conftest import PLATFORM
from tests.stack import Stack, unique_email


def sepa_method(stack: Stack, iban: str) -> str:
    """A SEPA method with a mandate, set up as a platform does at checkout (SetupIntent)."""
    return sepa_mandate(stack, iban)[0]


def sepa_mandate(stack: Stack, iban: str) -> tuple[str, str]:
    """(payment method id, mandate reference)."""
    client = stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": stack.standin.url})
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": iban},
            "billing_details": {"name": "Erika Mustermann", "email": "erika@example.org"},
        }
    )
    si = client.v1.setup_intents.create(
        params={  # type: ignore[arg-type]
            "payment_method": pm.id,
            "payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
        }
    )
    assert si.mandate
    mandate = client.v1.mandates.retrieve(str(si.mandate))
    sepa = mandate.payment_method_details.sepa_debit
    assert sepa is not None
    return str(pm.id), str(sepa.reference)


async def deliver(stack: Stack, event: dict[str, Any]) -> None:
    """POST a stand-in event to the API, signed as Stripe signs webhooks."""
    payload = json.dumps(event)
    t = int(time.time())
    sig = stripe.WebhookSignature._compute_signature(
        f"{t}.{payload}", stack.settings.stripe_webhook_secret
    )
    resp = await stack.http.post(
        "/v1/webhooks/stripe", content=payload, headers={"Stripe-Signature": f"t={t},v1={sig}"}
    )
    assert resp.status_code == 200, resp.text


async def until_settled_at_bank(stack: Stack, cid: str) -> None:
    """SEPA outcomes come after a real-time delay in the stand-in: wait for it before
    skipping workflow time, so the poll that follows sees the bank's answer."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = stack.standin.events()
        done = [
            e
            for e in events
            if e["type"] in ("payment_intent.succeeded", "payment_intent.payment_failed")
            and e["data"]["object"]["metadata"].get("contract_id") == cid
        ]
        if done:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the stand-in never settled the SEPA debit")


async def test_sepa_chargeback_in_week_5_reopens_with_costs_and_locks(stack: Stack) -> None:
    stack.standin.set_config(sepa_delay=0.2)
    email = unique_email()
    cid, handle = await stack.start(
        count=1, payment_method=sepa_method(stack, "DE89370400440532013000"), email=email
    )
    # The debit goes `processing`; its webhook is not delivered here, so the workflow's
    # poll finds the success (the fallback for a lost webhook).
    await until_settled_at_bank(stack, cid)
    await stack.env.sleep(timedelta(days=1))
    c = await stack.contract(cid)
    assert c["status"] == "completed" and c["schedule"][0]["status"] == "paid"
    pi = c["schedule"][0]["attempts"][0]["payment_intent"]
    assert [d["payment_intent"] for d in stack.debits(cid)] == [pi]

    # week 5: the debtor's bank reclaims the debit (MD06, within 8 weeks)
    await stack.env.sleep(timedelta(weeks=5))
    stack.standin.dispute(pi, reason="debit_not_authorized")
    event = stack.standin.events("charge.dispute.created")[-1]
    await deliver(stack, event)
    await deliver(stack, event)  # Stripe may deliver twice: processed once
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "in_dunning" and c["schedule"][0]["status"] == "open"
    assert c["claim"]["total"] == 9900 + 350  # the principal again, plus return-debit costs
    events = (await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)).json()
    disputes = [e for e in events["data"] if e["type"] == "payment.disputed"]
    assert len(disputes) == 1 and disputes[0]["data"]["return_debit_costs"] == 350

    # the ladder runs from the chargeback: the first Mahnung (D+14) locks access
    await stack.env.sleep(timedelta(days=15))
    c = await stack.contract(cid)
    assert c["access"] == "locked" and c["dunning"]["stage"] == "mahnung_1"
    subjects = [str(m["Subject"]) for m in stack.mails(email)]
    assert len(subjects) == 4, subjects
    # the debit was announced first; then reminder, first Mahnung, access locked
    assert subjects[0].startswith("Ankündigung Ihrer SEPA-Lastschrift über 99,00 €")
    stack.standin.set_config(sepa_delay=2.0)


async def test_sepa_failure_after_processing_opens_dunning(stack: Stack) -> None:
    stack.standin.set_config(sepa_delay=0.2)
    email = unique_email()
    cid, _ = await stack.start(
        count=1, payment_method=sepa_method(stack, "DE62370400440532013001"), email=email
    )
    await until_settled_at_bank(stack, cid)
    await stack.env.sleep(timedelta(days=4))
    c = await stack.contract(cid)
    attempts = c["schedule"][0]["attempts"]
    assert attempts[0]["status"] == "declined"
    assert c["status"] == "in_dunning" and c["dunning"]["stage"] == "reminder"
    assert c["claim"]["total"] == 9900 + 350  # the returned debit's bank costs join the claim
    assert stack.debits(cid) == []
    stack.standin.set_config(sepa_delay=2.0)


async def test_authentication_required_sends_a_link_then_a_new_card_pays(stack: Stack) -> None:
    client = stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": stack.standin.url})
    email = unique_email()
    customer = client.v1.customers.create(params={"email": email})
    pm = client.v1.payment_methods.attach(
        "pm_card_authenticationRequired", params={"customer": customer.id}
    )
    cid, _ = await stack.start(
        count=1, payment_method=pm.id, stripe_customer=customer.id, email=email
    )
    await stack.env.sleep(timedelta(days=2))
    c = await stack.contract(cid)
    attempts = c["schedule"][0]["attempts"]
    # off-session the bank wants the customer: no retries, a link to authenticate at once
    assert [a["decline_code"] for a in attempts] == ["authentication_required"]
    subjects = [str(m["Subject"]) for m in stack.mails(email)]
    assert subjects and subjects[0].startswith("Bitte bestätigen Sie Ihre Zahlung"), subjects
    text = stack.mails(email)[0].get_body(preferencelist=("plain",)).get_content()
    assert f"/pay/{cid}" in text  # the payment link

    # the customer adds a new card: Stripe's payment_method.attached webhook reaches us and
    # the open amount is debited with it right away
    new = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    attached = [
        e
        for e in stack.standin.events("payment_method.attached")
        if e["data"]["object"]["id"] == new.id
    ]
    await deliver(stack, attached[-1])
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "completed" and c["schedule"][0]["status"] == "paid"
    assert [d["payment_method"] for d in stack.debits(cid)] == [new.id]


async def test_debits_run_from_the_stripe_queue(stack: Stack) -> None:
    """Stripe's activities are scheduled on the internal `<queue>-stripe` queue
    (workflows/queues.py), so a debit waiting for the rate limit never holds one of the
    slots the ledger writes need; the ledger stays on the public queue."""
    cid, handle = await stack.start(count=1, email=unique_email())
    await stack.env.sleep(timedelta(hours=1))
    assert len(stack.debits(cid)) == 1
    queues: dict[str, set[str]] = {}
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            queues.setdefault(attrs.activity_type.name, set()).add(attrs.task_queue.name)
    main = stack.settings.task_queue
    assert queues["charge"] == {f"{main}-stripe"}
    assert queues["sync_ledger"] == {main}
