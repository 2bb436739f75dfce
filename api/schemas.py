"""API request and response models (separate from the workflow dataclasses)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from api.responses import Access, ContractStatus, Stage, stage_field
from core.seller import parse_vat_id
from domain.durations import Interval, parse_interval
from domain.schedule import due_instant, installment_due_times

ID = r"^[A-Za-z0-9_.-]{1,64}$"
# The platform's own ids (customer, product): the contract id's characters plus ':'. No '@',
# spaces or quotes: `CustomerId` is a search attribute, readable in Temporal in clear, so an
# e-mail address must never be used as one.
EXTERNAL_ID = r"^[A-Za-z0-9_.:-]{1,128}$"

# -- bounds of a checkout (every one a 422 naming the field) -----------------------------------
# A plan longer than ten years is no plan a seller of courses offers, and its debits would
# outlive every card; 120 = ten years of monthly installments.
MAX_INSTALLMENTS = 120
MAX_PLAN_YEARS = 10
# The first due date / start at most five years ahead (a pre-sale), at most
# MAHNWERK_MAX_BACKDATE_DAYS back (settings; a late checkout, a plan moved over).
MAX_START_AHEAD = timedelta(days=5 * 366)
# One interval: at most a year (yearly memberships), at least a day outside `demo: true`
# policies (policies/demo.yaml: seconds, for watching every stage in minutes).
MAX_INTERVAL_DAYS = 366
MIN_INTERVAL = timedelta(days=1)
# Any date or time in a request: within ten years back and five ahead. Outside, it is a typo
# (or a probe): 0001-01-01 and 9999-12-31 used to overflow the schedule arithmetic (500).
DATE_WINDOW_BACK = timedelta(days=10 * 366)
DATE_WINDOW_AHEAD = timedelta(days=5 * 366)

# Bidirectional-text controls (Unicode TR #9 explicit formatting characters, "Trojan
# Source", CVE-2021-42574): they make a name or address *display* differently from what it
# is, in a notice, the console, a case file. Plus the line/paragraph separators.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SEPARATORS = frozenset("\u2028\u2029")


def _bad_char(v: str, allow: str = "") -> str | None:
    for ch in v:
        if ch in allow:
            continue
        if unicodedata.category(ch) == "Cc" or ch in _BIDI or ch in _SEPARATORS:
            return f"U+{ord(ch):04X}"
    return None


def _single_line(v: str) -> str:
    # A CR/LF in a name ends up in an e-mail header or breaks the notice; the SMTP send then
    # fails for ever while the ladder escalates without a delivered Mahnung.
    bad = _bad_char(v)
    if bad is not None:
        raise ValueError(f"must not contain control or bidirectional characters ({bad})")
    return v


def _text(v: str) -> str:
    bad = _bad_char(v, allow="\n\t")  # free text (reasons) may have lines
    if bad is not None:
        raise ValueError(f"must not contain control or bidirectional characters ({bad})")
    return v


# The same rules as JSON Schema patterns, for clients (and the schemathesis run) to see; the
# validators above give the clearer message.
_BIDI_CLASS = "\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069\\u2028\\u2029"
_LINE_PATTERN = f"^[^\\x00-\\x1f\\x7f-\\x9f{_BIDI_CLASS}]*$"
_TEXT_PATTERN = f"^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI_CLASS}]*$"
Line = Annotated[
    str, AfterValidator(_single_line), Field(json_schema_extra={"pattern": _LINE_PATTERN})
]
Text = Annotated[str, AfterValidator(_text), Field(json_schema_extra={"pattern": _TEXT_PATTERN})]


def _email(v: str) -> str:
    # A real parser (email-validator, as pydantic's EmailStr uses) instead of a regex: the
    # regex took `a,b<c@evil.example`, which a mail server reads as two recipients. Display
    # names, quoted local parts and IP-literal domains are refused; no DNS lookup.
    try:
        result = validate_email(
            v, check_deliverability=False, allow_display_name=False, allow_quoted_local=False
        )
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {exc}") from None
    return result.normalized


Email = Annotated[str, AfterValidator(_email)]


def _in_window(when: datetime) -> None:
    now = datetime.now(UTC)
    if when < now - DATE_WINDOW_BACK:
        raise ValueError("out of range: more than 10 years in the past")
    if when > now + DATE_WINDOW_AHEAD:
        raise ValueError("out of range: more than 5 years in the future")


def _aware_in_window(v: datetime | None) -> datetime | None:
    if v is None:
        return v
    if v.tzinfo is None:
        raise ValueError("must carry a UTC offset (RFC 3339)")
    _in_window(v)
    return v


def _not_in_future(v: datetime | None) -> datetime | None:
    # Evidence of the past (acceptance of terms, a received payment): a little clock skew only.
    if v is not None and v > datetime.now(UTC) + timedelta(days=1):
        raise ValueError("must not lie in the future")
    return v


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
    line1: Line = Field(min_length=1, max_length=200)
    line2: Line | None = Field(default=None, max_length=200)
    postal_code: Line = Field(min_length=1, max_length=20)
    city: Line = Field(min_length=1, max_length=100)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class CustomerIn(Strict):
    id: str = Field(pattern=EXTERNAL_ID, description="the platform's customer id")
    name: Line = Field(min_length=1, max_length=200)
    email: Email = Field(
        max_length=320, examples=["erika@example.org"], json_schema_extra={"format": "email"}
    )
    locale: Literal["de", "en"] = "de"
    type: Literal["consumer", "business"] = "consumer"
    address: Address | None = None
    vat_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z]{2}[A-Za-z0-9 .+*-]{2,20}$",
        description="a business customer's VAT id (USt-IdNr.): reverse charge within the EU "
        "(docs/invoices.md)",
    )

    @field_validator("vat_id")
    @classmethod
    def _vat_id(cls, v: str | None) -> str | None:
        return parse_vat_id(v) if v else None

    @model_validator(mode="after")
    def _vat_id_for_businesses(self) -> CustomerIn:
        if self.vat_id and self.type != "business":
            raise ValueError("vat_id: only a business customer has a VAT id on its invoices")
        return self


class ProductIn(Strict):
    id: str = Field(pattern=EXTERNAL_ID)
    name: Line = Field(min_length=1, max_length=200)
    tax_category: Literal["standard", "reduced", "education"] | None = Field(
        default=None,
        description="VAT of the product (docs/invoices.md): standard 19 %, reduced 7 %, or "
        "education (exempt under § 4 Nr. 21 UStG where the seller holds the certificate); "
        "default MAHNWERK_INVOICE_PRODUCT_TAX",
    )
    electronic_service: StrictBool | None = Field(
        default=None,
        description="an electronically supplied service (§ 3a Abs. 5 UStG: recorded course, "
        "download); default MAHNWERK_INVOICE_ELECTRONIC_SERVICES",
    )


def _check_due(v: str) -> str:
    try:
        when = due_instant(v)
    except (ValueError, OverflowError) as exc:  # 0001-01-01T00:00+14:00 overflows to UTC
        raise ValueError(f"not an ISO date or RFC 3339 time with offset: {exc}") from None
    _in_window(when)
    return v


def _interval_days(i: Interval) -> float:
    # Months at their mean length (365.25 / 12 days): P1Y and P12M are a year, P13M is not.
    return i.months * 30.4375 + i.days + i.seconds / 86400


def _check_interval(v: str) -> str:
    try:
        interval = parse_interval(v)
    except (ValueError, OverflowError) as exc:
        raise ValueError(str(exc)) from None
    if _interval_days(interval) > MAX_INTERVAL_DAYS:
        raise ValueError(f"out of range: {v} is longer than a year (P1Y)")
    return v


# Money and counts: JSON integers only. Without strict mode pydantic took `true` (1),
# `1.0` and `"100"` as amounts.
Money = Annotated[StrictInt, Field(gt=0, le=100_000_000, description="minor units")]


class InstallmentsIn(Strict):
    count: StrictInt = Field(ge=1, le=MAX_INSTALLMENTS)
    amount: Money = Field(description="minor units per installment")
    interval: str = Field(examples=["P1M"], description="ISO 8601 duration")
    first_due: str = Field(
        examples=["2026-12-01"], description="ISO date (Europe/Berlin) or RFC 3339"
    )

    _due = field_validator("first_due")(_check_due)
    _int = field_validator("interval")(_check_interval)


class SubscriptionIn(Strict):
    amount: Money
    interval: str = Field(examples=["P1M"])
    start: str = Field(examples=["2026-12-01"])
    minimum_term: str | None = None

    _due = field_validator("start")(_check_due)
    _int = field_validator("interval")(_check_interval)

    @field_validator("minimum_term")
    @classmethod
    def _term(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            term = parse_interval(v)
        except (ValueError, OverflowError) as exc:
            raise ValueError(str(exc)) from None
        if _interval_days(term) > MAX_PLAN_YEARS * 366:
            raise ValueError(f"out of range: longer than {MAX_PLAN_YEARS} years")
        return v


class OneOffIn(Strict):
    amount: Money
    due: str | None = Field(default=None, description="defaults to now")

    @field_validator("due")
    @classmethod
    def _due(cls, v: str | None) -> str | None:
        return None if v is None else _check_due(v)


class PaymentIn(Strict):
    stripe_customer: str | None = Field(default=None, pattern=r"^cus_[A-Za-z0-9_]{1,250}$")
    payment_method: str | None = Field(default=None, pattern=r"^pm_[A-Za-z0-9_]+$")
    payment_intent: str | None = Field(default=None, pattern=r"^pi_[A-Za-z0-9_]+$")


class TermsIn(Strict):
    version: Line = Field(min_length=1, max_length=64)
    accepted_at: datetime
    ip: Line = Field(min_length=3, max_length=64)
    text_sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")

    @field_validator("accepted_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a UTC offset (RFC 3339)")
        _in_window(v)
        _not_in_future(v)
        return v


# Consents kept as evidence next to the terms (issue 12; docs/endings.md): for digital content
# the express consent to begin before the withdrawal period ends and the acknowledgement that
# the right to withdraw then lapses (§ 356 (5) BGB; § 356 (6) since June 2026), the § 312f BGB
# confirmation that recorded both on a durable medium, and for a service the express request
# to begin early (§ 356 (4), § 357a (2) BGB: Wertersatz pro rata on withdrawal).
CONSENT_KINDS = (
    "digital_content_early_start",
    "waiver_acknowledged",
    "confirmation_sent",
    "service_early_start",
)
MAX_CONSENTS = 10


class ConsentIn(Strict):
    kind: Literal[
        "digital_content_early_start",
        "waiver_acknowledged",
        "confirmation_sent",
        "service_early_start",
    ]
    version: Line = Field(min_length=1, max_length=64, description="version of the text shown")
    text_hash: str = Field(
        pattern=r"^[0-9a-fA-F]{64}$", description="SHA-256 (hex) of the text the customer saw"
    )
    given_at: datetime
    ip: Line = Field(min_length=3, max_length=64)

    @field_validator("given_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a UTC offset (RFC 3339)")
        _in_window(v)
        _not_in_future(v)
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
    seller_id: str | None = Field(
        default=None,
        pattern=ID,
        description="the seller (creditor) of the contract, see /v1/sellers; default: the "
        "default seller (MAHNWERK_SELLER_* settings), or the API key's own seller",
    )
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
    consents: list[ConsentIn] = Field(
        default_factory=list,
        max_length=MAX_CONSENTS,
        description="consents given at checkout (digital content: § 356 (5) BGB; a service's "
        "early start: § 357a (2) BGB), kept as evidence next to the terms; one per kind",
    )

    @field_validator("consents")
    @classmethod
    def _one_per_kind(cls, v: list[ConsentIn]) -> list[ConsentIn]:
        seen: set[str] = set()
        for consent in v:
            if consent.kind in seen:
                raise ValueError(f"kind {consent.kind!r} given more than once")
            seen.add(consent.kind)
        return v

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

    amount: Money
    method: Literal["bank_transfer", "cash", "other"]
    reference: Line = Field(min_length=1, max_length=200)
    received_at: datetime | None = None

    @field_validator("received_at")
    @classmethod
    def _received(cls, v: datetime | None) -> datetime | None:
        return _not_in_future(_aware_in_window(v))


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
    reason: Text = Field(min_length=1, max_length=500)

    @field_validator("until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return _aware_in_window(v)


class ResumeIn(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "Kundin wieder erreichbar"}]}
    )

    reason: Text = Field(default="", max_length=500)


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
    reason: Text = Field(min_length=1, max_length=500)

    _due = field_validator("until")(_check_due)


class WaiverIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"fees": True, "interest": False, "reason": "Kulanz: erste Mahnung"}]
        },
    )

    fees: StrictBool = False
    interest: StrictBool = False
    reason: Text = Field(min_length=1, max_length=500)


class ReasonIn(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "Kunde bestreitet den Vertragsschluss"}]},
    )

    reason: Text = Field(min_length=1, max_length=500)


class CaseStatusIn(Strict):
    """What the collection partner or the court reports (POST …/case-status)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "status": "enforcement_order",
                    "on": "2027-03-15",
                    "reference": "AG Wedding 27-1234567-0-3",
                    "reason": "Vollstreckungsbescheid zugestellt",
                }
            ]
        },
    )

    status: Literal["objection", "enforcement_order", "title", "uncollectible"] = Field(
        description="objection (Widerspruch), enforcement_order (Vollstreckungsbescheid), "
        "title (a title became final: 30-year limitation), uncollectible (written off)"
    )
    on: str = Field(
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="ISO date (Europe/Berlin) it happened; not in the future, not before the "
        "hand-off; for `title`, the day the title became final",
    )
    reference: Line = Field(default="", max_length=200, description="court file number etc.")
    reason: Text = Field(default="", max_length=500, description="a note for the timeline")

    _on = field_validator("on")(_check_due)


class PartnerPaymentIn(Strict):
    """A payment the collection partner received (POST /v1/webhooks/collection, signed)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "case.payment",
                    "contract_id": "ord-2026-0001",
                    "payment_id": "ink-7731-1",
                    "amount": 5000,
                    "received_at": "2027-02-03T09:30:00+01:00",
                    "reference": "Teilzahlung an Inkasso",
                }
            ]
        },
    )

    type: Literal["case.payment"]
    contract_id: str = Field(pattern=ID)
    payment_id: str = Field(
        pattern=r"^[A-Za-z0-9._:~-]{1,200}$",
        description="the partner's unique id of the payment: a repeated report is recorded once",
    )
    amount: Money
    received_at: datetime | None = None
    reference: Line = Field(default="collection partner", min_length=1, max_length=200)

    @field_validator("received_at")
    @classmethod
    def _received(cls, v: datetime | None) -> datetime | None:
        return _not_in_future(_aware_in_window(v))


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


CANCEL_REASONS = ("withdrawal", "cancellation_button", "goodwill", "fraud", "other")
# Reasons that end the contract at once (domain.endings.RULES): `at_period_end` is refused.
CANCEL_NOW = ("withdrawal", "goodwill", "fraud")


class CancelIn(Strict):
    """End a contract early (issue 12; docs/endings.md). `reason` from a closed list;
    `note`: free text for the timeline; `refund` (minor units): what to refund (a withdrawal
    refunds what the policy's `withdrawal.refund` says when it is left out); `at_period_end`
    (cancellation_button, other: default true) ends the contract at the end of the period
    paid for instead of now."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"reason": "cancellation_button", "at_period_end": True},
                {"reason": "withdrawal", "note": "Widerruf per E-Mail vom 03.12.2026"},
                {"reason": "goodwill", "refund": 9900, "note": "Kulanz: Kurs nicht genutzt"},
            ]
        },
    )

    reason: Literal["withdrawal", "cancellation_button", "goodwill", "fraud", "other"]
    at_period_end: StrictBool | None = None
    refund: StrictInt | None = Field(default=None, ge=0, le=100_000_000, description="minor units")
    refund_amount: StrictInt | None = Field(
        default=None, ge=0, le=100_000_000, description="the same as `refund` (an alias)"
    )
    note: Text = Field(default="", max_length=500)

    @field_validator("at_period_end")
    @classmethod
    def _period(cls, v: bool | None, info: ValidationInfo) -> bool | None:
        reason = info.data.get("reason")
        if v and reason in CANCEL_NOW:
            raise ValueError(f"a cancellation for {reason} takes effect now")
        return v

    @field_validator("refund_amount")
    @classmethod
    def _alias(cls, v: int | None, info: ValidationInfo) -> int | None:
        refund = info.data.get("refund")
        if v is not None and refund is not None and v != refund:
            raise ValueError("differs from refund (give one of them)")
        return v

    @property
    def refund_value(self) -> int | None:
        return self.refund if self.refund is not None else self.refund_amount


class ActionOut(BaseModel):
    contract_id: str
    status: ContractStatus
    stage: Stage = stage_field()
    access: Access
    overdue_amount: int
    message: str
    debits: list[dict[str, Any]] = []
    allocation: dict[str, int] = {}
    refund: dict[str, Any] | None = Field(
        default=None,
        description="cancel only: the refund given — amount, what went back through Stripe "
        "(`stripe`, with each refund's id), what the seller transfers (`outside_stripe`)",
    )


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
    request_id: str | None = Field(
        default=None,
        description="the request's id (also the `X-Request-Id` response header): quote it to "
        "the operator, who finds the request's log lines by it",
        examples=["5b0e7c1de0a94f5c9d0f1b2a3c4d5e6f"],
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
    406: (
        "None of the media types in Accept can be served",
        "not_acceptable",
        "Accept: none of application/json, application/pdf, application/xml",
        None,
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


def checkout_problems(
    body: ContractCreate, *, demo_policy: bool, max_backdate_days: int, now: datetime
) -> list[dict[str, str]]:
    """The bounds of a checkout that depend on its policy and the settings, as 422 details
    (`{"field", "message"}`); empty when the schedule is acceptable.

    - an interval shorter than a day only on a `demo: true` policy;
    - the first due date / start at most MAHNWERK_MAX_BACKDATE_DAYS in the past and at most
      five years ahead;
    - the last installment at most MAX_PLAN_YEARS after the first.
    """
    problems: list[dict[str, str]] = []
    if body.installments is not None:
        part, start, interval = (
            "installments",
            body.installments.first_due,
            body.installments.interval,
        )
        start_key = "first_due"
    elif body.subscription is not None:
        part, start, interval = "subscription", body.subscription.start, body.subscription.interval
        start_key = "start"
    elif body.one_off is not None and body.one_off.due is not None:
        part, start, interval, start_key = "one_off", body.one_off.due, None, "due"
    else:
        return problems
    if interval is not None and not demo_policy:
        parsed = parse_interval(interval)
        if (
            parsed.months == 0
            and timedelta(days=parsed.days, seconds=parsed.seconds) < MIN_INTERVAL
        ):
            problems.append(
                {
                    "field": f"{part}.interval",
                    "message": f"out of range: {interval} is shorter than a day (P1D); "
                    f"only policies marked `demo: true` allow that, not {body.policy!r}",
                }
            )
    first = due_instant(start)
    earliest = now - timedelta(days=max_backdate_days)
    if first < earliest:
        problems.append(
            {
                "field": f"{part}.{start_key}",
                "message": f"out of range: more than {max_backdate_days} days in the past "
                "(MAHNWERK_MAX_BACKDATE_DAYS)",
            }
        )
    elif first > now + MAX_START_AHEAD:
        problems.append(
            {"field": f"{part}.{start_key}", "message": "out of range: more than 5 years ahead"}
        )
    if body.installments is not None and interval is not None and not problems:
        last = installment_due_times(start, interval, body.installments.count)[-1]
        if last > first + timedelta(days=MAX_PLAN_YEARS * 366):
            problems.append(
                {
                    "field": "installments.count",
                    "message": f"out of range: the last installment would be due more than "
                    f"{MAX_PLAN_YEARS} years after the first",
                }
            )
    return problems
