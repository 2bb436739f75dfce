# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined, typeddict-item"
"""Lists, search, expand, refunds and events."""

from __future__ import annotations

import pytest
import stripe

from stripe_standin.testing import StandinHandle


def _paid(client: stripe.StripeClient, customer: str | None = None, **metadata: str) -> str:
    params: dict[str, object] = {
        "amount": 1500,
        "currency": "eur",
        "payment_method": "pm_card_visa",
        "allowed_payment_method_types": ["card"],
        "confirm": True,
        "metadata": metadata,
    }
    if customer:
        params["customer"] = customer
        params["payment_method"] = client.v1.payment_methods.attach(
            "pm_card_visa", params={"customer": customer}
        ).id
    return client.v1.payment_intents.create(params=params).id  # type: ignore[arg-type]


def test_search_by_metadata(client: stripe.StripeClient) -> None:
    a = _paid(client, contract_id="c-1", dunning_step="1")
    b = _paid(client, contract_id="c-1", dunning_step="2")
    _paid(client, contract_id="c-2", dunning_step="1")

    result = client.v1.payment_intents.search(params={"query": "metadata['contract_id']:'c-1'"})
    assert result.object == "search_result"
    assert result.has_more is False and result.next_page is None
    assert [p.id for p in result.data] == [b, a]  # newest first

    both = client.v1.payment_intents.search(
        params={"query": "metadata['contract_id']:'c-1' AND metadata[\"dunning_step\"]:'2'"}
    )
    assert [p.id for p in both.data] == [b]
    status = client.v1.payment_intents.search(
        params={"query": "status:'succeeded' AND metadata['contract_id']:'c-2'"}
    )
    assert len(status.data) == 1
    either = client.v1.payment_intents.search(
        params={"query": "metadata['dunning_step']:'2' OR metadata['contract_id']:'c-2'"}
    )
    assert len(either.data) == 2
    amount = client.v1.payment_intents.search(params={"query": "amount>=1500 AND amount<1600"})
    assert len(amount.data) == 3
    assert client.v1.payment_intents.search(params={"query": "metadata['x']:'y'"}).data == []


def test_search_pagination_and_bad_query(client: stripe.StripeClient) -> None:
    ids = [_paid(client, batch="b") for _ in range(5)]
    pages = client.v1.payment_intents.search(params={"query": "metadata['batch']:'b'", "limit": 2})
    assert pages.has_more and pages.next_page
    seen = [p.id for p in pages.auto_paging_iter()]
    assert seen == list(reversed(ids))
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.search(params={"query": "metadata['a']:'b' AND OR"})
    assert exc.value.param == "query"


def test_list_with_customer_and_cursor(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    mine = [_paid(client, customer=cus.id) for _ in range(3)]
    _paid(client)
    first = client.v1.payment_intents.list(params={"customer": cus.id, "limit": 2})
    assert first.object == "list" and first.has_more is True
    assert [p.id for p in first.data] == [mine[2], mine[1]]
    rest = client.v1.payment_intents.list(
        params={"customer": cus.id, "limit": 2, "starting_after": first.data[-1].id}
    )
    assert [p.id for p in rest.data] == [mine[0]] and rest.has_more is False
    assert len(list(client.v1.payment_intents.list(params={"limit": 1}).auto_paging_iter())) == 4


def test_expand(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    pi_id = _paid(client, customer=cus.id)
    pi = client.v1.payment_intents.retrieve(
        pi_id, params={"expand": ["latest_charge", "customer", "payment_method"]}
    )
    assert pi.latest_charge.object == "charge"
    assert pi.customer.id == cus.id
    assert pi.payment_method.card.last4 == "4242"
    listed = client.v1.payment_intents.list(params={"expand": ["data.latest_charge"]})
    assert listed.data[0].latest_charge.status == "succeeded"


def test_refunds(client: stripe.StripeClient, standin: StandinHandle) -> None:
    pi_id = _paid(client, contract_id="c-5")
    partial = client.v1.refunds.create(params={"payment_intent": pi_id, "amount": 500})
    assert partial.object == "refund" and partial.status == "succeeded" and partial.amount == 500
    assert client.v1.refunds.retrieve(partial.id).payment_intent == pi_id
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi_id, "amount": 5000})
    assert exc.value.param == "amount"
    rest = client.v1.refunds.create(params={"payment_intent": pi_id})
    assert rest.amount == 1000
    charge = client.v1.charges.retrieve(client.v1.payment_intents.retrieve(pi_id).latest_charge)
    assert charge.refunded is True and charge.amount_refunded == 1500
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi_id})
    assert exc.value.code == "charge_already_refunded"
    assert standin.ledger()[0]["amount_refunded"] == 1500
    assert len(standin.events("charge.refunded")) == 2


def test_refund_needs_a_successful_charge(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 900, "currency": "eur"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={"payment_intent": pi.id})


def test_events_list_and_retrieve(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    _paid(client)
    events = client.v1.events.list(params={"type": "customer.created"})
    assert [e.data.object.id for e in events.data] == [cus.id]
    all_events = client.v1.events.list(params={"limit": 100})
    assert {e.type for e in all_events.data} >= {
        "customer.created",
        "payment_method.attached",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    }
    first = client.v1.events.list(params={"limit": 2})
    second = client.v1.events.list(params={"limit": 2, "starting_after": first.data[-1].id})
    assert not {e.id for e in first.data} & {e.id for e in second.data}
    wildcard = client.v1.events.list(params={"type": "payment_intent.*"})
    assert {e.type for e in wildcard.data} == {"payment_intent.created", "payment_intent.succeeded"}
    evt = client.v1.events.retrieve(events.data[0].id)
    assert evt.type == "customer.created" and evt.pending_webhooks == 0


def test_update_payment_intent_metadata(client: stripe.StripeClient) -> None:
    pi_id = _paid(client, contract_id="c-3")
    pi = client.v1.payment_intents.update(pi_id, params={"metadata": {"note": "x"}})
    assert pi.metadata.to_dict() == {"contract_id": "c-3", "note": "x"}
    found = client.v1.payment_intents.search(params={"query": "metadata['note']:'x'"})
    assert [p.id for p in found.data] == [pi_id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.update(pi_id, params={"amount": 100})
