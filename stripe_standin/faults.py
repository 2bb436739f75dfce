"""Fault injection hooks.

Every API request passes `before_request` after its Idempotency-Key is claimed, and every
webhook attempt asks `drop_webhook`. Today the only knob is a fixed `latency` (it also makes
the 409 for a concurrent request with the same key observable); rates of 5xx answers,
timeouts, 429s and dropped webhooks plug in here without touching the endpoints. A raised
`StripeError` is saved for idempotent replay unless `replayable=False`: right for a 500
(Stripe saves those), wrong for a 429 (rejected before the endpoint ran).
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
