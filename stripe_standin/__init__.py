"""Stripe stand-in: a local server for the part of Stripe's API that Mahnwerk uses.

The project talks to it only through the official `stripe` SDK pointed at it
(`StripeClient(key, base_addresses={"api": url})` or `stripe.api_base = url`), so the same
code runs unchanged against Stripe's test mode. Mirrored Stripe behaviour:

- Strictness (docs/stripe-standin.md): every request's parameters are checked against the
  `stripe` SDK's params types for the pinned API version (400 `parameter_unknown`, ...);
  Stripe's confirmation rules (`return_url` with automatic payment methods, the customer of
  a saved method, SEPA mandates), amount bounds, rate limits (opt-in), search lag.
- Form-encoded params with bracketed keys, `expand[]`, Stripe-shaped objects and errors
  (402 `card_error` with `decline_code` and the PaymentIntent, 404 `resource_missing`, ...).
- Auth: `Authorization: Bearer sk_test_...` (or `rk_test_...`); anything else is a 401.
- Stripe's test values: magic PaymentMethod ids (`pm_card_visa`,
  `pm_card_visa_chargeDeclinedInsufficientFunds`, `pm_card_authenticationRequired`,
  `pm_card_chargeCustomerFail`, ...) and SEPA test IBANs (`DE89370400440532013000` succeeds
  after `processing`, `DE62370400440532013001` fails, `DE35370400440532013002` is disputed, ...),
  see `testvalues.py`.
- Idempotency-Key: replay of the saved result, 400 on other params, 409
  `idempotency_key_in_use` while in flight, 24 h horizon (`idempotency.py`).
- Webhooks signed like Stripe's (`Stripe-Signature: t=...,v1=...`), delivered asynchronously
  with retries (`webhooks.py`); `/v1/events` lists them.

Stand-in extensions (not in Stripe):

- `pm_card_decline_<decline_code>` (e.g. `pm_card_decline_do_not_honor`): a card declined
  with `card_declined` and that decline code, so any decline code can be tested.
- `/_standin/...` JSON routes (no auth): the ledger of successful debits (how tests assert
  "charged exactly once"), settings, reset, webhook delivery log, forcing a dispute, settling
  a SEPA debit or finishing 3-D Secure now, closing disputes, Dashboard refunds and cancels,
  revoking mandates, advancing the clock (`control.py`).

Run it with `python -m stripe_standin` or, in tests, `stripe_standin.testing.run_standin()`.
"""

from .app import create_app
from .config import StandinConfig

__all__ = ["StandinConfig", "create_app"]
