"""Stripe-shaped API errors.

Stripe answers every failure with `{"error": {"type", "code", "message", "param", ...}}` and an
HTTP status that the SDK maps to its exception classes (`_api_requestor.specific_v1_api_error`):
400/404 -> InvalidRequestError (or IdempotencyError for type `idempotency_error`),
401 -> AuthenticationError, 402 -> CardError, 409 -> retried, then APIError, 5xx -> APIError.
"""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error answered to the client as Stripe would.

    `replayable` follows Stripe's idempotency rule: a result is saved only once the endpoint
    began executing; requests that failed parameter validation may be retried with the same key.
    """

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        replayable: bool = True,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if code is not None:
            self.body["code"] = code
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param is not None:
            self.body["param"] = param
        self.body.update(extra)
        self.replayable = replayable

    def to_json(self) -> dict[str, Any]:
        return {"error": self.body}


def invalid_request(
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    status: int = 400,
    replayable: bool = True,
) -> StripeError:
    return StripeError(
        status, "invalid_request_error", message, code=code, param=param, replayable=replayable
    )


def invalid_param(message: str, param: str, code: str | None = None) -> StripeError:
    """A parameter failed validation: not saved for idempotent replay (Stripe docs)."""
    return invalid_request(message, param=param, code=code, replayable=False)


def missing_param(param: str) -> StripeError:
    return invalid_param(f"Missing required param: {param}.", param, "parameter_missing")


def no_such(kind: str, obj_id: str, param: str | None = "id") -> StripeError:
    """Stripe's 404 for an unknown id: `No such customer: 'cus_x'`."""
    return invalid_request(
        f"No such {kind}: '{obj_id}'", param=param, code="resource_missing", status=404
    )


def unexpected_state(message: str) -> StripeError:
    return invalid_request(message, code="payment_intent_unexpected_state")


def idempotency_mismatch(key: str) -> StripeError:
    return StripeError(
        400,
        "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key}' if you meant to execute a "
        "different request.",
        replayable=False,
    )


def idempotency_in_flight(key: str) -> StripeError:
    """409 `idempotency_key_in_use` (docs.stripe.com/error-codes): the first request with this
    key is still running. Type and wording as Stripe answers it (quoted in
    woocommerce-gateway-stripe#503: `invalid_request_error`, "There is currently another
    in-progress request using this Idempotent Key ...")."""
    return StripeError(
        409,
        "invalid_request_error",
        "There is currently another in-progress request using this Idempotent Key (that "
        "probably means you submitted twice, and the other request is still going through): "
        f"{key}. Please try again later.",
        code="idempotency_key_in_use",
        replayable=False,
    )


def no_account_access(api_key: str, account: str) -> StripeError:
    """Stripe's answer to a `Stripe-Account` the key may not act for: a 403 the SDK raises as
    PermissionError (an unknown account, one not connected to this platform, or a key that
    is no platform's)."""
    masked = f"{api_key[:8]}{'*' * 8}{api_key[-4:]}" if len(api_key) > 12 else api_key
    return StripeError(
        403,
        "invalid_request_error",
        f"The provided key '{masked}' does not have access to account '{account}' (or that "
        "account does not exist). Application access may have been revoked.",
        replayable=False,
    )


def authentication(message: str) -> StripeError:
    return StripeError(401, "invalid_request_error", message, replayable=False)


def api_error(message: str = "An unknown error occurred") -> StripeError:
    return StripeError(500, "api_error", message)
