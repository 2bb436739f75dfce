"""Connected accounts (Stripe Connect) and standalone accounts in the stand-in (issue 14):
objects live on one account, the `Stripe-Account` header is honoured as Stripe honours it,
events of a connected account carry `account` and go to the Connect endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import stripe

from stripe_standin.testing import StandinHandle

from .helpers import Receiver, wait_until

CONNECT_SECRET = "whsec_standin_connect_tests"


def _acct() -> str:
    return f"acct_1{uuid.uuid4().hex[:14]}"


@pytest.fixture
def connect_receiver(standin: StandinHandle) -> Iterator[Receiver]:
    rec = Receiver()
    standin.set_config(connect_webhook_url=rec.url, connect_webhook_secret=CONNECT_SECRET)
    yield rec
    standin.set_config(connect_webhook_url=None)
    rec.close()


def _debit(client: stripe.StripeClient, account: str | None) -> stripe.PaymentIntent:
    options: stripe.RequestOptions = {"stripe_account": account} if account else {}
    cus = client.v1.customers.create(params={"email": "e@example.org"}, options=options)
    pm = client.v1.payment_methods.attach(
        "pm_card_visa", params={"customer": cus.id}, options=options
    )
    return client.v1.payment_intents.create(
        params={
            "amount": 1500,
            "currency": "eur",
            "customer": cus.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "metadata": {"contract_id": f"c-{account}"},
        },
        options=options,
    )


def test_objects_live_on_their_account(standin: StandinHandle, client: stripe.StripeClient) -> None:
    a, b = _acct(), _acct()
    standin.create_account(a, creditor_id="DE98ZZZ09999999999")
    standin.create_account(b)
    pi = _debit(client, a)
    assert pi.status == "succeeded"
    # on A: found; with B's header, or on the platform itself: no such object (404)
    assert client.v1.payment_intents.retrieve(pi.id, options={"stripe_account": a}).id == pi.id
    for options in ({"stripe_account": b}, {}):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.payment_intents.retrieve(pi.id, options=options)  # type: ignore[arg-type]
        assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    # listing and search see the account's own objects only
    assert [p.id for p in client.v1.payment_intents.list(options={"stripe_account": a}).data] == [
        pi.id
    ]
    assert client.v1.payment_intents.list(options={"stripe_account": b}).data == []
    query: stripe.params.PaymentIntentSearchParams = {"query": f"metadata['contract_id']:'c-{a}'"}
    assert len(client.v1.payment_intents.search(params=query).data) == 0
    found = client.v1.payment_intents.search(params=query, options={"stripe_account": a})
    assert [p.id for p in found.data] == [pi.id]
    # the account itself: its own id and creditor id
    acct = client.v1.accounts.retrieve_current(options={"stripe_account": a})
    assert acct.id == a and acct.settings.sepa_debit_payments.creditor_id == "DE98ZZZ09999999999"  # type: ignore[union-attr]
    assert client.v1.accounts.retrieve_current().id == "acct_standin"
    # the ledger says which account the money went to
    assert [e["account"] for e in standin.ledger(payment_intent=pi.id)] == [a]
    assert standin.ledger(account=b) == []
    # an object of the platform is not on a connected account either
    own = _debit(client, None)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.retrieve(own.id, options={"stripe_account": a})


def test_an_account_not_connected_is_refused(
    standin: StandinHandle, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.PermissionError) as exc:
        client.v1.customers.create(options={"stripe_account": "acct_1NotConnected"})
    assert exc.value.http_status == 403 and "does not have access to account" in str(exc.value)
    # a standalone account's own key reaches its objects, never another account's
    own_key = f"sk_test_{uuid.uuid4().hex}"
    s = _acct()
    standin.create_account(s, type="standalone", api_key=own_key)
    seller = stripe.StripeClient(own_key, base_addresses={"api": standin.url})
    pi = _debit(seller, None)
    assert seller.v1.payment_intents.retrieve(pi.id).id == pi.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.retrieve(pi.id)  # the platform's key: another account
    a = _acct()
    standin.create_account(a)
    with pytest.raises(stripe.PermissionError):  # only a platform acts for others
        seller.v1.customers.create(options={"stripe_account": a})
    assert [e["account"] for e in standin.ledger(payment_intent=pi.id)] == [s]


def test_connected_account_events_carry_account_and_go_to_connect_endpoints(
    standin: StandinHandle,
    client: stripe.StripeClient,
    receiver: Receiver,
    connect_receiver: Receiver,
) -> None:
    a = _acct()
    standin.create_account(a)
    theirs = _debit(client, a)
    ours = _debit(client, None)

    def connect_events() -> list[stripe.Event]:
        with connect_receiver.lock:
            received = list(connect_receiver.received)
        return [stripe.Webhook.construct_event(b, sig, CONNECT_SECRET) for b, sig in received]

    def ids(events: list[stripe.Event]) -> set[str]:
        return {e.data.object.id for e in events if e.type == "payment_intent.succeeded"}

    wait_until(lambda: theirs.id in ids(connect_events()) and ours.id in ids(receiver.events()))
    assert ours.id not in ids(connect_events()) and theirs.id not in ids(receiver.events())
    for event in connect_events():
        assert event.to_dict()["account"] == a
    for event in receiver.events():
        assert "account" not in event.to_dict()
    # /v1/events is per account too
    listed = client.v1.events.list(
        params={"type": "payment_intent.succeeded"}, options={"stripe_account": a}
    )
    assert [e.data.object.id for e in listed.data] == [theirs.id]  # type: ignore[attr-defined]
    evt_id = listed.data[0].id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.retrieve(evt_id)
    assert {e["account"] for e in standin.events(account=a)} == {a}
