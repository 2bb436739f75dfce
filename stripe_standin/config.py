"""Settings of the stand-in: delays, webhook endpoints, idempotency horizon.

Everything that real Stripe fixes on its side (how long a SEPA debit stays `processing`, where
webhooks go and with which signing secret, how long idempotency keys live) is a setting here,
so tests can shrink minutes to milliseconds. `POST /_standin/config` changes them at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_API_VERSION = "2024-06-20"


def _sdk_api_version() -> str:
    """The API version the installed `stripe` SDK pins, used as the events' `api_version`."""
    try:
        import stripe
    except ImportError:  # pragma: no cover - the SDK is a project dependency
        return DEFAULT_API_VERSION
    return str(getattr(stripe, "api_version", DEFAULT_API_VERSION) or DEFAULT_API_VERSION)


@dataclass
class StandinConfig:
    """Run-time settings; `from_mapping` accepts the JSON of `POST /_standin/config`.

    Changes apply to what happens next (new debits, new events); `webhook_concurrency` and
    `webhook_timeout` only at start, `host`/`port` only before the server binds.
    """

    host: str = "127.0.0.1"
    port: int = 12111
    webhook_urls: list[str] = field(default_factory=list)
    webhook_secret: str = "whsec_mahnwerk_dev"
    # Stripe Connect: the platform's Connect endpoints, which get the events of connected
    # accounts (each carrying `account`), signed with their own secret.
    connect_webhook_urls: list[str] = field(default_factory=list)
    connect_webhook_secret: str = "whsec_mahnwerk_connect_dev"
    # Connected accounts that exist from the start (more: POST /_standin/accounts).
    accounts: list[str] = field(default_factory=list)
    # The account's SEPA creditor id (`GET /v1/account` →
    # settings.sepa_debit_payments.creditor_id); None: not set up, as on a fresh account.
    creditor_id: str | None = None
    # SEPA: seconds a debit stays `processing` (Stripe: days); the long IBAN takes 3x.
    sepa_delay: float = 3.0
    sepa_long_delay: float | None = None  # None: 3 * sepa_delay
    dispute_delay: float | None = None  # None: sepa_delay
    # Webhook delivery (webhooks.py): a delivery not answered 2xx is retried with exponential
    # backoff: the n-th retry waits webhook_retry_delay * 2**(n-1) seconds, at most
    # webhook_retry_max_delay, and delivery stops after webhook_max_attempts attempts or once
    # the next attempt would fall more than webhook_retry_horizon seconds after the first
    # (Stripe, live mode: retries for up to 3 days). Defaults: a few short attempts.
    webhook_max_attempts: int = 4
    webhook_retry_delay: float = 1.0  # first backoff; doubles on each further attempt
    webhook_retry_max_delay: float | None = None  # None: no cap
    webhook_retry_horizon: float = 3 * 86400.0
    webhook_timeout: float = 5.0
    webhook_concurrency: int = 4
    # Stripe prunes idempotency keys once they are at least 24 hours old.
    idempotency_ttl: float = 24 * 3600.0
    # Real Stripe runs a card check when a card is attached, so most decline test cards
    # (all but pm_card_chargeCustomerFail and the authentication ones) fail at attach.
    # Off by default: tests want a customer whose stored card declines at debit time.
    strict_attach: bool = False
    # Fault injection (faults.py): a fixed latency before each API request, and per-request
    # probabilities (0..1) of a 500, a 429, a request held `fault_timeout_seconds` (longer
    # than the client's timeout) and of a webhook delivery lost entirely. `fault_seed` makes
    # the decisions reproducible; setting it (again) restarts the sequence.
    latency: float = 0.0
    fault_5xx: float = 0.0
    # Probability of a 400 `invalid_request_error` on creating or confirming a PaymentIntent:
    # an integration error as Stripe answers one (an unknown parameter), never a decline.
    fault_400: float = 0.0
    fault_429: float = 0.0
    fault_timeout: float = 0.0
    fault_timeout_seconds: float = 90.0  # the stripe SDK's default timeout is 80 s
    webhook_drop: float = 0.0
    fault_seed: int | None = None
    # Bumped whenever `fault_seed` is set, so the same seed set twice restarts the sequence.
    fault_seed_generation: int = field(default=0, repr=False)
    # Stripe's rate limits (ratelimit.py), per account, in requests per second: global (live
    # mode 100/s), per endpoint (25/s unless noted), Search (20/s); 0 switches one off.
    # Off unless `rate_limit` is true, so tests not about limits never see a 429 by chance.
    rate_limit: bool = False
    rate_limit_global: float = 100.0
    rate_limit_endpoint: float = 25.0
    rate_limit_search: float = 20.0
    # Stripe's search index lags behind writes ("usually under a minute"): a PaymentIntent is
    # found by /v1/payment_intents/search only `search_lag` seconds (stand-in clock) after it
    # was created. 0: at once.
    search_lag: float = 0.0
    api_version: str = field(default_factory=_sdk_api_version)
    # Move the long-lived store out of the cyclic GC's reach (gc.freeze) as it grows, so
    # full collections do not pause longer with 100k objects. Process-wide, hence only
    # switched on by `python -m stripe_standin`, not in-process test servers.
    freeze_gc: bool = False

    @property
    def effective_sepa_long_delay(self) -> float:
        return self.sepa_long_delay if self.sepa_long_delay is not None else 3 * self.sepa_delay

    @property
    def effective_dispute_delay(self) -> float:
        return self.dispute_delay if self.dispute_delay is not None else self.sepa_delay

    def public(self) -> dict[str, Any]:
        """The settings as JSON (the webhook secret included: this is a test tool)."""
        data = dataclasses.asdict(self)
        data["webhook_url"] = list(self.webhook_urls)
        data["connect_webhook_url"] = list(self.connect_webhook_urls)
        data.pop("fault_seed_generation", None)
        data["effective_sepa_long_delay"] = self.effective_sepa_long_delay
        data["effective_dispute_delay"] = self.effective_dispute_delay
        return data

    def updated(self, changes: Mapping[str, Any]) -> StandinConfig:
        """A copy with `changes` applied; raises ValueError naming a bad key or value."""
        copy = dataclasses.replace(
            self,
            webhook_urls=list(self.webhook_urls),
            connect_webhook_urls=list(self.connect_webhook_urls),
            accounts=list(self.accounts),
        )
        return _apply(copy, changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> StandinConfig:
        return _apply(cls(), values)


_FLOATS = (
    "sepa_delay",
    "webhook_retry_delay",
    "webhook_timeout",
    "idempotency_ttl",
    "latency",
    "fault_timeout_seconds",
    "webhook_retry_horizon",
    "rate_limit_global",
    "rate_limit_endpoint",
    "rate_limit_search",
    "search_lag",
)
_RATES = ("fault_5xx", "fault_400", "fault_429", "fault_timeout", "webhook_drop")
_OPTIONAL_STRS = ("creditor_id",)
_OPTIONAL_FLOATS = ("sepa_long_delay", "dispute_delay", "webhook_retry_max_delay")
_INTS = ("port", "webhook_max_attempts", "webhook_concurrency")
_STRS = ("host", "webhook_secret", "connect_webhook_secret", "api_version")
_BOOLS = ("strict_attach", "freeze_gc", "rate_limit")


def _apply(cfg: StandinConfig, values: Mapping[str, Any]) -> StandinConfig:
    for key, value in values.items():
        if key in ("webhook_url", "webhook_urls"):
            cfg.webhook_urls = _urls(value)
        elif key in ("connect_webhook_url", "connect_webhook_urls"):
            cfg.connect_webhook_urls = _urls(value)
        elif key == "accounts":
            ids = _urls(value)
            if any(not a.startswith("acct_") for a in ids):
                raise ValueError("accounts must be acct_… ids")
            cfg.accounts = ids
        elif key in _FLOATS:
            setattr(cfg, key, _number(key, value))
        elif key in _RATES:
            rate = _number(key, value)
            if rate > 1:
                raise ValueError(f"{key} must be a probability between 0 and 1")
            setattr(cfg, key, rate)
        elif key == "fault_seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError("fault_seed must be an integer or null")
            cfg.fault_seed = value
            cfg.fault_seed_generation += 1
        elif key in _OPTIONAL_FLOATS:
            setattr(cfg, key, None if value is None else _number(key, value))
        elif key in _INTS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key} must be an integer")
            setattr(cfg, key, value)
        elif key in _OPTIONAL_STRS:
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{key} must be a non-empty string or null")
            setattr(cfg, key, value)
        elif key in _STRS:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key} must be a non-empty string")
            setattr(cfg, key, value)
        elif key in _BOOLS:
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false")
            setattr(cfg, key, value)
        else:
            raise ValueError(f"unknown setting {key!r}")
    if cfg.webhook_max_attempts < 1 or cfg.webhook_concurrency < 1:
        raise ValueError("webhook_max_attempts and webhook_concurrency must be at least 1")
    return cfg


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key} must be a number >= 0")
    return float(value)


def _urls(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list | tuple) and all(isinstance(u, str) and u for u in value):
        return list(value)
    raise ValueError("webhook_url must be a URL, a list of URLs or null")
