"""API request and response models (separate from the workflow dataclasses)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.durations import parse_interval
from domain.schedule import due_instant

ID = r"^[A-Za-z0-9_.-]{1,64}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, v: Any) -> Any:
        # PostgreSQL text and jsonb cannot hold NUL: a checkout answered 500, and a support
        # action (reason, reference) was accepted and then failed in the workflow's activities.
        if isinstance(v, str) and "\x00" in v:
            raise ValueError("must not contain NUL (\\x00) characters")
        return v


class Address(Strict):
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    postal_code: str = Field(min_length=1, max_length=20)
    city: str = Field(min_length=1, max_length=100)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class CustomerIn(Strict):
    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)
    locale: Literal["de", "en"] = "de"
    type: Literal["consumer", "business"] = "consumer"
    address: Address | None = None


class ProductIn(Strict):
    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)


def _check_due(v: str) -> str:
    try:
        due_instant(v)
    except ValueError as exc:
        raise ValueError(f"not an ISO date or RFC 3339 time with offset: {exc}") from None
    return v


def _check_interval(v: str) -> str:
    try:
        parse_interval(v)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return v


class InstallmentsIn(Strict):
    count: int = Field(ge=1, le=600)
    amount: int = Field(gt=0, le=100_000_000, description="minor units per installment")
    interval: str = Field(examples=["P1M"], description="ISO 8601 duration")
    first_due: str = Field(
        examples=["2026-12-01"], description="ISO date (Europe/Berlin) or RFC 3339"
    )

    _due = field_validator("first_due")(_check_due)
    _int = field_validator("interval")(_check_interval)


class SubscriptionIn(Strict):
    amount: int = Field(gt=0, le=100_000_000)
    interval: str = Field(examples=["P1M"])
    start: str = Field(examples=["2026-12-01"])
    minimum_term: str | None = None

    _due = field_validator("start")(_check_due)
    _int = field_validator("interval")(_check_interval)

    @field_validator("minimum_term")
    @classmethod
    def _term(cls, v: str | None) -> str | None:
        return None if v is None else _check_interval(v)


class OneOffIn(Strict):
    amount: int = Field(gt=0, le=100_000_000)
    due: str | None = Field(default=None, description="defaults to now")

    @field_validator("due")
    @classmethod
    def _due(cls, v: str | None) -> str | None:
        return None if v is None else _check_due(v)


class PaymentIn(Strict):
    stripe_customer: str | None = Field(default=None, max_length=255)
    payment_method: str | None = Field(default=None, pattern=r"^pm_[A-Za-z0-9_]+$")
    payment_intent: str | None = Field(default=None, pattern=r"^pi_[A-Za-z0-9_]+$")


class TermsIn(Strict):
    version: str = Field(min_length=1, max_length=64)
    accepted_at: datetime
    ip: str = Field(min_length=3, max_length=64)
    text_sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")

    @field_validator("accepted_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a UTC offset (RFC 3339)")
        return v


EXAMPLE: dict[str, Any] = {
    "contract_id": "ord-2026-0001",
    "kind": "installments",
    "policy": "default",
    "customer": {
        "id": "cus-42",
        "name": "Erika Mustermann",
        "email": "erika@example.org",
        "locale": "de",
        "type": "consumer",
        "address": {
            "line1": "Musterstr. 1",
            "postal_code": "10115",
            "city": "Berlin",
            "country": "DE",
        },
    },
    "product": {"id": "course-x", "name": "Kurs X"},
    "currency": "eur",
    "installments": {"count": 6, "amount": 9900, "interval": "P1M", "first_due": "2026-12-01"},
    "payment": {"stripe_customer": "cus_123", "payment_method": "pm_card_visa"},
    "terms": {
        "version": "agb-2026-10",
        "accepted_at": "2026-11-27T10:00:00+01:00",
        "ip": "203.0.113.7",
        "text_sha256": "a" * 64,
    },
}


class ContractCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})  # type: ignore[list-item]

    contract_id: str = Field(pattern=ID)
    kind: Literal["one_off", "installments", "subscription"]
    policy: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    customer: CustomerIn
    product: ProductIn
    currency: Literal["eur"] = "eur"
    installments: InstallmentsIn | None = None
    subscription: SubscriptionIn | None = None
    one_off: OneOffIn | None = None
    payment: PaymentIn = Field(default_factory=PaymentIn)
    terms: TermsIn = Field(
        description="the customer's acceptance of the terms; required as evidence"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ContractCreate:
        given = {k for k in ("installments", "subscription", "one_off") if getattr(self, k)}
        if given != {self.kind}:
            raise ValueError(
                f"exactly the `{self.kind}` object must be given for kind {self.kind!r}"
            )
        if self.kind != "one_off" or not self.payment.payment_intent:
            if not self.payment.payment_method:
                raise ValueError("payment.payment_method is required to debit off-session")
        return self


class SettlementIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount": 10150,
                    "method": "bank_transfer",
                    "reference": "Überweisung 2026-12-03 Erika Mustermann",
                    "received_at": "2026-12-03T09:30:00+01:00",
                }
            ]
        },
    )

    amount: int = Field(gt=0, le=100_000_000, description="minor units")
    method: Literal["bank_transfer", "cash", "other"]
    reference: str = Field(min_length=1, max_length=200)
    received_at: datetime | None = None


class PaymentMethodIn(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"payment_method": "pm_card_visa"}]}
    )

    payment_method: str = Field(pattern=r"^pm_[A-Za-z0-9_]+$")


class PauseIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"until": "2027-01-15T00:00:00+01:00", "reason": "Kundin im Krankenhaus"}]
        },
    )

    until: datetime | None = Field(default=None, description="resume by itself at this time")
    reason: str = Field(min_length=1, max_length=500)

    @field_validator("until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a UTC offset (RFC 3339)")
        return v


class ResumeIn(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "Kundin wieder erreichbar"}]}
    )

    reason: str = Field(default="", max_length=500)


class DeferralIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"until": "2027-01-31", "reason": "Stundung bis Monatsende vereinbart"}]
        },
    )

    until: str = Field(
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="ISO date (Europe/Berlin): the overdue amount is due again on this day",
    )
    reason: str = Field(min_length=1, max_length=500)

    _due = field_validator("until")(_check_due)


class WaiverIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"fees": True, "interest": False, "reason": "Kulanz: erste Mahnung"}]
        },
    )

    fees: bool = False
    interest: bool = False
    reason: str = Field(min_length=1, max_length=500)


class ReasonIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "Kunde bestreitet den Vertragsschluss"}]},
    )

    reason: str = Field(min_length=1, max_length=500)


class ApproveHandoffIn(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"route": "inkasso"}]}
    )

    route: Literal["court", "inkasso"] | None = None


class AddressIn(Strict):
    """The debtor's postal address, recorded by support (a court hand-off needs it, § 690
    (1) Nr. 1 ZPO); `reason` says where it comes from."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "address": {
                        "line1": "Musterstr. 1",
                        "postal_code": "10115",
                        "city": "Berlin",
                        "country": "DE",
                    },
                    "reason": "Einwohnermeldeamt-Auskunft vom 03.12.2026",
                }
            ]
        },
    )

    address: Address
    reason: str = Field(default="", max_length=500)


class CancelIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"at_period_end": True, "reason": "Kündigung zum Laufzeitende"}]
        },
    )

    at_period_end: bool = True
    reason: str = Field(min_length=1, max_length=500)


class ActionOut(BaseModel):
    contract_id: str
    status: str
    stage: str
    access: str
    overdue_amount: int
    message: str
    debits: list[dict[str, Any]] = []
    allocation: dict[str, int] = {}


class AccessOut(BaseModel):
    access: Literal["granted", "locked", "none"]
    contract_id: str | None
    customer_id: str
    product_id: str


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"], description="machine-readable error code")
    message: str = Field(description="for people; for invalid input it starts with the field")
    details: Any = Field(
        default=None,
        description="e.g. for 422: a list of {field, message}; for 409: the state refusing it",
    )


class ErrorOut(BaseModel):
    """The one error format of every route (SPEC.md §4)."""

    error: ErrorBody


_ERROR_DOCS: dict[int, tuple[str, str, str, Any]] = {
    400: ("Bad request", "bad_request", "the request could not be read", None),
    401: ("Missing or unknown API key", "unauthorized", "missing bearer API key", None),
    403: (
        "The API key's role may not do this",
        "forbidden",
        "role 'platform' may not do this (needs admin/support)",
        None,
    ),
    404: ("Unknown contract", "not_found", "contract ord-2026-0001 not found", None),
    409: (
        "The contract's state does not allow this",
        "conflict",
        "contract ord-2026-0001 is written_off",
        {"status": "written_off"},
    ),
    422: (
        "Invalid input; the message starts with the field",
        "invalid_input",
        "reason: String should have at least 1 character",
        [{"field": "reason", "message": "String should have at least 1 character"}],
    ),
    503: ("Temporal or the database unreachable", "unavailable", "Temporal unreachable", None),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the given error statuses, all in the ErrorOut format."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, message, details = _ERROR_DOCS[status]
        example = {"error": {"code": code, "message": message, "details": details}}
        out[status] = {
            "model": ErrorOut,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
    return out
