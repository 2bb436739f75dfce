"""Timers for what Stripe does later (SEPA settlement, disputes, webhook retries).

A thin layer over `loop.call_later`: the event loop keeps pending timers in a heap, so
thousands of pending SEPA debits cost nothing until they fire. `cancel_all` (on reset) drops
them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("stripe_standin")


class Scheduler:
    def __init__(self) -> None:
        self._handles: dict[int, asyncio.TimerHandle] = {}
        self._next = 0

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the event loop after `delay` seconds (call from the loop)."""
        loop = asyncio.get_running_loop()
        token = self._next
        self._next += 1

        def fire() -> None:
            self._handles.pop(token, None)
            try:
                fn(*args)
            except Exception:  # a timer must never kill the loop
                log.exception("stand-in timer %s failed", getattr(fn, "__name__", fn))

        self._handles[token] = loop.call_later(max(delay, 0.0), fire)

    @property
    def pending(self) -> int:
        return len(self._handles)

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
