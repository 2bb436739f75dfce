"""Fault injection: per-run rates of 429s, 5xx answers, timeouts and dropped webhooks.

Every `/v1` request passes `before_request` after its Idempotency-Key is claimed, and every
webhook attempt asks `drop_webhook`; the control routes (`/_standin/*`) never do, so a test
can always look inside and turn faults off again. The knobs (StandinConfig, set with
`POST /_standin/config` or the CLI flags):

- `latency`: fixed delay before every request (also makes the 409 of a concurrent request
  with the same Idempotency-Key observable).
- `fault_429`: probability of `429 rate_limit` with Stripe's body. Rejected before the
  endpoint runs: nothing is created and the Idempotency-Key is not consumed (Stripe saves no
  result for a rate-limited request), so a retry with the same key executes normally.
- `fault_5xx`: probability of `500 api_error`, also raised *before* the endpoint runs. This
  models a 500 from Stripe's edge that never reached the API: nothing is created and the
  result is NOT saved for idempotent replay, so a retry with the same key executes the
  request (the answer says `Stripe-Should-Retry: true`). A 500 raised by an endpoint itself
  (an unexpected exception) is still saved and replayed, as Stripe documents.
- `fault_timeout`: probability of holding the request `fault_timeout_seconds` before it runs
  (longer than the client's timeout): the client gives up with a connection error while the
  request still completes; meanwhile the key is in flight (a retry gets the 409), afterwards
  a retry replays the saved result — exactly one object either way.
- `fault_400`: probability of `400 invalid_request_error` (`parameter_unknown`) on
  creating or confirming a PaymentIntent, before the endpoint runs (not saved for replay, as
  Stripe saves no result for a request that failed validation): the shape of an integration
  error — ours, never the customer's decline.
- `webhook_drop`: probability of losing a delivery entirely (no attempt, no retry), as if
  the event never reached the endpoint; the delivery log says `dropped`.

Decisions come from one `random.Random(fault_seed)` (None: unseeded), drawn in request
order, so a sequential run with the same seed injects the same faults. Setting `fault_seed`
(even to the same value) restarts the sequence.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from .config import StandinConfig
from .errors import StripeError, api_error, invalid_param

if TYPE_CHECKING:
    from .http import Call

RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)


def rate_limited() -> StripeError:
    """Stripe's 429: `invalid_request_error` / `rate_limit`, never saved for replay."""
    return StripeError(
        429, "invalid_request_error", RATE_LIMIT_MESSAGE, code="rate_limit", replayable=False
    )


def injected_server_error() -> StripeError:
    """A 500 before the endpoint ran: not saved, so the same key may be retried."""
    err = api_error("An unknown error occurred (injected by the stand-in's fault_5xx).")
    err.replayable = False
    return err


def injected_integration_error() -> StripeError:
    """A 400 as Stripe answers a request it refuses (here: an unknown parameter)."""
    return invalid_param(
        "Received unknown parameter: mahnwerk_injected (injected by the stand-in's fault_400)",
        "mahnwerk_injected",
        "parameter_unknown",
    )


def _creates_debit(call: Call) -> bool:
    path = call.path.rstrip("/")
    return call.method == "POST" and (
        path == "/v1/payment_intents"
        or (path.startswith("/v1/payment_intents/") and path.endswith("/confirm"))
    )


class Faults:
    def __init__(self, config: Callable[[], StandinConfig]) -> None:
        self._config = config
        self._rng = random.Random()
        self._seeded: tuple[int | None, int] | None = None
        self.injected: dict[str, int] = {
            "429": 0,
            "5xx": 0,
            "400": 0,
            "timeout": 0,
            "webhook_drop": 0,
        }

    def _rng_for(self, cfg: StandinConfig) -> random.Random:
        state = (cfg.fault_seed, cfg.fault_seed_generation)
        if state != self._seeded:
            self._rng = random.Random(cfg.fault_seed)
            self._seeded = state
        return self._rng

    def _hit(self, cfg: StandinConfig, rate: float) -> bool:
        if rate <= 0:
            return False
        draw = self._rng_for(cfg).random()  # drawn only for active faults: reproducible
        return rate >= 1 or draw < rate

    async def before_request(self, call: Call) -> None:
        """May delay, or raise a StripeError (a 429 rate_limit or a 500 api_error)."""
        cfg = self._config()
        if cfg.latency > 0:
            await asyncio.sleep(cfg.latency)
        if self._hit(cfg, cfg.fault_429):
            self.injected["429"] += 1
            raise rate_limited()
        if self._hit(cfg, cfg.fault_5xx):
            self.injected["5xx"] += 1
            raise injected_server_error()
        if _creates_debit(call) and self._hit(cfg, cfg.fault_400):
            self.injected["400"] += 1
            raise injected_integration_error()
        if self._hit(cfg, cfg.fault_timeout):
            self.injected["timeout"] += 1
            await asyncio.sleep(cfg.fault_timeout_seconds)

    def drop_webhook(self, event_id: str, url: str) -> bool:
        """True to lose this delivery entirely (as if the endpoint never saw it)."""
        cfg = self._config()
        if self._hit(cfg, cfg.webhook_drop):
            self.injected["webhook_drop"] += 1
            return True
        return False
