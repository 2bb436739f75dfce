"""Stripe's API rate limits (docs.stripe.com/rate-limits), per account.

Stripe measures limits in requests per second per Stripe account: a global limit on all API
use (live mode: 100/s) and a limit per endpoint, where "each named API operation" is its own
endpoint (`POST /v1/payment_intents` and `GET /v1/payment_intents/{id}` are separate; every
id counts against the same endpoint). The default per endpoint is 25/s; Search has 20/s.
A request over a limit is answered `429` with `code: rate_limit` and, since nothing ran,
`Stripe-Should-Retry: true`; it consumes no Idempotency-Key.

Here each (account, limit) pair is a token bucket holding one second's worth of requests and
refilled continuously (Stripe's engineering blog describes its limiters as token buckets):
bursts up to the limit pass, a sustained rate above it is refused. The account is the
`Stripe-Account` header (Connect) or else the API key. A request refused by the endpoint
bucket does not take a global token, and vice versa.

Off unless `StandinConfig.rate_limit` is set (`--rate-limit` on the command line): tests and
benchmarks that are not about rate limits should not see 429s by chance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import StandinConfig

SEARCH_SUFFIX = "/search"


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(
        self, config: Callable[[], StandinConfig], now: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._now = now
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.limited: dict[str, int] = {}  # endpoint -> requests refused (health, tests)
        self.counted: dict[str, int] = {}  # account -> requests admitted

    def endpoint_limit(self, endpoint: str, cfg: StandinConfig) -> float:
        if endpoint.endswith(SEARCH_SUFFIX):
            return cfg.rate_limit_search
        return cfg.rate_limit_endpoint

    def admit(self, account: str, endpoint: str) -> str | None:
        """None if the request may run, else the reason (`global-rate`, `endpoint-rate`)."""
        cfg = self._config()
        if not cfg.rate_limit:
            return None
        now = self._now()
        checks = (
            ((account, endpoint), self.endpoint_limit(endpoint, cfg), "endpoint-rate"),
            ((account, "*"), cfg.rate_limit_global, "global-rate"),
        )
        buckets = []
        for key, rate, reason in checks:
            if rate <= 0:
                continue  # 0 switches this limit off
            bucket = self._refill(key, rate, now)
            if bucket.tokens < 1:
                self.limited[endpoint] = self.limited.get(endpoint, 0) + 1
                return reason
            buckets.append(bucket)
        for bucket in buckets:
            bucket.tokens -= 1
        self.counted[account] = self.counted.get(account, 0) + 1
        return None

    def _refill(self, key: tuple[str, str], rate: float, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(rate, now)
        else:
            bucket.tokens = min(rate, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        return bucket

    def reset(self) -> None:
        self._buckets.clear()
        self.limited.clear()
        self.counted.clear()
