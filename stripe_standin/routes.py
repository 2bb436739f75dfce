"""The `/v1` routes: the subset of Stripe's API that Mahnwerk uses, each with the `stripe` SDK
params type its requests are checked against (sdkparams.py). Each route is one endpoint for
the per-endpoint rate limit (ratelimit.py; Stripe: "each named API operation" is a separate
endpoint, docs.stripe.com/rate-limits).

The params type is the one the SDK's own service method for that route takes
(`StripeClient.v1.payment_intents.create(params: PaymentIntentCreateParams)` for
`POST /v1/payment_intents`); tests/standin/test_strict.py checks the table against the SDK's
services, so a route cannot silently accept parameters its SDK method does not define.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.routing import Route

from . import charges, checkout, customers, payments, refunds, setup_intents
from .http import Endpoint, api


@dataclass(frozen=True)
class ApiRoute:
    path: str
    method: str
    endpoint: Endpoint
    params_type: str  # a class of `stripe.params`

    def route(self) -> Route:
        return Route(
            self.path,
            api(self.endpoint, self.params_type, f"{self.method} {self.path}"),
            methods=[self.method],
        )


API_ROUTES = [
    ApiRoute("/v1/customers", "POST", customers.create_customer, "CustomerCreateParams"),
    ApiRoute("/v1/customers", "GET", customers.list_customers, "CustomerListParams"),
    ApiRoute("/v1/customers/{id}", "GET", customers.retrieve_customer, "CustomerRetrieveParams"),
    ApiRoute("/v1/customers/{id}", "POST", customers.update_customer, "CustomerUpdateParams"),
    ApiRoute("/v1/customers/{id}", "DELETE", customers.delete_customer, "CustomerDeleteParams"),
    ApiRoute(
        "/v1/customers/{id}/payment_methods",
        "GET",
        customers.list_customer_payment_methods,
        "CustomerPaymentMethodListParams",
    ),
    ApiRoute(
        "/v1/payment_methods", "POST", customers.create_payment_method, "PaymentMethodCreateParams"
    ),
    ApiRoute(
        "/v1/payment_methods", "GET", customers.list_payment_methods, "PaymentMethodListParams"
    ),
    ApiRoute(
        "/v1/payment_methods/{id}",
        "GET",
        customers.retrieve_payment_method,
        "PaymentMethodRetrieveParams",
    ),
    ApiRoute(
        "/v1/payment_methods/{id}/attach",
        "POST",
        customers.attach_payment_method,
        "PaymentMethodAttachParams",
    ),
    ApiRoute(
        "/v1/payment_methods/{id}/detach",
        "POST",
        customers.detach_payment_method,
        "PaymentMethodDetachParams",
    ),
    ApiRoute(
        "/v1/payment_intents",
        "POST",
        payments.create_payment_intent,
        "PaymentIntentCreateParams",
    ),
    ApiRoute(
        "/v1/payment_intents", "GET", payments.list_payment_intents, "PaymentIntentListParams"
    ),
    ApiRoute(
        "/v1/payment_intents/search",
        "GET",
        payments.search,
        "PaymentIntentSearchParams",
    ),
    ApiRoute(
        "/v1/payment_intents/{id}",
        "GET",
        payments.retrieve_payment_intent,
        "PaymentIntentRetrieveParams",
    ),
    ApiRoute(
        "/v1/payment_intents/{id}",
        "POST",
        payments.update_payment_intent,
        "PaymentIntentUpdateParams",
    ),
    ApiRoute(
        "/v1/payment_intents/{id}/confirm",
        "POST",
        payments.confirm_payment_intent,
        "PaymentIntentConfirmParams",
    ),
    ApiRoute(
        "/v1/payment_intents/{id}/cancel",
        "POST",
        payments.cancel_payment_intent,
        "PaymentIntentCancelParams",
    ),
    ApiRoute(
        "/v1/setup_intents", "POST", setup_intents.create_setup_intent, "SetupIntentCreateParams"
    ),
    ApiRoute("/v1/setup_intents", "GET", setup_intents.list_setup_intents, "SetupIntentListParams"),
    ApiRoute(
        "/v1/setup_intents/{id}",
        "GET",
        setup_intents.retrieve_setup_intent,
        "SetupIntentRetrieveParams",
    ),
    ApiRoute(
        "/v1/setup_intents/{id}/confirm",
        "POST",
        setup_intents.confirm_setup_intent,
        "SetupIntentConfirmParams",
    ),
    ApiRoute(
        "/v1/checkout/sessions", "POST", checkout.create_session, "checkout.SessionCreateParams"
    ),
    ApiRoute(
        "/v1/checkout/sessions/{id}",
        "GET",
        checkout.retrieve_session,
        "checkout.SessionRetrieveParams",
    ),
    ApiRoute("/v1/charges", "GET", charges.list_charges, "ChargeListParams"),
    ApiRoute("/v1/charges/{id}", "GET", charges.retrieve_charge, "ChargeRetrieveParams"),
    ApiRoute("/v1/mandates/{id}", "GET", charges.retrieve_mandate, "MandateRetrieveParams"),
    ApiRoute("/v1/account", "GET", charges.retrieve_account, "AccountRetrieveCurrentParams"),
    ApiRoute("/v1/disputes/{id}", "GET", charges.retrieve_dispute, "DisputeRetrieveParams"),
    ApiRoute("/v1/refunds", "POST", refunds.create_refund, "RefundCreateParams"),
    ApiRoute("/v1/refunds", "GET", refunds.list_refunds, "RefundListParams"),
    ApiRoute("/v1/refunds/{id}", "GET", refunds.retrieve_refund, "RefundRetrieveParams"),
    ApiRoute("/v1/events", "GET", refunds.list_events, "EventListParams"),
    ApiRoute("/v1/events/{id}", "GET", refunds.retrieve_event, "EventRetrieveParams"),
]

V1_ROUTES = [r.route() for r in API_ROUTES]
