# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined, typeddict-item"
# mypy: disable-error-code="typeddict-unknown-key"
"""The strict stand-in: every request checked against the `stripe` SDK's parameter types, and
Stripe's confirmation rules, refused with Stripe's status, error `type`, `code` and `param`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import time
from importlib import import_module
from typing import Any

import httpx
import pytest
import stripe

from stripe_standin import sdkparams
from stripe_standin.errors import StripeError
from stripe_standin.routes import API_ROUTES
from stripe_standin.testing import StandinHandle

from .helpers import API_KEY

SEPA_IBAN = "DE89370400440532013000"


def _refused(exc: pytest.ExceptionInfo[stripe.StripeError]) -> tuple[Any, Any, Any, Any]:
    error = exc.value.error
    return exc.value.http_status, error.type, error.code, error.param


def _customer_card(client: stripe.StripeClient, magic: str = "pm_card_visa") -> tuple[str, str]:
    cus = client.v1.customers.create(params={"email": "kunde@example.de"})
    pm = client.v1.payment_methods.attach(magic, params={"customer": cus.id})
    return cus.id, pm.id


def _card_debit(cus: str | None, pm: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "amount": 4900,
        "currency": "eur",
        "payment_method": pm,
        "allowed_payment_method_types": ["card"],
        "confirm": True,
        "off_session": True,
    }
    if cus is not None:
        params["customer"] = cus
    params.update(extra)
    return params


def _sepa_customer(client: stripe.StripeClient, iban: str = SEPA_IBAN) -> tuple[str, str]:
    cus = client.v1.customers.create(params={"email": "kunde@example.de"})
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": iban},
            "billing_details": {"name": "Kunde", "email": "kunde@example.de"},
        }
    )
    client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    return cus.id, pm.id


def _setup_mandate(client: stripe.StripeClient, cus: str, pm: str) -> str:
    si = client.v1.setup_intents.create(
        params={
            "customer": cus,
            "payment_method": pm,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {"customer_acceptance": {"type": "offline"}},
        }
    )
    assert si.mandate
    return str(si.mandate)


def _sepa_debit(cus: str, pm: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "amount": 2500,
        "currency": "eur",
        "customer": cus,
        "payment_method": pm,
        "allowed_payment_method_types": ["sepa_debit"],
        "confirm": True,
        "off_session": True,
    }
    params.update(extra)
    return params


# --- the parameter check ------------------------------------------------------------------


def test_unknown_and_misplaced_parameters(client: stripe.StripeClient) -> None:
    cus, pm = _customer_card(client)
    for params, param in (
        (_card_debit(cus, pm, foo="1"), "foo"),
        (
            _card_debit(cus, pm, payment_method_options={"card": {"foo": "x"}}),
            "payment_method_options[card][foo]",
        ),
        # `iban` belongs under `sepa_debit` of a PaymentMethod, not of the PaymentIntent
        (
            _card_debit(cus, pm, payment_method_options={"sepa_debit": {"iban": SEPA_IBAN}}),
            "payment_method_options[sepa_debit][iban]",
        ),
        # not a parameter at the API version stripe 16 pins (allowed_payment_method_types is)
        (_card_debit(cus, pm, payment_method_types=["card"]), "payment_method_types"),
    ):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.payment_intents.create(params=params)
        assert _refused(exc) == (400, "invalid_request_error", "parameter_unknown", param)
        assert exc.value.user_message == f"Received unknown parameter: {param}"
        assert exc.value.error.doc_url.endswith("/parameter-unknown")
    # Refused before anything ran: nothing was created.
    assert client.v1.payment_intents.list().data == []


def test_invalid_values(client: stripe.StripeClient, standin: StandinHandle) -> None:
    cus, pm = _customer_card(client)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=_card_debit(cus, pm, capture_method="later"))
    assert _refused(exc) == (400, "invalid_request_error", None, "capture_method")
    assert exc.value.user_message == (
        "Invalid capture_method: must be one of automatic, automatic_async, or manual"
    )
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(
            params={
                "amount": 4900,
                "currency": "eur",
                "automatic_payment_methods": {"allow_redirects": "never"},
            }
        )
    assert _refused(exc) == (
        400,
        "invalid_request_error",
        "parameter_missing",
        "automatic_payment_methods[enabled]",
    )
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=_card_debit(cus, pm, description=""))
    assert _refused(exc) == (
        400,
        "invalid_request_error",
        "parameter_invalid_empty",
        "description",
    )
    raw = httpx.post(
        f"{standin.url}/v1/payment_intents",
        data={"amount": "49,00", "currency": "eur"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["code"] == "parameter_invalid_integer"
    assert raw.json()["error"]["param"] == "amount"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params={"currency": "eur"})
    assert _refused(exc) == (400, "invalid_request_error", "parameter_missing", "amount")


def test_clearing_values_and_expand_are_accepted(client: stripe.StripeClient) -> None:
    cus, pm = _customer_card(client)
    pi = client.v1.payment_intents.create(
        params=_card_debit(cus, pm, metadata={"contract_id": "c-1", "note": "x"}),
        options={"idempotency_key": "strict-expand"},
    )
    updated = client.v1.payment_intents.update(pi.id, params={"metadata": {"note": ""}})
    assert updated.metadata.to_dict() == {"contract_id": "c-1"}
    expanded = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge"]})
    assert expanded.latest_charge.object == "charge"


def test_setup_intent_payment_method_types_is_unknown(client: stripe.StripeClient) -> None:
    """What core/demo.py sends today: not a SetupIntent parameter at the pinned version."""
    cus, pm = _sepa_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.setup_intents.create(
            params={
                "customer": cus,
                "payment_method": pm,
                "payment_method_types": ["sepa_debit"],
                "confirm": True,
            }
        )
    assert _refused(exc) == (
        400,
        "invalid_request_error",
        "parameter_unknown",
        "payment_method_types",
    )


def _sdk_routes() -> dict[tuple[str, str], str]:
    """(METHOD, path with `{id}`) -> the params type the SDK's service method takes."""
    modules = {
        "stripe._customer_service": "CustomerService",
        "stripe._customer_payment_method_service": "CustomerPaymentMethodService",
        "stripe._payment_method_service": "PaymentMethodService",
        "stripe._payment_intent_service": "PaymentIntentService",
        "stripe._setup_intent_service": "SetupIntentService",
        "stripe._charge_service": "ChargeService",
        "stripe._mandate_service": "MandateService",
        "stripe._dispute_service": "DisputeService",
        "stripe._refund_service": "RefundService",
        "stripe._event_service": "EventService",
        "stripe._account_service": "AccountService",
        "stripe.checkout._session_service": "SessionService",
    }
    found: dict[tuple[str, str], str] = {}
    for module, name in modules.items():
        service = getattr(import_module(module), name)
        for attr, fn in vars(service).items():
            if attr.startswith("_") or attr.endswith("_async") or not callable(fn):
                continue
            source = inspect.getsource(fn)
            route = re.search(r'"(get|post|delete)",\s*"(/v1/[^"]+)"', source)
            params = re.search(r'params: (?:Optional\[)?"(\w+Params)"', source)
            if route and params:
                path = re.sub(r"\{\w+\}", "{id}", route.group(2))
                # types outside `stripe.params` itself by their package: `checkout.…`
                package = module.split(".")[1] + "." if module.count(".") > 1 else ""
                found[(route.group(1).upper(), path)] = package + params.group(1)
    return found


def test_every_route_is_mapped_to_the_sdk_params_type_of_its_service() -> None:
    sdk = _sdk_routes()
    assert len(API_ROUTES) >= 30
    for route in API_ROUTES:
        # e.g. CustomerService.list_payment_methods -> CustomerPaymentMethodListParams
        key = (route.method, route.path)
        assert key in sdk, f"{key} is not an endpoint of the stripe SDK"
        assert route.params_type == sdk[key], key
        assert sdkparams.known_params(route.params_type) is not None


@pytest.mark.parametrize("route", API_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_refuses_an_unknown_parameter(standin: StandinHandle, route: Any) -> None:
    url = standin.url + route.path.replace("{id}", "x_1")
    headers = {"Authorization": f"Bearer {API_KEY}"}
    bogus = {"standin_bogus": "1"}
    if route.method == "POST":
        response = httpx.post(url, data=bogus, headers=headers)
    else:
        response = httpx.request(route.method, url, params=bogus, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "parameter_unknown",
        "standin_bogus",
    )
    assert error["message"] == "Received unknown parameter: standin_bogus"


# --- confirmation rules -------------------------------------------------------------------


def test_automatic_payment_methods_need_a_return_url_or_no_redirects(
    client: stripe.StripeClient,
) -> None:
    cus, pm = _customer_card(client)
    bare = {k: v for k, v in _card_debit(cus, pm).items() if k != "allowed_payment_method_types"}
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=bare)
    assert _refused(exc) == (400, "invalid_request_error", "parameter_missing", "return_url")
    assert exc.value.user_message.startswith("A `return_url` must be specified")
    no_redirects = {
        **bare,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    assert client.v1.payment_intents.create(params=no_redirects).status == "succeeded"
    with_url = {**bare, "return_url": "https://mahnwerk.example/return"}
    assert client.v1.payment_intents.create(params=with_url).status == "succeeded"
    # confirming later follows the same rule
    pi = client.v1.payment_intents.create(
        params={"amount": 900, "currency": "eur", "customer": cus}
    )
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.confirm(pi.id, params={"payment_method": pm, "off_session": True})
    assert _refused(exc)[2:] == ("parameter_missing", "return_url")


def test_off_session_method_must_be_the_customers(client: stripe.StripeClient) -> None:
    cus, pm = _customer_card(client)
    other, _ = _customer_card(client)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=_card_debit(other, pm))
    assert _refused(exc) == (400, "invalid_request_error", None, "payment_method")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=_card_debit(None, pm))
    assert _refused(exc) == (400, "invalid_request_error", None, "payment_method")
    assert "pass the Customer ID" in exc.value.user_message
    unattached = client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": "tok_visa"}}
    )
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=_card_debit(cus, unattached.id))
    assert _refused(exc) == (400, "invalid_request_error", None, "payment_method")
    assert "not attached to the Customer" in exc.value.user_message
    assert client.v1.payment_intents.create(params=_card_debit(cus, pm)).status == "succeeded"


def test_amount_bounds(client: stripe.StripeClient) -> None:
    cus, pm = _customer_card(client)
    for amount, currency, code, message in (
        (49, "eur", "amount_too_small", "Amount must be at least €0.50 eur"),
        (29, "gbp", "amount_too_small", "Amount must be at least £0.30 gbp"),
        (100_000_000, "eur", "amount_too_large", "Amount must be no more than €999,999.99"),
    ):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.payment_intents.create(
                params=_card_debit(cus, pm, amount=amount, currency=currency)
            )
        assert _refused(exc) == (400, "invalid_request_error", code, "amount")
        assert exc.value.user_message == message
    assert client.v1.payment_intents.create(params=_card_debit(cus, pm, amount=50)).status == (
        "succeeded"
    )
    big = client.v1.payment_intents.create(params=_card_debit(cus, pm, amount=99_999_999))
    assert big.status == "succeeded"


def test_sepa_debit_needs_a_mandate(client: stripe.StripeClient) -> None:
    cus, pm = _sepa_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=_sepa_debit(cus, pm))
    assert _refused(exc) == (400, "invalid_request_error", "parameter_missing", "mandate")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=_sepa_debit(cus, pm, mandate="mandate_nope"))
    assert _refused(exc) == (404, "invalid_request_error", "resource_missing", "mandate")
    with pytest.raises(stripe.InvalidRequestError) as exc:  # `mandate` only with confirm
        client.v1.payment_intents.create(
            params=_sepa_debit(cus, pm, confirm=False, off_session=None, mandate="m")
        )
    assert _refused(exc) == (400, "invalid_request_error", None, "mandate")

    mandate = _setup_mandate(client, cus, pm)
    pi = client.v1.payment_intents.create(params=_sepa_debit(cus, pm, mandate=mandate))
    assert pi.status == "processing"
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.payment_method_details.sepa_debit.mandate == mandate
    # Stripe holds the SetupIntent's mandate for the method: later debits may omit it.
    held = client.v1.payment_intents.create(params=_sepa_debit(cus, pm))
    assert (
        client.v1.charges.retrieve(held.latest_charge).payment_method_details.sepa_debit.mandate
        == mandate
    )

    other_cus, other_pm = _sepa_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as exc:  # another method's mandate
        client.v1.payment_intents.create(params=_sepa_debit(other_cus, other_pm, mandate=mandate))
    assert _refused(exc) == (400, "invalid_request_error", None, "mandate")


def test_revoked_mandate_is_refused(client: stripe.StripeClient, standin: StandinHandle) -> None:
    cus, pm = _sepa_customer(client)
    mandate = _setup_mandate(client, cus, pm)
    revoked = standin.revoke_mandate(mandate)
    assert revoked["status"] == "inactive"
    assert client.v1.mandates.retrieve(mandate).status == "inactive"
    updated = standin.events(type="mandate.updated")
    assert [e["data"]["object"]["id"] for e in updated] == [mandate]
    assert updated[0]["data"]["previous_attributes"] == {"status": "active"}
    for params in (_sepa_debit(cus, pm), _sepa_debit(cus, pm, mandate=mandate)):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.payment_intents.create(params=params)
        assert _refused(exc) == (400, "invalid_request_error", None, "mandate")
        assert "inactive" in exc.value.user_message
    assert standin.ledger() == []


def test_setup_future_usage_saves_a_mandate_for_later_debits(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": SEPA_IBAN},
            "billing_details": {"name": "K"},
        }
    )
    # on session: the customer accepts the mandate while paying the first time
    first = _sepa_debit(cus.id, pm.id, setup_future_usage="off_session")
    del first["off_session"]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params=first)
    assert _refused(exc) == (400, "invalid_request_error", "parameter_missing", "mandate_data")
    assert exc.value.user_message == (
        "When confirming a PaymentIntent with a `sepa_debit` PaymentMethod and "
        "`setup_future_usage`, `mandate_data` is required."
    )
    first["mandate_data"] = {
        "customer_acceptance": {
            "type": "online",
            "online": {"ip_address": "203.0.113.9", "user_agent": "pytest"},
        }
    }
    pi = client.v1.payment_intents.create(params=first)
    mandate_id = client.v1.charges.retrieve(
        pi.latest_charge
    ).payment_method_details.sepa_debit.mandate
    mandate = client.v1.mandates.retrieve(mandate_id)
    assert (mandate.type, mandate.status, mandate.payment_method) == ("multi_use", "active", pm.id)
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id  # saved
    later = client.v1.payment_intents.create(params=_sepa_debit(cus.id, pm.id))
    assert (
        client.v1.charges.retrieve(later.latest_charge).payment_method_details.sepa_debit.mandate
        == mandate_id
    )


# --- rate limits, search lag --------------------------------------------------------------


def test_per_endpoint_and_global_rate_limits(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    cus, pm = _customer_card(client)
    standin.create_account("acct_other")  # connected to the platform (Stripe Connect)
    standin.set_config(
        rate_limit=True, rate_limit_endpoint=3, rate_limit_search=2, rate_limit_global=6
    )
    refused_before = standin.health()["rate_limited"]
    try:
        for _ in range(3):
            client.v1.payment_intents.create(params=_card_debit(cus, pm))
        with pytest.raises(stripe.RateLimitError) as exc:
            client.v1.payment_intents.create(
                params=_card_debit(cus, pm), options={"idempotency_key": "rl-1"}
            )
        assert exc.value.http_status == 429 and exc.value.error.code == "rate_limit"
        assert exc.value.headers["Stripe-Should-Retry"] == "true"
        # another endpoint has its own budget, within the global one
        query = {"query": "metadata['contract_id']:'x'"}
        client.v1.payment_intents.search(params=query)
        client.v1.payment_intents.search(params=query)
        with pytest.raises(stripe.RateLimitError):
            client.v1.payment_intents.search(params=query)  # Search: its own, lower limit
        client.v1.customers.retrieve(cus)  # 6th admitted request: the global budget is spent
        with pytest.raises(stripe.RateLimitError):
            client.v1.charges.list()
        # the health endpoint counts the refusals per endpoint (bench.due_wave reports them)
        refused = standin.health()["rate_limited"]
        grown = {k: v - refused_before.get(k, 0) for k, v in refused.items()}
        assert {k: v for k, v in grown.items() if v} == {
            "POST /v1/payment_intents": 1,
            "GET /v1/payment_intents/search": 1,
            "GET /v1/charges": 1,
        }
        # another account (Stripe-Account) has its own buckets
        other = client.v1.customers.create(options={"stripe_account": "acct_other"})
        assert other.id
        time.sleep(1.1)  # the buckets refill within a second
        # the rate-limited key was not consumed: it runs now
        pi = client.v1.payment_intents.create(
            params=_card_debit(cus, pm), options={"idempotency_key": "rl-1"}
        )
        assert pi.status == "succeeded"
    finally:
        standin.set_config(rate_limit=False)


def test_search_sees_new_intents_only_after_the_lag(
    client: stripe.StripeClient, standin: StandinHandle
) -> None:
    cus, pm = _customer_card(client)
    standin.set_config(search_lag=60)
    try:
        pi = client.v1.payment_intents.create(
            params=_card_debit(cus, pm, metadata={"idempotency_key": "k-lag"})
        )
        query = {"query": "metadata['idempotency_key']:'k-lag'"}
        assert client.v1.payment_intents.search(params=query).data == []
        standin.advance_clock(61)
        assert [p.id for p in client.v1.payment_intents.search(params=query).data] == [pi.id]
    finally:
        standin.set_config(search_lag=0)


# --- Mahnwerk's own calls -----------------------------------------------------------------

# Every Stripe call Mahnwerk makes (activities/, core/, api/), with the parameters it sends.
# The off-session debit's parameters come from Mahnwerk's own builder
# (activities.payments.off_session_debit_params), the others are transcribed from the call
# sites; test_mahnwerk_call_table_covers_every_call_site fails when a call is added.


def _debit_input(**changes: Any) -> Any:
    from workflows.types import ChargeInput

    base = ChargeInput(
        contract_id="c-1",
        installment_seq=3,
        attempt=1,
        idempotency_key="c-1:3:1",
        amount=4900,
        currency="eur",
        stripe_customer="cus_1",
        payment_method="pm_1",
        description="Mitgliedschaft, Rate 3",
    )
    return dataclasses.replace(base, **changes)


def _debit_params(**changes: Any) -> dict[str, Any]:
    from activities.payments import off_session_debit_params

    params: dict[str, Any] = off_session_debit_params(_debit_input(**changes))
    return params


MAHNWERK_CALLS: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "activities/payments.py charge (card)",
        "payment_intents.create",
        "PaymentIntentCreateParams",
        _debit_params(method_type="card"),
    ),
    (
        "activities/payments.py charge (SEPA, mandate known)",
        "payment_intents.create",
        "PaymentIntentCreateParams",
        _debit_params(method_type="sepa_debit", mandate="mandate_1"),
    ),
    (
        "activities/payments.py charge (type unknown)",
        "payment_intents.create",
        "PaymentIntentCreateParams",
        _debit_params(method_type=None, stripe_customer=None),
    ),
    (
        "activities/payments.py _find_existing",
        "payment_intents.search",
        "PaymentIntentSearchParams",
        {
            "query": "metadata['idempotency_key']:'c-1:3:1'",
            "limit": 1,
            "expand": ["data.latest_charge"],
        },
    ),
    (
        "activities/payments.py payment_status",
        "payment_intents.retrieve",
        "PaymentIntentRetrieveParams",
        {"expand": ["latest_charge"]},
    ),
    (
        "activities/methods.py describe",
        "payment_methods.retrieve",
        "PaymentMethodRetrieveParams",
        {},
    ),
    ("activities/methods.py mandate", "mandates.retrieve", "MandateRetrieveParams", {}),
    (
        "activities/methods.py _mandate_of (SetupIntents)",
        "setup_intents.list",
        "SetupIntentListParams",
        {"payment_method": "pm_1", "customer": "cus_1", "limit": 10},
    ),
    (
        "activities/methods.py _mandate_of (charges of payments)",
        "payment_intents.list",
        "PaymentIntentListParams",
        {"customer": "cus_1", "limit": 20, "expand": ["data.latest_charge"]},
    ),
    (
        "core/stripe_account.py creditor_id_problem",
        "accounts.retrieve_current",
        "AccountRetrieveCurrentParams",
        {},
    ),
    (
        "api/routes/webhooks.py _is_default",
        "customers.retrieve",
        "CustomerRetrieveParams",
        {},
    ),
    (
        "core/demo.py seller_scenarios (on the seller's connected account)",
        "payment_methods.attach",
        "PaymentMethodAttachParams",
        {"customer": "cus_1"},
    ),
    (
        "core/demo.py sepa_mandate",
        "customers.create",
        "CustomerCreateParams",
        {"email": "erika@example.org"},
    ),
    (
        "core/demo.py sepa_mandate",
        "payment_methods.create",
        "PaymentMethodCreateParams",
        {
            "type": "sepa_debit",
            "sepa_debit": {"iban": SEPA_IBAN},
            "billing_details": {"name": "Erika Mustermann", "email": "erika@example.org"},
        },
    ),
    (
        "core/demo.py sepa_mandate",
        "setup_intents.create",
        "SetupIntentCreateParams",
        {
            "customer": "cus_1",
            "payment_method": "pm_1",
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {
                "customer_acceptance": {
                    "type": "online",
                    "online": {"ip_address": "203.0.113.7", "user_agent": "mahnwerk demo"},
                }
            },
        },
    ),
    # Refunds made by Mahnwerk (issue 12: activities/refunds.py), and the listing that finds
    # one a cancellation made before (and the refunds of a `charge.refunded` webhook).
    (
        "refund_payments",
        "refunds.create",
        "RefundCreateParams",
        {
            "payment_intent": "pi_1",
            "amount": 1200,
            "reason": "requested_by_customer",
            "metadata": {
                "contract_id": "c-1",
                "installment": "2",
                "cancel_reason": "withdrawal",
                "mahnwerk_refund": "k-1",
            },
        },
    ),
    (
        "refund_payments / webhook charge.refunded",
        "refunds.list",
        "RefundListParams",
        {"payment_intent": "pi_1", "limit": 100},
    ),
    ("charge lookup (later)", "charges.retrieve", "ChargeRetrieveParams", {}),
]


def _as_sent(params: dict[str, Any]) -> dict[str, Any]:
    """The params as the stand-in receives them: encoded by the SDK, decoded from the form."""
    from urllib.parse import urlencode

    from stripe._encode import _api_encode

    from stripe_standin.formparse import parse_form

    return parse_form(urlencode(list(_api_encode(params))))


@pytest.mark.parametrize("site, call, params_type, params", MAHNWERK_CALLS, ids=lambda v: str(v))
def test_mahnwerk_calls_are_valid_for_the_pinned_api_version(
    site: str, call: str, params_type: str, params: dict[str, Any]
) -> None:
    sdkparams.check(params_type, _as_sent(params))


def test_mahnwerk_call_table_covers_every_call_site() -> None:
    """A new Stripe call in Mahnwerk must be added to MAHNWERK_CALLS (and so be checked)."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    sites: set[str] = set()
    for folder in ("activities", "core", "api"):
        for path in (root / folder).rglob("*.py"):
            for match in re.finditer(r"\.v1\.(\w+)\.(\w+)\(", path.read_text()):
                sites.add(f"{match.group(1)}.{match.group(2)}")
    assert sites, "no Stripe call sites found: has the code moved?"
    covered = {call for _, call, _, _ in MAHNWERK_CALLS}
    assert sites <= covered, f"not in MAHNWERK_CALLS: {sorted(sites - covered)}"


def test_mahnwerk_debits_are_accepted_by_the_stand_in(client: stripe.StripeClient) -> None:
    """The debit Mahnwerk builds passes the stand-in's confirmation rules too."""
    cus, pm = _customer_card(client)
    params = _debit_params(method_type="card", stripe_customer=cus, payment_method=pm)
    assert client.v1.payment_intents.create(params=params).status == "succeeded"
    cus, pm = _sepa_customer(client)
    mandate = _setup_mandate(client, cus, pm)
    params = _debit_params(
        method_type="sepa_debit", stripe_customer=cus, payment_method=pm, mandate=mandate
    )
    assert client.v1.payment_intents.create(params=params).status == "processing"
    cus, pm = _customer_card(client)
    params = _debit_params(method_type=None, stripe_customer=cus, payment_method=pm)
    assert client.v1.payment_intents.create(params=params).status == "succeeded"


def test_the_old_payment_method_types_parameter_is_refused_by_the_checker() -> None:
    card = dict(MAHNWERK_CALLS[0][3])
    card.pop("allowed_payment_method_types")
    card["payment_method_types"] = ["card"]
    with pytest.raises(StripeError) as exc:
        sdkparams.check("PaymentIntentCreateParams", _as_sent(card))
    assert (exc.value.body["code"], exc.value.body["param"]) == (
        "parameter_unknown",
        "payment_method_types",
    )
