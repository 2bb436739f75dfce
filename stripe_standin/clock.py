"""The stand-in's clock: wall time plus an offset that tests may advance.

Stripe prunes idempotency keys once they are 24 hours old; advancing the clock
(`POST /_standin/clock`) lets a test see that without waiting. Object `created` timestamps
follow this clock. Timers (SEPA settlement, webhook retries) and webhook signatures use real
time, because the receiver checks the signature timestamp against its own clock.
"""

from __future__ import annotations

import time


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def timestamp(self) -> int:
        return int(self.now())

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds
        return self.now()

    def reset(self) -> None:
        self.offset = 0.0
