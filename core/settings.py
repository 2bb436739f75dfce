"""Configuration: one `Settings`, read from the environment.

Every setting is an environment variable: `MAHNWERK_*`, plus the names other tools already
use (`DATABASE_URL`, `STRIPE_*`, `TEMPORAL_*`). A bad value stops start-up with one line
naming the variable (`load_settings`), never with a traceback.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.codec import parse_key_ring
from core.invoice_seller import parse_number_prefix, parse_phone, parse_tax_number
from core.seller import (
    ACCOUNT_HOLDER_MAX,
    DEMO_SELLER_ENV,
    parse_bic,
    parse_creditor_id,
    parse_iban,
    parse_legal_form,
    parse_register_number,
    parse_vat_id,
)
from domain.calendar import check_state
from domain.collection import catalogue_for
from domain.interest import BaseRate, with_rates
from domain.vat import Rate
from domain.vat import parse_rates as parse_vat_rates

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_ROLES = ("platform", "support", "admin")

# The dev defaults: public (they are in this file), so a production process refuses them
# (`check_startup`, DESIGN.md decision 14). They exist so that tests and `mahnwerk dev`
# need no configuration at all.
DEV_STRIPE_API_KEY = "sk_test_mahnwerk_dev"
DEV_STRIPE_WEBHOOK_SECRET = "whsec_mahnwerk_dev"
DEV_STRIPE_CONNECT_WEBHOOK_SECRET = "whsec_mahnwerk_connect_dev"
DEV_EVENTS_SECRET = "mahnwerk_events_dev_secret"
DEV_PAYMENT_LINK_URL = "http://127.0.0.1:8000/pay/{token}"
DEV_SELLER_NAME = "Mahnwerk Demo GmbH"
DEV_SELLER_ADDRESS = "Musterstraße 1, 10115 Berlin"
DEV_SELLER_EMAIL = "support@mahnwerk.localhost"
DEV_MAIL_FROM = "Mahnwerk <billing@mahnwerk.localhost>"
# An HMAC key shorter than this can be found offline from one signed event (brute force).
MIN_SECRET_LENGTH = 16


class ConfigError(SystemExit):
    """A bad setting: carries the one line that names the variable."""


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class ApiKey:
    """One `role:name:key` or `role:name:key:seller` entry of MAHNWERK_API_KEYS.

    `seller` (issue 14): the key sees and acts on that seller's contracts only; other
    sellers' contracts are 404 to it. None: every seller (the platform's and admins' keys)."""

    __slots__ = ("role", "name", "key", "seller")

    def __init__(self, role: str, name: str, key: str, seller: str | None = None) -> None:
        self.role = role
        self.name = name
        self.key = key
        self.seller = seller

    def __repr__(self) -> str:  # never print the secret
        return f"ApiKey(role={self.role!r}, name={self.name!r}, seller={self.seller!r})"


_SELLER_SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def parse_api_keys(raw: str) -> list[ApiKey]:
    """`role:name:key[:seller],…`. The key itself may not contain `:` since the seller
    scope (issue 14) is the fourth part; keys are printable tokens (`secrets.token_urlsafe`)."""
    keys: list[ApiKey] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (3, 4) or not all(parts):
            raise ValueError(f"entry {entry.split(':')[0]!r}… is not role:name:key[:seller]")
        role, name, key = parts[:3]
        seller = parts[3] if len(parts) == 4 else None
        if role not in _ROLES:
            raise ValueError(f"unknown role {role!r} (expected one of {', '.join(_ROLES)})")
        if len(key) < 8:
            raise ValueError(f"key of {name!r} is shorter than 8 characters")
        if seller is not None and not _SELLER_SCOPE.fullmatch(seller):
            raise ValueError(f"seller of {name!r} is not a seller id ({_SELLER_SCOPE.pattern})")
        keys.append(ApiKey(role, name, key, seller))
    return keys


_BASE_RATE_RE = re.compile(r"(\d{4}-\d{2}-\d{2}):(-?\d{1,4})")


def parse_base_rates(raw: str) -> tuple[BaseRate, ...]:
    """`2026-07-01:127,2027-01-01:152` → base-rate rows (bp), source MAHNWERK_BASE_RATES."""
    rows: list[BaseRate] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        m = _BASE_RATE_RE.fullmatch(entry)
        if m is None:
            raise ValueError(
                f"entry {entry!r} is not YYYY-MM-DD:basis_points (e.g. 2026-07-01:127)"
            )
        rows.append(BaseRate(m.group(1), int(m.group(2)), "MAHNWERK_BASE_RATES (Bundesbank)"))
    return tuple(rows)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MAHNWERK_",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
    )

    # -- mode -----------------------------------------------------------------------------
    # `dev` only for the embedded stack and the tests (`mahnwerk dev` sets it for its
    # children): it lets `mahnwerk api`/`worker` start with the public dev defaults above.
    # Anything else is production, where they stop start-up (core.settings.check_startup).
    env: Literal["production", "dev"] = "production"
    # -- storage ---------------------------------------------------------------------------
    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'var' / 'mahnwerk.db'}",
        validation_alias=_env("DATABASE_URL"),
    )
    # -- Temporal ----------------------------------------------------------------------------
    temporal_address: str = Field(
        default="127.0.0.1:7233", validation_alias=_env("TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = Field(default="default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    task_queue: str = "mahnwerk"
    temporal_ui_url: str = "http://localhost:8233"
    codec_key: SecretStr | None = None  # `id:base64key,…`, see core/codec
    # -- Stripe --------------------------------------------------------------------------
    stripe_api_key: SecretStr = Field(
        default=SecretStr(DEV_STRIPE_API_KEY), validation_alias=_env("STRIPE_API_KEY")
    )
    stripe_webhook_secret: SecretStr = Field(
        default=SecretStr(DEV_STRIPE_WEBHOOK_SECRET),
        validation_alias=_env("STRIPE_WEBHOOK_SECRET"),
    )
    # Stripe Connect (issue 14): the signing secret of the platform's Connect webhook
    # endpoint, which receives the connected accounts' events (they carry `account`). It
    # may post to the same URL as the account endpoint; either secret verifies an event.
    stripe_connect_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("STRIPE_CONNECT_WEBHOOK_SECRET")
    )
    stripe_api_base: str | None = Field(default=None, validation_alias=_env("STRIPE_API_BASE"))
    stripe_standin_port: int = 12111
    stripe_webhook_tolerance: int = 300  # seconds; Stripe library default (DOMAIN.md §5)
    # Client-side rate limit for Stripe calls (requests/s, all activity threads together);
    # None: Stripe's own limits, 25/s in test mode, 100/s live (issue 5 item 6).
    stripe_rate_limit: float | None = None
    # Stripe's activities per second for the *whole deployment*: Temporal's task-queue-wide
    # activity rate limit on the Stripe queue (issue 10 item 7), so two worker replicas
    # together never exceed it. Each debit is one PaymentIntent create, and Stripe limits
    # that endpoint to 25/s by default in live mode (docs.stripe.com/rate-limits); test mode
    # allows 25/s overall. None: min(25, the rate limit above).
    stripe_create_rate_limit: float | None = None
    # Who announces SEPA debits (issue 10 item 8): `mahnwerk` (its own pre-notification,
    # with the amount, date, mandate reference and creditor id; turn Stripe's debit
    # notification e-mails off in the Dashboard) or `stripe` (Stripe's e-mails; Mahnwerk
    # sends none). Never both. Pinned into each contract when it starts.
    sepa_prenotification: Literal["mahnwerk", "stripe"] = "mahnwerk"
    # Activity slots (and threads) of the worker's Stripe task queue (workflows/queues.py):
    # how many Stripe activities run at once. Enough for the rate limit at Stripe's latency
    # (100/s × ~0.3 s); the ledger and notice activities have their own 64 slots.
    stripe_concurrency: int = Field(default=32, ge=1, le=512)
    # Activity slots (and threads, and so at most as many database connections held across
    # a mail server's answer) of the worker's mail task queue `<task queue>-mail` (issue 17).
    mail_concurrency: int = Field(default=8, ge=1, le=256)
    # -- worker: workflow cache and sticky queue (bench/RESULTS.md, issue 6) ------------------
    # A cached contract workflow costs the worker ~145–150 KiB with payloads encrypted (a
    # worker holds ~150 MiB + 0.15 MiB per cached contract, bench/RESULTS.md, issue 17). 800
    # keeps a parked worker under 300 MiB (270 MiB at 20,000 parked; 1,000 gave 300); a due
    # wave larger than the cache replays evicted workflows (2,000-wave on two workers: 800
    # cost 2–3× the replays of 1,000 and ~5 % of the recorded rate over two pairs of runs).
    worker_max_cached_workflows: int = Field(default=800, ge=0)
    # How long a workflow task waits for this worker's sticky queue before going to the
    # public queue (and a full replay from the history). In a due wave every contract's task
    # is queued at the due instant, and a worker works through them for minutes: at 30 s,
    # 37 of 50 sampled contracts of a 2,000-wave timed out and were replayed, and their
    # debits waited behind the replays (p99 184 s late); at 300 s none did, and the debits
    # went out at 24.5/s from the first second (p99 81 s; bench/RESULTS.md, issue 17). The
    # price: the tasks already queued for a worker that dies wait this long once (tasks
    # scheduled after it stopped polling go to the public queue at once).
    worker_sticky_timeout: float = Field(default=300.0, gt=0, le=3600)
    # Seconds a stopping worker (SIGTERM) lets running activities finish before they are
    # cancelled (Temporal retries them elsewhere). docker-compose's stop_grace_period must be
    # longer, or the container is killed first.
    worker_graceful_shutdown_timeout: float = Field(default=30.0, ge=0, le=3600)
    # A file the worker touches every few seconds while it polls and Temporal answers; its
    # age is the container health check (`mahnwerk worker-health`). Unset: not written.
    worker_health_file: Path | None = None
    # -- HTTP API ------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_keys: SecretStr = SecretStr("")  # role:name:key,…
    public_url: str = "http://127.0.0.1:8000"
    # How long a support action's request waits for the contract to answer (issue 13 item
    # 3): after that it answers 202 with a status URL, the action goes on durably.
    action_wait_seconds: float = Field(default=4.0, gt=0, le=60)
    # Request bodies larger than this are refused with 413 before they are read (checkouts
    # are ~2 KiB); /codec carries the Temporal UI's payload batches (a payload is at most
    # 2 MiB in Temporal), Stripe's webhook events are larger than our own requests.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_codec_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # How far in the past a checkout's first due date (or a subscription's start) may lie:
    # a late checkout or a plan moved over within its current period; anything older would
    # debit a backlog of installments at once.
    max_backdate_days: int = Field(default=31, ge=0, le=3660)
    # -- notices -------------------------------------------------------------------------
    smtp_url: str = "smtp://127.0.0.1:1025"
    mail_from: str = DEV_MAIL_FROM
    template_dir: Path | None = None  # overrides, searched before the shipped templates
    # Sellers' own template overrides (issue 14): a seller's `templates` names a directory
    # here, searched before template_dir. None: sellers cannot have their own.
    seller_template_root: Path | None = None
    # Set per seller by the worker (core.sellers.seller_settings), searched first; not a
    # setting of the deployment (a private attribute: no environment variable).
    _seller_template_dir: Path | None = PrivateAttr(default=None)
    policy_dir: Path = PROJECT_ROOT / "policies"
    payment_link_url: str = DEV_PAYMENT_LINK_URL
    seller_name: str = DEV_SELLER_NAME
    seller_address: str = DEV_SELLER_ADDRESS
    seller_email: str = DEV_SELLER_EMAIL
    # The seller's Land (ISO 3166-2:DE code without "DE-": BE, BY, NW, …): the place of
    # performance of a money debt is the creditor's seat (§ 270 (1), (4) BGB), so its
    # public holidays move payment deadlines (§ 193 BGB). "" counts the nationwide holidays
    # only. Pinned into each contract when it starts. Default: Berlin, like the default
    # seller address.
    seller_state: str = "BE"
    # -- platform events -----------------------------------------------------------------
    events_url: str | None = None
    events_secret: SecretStr = SecretStr(DEV_EVENTS_SECRET)
    # -- worker metrics (Temporal SDK + mahnwerk_* counters for Prometheus; 0 = off) -------
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    # The business metrics' `seller` label: the first N sellers a process sees get their
    # own, the rest `other` (bounded cardinality; core/metrics.py). 0: all `other`.
    metrics_seller_labels: int = Field(default=20, ge=0, le=1000)
    # -- hand-off (SPEC.md §6) -------------------------------------------------------------
    collection_url: str | None = None  # POST the collection case file here (signed)
    # Extra § 247 BGB base rates, `YYYY-MM-DD:bp,…` (e.g. `2026-07-01:127`), for half-years
    # the table in domain/interest.py lacks; source: the Bundesbank's Bundesanzeiger notice.
    base_rates: str = ""
    seller_creditor_id: str = ""  # SEPA creditor id (Gläubiger-ID), optional
    product_category: str = "course"  # Mahnantrag catalogue when the product names none
    # -- personal data (docs/data-retention.md) ---------------------------------------------
    # Years the booked records of a customer are kept before `POST /v1/customers/{id}/erase`
    # may anonymise them, from the end of the calendar year of the last record: 10 for books
    # and records (§ 147 Abs. 1 Nr. 1, Abs. 3 AO; § 257 Abs. 1 Nr. 1, Abs. 4 HGB). 0: none.
    retention_years: int = Field(default=10, ge=0, le=100)
    # -- seller: bank account and business-letter details (issue 11 item 8) ----------------
    # Printed on every notice (core/seller.py has the law per legal form); `mahnwerk api`
    # and `mahnwerk worker` refuse to start without the mandatory ones (seller_legal_problems).
    seller_iban: str = ""  # account for bank transfers; checked with schwifty
    seller_bic: str = ""  # optional (not needed within the EEA since SEPA, EPC QR v002)
    seller_account_holder: str = ""  # default: the seller's legal name; ≤ 70 characters
    seller_legal_form: str = ""  # GmbH, UG (haftungsbeschränkt), AG, eG, e.K., OHG, KG, …
    seller_seat: str = ""  # registered seat; default: the town in seller_address
    seller_register_court: str = ""  # e.g. Amtsgericht Charlottenburg
    seller_register_number: str = ""  # e.g. HRB 123456 B
    seller_managing_directors: str = ""  # all of them, first and last name (owner, board)
    seller_supervisory_board_chair: str = ""  # AG, eG (and a GmbH that has a board)
    seller_vat_id: str = ""  # USt-IdNr., optional on letters; DE + 9 digits (check digit)
    # -- invoices (issue 15; docs/invoices.md). Not tax advice: the seller decides these. ----
    # Off when the shop issues its own invoices: Mahnwerk then issues none (pinned into each
    # contract at checkout, like the timing).
    invoicing: bool = True
    # When an installment / period / purchase is invoiced: on its due date, or once paid.
    invoice_timing: Literal["at_due", "at_payment"] = "at_due"
    # Invoice numbers: prefix + a gapless counter per seller and series (RE-000001, …).
    invoice_prefix: str = "RE-"
    # Credit notes: their own gapless series (with their own prefix) or the invoices' one.
    credit_note_series: Literal["own", "invoice"] = "own"
    credit_note_prefix: str = "RK-"
    # A product's tax category when the checkout names none: standard (19 %), reduced (7 %),
    # education (exempt under § 4 Nr. 21 UStG when the seller holds the certificate).
    invoice_product_tax: Literal["standard", "reduced", "education"] = "standard"
    # Whether products are electronically supplied services (§ 3a Abs. 5 UStG: recorded
    # courses, downloads) when the checkout does not say: decides the place of supply for
    # consumers abroad.
    invoice_electronic_services: bool = True
    # Standard VAT rates the table in domain/vat.py lacks: `CC:YYYY-MM-DD:bp,…`.
    vat_rates: str = ""
    seller_tax_number: str = ""  # Steuernummer; an invoice needs it or the VAT id
    seller_small_business: bool = False  # § 19 UStG: no VAT charged
    seller_education_exempt: bool = False  # holds the § 4 Nr. 21 UStG certificate
    seller_oss: bool = False  # registered for OSS: destination VAT for EU consumers
    seller_phone: str = ""  # the seller's contact on XRechnung invoices (BR-DE-6)
    # Accounts of the monthly export (`mahnwerk export`): `key=number,…` over SKR 03
    # defaults (core/export.py); the accountant's choice.
    export_accounts: str = ""
    # -- misc ----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        # Accept the URL forms people paste; SQLAlchemy needs the psycopg 3 driver named.
        if v.startswith("postgres://"):
            v = "postgresql://" + v[len("postgres://") :]
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v[len("postgresql://") :]
        if not re.match(r"^(postgresql\+psycopg|sqlite)(\+pysqlite)?://", v):
            raise ValueError("must be postgresql+psycopg://… or sqlite:///…")
        return v

    @field_validator("seller_state")
    @classmethod
    def _seller_state(cls, v: str) -> str:
        return check_state(v.strip().upper())

    @field_validator("seller_creditor_id")
    @classmethod
    def _creditor_id(cls, v: str) -> str:
        # SEPA creditor identifier: country, 2 check digits, 3-character business code, a
        # national part; German ones have 18 characters (DOMAIN.md §4, Bundesbank); the check
        # digits are ISO 7064 MOD 97-10 (core.seller.parse_creditor_id).
        return parse_creditor_id(v) if v.strip() else ""

    @field_validator("seller_iban")
    @classmethod
    def _seller_iban(cls, v: str) -> str:
        return parse_iban(v) if v.strip() else ""

    @field_validator("seller_bic")
    @classmethod
    def _seller_bic(cls, v: str) -> str:
        return parse_bic(v) if v.strip() else ""

    @field_validator("seller_legal_form")
    @classmethod
    def _seller_legal_form(cls, v: str) -> str:
        return parse_legal_form(v) if v.strip() else ""

    @field_validator("seller_register_number")
    @classmethod
    def _seller_register_number(cls, v: str) -> str:
        return parse_register_number(v) if v.strip() else ""

    @field_validator("seller_vat_id")
    @classmethod
    def _seller_vat_id(cls, v: str) -> str:
        return parse_vat_id(v) if v.strip() else ""

    @field_validator("seller_tax_number")
    @classmethod
    def _seller_tax_number(cls, v: str) -> str:
        return parse_tax_number(v) if v.strip() else ""

    @field_validator("invoice_prefix", "credit_note_prefix")
    @classmethod
    def _number_prefix(cls, v: str) -> str:
        return parse_number_prefix(v)

    @field_validator("export_accounts")
    @classmethod
    def _export_accounts(cls, v: str) -> str:
        from core.export import parse_accounts

        parse_accounts(v)
        return v

    @field_validator("vat_rates")
    @classmethod
    def _vat_rates(cls, v: str) -> str:
        parse_vat_rates(v)
        return v

    @field_validator("seller_phone")
    @classmethod
    def _seller_phone(cls, v: str) -> str:
        return parse_phone(v)

    @model_validator(mode="after")
    def _credit_note_prefix_differs(self) -> Settings:
        if self.credit_note_series == "own" and self.credit_note_prefix == self.invoice_prefix:
            raise ValueError(
                "MAHNWERK_CREDIT_NOTE_PREFIX: an own credit-note series needs its own prefix "
                f"(both are {self.invoice_prefix!r}); or MAHNWERK_CREDIT_NOTE_SERIES=invoice"
            )
        return self

    @field_validator("seller_account_holder")
    @classmethod
    def _seller_account_holder(cls, v: str) -> str:
        v = " ".join(v.split())
        if len(v) > ACCOUNT_HOLDER_MAX:
            raise ValueError(f"at most {ACCOUNT_HOLDER_MAX} characters (EPC QR code), got {len(v)}")
        return v

    @field_validator(
        "seller_seat",
        "seller_register_court",
        "seller_managing_directors",
        "seller_supervisory_board_chair",
    )
    @classmethod
    def _one_line(cls, v: str) -> str:
        return " ".join(v.split())  # a footer line: no line breaks from the environment

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]+:\d{1,5}$", v):
            raise ValueError("must be host:port")
        return v

    @field_validator("api_keys")
    @classmethod
    def _api_keys(cls, v: SecretStr) -> SecretStr:
        parse_api_keys(v.get_secret_value())
        return v

    @field_validator("codec_key")
    @classmethod
    def _codec_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            # ValueError names the entry, never the key material
            parse_key_ring(v.get_secret_value())
        return v

    @field_validator("stripe_rate_limit", "stripe_create_rate_limit")
    @classmethod
    def _rate(cls, v: float | None) -> float | None:
        if v is not None and not v > 0:
            raise ValueError("must be a number of requests per second > 0")
        return v

    @field_validator("stripe_api_base", "events_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://", v):
            raise ValueError("must be an http(s):// URL")
        return v.rstrip("/") if v else v

    @field_validator("collection_url")
    @classmethod
    def _collection_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/?#\s]+", v):
            raise ValueError("must be an http(s):// URL")
        return v

    @field_validator("base_rates")
    @classmethod
    def _base_rates(cls, v: str) -> str:
        with_rates(parse_base_rates(v))  # 1 Jan / 1 Jul only, no conflict with the table
        return v

    @field_validator("product_category")
    @classmethod
    def _product_category(cls, v: str) -> str:
        catalogue_for(v)  # ValueError lists the known categories
        return v.strip().lower()

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, v: str) -> str:
        if not re.match(r"^(smtps?|smtp\+starttls)://([^@/]+@)?[^@/:]+(:\d+)?/?$", v):
            raise ValueError("must be smtp://host:port (or smtps://, smtp+starttls://)")
        return v

    @field_validator("policy_dir", "template_dir", "seller_template_root")
    @classmethod
    def _dir(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_dir():
            raise ValueError(f"{v} is not a directory")
        return v

    @property
    def seller_template_dir(self) -> Path | None:
        """A seller's own template overrides (core.sellers.seller_settings), or None."""
        return self._seller_template_dir

    @property
    def parsed_api_keys(self) -> list[ApiKey]:
        return parse_api_keys(self.api_keys.get_secret_value())

    @property
    def codec_key_ring(self) -> str | None:
        """MAHNWERK_CODEC_KEY in clear (`id:base64key,…`), or None."""
        return self.codec_key.get_secret_value() if self.codec_key is not None else None

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def extra_base_rates(self) -> tuple[BaseRate, ...]:
        """MAHNWERK_BASE_RATES as rows for `domain.interest.with_rates`."""
        return parse_base_rates(self.base_rates)

    @property
    def extra_vat_rates(self) -> tuple[Rate, ...]:
        """MAHNWERK_VAT_RATES as rows for domain.vat."""
        return parse_vat_rates(self.vat_rates)

    @property
    def effective_stripe_rate_limit(self) -> float:
        """MAHNWERK_STRIPE_RATE_LIMIT, else Stripe's default for the key's mode."""
        if self.stripe_rate_limit is not None:
            return self.stripe_rate_limit
        return default_stripe_rate_limit(self.stripe_api_key.get_secret_value())

    @property
    def effective_stripe_activity_rate(self) -> float:
        """Stripe activities/s across all workers (the Stripe queue's task-queue limit)."""
        create = self.stripe_create_rate_limit or STRIPE_CREATE_RATE_LIMIT
        return min(create, self.effective_stripe_rate_limit)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


# Stripe's documented default limits: 25 requests/s in test mode, 100/s in live mode.
STRIPE_TEST_RATE_LIMIT = 25.0
STRIPE_LIVE_RATE_LIMIT = 100.0
# Stripe's default per-endpoint limit for PaymentIntent creation in live mode (the
# "Rate limits" page: 25 requests/s for the create endpoint unless raised on request).
STRIPE_CREATE_RATE_LIMIT = 25.0


def default_stripe_rate_limit(api_key: str) -> float:
    """Requests/s allowed for `api_key`: live keys 100/s, test keys (and unknown) 25/s."""
    if api_key.startswith(("sk_live_", "rk_live_")):
        return STRIPE_LIVE_RATE_LIMIT
    return STRIPE_TEST_RATE_LIMIT


_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "temporal_address": "TEMPORAL_ADDRESS",
    "temporal_namespace": "TEMPORAL_NAMESPACE",
    "stripe_api_key": "STRIPE_API_KEY",
    "stripe_webhook_secret": "STRIPE_WEBHOOK_SECRET",
    "stripe_connect_webhook_secret": "STRIPE_CONNECT_WEBHOOK_SECRET",
    "stripe_api_base": "STRIPE_API_BASE",
}


def env_name(field: str) -> str:
    """The environment variable that sets `field` (pydantic reports aliased fields by alias)."""
    if field in _ENV_NAMES.values():
        return field
    return _ENV_NAMES.get(field, f"MAHNWERK_{field.upper()}")


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value raises ConfigError with one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a check across settings: its message names the variables
            raise ConfigError(f"configuration error: {msg}") from None
        field = str(err["loc"][0])
        raise ConfigError(f"configuration error: {env_name(field)}: {msg}") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


# -- start-up checks of the production processes (DESIGN.md decision 14) ----------------------

Process = Literal["api", "worker"]

_LOOPBACK = re.compile(r"^https?://(localhost|127\.[0-9.]+|\[::1\]|0\.0\.0\.0)(:\d+)?(/|$)", re.I)


def _secret_problem(settings: Settings, field: str, dev_value: str | None, what: str) -> str | None:
    value = getattr(settings, field)
    text = value.get_secret_value() if isinstance(value, SecretStr) else (value or "")
    if field not in settings.model_fields_set or not text:
        return f"missing: set {what}"
    if dev_value is not None and text == dev_value:
        return f"is the public dev default; set {what}"
    return None


def startup_problem(settings: Settings, process: Process) -> str | None:
    """The first reason `mahnwerk api`/`worker` must not start with `settings`, as
    `VARIABLE: reason`, or None.

    Production (anything but MAHNWERK_ENV=dev) refuses what is missing or a dev default of
    this file: a public webhook secret lets anyone forge Stripe events (a dispute, a paid
    invoice), a public events secret lets anyone forge our events to the platform, demo
    seller details and payment links would go to real customers, and without a codec key
    names and addresses would reach Temporal in clear. Dev mode refuses a live Stripe key,
    so MAHNWERK_ENV=dev can never move real money.
    """
    stripe_key = settings.stripe_api_key.get_secret_value()
    if settings.is_dev:
        if stripe_key.startswith(("sk_live_", "rk_live_")):
            return "MAHNWERK_ENV: dev mode (public dev secrets) refuses a live STRIPE_API_KEY"
        return None
    checks: list[tuple[str, str | None]] = [
        (
            "STRIPE_API_KEY",
            _secret_problem(
                settings, "stripe_api_key", DEV_STRIPE_API_KEY, "the Stripe secret key (sk_…)"
            ),
        ),
        (
            "STRIPE_WEBHOOK_SECRET",
            _secret_problem(
                settings,
                "stripe_webhook_secret",
                DEV_STRIPE_WEBHOOK_SECRET,
                "the signing secret (whsec_…) of the Stripe webhook endpoint",
            ),
        ),
        (
            "MAHNWERK_EVENTS_SECRET",
            _secret_problem(
                settings,
                "events_secret",
                DEV_EVENTS_SECRET,
                f"a random HMAC secret of at least {MIN_SECRET_LENGTH} characters",
            ),
        ),
    ]
    if process == "api":
        checks.append(
            (
                "MAHNWERK_API_KEYS",
                None
                if settings.parsed_api_keys
                else "missing: set role:name:key,… (roles platform, support, admin)",
            )
        )
    connect = settings.stripe_connect_webhook_secret
    if connect is not None and connect.get_secret_value() == DEV_STRIPE_CONNECT_WEBHOOK_SECRET:
        checks.append(
            (
                "STRIPE_CONNECT_WEBHOOK_SECRET",
                "is the public dev default; set the signing secret (whsec_…) of the Stripe "
                "Connect webhook endpoint",
            )
        )
    ring = settings.codec_key_ring
    if not ring:
        codec = "missing: payloads would reach Temporal unencrypted; `python -m core.codec`"
        checks.append(("MAHNWERK_CODEC_KEY", codec + " prints a key"))
    elif parse_key_ring(ring).primary_id.startswith("dev-"):
        checks.append(
            (
                "MAHNWERK_CODEC_KEY",
                "the encrypting key is a `mahnwerk dev` key (id dev-…); "
                "`python -m core.codec` prints a new one",
            )
        )
    # The demo business-letter details of `mahnwerk dev` that no real seller has (register
    # number, directors, VAT id, the IBAN — Stripe's test IBAN): in a real notice they would
    # send customers' transfers nowhere. (Legal form, court and BIC are real-world values.)
    for var in (
        "MAHNWERK_SELLER_REGISTER_NUMBER",
        "MAHNWERK_SELLER_MANAGING_DIRECTORS",
        "MAHNWERK_SELLER_VAT_ID",
        "MAHNWERK_SELLER_IBAN",
    ):
        demo_value = DEMO_SELLER_ENV[var]
        field = var.removeprefix("MAHNWERK_").lower()
        if str(getattr(settings, field, "") or "").replace(" ", "") == demo_value.replace(" ", ""):
            checks.append((var, "is the `mahnwerk dev` demo value; set the seller's own"))
    for field, dev_value, what in (
        ("seller_name", DEV_SELLER_NAME, "the seller's legal name for notices"),
        ("seller_address", DEV_SELLER_ADDRESS, "the seller's postal address for notices"),
        ("seller_email", DEV_SELLER_EMAIL, "the seller's e-mail address for notices"),
        ("mail_from", DEV_MAIL_FROM, "the sender of notices, e.g. Shop <billing@shop.example>"),
        (
            "payment_link_url",
            DEV_PAYMENT_LINK_URL,
            "the page where customers pay, with {token} (Mahnwerk's /pay/{token}) or "
            "{contract_id} (a page of the platform's)",
        ),
    ):
        checks.append((env_name(field), _secret_problem(settings, field, dev_value, what)))
    if _LOOPBACK.match(settings.payment_link_url) and "payment_link_url" in (
        settings.model_fields_set
    ):
        checks.append(
            (
                "MAHNWERK_PAYMENT_LINK_URL",
                "points at this machine; customers must be able to open it",
            )
        )
    from core.invoice_seller import invoice_problems, invoice_seller  # imports this module

    checks.extend(invoice_problems(invoice_seller(None, settings)))
    events = settings.events_secret.get_secret_value()
    if len(events) < MIN_SECRET_LENGTH and "events_secret" in settings.model_fields_set:
        checks.append(("MAHNWERK_EVENTS_SECRET", f"shorter than {MIN_SECRET_LENGTH} characters"))
    for name, problem in checks:
        if problem is not None:
            return f"{name}: {problem}"
    return None


def check_startup(settings: Settings, process: Process) -> None:
    """Raise ConfigError with one line naming the variable if `process` must not start."""
    problem = startup_problem(settings, process)
    if problem is not None:
        raise ConfigError(f"configuration error: {problem}")
