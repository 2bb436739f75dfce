"""Request and response models of `/v1/sellers` (issue 14; core/sellers.py).

Every detail is checked where it comes in, and a bad one is a 422 naming the field: the IBAN
with schwifty, the SEPA creditor id with its ISO 7064 MOD 97-10 check digits, the VAT id
with the Bundeszentralamt's check digit, the register number's shape, the legal form against
the forms core/seller.py knows. What the law requires on a business letter for the legal
form (core.seller.seller_legal_problems) is checked on the seller as a whole, after a PATCH
too. Secrets are never accepted: the Stripe key and webhook secret are *references*
(`env:NAME`) to environment variables of the worker and API processes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from api.schemas import Email, Line, Strict
from core.invoice_seller import parse_number_prefix, parse_phone, parse_tax_number
from core.seller import (
    ACCOUNT_HOLDER_MAX,
    parse_bic,
    parse_creditor_id,
    parse_iban,
    parse_legal_form,
    parse_register_number,
    parse_vat_id,
)
from core.sellers import SECRET_REF, SELLER_ID, STRIPE_ACCOUNT, TEMPLATES_NAME, SellerProfile
from domain.calendar import check_state

POLICY_NAME = r"^[A-Za-z0-9_-]{1,64}$"

# core.seller.seller_legal_problems names a detail by its variable suffix; the API by field.
_PROBLEM_FIELDS = {"EMAIL": "reply_to"}


def seller_problem_field(var: str) -> str:
    return _PROBLEM_FIELDS.get(var, var.lower())


def _sender(v: str) -> str:
    """`Shop <billing@shop.example>` or a bare address: the From of the seller's notices."""
    try:
        result = validate_email(
            v, check_deliverability=False, allow_display_name=True, allow_quoted_local=False
        )
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid sender (Name <address> or address): {exc}") from None
    if result.display_name:
        return f"{result.display_name} <{result.normalized}>"
    return result.normalized


def _secret_ref(v: str) -> str:
    if re.match(r"^(sk|rk|pk|whsec)_", v.strip()):
        raise ValueError(
            "give a reference to the secret (env:NAME, the environment variable holding it), "
            "never the secret itself"
        )
    if not re.fullmatch(SECRET_REF, v):
        raise ValueError("must be env:NAME, NAME an environment variable (A-Z, 0-9, _)")
    return v


def _url(v: str) -> str:
    if not re.match(r"^https?://[^/?#\s]+", v):
        raise ValueError("must be an http(s):// URL")
    return v


def _checked(parse: Any) -> Any:
    def check(v: str) -> str:
        return str(parse(v))

    return AfterValidator(check)


def _holder(v: str) -> str:
    v = " ".join(v.split())
    if len(v) > ACCOUNT_HOLDER_MAX:
        raise ValueError(f"at most {ACCOUNT_HOLDER_MAX} characters (EPC QR code), got {len(v)}")
    return v


def _state(v: str) -> str:
    return check_state(v.strip().upper())


LegalForm = Annotated[str, _checked(parse_legal_form)]
Iban = Annotated[str, _checked(parse_iban)]
Bic = Annotated[str, _checked(parse_bic)]
CreditorId = Annotated[str, _checked(parse_creditor_id)]
VatId = Annotated[str, _checked(parse_vat_id)]
RegisterNumber = Annotated[str, _checked(parse_register_number)]
Sender = Annotated[str, AfterValidator(_sender)]
SecretRef = Annotated[str, AfterValidator(_secret_ref)]
Url = Annotated[str, AfterValidator(_url)]
Holder = Annotated[str, AfterValidator(_holder)]
State = Annotated[str, AfterValidator(_state)]
PolicyName = Annotated[str, Field(pattern=POLICY_NAME)]
TaxNumber = Annotated[str, _checked(parse_tax_number)]
Phone = Annotated[str, _checked(parse_phone)]
NumberPrefix = Annotated[str, _checked(parse_number_prefix)]

EXAMPLE: dict[str, Any] = {
    "id": "kursschmiede",
    "name": "Kursschmiede",
    "legal_form": "GmbH",
    "address": "Hauptstraße 5, 80331 München",
    "register_court": "Amtsgericht München",
    "register_number": "HRB 123456",
    "managing_directors": "Erika Beispiel",
    "vat_id": "DE999999995",
    "iban": "DE89370400440532013000",
    "bic": "COBADEFFXXX",
    "creditor_id": "DE98ZZZ09999999999",
    "mail_from": "Kursschmiede <billing@kursschmiede.example>",
    "reply_to": "support@kursschmiede.example",
    "locale": "de",
    "state": "BY",
    "policies": ["default"],
    "stripe_account": "acct_1KursschmiedeDE",
    "tax_number": "143/123/45678",
    "invoice_prefix": "KS-",
    "credit_note_prefix": "KS-K-",
}


class SellerFields(Strict):
    """Every detail a seller may set; all optional here (PATCH), see SellerCreate."""

    name: Line | None = Field(
        default=None, min_length=1, max_length=200, description="the firm, without the form"
    )
    legal_form: LegalForm | None = Field(
        default=None, description="GmbH, UG (haftungsbeschränkt), AG, eG, e.K., OHG, KG, …"
    )
    address: Line | None = Field(
        default=None, min_length=1, max_length=300, description="one line, for service"
    )
    seat: Line | None = Field(default=None, max_length=200, description="default: the town")
    register_court: Line | None = Field(default=None, max_length=200)
    register_number: RegisterNumber | None = None
    managing_directors: Line | None = Field(
        default=None, max_length=1000, description="all of them, first and last name"
    )
    supervisory_board_chair: Line | None = Field(default=None, max_length=200)
    vat_id: VatId | None = None
    iban: Iban | None = Field(default=None, description="for bank transfers; checked")
    bic: Bic | None = None
    account_holder: Holder | None = Field(default=None, description="default: the legal name")
    creditor_id: CreditorId | None = Field(
        default=None, description="SEPA creditor id (Gläubiger-ID), with its check digits"
    )
    mail_from: Sender | None = Field(
        default=None, max_length=320, description="sender of notices; default MAHNWERK_MAIL_FROM"
    )
    reply_to: Email | None = Field(
        default=None, max_length=320, description="where customers reply"
    )
    locale: Literal["de", "en"] | None = None
    state: State | None = Field(
        default=None, description="the seller's Land (BE, BY, …): its holidays move deadlines"
    )
    policies: list[PolicyName] | None = Field(
        default=None,
        max_length=50,
        description="the policies its contracts may use; empty: every policy",
    )
    templates: str | None = Field(
        default=None,
        pattern=TEMPLATES_NAME,
        description="its template overrides: a directory under MAHNWERK_SELLER_TEMPLATE_ROOT",
    )
    stripe_account: str | None = Field(
        default=None, pattern=STRIPE_ACCOUNT, description="Stripe Connect: the connected account"
    )
    stripe_api_key_ref: SecretRef | None = Field(
        default=None, description="without Connect: env:NAME of the seller's own secret key"
    )
    stripe_webhook_secret_ref: SecretRef | None = Field(
        default=None, description="with an own key: env:NAME of its webhook signing secret"
    )
    collection_url: Url | None = Field(
        default=None, max_length=2000, description="its collection partner (hand-off)"
    )
    # -- tax settings for its invoices (docs/invoices.md; not tax advice: the seller decides)
    tax_number: TaxNumber | None = Field(
        default=None,
        description="Steuernummer (21/815/08150 or 13 digits); an invoice names it or vat_id",
    )
    phone: Phone | None = Field(default=None, description="contact on XRechnung (BR-DE-6)")
    small_business: bool | None = Field(
        default=None, description="§ 19 UStG: no VAT charged (default false)"
    )
    education_exempt: bool | None = Field(
        default=None,
        description="holds the § 4 Nr. 21 UStG certificate: `education` products are exempt",
    )
    oss: bool | None = Field(
        default=None,
        description="registered for OSS (§ 18j UStG): destination VAT for EU consumers; "
        "needs vat_id",
    )
    invoicing: bool | None = Field(
        default=None,
        description="false: the seller issues its own invoices (default true; "
        "MAHNWERK_INVOICING=false turns invoices off for every seller)",
    )
    invoice_prefix: NumberPrefix | None = Field(
        default=None, description="its invoice numbers' prefix; default MAHNWERK_INVOICE_PREFIX"
    )
    credit_note_series: Literal["own", "invoice"] | None = Field(
        default=None,
        description="own: credit notes in their own series (credit_note_prefix); invoice: "
        "the invoices' series. Default MAHNWERK_CREDIT_NOTE_SERIES",
    )
    credit_note_prefix: NumberPrefix | None = Field(
        default=None, description="default MAHNWERK_CREDIT_NOTE_PREFIX"
    )

    @field_validator("policies")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("names a policy twice")
        return v


class SellerCreate(SellerFields):
    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [EXAMPLE]}}  # type: ignore[typeddict-item]

    id: str = Field(pattern=SELLER_ID, description="the platform's id for the seller")

    @model_validator(mode="after")
    def _not_default(self) -> SellerCreate:
        if self.id == "default":
            raise ValueError("id: `default` is the deployment's own seller (settings)")
        return self


class SellerPatch(SellerFields):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"iban": "DE02120300000000202051"}]},
    }  # type: ignore[typeddict-item]


class SellerOut(BaseModel):
    id: str
    source: str = Field(description="settings (the default seller) | api")
    name: str
    legal_form: str
    address: str
    seat: str
    register_court: str
    register_number: str
    managing_directors: str
    supervisory_board_chair: str
    vat_id: str
    iban: str
    bic: str
    account_holder: str
    creditor_id: str
    mail_from: str
    reply_to: str
    locale: str
    state: str
    policies: list[str]
    templates: str | None
    stripe_mode: str = Field(description="connect | own_key | platform")
    stripe_account: str | None
    stripe_api_key_ref: str | None = Field(description="a reference; the key is never stored")
    stripe_webhook_secret_ref: str | None
    webhook_path: str = Field(description="where this seller's Stripe events are posted")
    collection_url: str | None
    tax_number: str
    phone: str
    small_business: bool
    education_exempt: bool
    oss: bool
    invoicing: bool
    invoice_prefix: str | None = Field(description="null: MAHNWERK_INVOICE_PREFIX")
    credit_note_series: str | None = Field(description="null: MAHNWERK_CREDIT_NOTE_SERIES")
    credit_note_prefix: str | None = Field(description="null: MAHNWERK_CREDIT_NOTE_PREFIX")
    created_at: str | None
    updated_at: str | None


class SellersOut(BaseModel):
    data: list[SellerOut]


def seller_out(p: SellerProfile) -> SellerOut:
    if p.stripe_api_key_ref:
        mode, path = "own_key", f"/v1/webhooks/stripe/sellers/{p.id}"
    else:
        mode = "connect" if p.stripe_account else "platform"
        path = "/v1/webhooks/stripe"
    return SellerOut(
        id=p.id,
        source=p.source,
        name=p.name,
        legal_form=p.legal_form,
        address=p.address,
        seat=p.seat,
        register_court=p.register_court,
        register_number=p.register_number,
        managing_directors=p.managing_directors,
        supervisory_board_chair=p.supervisory_board_chair,
        vat_id=p.vat_id,
        iban=p.iban,
        bic=p.bic,
        account_holder=p.account_holder,
        creditor_id=p.creditor_id,
        mail_from=p.mail_from,
        reply_to=p.reply_to,
        locale=p.locale,
        state=p.state,
        policies=list(p.policies),
        templates=p.templates,
        stripe_mode=mode,
        stripe_account=p.stripe_account,
        stripe_api_key_ref=p.stripe_api_key_ref,
        stripe_webhook_secret_ref=p.stripe_webhook_secret_ref,
        webhook_path=path,
        collection_url=p.collection_url,
        tax_number=p.tax_number,
        phone=p.phone,
        small_business=p.small_business,
        education_exempt=p.education_exempt,
        oss=p.oss,
        invoicing=p.invoicing,
        invoice_prefix=p.invoice_prefix,
        credit_note_series=p.credit_note_series,
        credit_note_prefix=p.credit_note_prefix,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )
