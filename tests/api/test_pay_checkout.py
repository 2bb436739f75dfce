# The SDK types response fields as Optional; the tests know which are set.
# mypy: disable-error-code="union-attr, index"
"""The payment page's online payment (issue 16 item 1): "pay now" opens a Stripe Checkout
Session (one per contract and claim as of today, however often it is clicked), the
customer pays on the stand-in's hosted page, and the webhooks record the payment once
(§ 367 allocation as a settlement), make the saved card the contract's method for the
installments to come, and unlock access. "Change the payment method" (mode `setup`)
replaces the method and the open amount is debited with it."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import httpx
import stripe

from tests.conftest import PLATFORM
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after, rungs
from tests.workflows.test_payments import deliver


def _token(stack: Stack, email: str) -> str:
    mahnung = next(m for m in stack.mails(email) if "Mahnung" in str(m["Subject"]))
    text = mahnung.get_body(preferencelist=("plain",)).get_content()
    found = re.findall(r"https?://\S+/pay/([A-Za-z0-9_.-]+)", text)
    assert found, text
    return found[0]


async def _in_dunning(stack: Stack, count: int) -> tuple[str, str, str, stripe.StripeClient]:
    """A contract with a Stripe customer whose card is lost, past its first Mahnung."""
    client = stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": stack.standin.url})
    email = unique_email()
    customer = client.v1.customers.create(params={"email": email})
    lost = client.v1.payment_methods.attach(
        "pm_card_visa_chargeDeclinedLostCard", params={"customer": customer.id}
    )
    await stack.pin_date(6, 15)
    ladder = rungs(date.fromisoformat(await stack.today()))
    cid, _ = await stack.start(
        count=count, payment_method=lost.id, stripe_customer=customer.id, email=email
    )
    await stack.sleep_until(after(ladder["mahnung_1"]))
    await stack.env.sleep(timedelta(hours=6))
    return cid, _token(stack, email), str(customer.id), client


def _events(stack: Stack, type_: str, session_or_pi: str) -> list[dict[str, Any]]:
    out = []
    for e in stack.standin.events(type_):
        obj = e["data"]["object"]
        if session_or_pi in (obj.get("id"), obj.get("payment_intent")):
            out.append(e)
    return out


async def test_pay_now_by_card_records_the_payment_once_and_saves_the_card(
    stack: Stack,
) -> None:
    cid, token, customer, client = await _in_dunning(stack, count=2)
    before = await stack.contract(cid)
    total = before["claim"]["total"]
    assert total > 9900 and before["status"] == "in_dunning"

    page = await stack.http.get(f"/pay/{token}")
    assert page.status_code == 200 and "Jetzt mit Karte oder SEPA-Lastschrift bezahlen" in page.text
    first = await stack.http.post(f"/pay/{token}/checkout", data={"mode": "payment"})
    again = await stack.http.post(f"/pay/{token}/checkout", data={"mode": "payment"})
    assert first.status_code == 303, first.text
    url = first.headers["location"]
    assert url.startswith(stack.standin.url) and again.headers["location"] == url  # one session
    session_id = url.rsplit("/", 1)[1]
    session = client.v1.checkout.sessions.retrieve(session_id)
    assert session.amount_total == total and session.customer == customer
    assert session.metadata["contract_id"] == cid and session.mode == "payment"
    bad = await stack.http.post(f"/pay/{token}/checkout", data={"mode": "subscription"})
    assert bad.status_code == 422

    paid = httpx.post(url, data={"method": "pm_card_visa"})
    assert paid.status_code == 303
    back = paid.headers["location"]
    assert back.endswith(f"/pay/{token}?checkout={session_id}")
    pending = await stack.http.get(back[back.index("/pay/") :])
    assert 'data-status="pending"' in pending.text  # the webhook has not arrived yet

    completed = _events(stack, "checkout.session.completed", session_id)
    pi_id = completed[0]["data"]["object"]["payment_intent"]
    succeeded = _events(stack, "payment_intent.succeeded", pi_id)
    assert len(completed) == 1 and len(succeeded) == 1
    # both events, twice each, in either order: one payment
    for event in (succeeded[0], completed[0], completed[0], succeeded[0]):
        await deliver(stack, event)
    await stack.env.sleep(timedelta(minutes=5))

    after_pay = await stack.contract(cid)
    assert after_pay["claim"]["total"] == 0
    assert after_pay["access"] == "granted" and after_pay["status"] == "active"
    events = (await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)).json()
    settled = [
        e
        for e in events["data"]
        if e["type"] == "settlement.recorded" and e["data"].get("reference") == pi_id
    ]
    assert len(settled) == 1 and settled[0]["data"]["amount"] == total, [
        (e["type"], e["data"]) for e in events["data"][-4:]
    ]
    done = await stack.http.get(back[back.index("/pay/") :])
    assert 'data-status="paid"' in done.text and "bezahlt" in done.text
    assert len([d for d in stack.standin.ledger() if d["payment_intent"] == pi_id]) == 1

    # the card saved at checkout pays the next installment
    card = client.v1.payment_intents.retrieve(pi_id).payment_method
    await stack.env.sleep(timedelta(days=35))
    final = await stack.contract(cid)
    assert final["schedule"][1]["status"] == "paid", final["schedule"]
    second = [d for d in stack.debits(cid) if d["payment_intent"] != pi_id]
    assert second and second[-1]["payment_method"] == card


async def test_change_the_payment_method_debits_the_open_amount_with_it(stack: Stack) -> None:
    cid, token, customer, client = await _in_dunning(stack, count=1)
    resp = await stack.http.post(f"/pay/{token}/checkout", data={"mode": "setup"})
    assert resp.status_code == 303, resp.text
    url = resp.headers["location"]
    session_id = url.rsplit("/", 1)[1]
    assert client.v1.checkout.sessions.retrieve(session_id).mode == "setup"
    assert httpx.post(url, data={"method": "pm_card_mastercard"}).status_code == 303
    saved = await stack.http.get(f"/pay/{token}?checkout={session_id}")
    assert 'data-status="saved"' in saved.text
    completed = _events(stack, "checkout.session.completed", session_id)
    assert stack.debits(cid) == []  # setting up charges nothing
    await deliver(stack, completed[0])
    await stack.env.sleep(timedelta(minutes=10))
    final = await stack.contract(cid)
    assert final["schedule"][0]["status"] == "paid", final["schedule"]
    assert len(stack.debits(cid)) == 1  # the open amount, once, with the new card
    si = client.v1.setup_intents.retrieve(completed[0]["data"]["object"]["setup_intent"])
    assert stack.debits(cid)[0]["payment_method"] == si.payment_method
