"""What a payment method is, as Stripe knows it: the facts a SEPA pre-notification needs.

A SEPA Core debit must be announced to the debtor beforehand with the amount, the date, the
mandate reference, the creditor id and (for custom notices) the last four IBAN digits
(DOMAIN.md §4). The workflow asks once per payment method; this activity reads it from
Stripe: the PaymentMethod (type, last 4), then the mandate the platform collected for it
with a SetupIntent (Stripe's way to set up a SEPA method for later off-session debits), and
the Mandate's reference and status (found on the SetupIntent that set the method up or on
the charge of the payment that saved it).

A method Stripe does not know (deleted, wrong id) is a *result* (`kind="unknown"`), not an
error: the debit will fail on its own and the workflow's decline handling takes over.
Transport faults (network, 5xx, 429) raise, and Temporal retries them.

Every request takes a token of the account's rate limit (all of Stripe's endpoints together)
and, with `endpoint_rate`, a slot of the account's rate *per endpoint* across every worker
(activities/ratelimit.py): Stripe limits each named operation on its own (25/s by default,
docs.stripe.com/rate-limits; stripe_standin/ratelimit.py), and a burst of checkouts above it
(each new contract looks its method up once) was refused with 429 and retried — 1,881
refusals while 2,000 contracts were created at ~100/s (bench.due_wave, 7 Dec 2026).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import stripe
from temporalio import activity

from workflows.types import PaymentMethodInfo, PaymentMethodLookup

if TYPE_CHECKING:
    from activities.payments import StripeAccounts
    from activities.ratelimit import SharedRate

log = logging.getLogger(__name__)


class MethodActivities:
    def __init__(
        self,
        stripe_client: stripe.StripeClient,
        throttle: Callable[[], Any] | None = None,
        accounts: StripeAccounts | None = None,
        endpoint_rate: SharedRate | None = None,
    ) -> None:
        self.stripe = stripe_client
        # One Stripe request = one token of the worker's client-side rate limit.
        self._throttle = throttle or (lambda: None)
        # Each seller's Stripe account and its rate limit (issue 14); None: `stripe_client`.
        self.accounts = accounts
        # Per account and endpoint, all workers together (the worker passes the rate of
        # its PaymentIntent creates, MAHNWERK_STRIPE_CREATE_RATE_LIMIT); None: no such limit
        self.endpoint_rate = endpoint_rate

    def _paced(self, throttle: Callable[[], Any], account: str) -> Callable[[str], None]:
        """Before a request to `endpoint`: the account's token, then its endpoint's slot."""

        def take(endpoint: str) -> None:
            throttle()
            if self.endpoint_rate is not None:
                waited = self.endpoint_rate.acquire(f"{account} {endpoint}")
                if waited > 0.5:
                    log.info("stripe %s rate: waited %.2fs", endpoint, waited)

        return take

    @activity.defn(name="describe_payment_method")
    def describe_payment_method(self, inp: PaymentMethodLookup) -> PaymentMethodInfo:
        if not inp.payment_method:
            return PaymentMethodInfo(payment_method=None, kind="unknown")
        if self.accounts is not None:
            # The method lives on the seller's account (Connect): ask there, throttled by
            # that account's limit. An unusable seller configuration raises (retried).
            client, limiter = self.accounts.for_seller(inp.seller_id)
            return _Lookup(client, self._paced(limiter.acquire, limiter.key)).describe(inp)
        return _Lookup(self.stripe, self._paced(self._throttle, "platform")).describe(inp)


class _Lookup:
    """One lookup on one Stripe account."""

    def __init__(self, client: stripe.StripeClient, throttle: Callable[[str], Any]) -> None:
        self.stripe = client
        self._throttle = throttle  # before each request, with the endpoint it goes to

    def describe(self, inp: PaymentMethodLookup) -> PaymentMethodInfo:
        assert inp.payment_method
        self._throttle("GET /v1/payment_methods/{id}")
        try:
            pm = self.stripe.v1.payment_methods.retrieve(inp.payment_method)
        except stripe.InvalidRequestError as err:
            if getattr(err, "code", None) != "resource_missing":
                raise
            log.warning(
                "payment method %s of contract %s not found at Stripe",
                inp.payment_method,
                inp.contract_id,
            )
            return PaymentMethodInfo(payment_method=inp.payment_method, kind="unknown")
        # Answered for the id the contract holds (a test-mode alias such as `pm_card_visa`
        # comes back under a concrete id): the workflow asks once per id it holds.
        asked = inp.payment_method
        kind = str(pm.type)
        if kind == "card":
            card = getattr(pm, "card", None)
            return PaymentMethodInfo(asked, "card", last4=getattr(card, "last4", None))
        if kind != "sepa_debit":
            return PaymentMethodInfo(asked, "unknown")
        last4 = getattr(getattr(pm, "sepa_debit", None), "last4", None)
        mandate_id = self._mandate_of(pm.id, inp.stripe_customer)
        reference = None
        status = None
        if mandate_id is not None:
            self._throttle("GET /v1/mandates/{id}")
            mandate = self.stripe.v1.mandates.retrieve(mandate_id)
            details = getattr(getattr(mandate, "payment_method_details", None), "sepa_debit", None)
            reference = getattr(details, "reference", None)
            # active | inactive | pending: an inactive mandate (revoked, or the method
            # detached) must not be debited (issue 10 item 5).
            status = getattr(mandate, "status", None)
        else:
            log.warning(
                "no SEPA mandate found for %s (contract %s): pre-notifications go out without "
                "a mandate reference",
                pm.id,
                inp.contract_id,
            )
        return PaymentMethodInfo(
            asked,
            "sepa_debit",
            last4=last4,
            mandate=mandate_id,
            mandate_reference=reference,
            mandate_status=str(status) if status else None,
        )

    def _mandate_of(self, pm_id: str, customer: str | None) -> str | None:
        """The Mandate the customer signed for this method. Stripe keeps it where the method
        was set up for later use: on a SetupIntent (`mandate`, docs.stripe.com/api/
        setup_intents/object) or, for a method saved while paying (a PaymentIntent with
        `setup_future_usage`, Checkout in payment mode), on that payment's charge
        (`payment_method_details.sepa_debit.mandate`, docs.stripe.com/api/charges/object).
        The newest one wins."""
        params: dict[str, Any] = {"payment_method": pm_id, "limit": 10}
        if customer:
            params["customer"] = customer
        self._throttle("GET /v1/setup_intents")
        intents = self.stripe.v1.setup_intents.list(params=params)  # type: ignore[arg-type]
        for si in intents.data:
            if si.status == "succeeded" and si.mandate:
                mandate = si.mandate
                return mandate if isinstance(mandate, str) else str(mandate.id)
        if not customer:
            return None  # a saved method lives on a customer; without one, nothing to list
        self._throttle("GET /v1/payment_intents")
        payments = self.stripe.v1.payment_intents.list(
            params={"customer": customer, "limit": 20, "expand": ["data.latest_charge"]}
        )
        for pi in payments.data:
            method = pi.payment_method
            method_id = method if isinstance(method, str) else getattr(method, "id", None)
            if method_id != pm_id:
                continue
            charge = getattr(pi, "latest_charge", None)
            if charge is None or isinstance(charge, str):
                continue
            details = getattr(getattr(charge, "payment_method_details", None), "sepa_debit", None)
            found: Any = getattr(details, "mandate", None)
            if found:
                return found if isinstance(found, str) else str(found.id)
        return None
