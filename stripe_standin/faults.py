"""Fault injection hooks.

Every API request passes `before_request` (after idempotency bookkeeping, so a fault is what
Stripe would have stored and replays), and every webhook attempt asks `drop_webhook`. Today
the only knob is a fixed `latency`; rates of 5xx answers, timeouts, 429s and dropped
webhooks plug in here without touching the endpoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .config import StandinConfig

if TYPE_CHECKING:
    from .http import Call


class Faults:
    def __init__(self, config: Callable[[], StandinConfig]) -> None:
        self._config = config

    async def before_request(self, call: Call) -> None:
        """May delay, or raise a StripeError (e.g. a 500 api_error or a 429 rate_limit)."""
        latency = self._config().latency
        if latency > 0:
            await asyncio.sleep(latency)

    def drop_webhook(self, event_id: str, url: str) -> bool:
        """True to lose this delivery attempt (as if the endpoint never saw it)."""
        return False
