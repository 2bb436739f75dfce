"""The `/v1` routes: the subset of Stripe's API that Mahnwerk uses."""

from __future__ import annotations

from starlette.routing import Route

from . import charges, customers, payments, refunds, setup_intents
from .http import Endpoint, api


def _route(path: str, method: str, endpoint: Endpoint) -> Route:
    return Route(path, api(endpoint), methods=[method])


V1_ROUTES = [
    _route("/v1/customers", "POST", customers.create_customer),
    _route("/v1/customers", "GET", customers.list_customers),
    _route("/v1/customers/{id}", "GET", customers.retrieve_customer),
    _route("/v1/customers/{id}", "POST", customers.update_customer),
    _route("/v1/customers/{id}", "DELETE", customers.delete_customer),
    _route("/v1/customers/{id}/payment_methods", "GET", customers.list_customer_payment_methods),
    _route("/v1/payment_methods", "POST", customers.create_payment_method),
    _route("/v1/payment_methods", "GET", customers.list_payment_methods),
    _route("/v1/payment_methods/{id}", "GET", customers.retrieve_payment_method),
    _route("/v1/payment_methods/{id}/attach", "POST", customers.attach_payment_method),
    _route("/v1/payment_methods/{id}/detach", "POST", customers.detach_payment_method),
    _route("/v1/payment_intents", "POST", payments.create_payment_intent),
    _route("/v1/payment_intents", "GET", payments.list_payment_intents),
    _route("/v1/payment_intents/search", "GET", payments.search),
    _route("/v1/payment_intents/{id}", "GET", payments.retrieve_payment_intent),
    _route("/v1/payment_intents/{id}", "POST", payments.update_payment_intent),
    _route("/v1/payment_intents/{id}/confirm", "POST", payments.confirm_payment_intent),
    _route("/v1/payment_intents/{id}/cancel", "POST", payments.cancel_payment_intent),
    _route("/v1/setup_intents", "POST", setup_intents.create_setup_intent),
    _route("/v1/setup_intents", "GET", setup_intents.list_setup_intents),
    _route("/v1/setup_intents/{id}", "GET", setup_intents.retrieve_setup_intent),
    _route("/v1/setup_intents/{id}/confirm", "POST", setup_intents.confirm_setup_intent),
    _route("/v1/charges", "GET", charges.list_charges),
    _route("/v1/charges/{id}", "GET", charges.retrieve_charge),
    _route("/v1/mandates/{id}", "GET", charges.retrieve_mandate),
    _route("/v1/disputes/{id}", "GET", charges.retrieve_dispute),
    _route("/v1/refunds", "POST", refunds.create_refund),
    _route("/v1/refunds", "GET", refunds.list_refunds),
    _route("/v1/refunds/{id}", "GET", refunds.retrieve_refund),
    _route("/v1/events", "GET", refunds.list_events),
    _route("/v1/events/{id}", "GET", refunds.retrieve_event),
]
