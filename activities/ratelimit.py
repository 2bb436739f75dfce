"""The deployment-wide rate of PaymentIntent creates (issue 17): exact across workers.

Stripe limits PaymentIntent creation per account (25/s by default in live mode, 25 requests/s
of any kind in test mode; docs.stripe.com/rate-limits). Two limits were in place, neither
exact across processes: each worker's own token bucket (activities/payments.py, with a burst
of rate/5) and Temporal's task-queue rate on the Stripe queue, which lets about a second's
worth through at once per partition. Measured at 25/s: 30–31 creates in one second with one
worker, 36–40 with two (bench.due_wave's rate table).

`SharedRate` is a GCRA ("generic cell rate algorithm") whose state — the next free instant
of the account — lives in one row of the ledger database (`rate_slots`), so every worker
process takes its slots from the same sequence: each call moves the row's instant one
interval (1/rate) on, in a single statement under the row's lock, and sleeps until the
slot it got. Consecutive creates are thus at least 1/rate apart, whichever process sends
them: at most `rate` in any one-second window, and, with callers waiting, exactly `rate` per
second. Times are the database's clock (`clock_timestamp()`), so the workers' clocks do not
matter. A slot is taken even if the request then fails: never more than the rate, sometimes
less.

SQLite (the embedded stack, one worker process) keeps the sequence in the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction

_TAKE_PG = text(
    """
    INSERT INTO rate_slots (key, next_at) VALUES (:key, clock_timestamp() + :step)
    ON CONFLICT (key) DO UPDATE
        SET next_at = greatest(rate_slots.next_at, clock_timestamp()) + :step
    RETURNING next_at, clock_timestamp() AS now
    """
)


class SharedRate:
    """At most `rate` slots per second per key, across every process using the database."""

    def __init__(
        self,
        sessions: sessionmaker[Session] | None,
        rate: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.step = 1.0 / self.rate
        bind = sessions.kw.get("bind") if sessions is not None else None
        dialect = getattr(getattr(bind, "dialect", None), "name", "")
        # PostgreSQL: the row; anything else (SQLite: one worker process) in the process
        self.sessions = sessions if dialect == "postgresql" else None
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def _take_local(self, key: str) -> tuple[float, float]:
        with self._lock:
            now = self._clock()
            slot = max(self._next.get(key, now), now)
            self._next[key] = slot + self.step
        return slot, slot - now

    def _take_shared(self, key: str) -> tuple[float, float]:
        assert self.sessions is not None
        with transaction(self.sessions) as s:
            row = s.execute(_TAKE_PG, {"key": key, "step": timedelta(seconds=self.step)}).one()
        next_at: datetime = row.next_at.astimezone(UTC)
        now: datetime = row.now.astimezone(UTC)
        slot = next_at.timestamp() - self.step
        return slot, slot - now.timestamp()

    def take(self, key: str) -> tuple[float, float]:
        """Take the next slot of `key`: (its instant, epoch seconds of the clock used; the
        seconds from now until it)."""
        return self._take_shared(key) if self.sessions is not None else self._take_local(key)

    def acquire(self, key: str) -> float:
        """Take the next slot of `key` and sleep until it; returns the seconds waited."""
        _, wait = self.take(key)
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0
