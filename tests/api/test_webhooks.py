"""POST /v1/webhooks/stripe, robustly (issue 5 item 5): forged signatures change nothing,
events for unknown PaymentIntents and unknown event types are acknowledged, and duplicate or
reordered deliveries of a SEPA debit's events end in the same state as in-order delivery.

The events are the stand-in's own, signed with the webhook secret as Stripe signs them."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import stripe

from tests.conftest import PLATFORM
from tests.stack import Stack, unique_email
from tests.workflows.test_payments import deliver, sepa_method, until_settled_at_bank

GOOD_IBAN = "DE89370400440532013000"


def _signed(stack: Stack, payload: str, secret: str | None = None) -> dict[str, str]:
    t = int(time.time())
    sig = stripe.WebhookSignature._compute_signature(
        f"{t}.{payload}", secret or stack.settings.stripe_webhook_secret.get_secret_value()
    )
    return {"Stripe-Signature": f"t={t},v1={sig}"}


async def _snapshot(stack: Stack, cid: str) -> tuple[dict[str, Any], list[str]]:
    contract = await stack.contract(cid)
    events = (await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)).json()
    return contract, [e["type"] for e in events["data"]]


def _events_of(stack: Stack, cid: str, type_: str) -> list[dict[str, Any]]:
    return [
        e
        for e in stack.standin.events(type_)
        if (e["data"]["object"].get("metadata") or {}).get("contract_id") == cid
    ]


async def _sepa_contract(stack: Stack) -> str:
    stack.standin.set_config(sepa_delay=0.2)
    cid, _ = await stack.start(count=1, payment_method=sepa_method(stack, GOOD_IBAN))
    await until_settled_at_bank(stack, cid)
    return cid


async def test_forged_signature_is_rejected_and_changes_nothing(stack: Stack) -> None:
    stack.standin.set_config(sepa_delay=30.0)  # the debit stays processing meanwhile
    try:
        cid, _ = await stack.start(count=1, payment_method=sepa_method(stack, GOOD_IBAN))
        await stack.env.sleep(timedelta(hours=1))
        before = await _snapshot(stack, cid)
        assert before[0]["schedule"][0]["status"] != "paid"
        processing = _events_of(stack, cid, "payment_intent.processing")[-1]
        forged = dict(processing, id="evt_forged_1", type="payment_intent.succeeded")
        forged["data"] = {"object": dict(processing["data"]["object"], status="succeeded")}
        payload = json.dumps(forged)
        for headers in (
            _signed(stack, payload, secret="whsec_attacker"),  # wrong secret
            {"Stripe-Signature": "t=1,v1=" + "0" * 64},  # garbage signature, stale time
            _signed(stack, payload.replace("succeeded", "succeeded ")),  # body tampered
        ):
            resp = await stack.http.post("/v1/webhooks/stripe", content=payload, headers=headers)
            assert resp.status_code == 400, resp.text
        missing = await stack.http.post("/v1/webhooks/stripe", content=payload)
        assert missing.status_code == 400, missing.text  # no Stripe-Signature header at all
        await stack.env.sleep(timedelta(minutes=10))
        assert await _snapshot(stack, cid) == before
        assert stack.debits(cid) == []
    finally:
        stack.standin.set_config(sepa_delay=2.0)


async def test_unknown_payment_intent_and_unknown_types_are_acknowledged(stack: Stack) -> None:
    cid, _ = await stack.start(count=1, email=unique_email())
    await stack.env.sleep(timedelta(hours=1))
    before = await _snapshot(stack, cid)
    pi = {"id": "pi_unknown_123", "object": "payment_intent", "status": "succeeded"}
    for n, (type_, obj) in enumerate(
        [
            ("payment_intent.succeeded", {**pi, "metadata": {}}),
            ("payment_intent.payment_failed", {**pi, "metadata": {"contract_id": "no-such"}}),
            ("charge.dispute.created", {"id": "dp_x", "payment_intent": "pi_unknown_123"}),
            ("invoice.finalized", {"id": "in_x", "object": "invoice"}),  # not ours: ignored
            ("made_up.event_type", {"id": "x_1"}),
        ]
    ):
        event: dict[str, Any] = {"id": f"evt_unknown_{n}_{cid}", "object": "event"}
        event.update(type=type_, data={"object": obj})
        await deliver(stack, event)  # asserts 200
        await deliver(stack, event)  # and again: a duplicate is acknowledged too
    await stack.env.sleep(timedelta(minutes=10))
    assert await _snapshot(stack, cid) == before


async def _final_state(stack: Stack, cid: str) -> tuple[str, str, int, int]:
    await stack.env.sleep(timedelta(days=1))
    contract, types = await _snapshot(stack, cid)
    return (
        contract["status"],
        contract["schedule"][0]["status"],
        types.count("payment.succeeded"),
        len(stack.debits(cid)),
    )


async def test_duplicate_and_reordered_sepa_events_end_like_in_order_delivery(
    stack: Stack,
) -> None:
    try:
        in_order = await _sepa_contract(stack)
        processing = _events_of(stack, in_order, "payment_intent.processing")
        succeeded = _events_of(stack, in_order, "payment_intent.succeeded")
        assert len(processing) == len(succeeded) == 1
        await deliver(stack, processing[0])
        await deliver(stack, succeeded[0])
        expected = await _final_state(stack, in_order)
        assert expected == ("completed", "paid", 1, 1)

        shuffled = await _sepa_contract(stack)
        processing = _events_of(stack, shuffled, "payment_intent.processing")
        succeeded = _events_of(stack, shuffled, "payment_intent.succeeded")
        await deliver(stack, succeeded[0])  # the outcome first,
        await deliver(stack, processing[0])  # then the stale processing,
        await deliver(stack, succeeded[0])  # then the outcome again
        assert await _final_state(stack, shuffled) == expected
        attempts = (await stack.contract(shuffled))["schedule"][0]["attempts"]
        assert [a["status"] for a in attempts] == ["succeeded"]
    finally:
        stack.standin.set_config(sepa_delay=2.0)


async def test_a_method_attached_as_the_default_is_debited_at_once(stack: Stack) -> None:
    """`payment_method.attached` for a method that already is the customer's default
    (attached and made default in one call): the open amount is debited with it; a
    `customer.updated` that changes other fields is acknowledged and ignored."""
    client = stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": stack.standin.url})
    email = unique_email()
    customer = client.v1.customers.create(params={"email": email})
    old = client.v1.payment_methods.attach(
        "pm_card_visa_chargeDeclinedLostCard", params={"customer": customer.id}
    )
    cid, _ = await stack.start(
        count=1, payment_method=old.id, stripe_customer=customer.id, email=email
    )
    await stack.env.sleep(timedelta(hours=2))
    assert (await stack.contract(cid))["schedule"][0]["status"] == "open"

    renamed = client.v1.customers.update(customer.id, params={"name": "Erika M."})
    update = [
        e
        for e in stack.standin.events("customer.updated")
        if e["data"]["object"]["id"] == renamed.id
    ][-1]
    payload = json.dumps(update)
    resp = await stack.http.post(
        "/v1/webhooks/stripe", content=payload, headers=_signed(stack, payload)
    )
    assert resp.json() == {"received": True, "duplicate": False, "ignored": True}

    new = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": new.id}}
    )
    attached = [
        e
        for e in stack.standin.events("payment_method.attached")
        if e["data"]["object"]["id"] == new.id
    ][-1]
    await deliver(stack, attached)  # by now it is the default: debited at once
    await stack.env.sleep(timedelta(hours=1))
    c = await stack.contract(cid)
    assert c["status"] == "completed"
    assert [d["payment_method"] for d in stack.debits(cid)] == [new.id]


async def test_a_card_outcome_still_being_recorded_is_not_signalled(stack: Stack) -> None:
    """Stripe's `payment_intent.succeeded` often arrives while the charge activity is still
    recording the answer it got (its attempt `submitting`). The API waits for the ledger and,
    once the attempt is recorded as succeeded, sends the workflow nothing: the activity's
    answer already told it (issue 17; a signal there cost a workflow task for nothing)."""
    import asyncio

    from sqlalchemy import update

    from core.db import make_engine, make_session_factory, transaction
    from core.models import PaymentAttempt

    cid, handle = await stack.start(count=1, email=unique_email())
    await stack.env.sleep(timedelta(hours=1))
    (event,) = _events_of(stack, cid, "payment_intent.succeeded")
    key = event["data"]["object"]["metadata"]["idempotency_key"]
    engine = make_engine(stack.settings.database_url)
    sessions = make_session_factory(engine)

    def set_status(status: str) -> None:
        with transaction(sessions) as s:
            s.execute(
                update(PaymentAttempt)
                .where(PaymentAttempt.idempotency_key == key)
                .values(status=status)
            )

    async def activity_records_its_answer() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(set_status, "succeeded")

    try:
        await asyncio.to_thread(set_status, "submitting")  # the activity is mid-way
        again = {**event, "id": f"evt_inflight_{cid}"}
        await asyncio.gather(deliver(stack, again), activity_records_its_answer())
    finally:
        engine.dispose()
    signals = [
        e
        async for e in handle.fetch_history_events()
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals == []
    assert (await stack.contract(cid))["schedule"][0]["status"] == "paid"
