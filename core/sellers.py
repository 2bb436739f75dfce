"""Sellers as data (issue 14): who is the creditor of a contract.

A platform hosts many creators; each is the creditor of its own customers: its legal
details and bank account go on its notices, its debits run on its own Stripe account, its
support staff see its contracts only. The `sellers` table holds them (core.models.Seller,
`/v1/sellers`); every contract names one (`contracts.seller_id`).

The **default seller** (id ``default``) is the one a single-seller deployment always had:
its details are the `MAHNWERK_SELLER_*` settings, read at run time (so they can never drift
from the environment), and its debits use `STRIPE_API_KEY` on the platform's own account.
Migration 0009 gave every existing contract to it. It cannot be changed through the API.

Stripe, per seller (docs/sellers.md):

- ``stripe_account`` (``acct_…``): Stripe Connect. Requests use the platform's key with the
  ``Stripe-Account`` header; customers, payment methods and mandates live on that account,
  and its events reach the platform's Connect webhook endpoint carrying ``account``.
- ``stripe_api_key_ref`` (``env:NAME``): the seller's own Stripe account, without Connect.
  The key is never stored, only the name of the environment variable that holds it in the
  worker and API processes; its webhooks come to ``/v1/webhooks/stripe/sellers/{id}``,
  signed with the secret ``stripe_webhook_secret_ref`` names.
- neither: the platform's own account (the default seller's).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.models import Seller

if TYPE_CHECKING:
    from core.settings import Settings

DEFAULT_SELLER_ID: Final = "default"
SELLER_ID = r"^[A-Za-z0-9_.-]{1,64}$"
STRIPE_ACCOUNT = r"^acct_[A-Za-z0-9]{1,60}$"
# A reference to a secret held outside the database: the environment variable's name.
SECRET_REF = r"^env:[A-Z_][A-Z0-9_]{0,127}$"
TEMPLATES_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class SellerConfigError(Exception):
    """A seller's Stripe credentials cannot be used (a reference names no variable)."""


@dataclass(frozen=True)
class SellerProfile:
    """One seller's details, as the notices, the checkout and the Stripe calls read them.

    The ``seller_*`` properties make it a :class:`core.seller.SellerDetails`, so the legal
    rules of core/seller.py apply to it exactly as to the settings."""

    id: str
    source: str  # settings (the default seller) | api
    name: str = ""
    legal_form: str = ""
    address: str = ""
    seat: str = ""
    register_court: str = ""
    register_number: str = ""
    managing_directors: str = ""
    supervisory_board_chair: str = ""
    vat_id: str = ""
    iban: str = ""
    bic: str = ""
    account_holder: str = ""
    creditor_id: str = ""
    mail_from: str = ""
    reply_to: str = ""
    locale: str = "de"
    state: str = ""
    policies: tuple[str, ...] = ()  # empty: every policy of MAHNWERK_POLICY_DIR
    templates: str | None = None  # a directory under MAHNWERK_SELLER_TEMPLATE_ROOT
    stripe_account: str | None = None
    stripe_api_key_ref: str | None = None
    stripe_webhook_secret_ref: str | None = None
    collection_url: str | None = None
    # -- tax settings, for its invoices (issue 15; core.invoice_seller, migration 0010) ----
    tax_number: str = ""
    phone: str = ""
    small_business: bool = False  # § 19 UStG
    education_exempt: bool = False  # holds the § 4 Nr. 21 UStG certificate
    oss: bool = False  # registered for the One-Stop-Shop (§ 18j UStG)
    invoicing: bool = True  # False: the seller issues its own invoices
    invoice_prefix: str | None = None  # None: MAHNWERK_INVOICE_PREFIX
    credit_note_series: str | None = None  # own | invoice; None: MAHNWERK_CREDIT_NOTE_SERIES
    credit_note_prefix: str | None = None  # None: MAHNWERK_CREDIT_NOTE_PREFIX
    created_at: str | None = None
    updated_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # -- core.seller.SellerDetails ------------------------------------------------------------

    @property
    def seller_name(self) -> str:
        return self.name

    @property
    def seller_address(self) -> str:
        return self.address

    @property
    def seller_email(self) -> str:
        return self.reply_to

    @property
    def seller_iban(self) -> str:
        return self.iban

    @property
    def seller_bic(self) -> str:
        return self.bic

    @property
    def seller_account_holder(self) -> str:
        return self.account_holder

    @property
    def seller_legal_form(self) -> str:
        return self.legal_form

    @property
    def seller_seat(self) -> str:
        return self.seat

    @property
    def seller_register_court(self) -> str:
        return self.register_court

    @property
    def seller_register_number(self) -> str:
        return self.register_number

    @property
    def seller_managing_directors(self) -> str:
        return self.managing_directors

    @property
    def seller_supervisory_board_chair(self) -> str:
        return self.supervisory_board_chair

    @property
    def seller_vat_id(self) -> str:
        return self.vat_id

    # -----------------------------------------------------------------------------------------

    @property
    def is_default(self) -> bool:
        return self.id == DEFAULT_SELLER_ID

    def allows_policy(self, policy: str) -> bool:
        return not self.policies or policy in self.policies

    def template_dir(self, root: Path | None) -> Path | None:
        """The seller's template overrides (searched before MAHNWERK_TEMPLATE_DIR's)."""
        if self.templates is None or root is None:
            return None
        return root / self.templates

    @classmethod
    def from_settings(cls, settings: Settings) -> SellerProfile:
        return cls(
            id=DEFAULT_SELLER_ID,
            source="settings",
            name=settings.seller_name,
            legal_form=settings.seller_legal_form,
            address=settings.seller_address,
            seat=settings.seller_seat,
            register_court=settings.seller_register_court,
            register_number=settings.seller_register_number,
            managing_directors=settings.seller_managing_directors,
            supervisory_board_chair=settings.seller_supervisory_board_chair,
            vat_id=settings.seller_vat_id,
            iban=settings.seller_iban,
            bic=settings.seller_bic,
            account_holder=settings.seller_account_holder,
            creditor_id=settings.seller_creditor_id,
            mail_from=settings.mail_from,
            reply_to=settings.seller_email,
            state=settings.seller_state,
            collection_url=settings.collection_url,
            tax_number=settings.seller_tax_number,
            phone=settings.seller_phone,
            small_business=settings.seller_small_business,
            education_exempt=settings.seller_education_exempt,
            oss=settings.seller_oss,
            invoicing=settings.invoicing,
            invoice_prefix=settings.invoice_prefix,
            credit_note_series=settings.credit_note_series,
            credit_note_prefix=settings.credit_note_prefix,
        )

    @classmethod
    def from_row(cls, row: Seller) -> SellerProfile:
        return cls(
            id=row.id,
            source=row.source,
            name=row.name or "",
            legal_form=row.legal_form or "",
            address=row.address or "",
            seat=row.seat or "",
            register_court=row.register_court or "",
            register_number=row.register_number or "",
            managing_directors=row.managing_directors or "",
            supervisory_board_chair=row.supervisory_board_chair or "",
            vat_id=row.vat_id or "",
            iban=row.iban or "",
            bic=row.bic or "",
            account_holder=row.account_holder or "",
            creditor_id=row.creditor_id or "",
            mail_from=row.mail_from or "",
            reply_to=row.reply_to or "",
            locale=row.locale or "de",
            state=row.state or "",
            policies=tuple(row.policies or ()),
            templates=row.templates,
            stripe_account=row.stripe_account,
            stripe_api_key_ref=row.stripe_api_key_ref,
            stripe_webhook_secret_ref=row.stripe_webhook_secret_ref,
            collection_url=row.collection_url,
            tax_number=row.tax_number or "",
            phone=row.phone or "",
            small_business=bool(row.small_business),
            education_exempt=bool(row.education_exempt),
            oss=bool(row.oss),
            invoicing=row.invoicing is not False,
            invoice_prefix=row.invoice_prefix,
            credit_note_series=row.credit_note_series,
            credit_note_prefix=row.credit_note_prefix,
            created_at=row.created_at.isoformat() if row.created_at else None,
            updated_at=row.updated_at.isoformat() if row.updated_at else None,
        )


# Columns of core.models.Seller the API writes (everything but id, source and the times).
SELLER_FIELDS: Final = (
    "name",
    "legal_form",
    "address",
    "seat",
    "register_court",
    "register_number",
    "managing_directors",
    "supervisory_board_chair",
    "vat_id",
    "iban",
    "bic",
    "account_holder",
    "creditor_id",
    "mail_from",
    "reply_to",
    "locale",
    "state",
    "policies",
    "templates",
    "stripe_account",
    "stripe_api_key_ref",
    "stripe_webhook_secret_ref",
    "collection_url",
    "tax_number",
    "phone",
    "small_business",
    "education_exempt",
    "oss",
    "invoicing",
    "invoice_prefix",
    "credit_note_series",
    "credit_note_prefix",
)
# Flags: `null` in a PATCH sets them back to their default.
SELLER_FLAGS: Final = {
    "small_business": False,
    "education_exempt": False,
    "oss": False,
    "invoicing": True,
}
# Number prefixes: "" is a prefix (none), not a missing value.
SELLER_PREFIXES: Final = ("invoice_prefix", "credit_note_prefix")


def profile_with(profile: SellerProfile, changes: dict[str, Any]) -> SellerProfile:
    values = dict(changes)
    for flag, default in SELLER_FLAGS.items():
        if flag in values and values[flag] is None:
            values[flag] = default
    if "policies" in values:
        values["policies"] = tuple(values["policies"] or ())
    return replace(profile, **values)


def resolve_secret(ref: str) -> str:
    """The secret a ``env:NAME`` reference names, from this process's environment."""
    if not re.fullmatch(SECRET_REF, ref):
        raise SellerConfigError(f"{ref!r} is not a secret reference (env:NAME)")
    name = ref.removeprefix("env:")
    value = os.environ.get(name, "").strip()
    if not value:
        raise SellerConfigError(f"environment variable {name} (from {ref}) is not set")
    return value


@dataclass(frozen=True)
class StripeRoute:
    """How a seller's requests reach Stripe: with which key, on behalf of which account."""

    api_key: str
    account: str | None = None  # Connect: the `Stripe-Account` header

    @property
    def limit_key(self) -> str:
        """Stripe limits requests per account: the connected account, else the key's own."""
        if self.account:
            return self.account
        return "key:" + hashlib.sha256(self.api_key.encode()).hexdigest()[:16]

    @property
    def source(self) -> str:
        """The webhook source the seller's events come from (see `webhook_scope`)."""
        return self.account or "platform"


def stripe_route(profile: SellerProfile, platform_key: str) -> StripeRoute:
    if profile.stripe_api_key_ref:
        return StripeRoute(resolve_secret(profile.stripe_api_key_ref))
    return StripeRoute(platform_key, profile.stripe_account or None)


class SellerDirectory:
    """The sellers, read from the ledger database and cached for `ttl` seconds.

    The default seller comes from the settings. The worker reads a seller for every Stripe
    call and notice; a change through the API reaches a running worker within `ttl`."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], ttl: float = 30.0
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, SellerProfile | None]] = {}
        self._default = SellerProfile.from_settings(settings)

    @property
    def default(self) -> SellerProfile:
        return self._default

    def invalidate(self, seller_id: str | None = None) -> None:
        with self._lock:
            if seller_id is None:
                self._cache.clear()
            else:
                self._cache.pop(seller_id, None)

    def get(self, seller_id: str | None) -> SellerProfile | None:
        """The seller, None if unknown; ``""``/None (contracts started before issue 14):
        the default seller."""
        if not seller_id or seller_id == DEFAULT_SELLER_ID:
            return self._default
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(seller_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        with self.sessions() as s:
            row = s.get(Seller, seller_id)
            found = SellerProfile.from_row(row) if row is not None else None
        with self._lock:
            self._cache[seller_id] = (now, found)
        return found

    def require(self, seller_id: str | None) -> SellerProfile:
        found = self.get(seller_id)
        if found is None:
            raise SellerConfigError(f"seller {seller_id!r} does not exist")
        return found

    def all(self) -> list[SellerProfile]:
        with self.sessions() as s:
            rows = list(s.scalars(select(Seller).order_by(Seller.id)))
        out = [self._default]
        out += [SellerProfile.from_row(r) for r in rows if r.id != DEFAULT_SELLER_ID]
        return out

    def route(self, seller_id: str | None) -> StripeRoute:
        return stripe_route(
            self.require(seller_id), self.settings.stripe_api_key.get_secret_value()
        )

    def for_source(self, source: str) -> list[str]:
        """The sellers whose Stripe events come from `source`: a connected account id
        (``acct_…``, a Connect event's ``account``) or ``platform`` (the platform's own
        account: sellers without a connected account or key of their own)."""
        ids: list[str] = []
        with self.sessions() as s:
            rows = list(s.scalars(select(Seller)))
        for row in rows:
            if row.id == DEFAULT_SELLER_ID:
                continue
            if source == "platform":
                if not row.stripe_account and not row.stripe_api_key_ref:
                    ids.append(row.id)
            elif row.stripe_account == source and not row.stripe_api_key_ref:
                ids.append(row.id)
        if source == "platform":
            ids.append(DEFAULT_SELLER_ID)
        return sorted(ids)


def seller_ids(profiles: Iterable[SellerProfile]) -> list[str]:
    return [p.id for p in profiles]


def seller_settings(settings: Settings, profile: SellerProfile) -> Settings:
    """The settings as the seller's notices and case files read them (issue 14 part 4): the
    `seller_*` details, the sender, the creditor id, the template overrides and the
    collection partner are the seller's. The default seller's are the settings themselves."""
    if profile.is_default:
        return settings
    overlay = settings.model_copy(
        update={
            "seller_name": profile.name,
            "seller_address": profile.address,
            "seller_email": profile.reply_to,
            "seller_iban": profile.iban,
            "seller_bic": profile.bic,
            "seller_account_holder": profile.account_holder,
            "seller_legal_form": profile.legal_form,
            "seller_seat": profile.seat,
            "seller_register_court": profile.register_court,
            "seller_register_number": profile.register_number,
            "seller_managing_directors": profile.managing_directors,
            "seller_supervisory_board_chair": profile.supervisory_board_chair,
            "seller_vat_id": profile.vat_id,
            "seller_creditor_id": profile.creditor_id,
            "seller_state": profile.state,
            "mail_from": profile.mail_from or settings.mail_from,
            "collection_url": profile.collection_url or settings.collection_url,
        }
    )
    overlay._seller_template_dir = profile.template_dir(settings.seller_template_root)
    return overlay


class SellerSettings:
    """`seller_settings` of a contract's seller, for the notice and collection activities."""

    # A contract's seller is written at checkout and never changes: remembered for the
    # contracts a worker has recently served (a notice asked three times per message).
    CONTRACTS_REMEMBERED = 10_000

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.directory = SellerDirectory(settings, sessions)
        self._sellers: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def for_seller(self, seller_id: str | None) -> Settings:
        profile = self.directory.get(seller_id)
        if profile is None:
            raise SellerConfigError(f"seller {seller_id!r} does not exist")
        return seller_settings(self.settings, profile)

    def for_contract(self, contract_id: str) -> Settings:
        return self.for_seller(self.seller_of(contract_id))

    def seller_of(self, contract_id: str) -> str | None:
        """The contract's seller id (None: no such contract, asked again next time)."""
        from core.models import Contract

        with self._lock:
            known = self._sellers.get(contract_id)
            if known is not None:
                self._sellers.move_to_end(contract_id)
                return known
        with self.sessions() as s:
            seller_id = s.scalar(select(Contract.seller_id).where(Contract.id == contract_id))
        if seller_id is not None:
            with self._lock:
                self._sellers[contract_id] = seller_id
                while len(self._sellers) > self.CONTRACTS_REMEMBERED:
                    self._sellers.popitem(last=False)
        return seller_id
