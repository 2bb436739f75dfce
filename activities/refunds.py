"""Refunds through Stripe's API (issue 12 item 3): a cancellation that refunds gives each
PaymentIntent's part back once.

Idempotent twice over (DESIGN.md decision 3, as for debits): every refund request carries an
idempotency key derived from the contract, the cancellation's action id (its
Idempotency-Key) and the PaymentIntent — a retried activity gets the first refund back from
Stripe — and before creating one the activity looks for a refund of that PaymentIntent whose
metadata names the same cancellation, because Stripe forgets idempotency keys after 24 hours
and a workflow may ask again later (Stripe unreachable for a while).

A refund Stripe refuses (400: the charge was disputed or refunded meanwhile, or the amount
exceeds what is left) is a result, not an error: the workflow records the part as one the
seller must give back another way (`refund.required`). Transport faults raise and Temporal
retries them with the same keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.payments import REFUSED, StripeAccounts
from domain.endings import FRAUD
from workflows.types import RefundInfo, RefundInput, RefundResult

log = logging.getLogger(__name__)

# The refund's metadata key naming the cancellation (its action id) that asked for it: the
# `charge.refunded` webhook passes it on, so the workflow knows the refund as its own.
REF_KEY = "mahnwerk_refund"


def refund_key(contract_id: str, ref: str, payment_intent: str) -> str:
    """The idempotency key of one refund (≤ 255 characters, Stripe's limit)."""
    return f"refund:{contract_id}:{ref}:{payment_intent}"[:255]


def refund_info(refund: Any) -> RefundInfo:
    metadata = getattr(refund, "metadata", None) or {}
    ref = metadata.get(REF_KEY, "") if hasattr(metadata, "get") else ""
    return RefundInfo(
        id=str(refund.id),
        amount=int(refund.amount or 0),
        status=str(getattr(refund, "status", None) or "succeeded"),
        reason=str(getattr(refund, "reason", None) or ""),
        ref=str(ref or ""),
    )


class RefundActivities:
    def __init__(
        self,
        stripe_client: stripe.StripeClient,
        throttle: Callable[[], Any],
        accounts: StripeAccounts | None = None,
    ) -> None:
        """`throttle`: the worker's Stripe rate limit (PaymentActivities._throttle).
        `accounts`: each seller's Stripe account (issue 14): a payment is refunded on the
        account it was taken on."""
        self.stripe = stripe_client
        self.throttle = throttle
        self.accounts = accounts

    def _existing(
        self,
        client: stripe.StripeClient,
        throttle: Callable[[], Any],
        payment_intent: str,
        ref: str,
    ) -> Any | None:
        """A refund of `payment_intent` this cancellation already asked for, if any."""
        throttle()
        page = client.v1.refunds.list(params={"payment_intent": payment_intent, "limit": 100})
        for refund in page.data:
            if (getattr(refund, "metadata", None) or {}).get(REF_KEY) == ref:
                return refund
        return None

    @activity.defn(name="refund_payments")
    def refund_payments(self, inp: RefundInput) -> RefundResult:
        """Refund each part through Stripe, exactly once per (cancellation, PaymentIntent)."""
        result = RefundResult()
        reason = "fraudulent" if inp.reason == FRAUD else "requested_by_customer"
        client, throttle = self.stripe, self.throttle
        if self.accounts is not None:
            # the contract's seller's account (issue 14); unusable: raised, retried
            client, bucket = self.accounts.for_contract(inp.contract_id)
            throttle = bucket.acquire
        for part in inp.parts:
            try:
                found = self._existing(client, throttle, part.payment_intent, inp.ref)
                if found is None:
                    throttle()
                    found = client.v1.refunds.create(
                        params={
                            "payment_intent": part.payment_intent,
                            "amount": part.amount,
                            "reason": reason,  # type: ignore[typeddict-item]
                            "metadata": {
                                "contract_id": inp.contract_id,
                                "installment": str(part.installment),
                                "cancel_reason": inp.reason,
                                REF_KEY: inp.ref,
                            },
                        },
                        options={
                            "idempotency_key": refund_key(
                                inp.contract_id, inp.ref, part.payment_intent
                            )
                        },
                    )
            except stripe.IdempotencyError as exc:
                # The same key with other parameters: never retried blindly with a new key.
                raise ApplicationError(
                    str(exc), type="IdempotencyConflict", non_retryable=True
                ) from exc
            except REFUSED as exc:
                message = getattr(exc, "user_message", None) or str(exc)
                log.warning(
                    "stripe refused a refund of %s (contract %s): %s",
                    part.payment_intent,
                    inp.contract_id,
                    message,
                )
                result.failed.append([part.payment_intent, message[:300]])
                continue
            info = refund_info(found)
            log.info(
                "refund %s of %s: %s (%s)",
                info.id,
                part.payment_intent,
                info.amount,
                info.status,
                extra={"contract_id": inp.contract_id},
            )
            result.refunds.append(info)
        return result
