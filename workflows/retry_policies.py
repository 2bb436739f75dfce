"""Named retry policies and timeouts for every activity call (STYLE.md convention 7).

Temporal retries are for transport faults only; declines are results (DESIGN.md 2).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# A debit: bounded, because every retry hits Stripe; the idempotency key makes each one
# safe. Schedule-to-close stays far below Stripe's 24 h idempotency-key retention.
CHARGE = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=12,
    non_retryable_error_types=["IdempotencyConflict", "StripeAuthError", "UnexpectedStatus"],
)
CHARGE_START_TO_CLOSE = timedelta(seconds=60)
CHARGE_SCHEDULE_TO_CLOSE = timedelta(hours=2)

# Ledger writes: the database may be away for a while (failover); keep trying.
LEDGER = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
LEDGER_START_TO_CLOSE = timedelta(seconds=30)

# Notices: SMTP may be down; retry for a day, then give up (recorded on the timeline).
NOTICE = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["NoticeUndeliverable", "TemplateNotFound"],
)
NOTICE_START_TO_CLOSE = timedelta(seconds=60)
NOTICE_SCHEDULE_TO_CLOSE = timedelta(days=1)
# A re-send of a notice that failed for a day (workflows.base PATCH_NOTICE_RETRY) tries for
# an hour: the workflow waits between re-sends, and each renders the claim and the last day
# to pay anew, so what reaches the customer is never more than an hour old.
NOTICE_RESEND_SCHEDULE_TO_CLOSE = timedelta(hours=1)

# The case file is built from the ledger: retry transport faults, never a bad case.
CASE_FILE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["InvalidCaseFile"],
)

# Delivery to the collection partner: retried until acknowledged, for up to 30 days
# (contracts started before workflows.base PATCH_AFTER_HANDOFF / PATCH_DELIVERY_WAITS).
DELIVERY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(hours=1),
)
DELIVERY_SCHEDULE_TO_CLOSE = timedelta(days=30)

# Invoices (issue 15): the ledger's retries; a refusal that waiting cannot fix (no VAT rate
# for the customer's country, an unknown seller) is recorded instead.
INVOICE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["InvoiceRefused"],
)

# Since those patches one round of building or delivering lasts at most this long; after a
# failed round the workflow records it and waits (1 h doubling up to a day) before the next.
DELIVERY_ROUND = timedelta(minutes=10)
