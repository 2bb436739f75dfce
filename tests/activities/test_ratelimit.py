"""The deployment-wide PaymentIntent create rate (activities/ratelimit.py, issue 17): slots
taken by several processes from one row of the ledger database are 1/rate apart.

"Processes" are separate `SharedRate` instances with their own engines (as two workers have),
on PostgreSQL when DATABASE_URL is set (the shared row), else SQLite (in one process)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from activities.ratelimit import SharedRate
from core.db import make_engine, make_session_factory

RATE = 20.0  # slots per second


def _slots(limiters: list[SharedRate], key: str, each: int, threads: int) -> list[float]:
    """Take `each` slots per thread, `threads` threads per limiter, without sleeping: the
    instants the slots start, on the limiter's clock (the database's for the shared row)."""
    out: list[float] = []
    lock = threading.Lock()

    def run(limiter: SharedRate) -> None:
        for _ in range(each):
            slot, _wait = limiter.take(key)
            with lock:
                out.append(slot)

    workers = [
        threading.Thread(target=run, args=(lim,)) for lim in limiters for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sorted(out)


def test_slots_of_two_workers_are_one_interval_apart(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(2)]
    try:
        limiters = [SharedRate(make_session_factory(e), RATE) for e in engines]
        shared = limiters[0].sessions is not None
        if not shared:  # SQLite: one worker process, one sequence in it
            limiters = limiters[:1]
        key = f"acct-{uuid.uuid4().hex[:8]}"
        slots = _slots(limiters, key, each=10, threads=3)
        n = len(slots)
        gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
        # 1/rate apart, exactly (microseconds of float rounding)
        assert min(gaps) >= 1 / RATE - 1e-5, gaps
        # and no slower than the rate: callers that wait get consecutive slots
        assert slots[-1] - slots[0] <= (n - 1) / RATE + 0.5
        for start in slots:
            assert sum(1 for t in slots if start <= t < start + 1.0) <= RATE + 1
        # another key (another Stripe account) has a sequence of its own
        other = _slots(limiters[:1], f"other-{uuid.uuid4().hex[:8]}", each=1, threads=1)
        assert other[0] < slots[-1]
    finally:
        for e in engines:
            e.dispose()


def test_an_idle_rate_does_not_bank_slots(db_url: str) -> None:
    """After a pause the next slot is now, not in the past: no burst after idleness."""
    engine = make_engine(db_url)
    try:
        limiter = SharedRate(make_session_factory(engine), RATE)
        key = f"idle-{uuid.uuid4().hex[:8]}"
        first = _slots([limiter], key, each=1, threads=1)
        time.sleep(0.3)  # six intervals
        burst = _slots([limiter], key, each=5, threads=1)
        assert burst[0] >= first[0] + 0.29
        gaps = [b - a for a, b in zip(burst, burst[1:], strict=False)]
        assert min(gaps) >= 1 / RATE - 1e-5
    finally:
        engine.dispose()


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        SharedRate(None, 0)
