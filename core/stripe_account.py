"""Checks of the Stripe account against Mahnwerk's settings, at worker start-up.

The SEPA pre-notification names the creditor id the debit is collected under (DOMAIN.md §4).
Stripe debits under the account's own creditor id, which the API exposes as the Account's
`settings.sepa_debit_payments.creditor_id` (docs.stripe.com/api/accounts/object). Announcing
another one would make every pre-notification wrong, so a mismatch stops the worker.
"""

from __future__ import annotations

import logging

import stripe

log = logging.getLogger(__name__)


def _normalise(creditor_id: str) -> str:
    return creditor_id.replace(" ", "").upper()


def creditor_id_problem(client: stripe.StripeClient, configured: str | None) -> str | None:
    """One line naming the problem when MAHNWERK_SELLER_CREDITOR_ID is not the Stripe
    account's creditor id; None when they agree or Stripe does not say (not set up yet,
    or Stripe unreachable: then logged, not fatal)."""
    if not configured:
        return None
    try:
        account = client.v1.accounts.retrieve_current()
    except stripe.StripeError as exc:
        log.warning("could not read the Stripe account's SEPA creditor id: %s", exc)
        return None
    sepa = getattr(getattr(account, "settings", None), "sepa_debit_payments", None)
    at_stripe = getattr(sepa, "creditor_id", None)
    if not at_stripe:
        log.info("the Stripe account shows no SEPA creditor id; using the configured one")
        return None
    if _normalise(str(at_stripe)) != _normalise(configured):
        return (
            f"configuration error: MAHNWERK_SELLER_CREDITOR_ID {configured} is not the SEPA "
            f"creditor id the Stripe account debits under ({at_stripe}): pre-notifications "
            "would announce the wrong one"
        )
    return None
