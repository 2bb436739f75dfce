"""Idempotency-Key handling as Stripe documents it (docs.stripe.com/api/idempotent_requests).

- Keys are scoped to the API key; only POST requests use them.
- The first result is saved (status and body, 500s included) and replayed byte for byte,
  with `Idempotent-Replayed: true`, when the same key comes with the same path and params.
- The same key with another path or other params: 400 `idempotency_error`.
- The same key while its first request still runs: 409 `idempotency_error`.
- Requests that failed parameter validation are not saved, so they can be retried.
- Keys are pruned once they are at least 24 hours old.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .errors import idempotency_in_flight, idempotency_mismatch, invalid_request


@dataclass(frozen=True)
class Saved:
    fingerprint: str
    status: int
    body: bytes
    request_id: str
    created: float


def request_fingerprint(method: str, path: str, params: Any) -> str:
    return f"{method} {path} {json.dumps(params, sort_keys=True, separators=(',', ':'))}"


class IdempotencyStore:
    def __init__(self, clock: Clock, ttl: Callable[[], float]) -> None:
        self._clock = clock
        self._ttl = ttl
        self._saved: dict[tuple[str, str], Saved] = {}  # insertion order == age order
        self._in_flight: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._saved)

    def state(self, key: str) -> dict[str, bool]:
        """Whether a request with this Idempotency-Key (any API key) is running now, and
        whether a result is saved for it: lets a test wait for "the first request is in
        flight" instead of sleeping."""
        return {
            "in_flight": any(k == key for _, k in self._in_flight),
            "saved": any(k == key for _, k in self._saved),
        }

    def claim(self, api_key: str, key: str, fingerprint: str) -> Saved | None:
        """The saved result to replay, or None after marking the key in flight.

        Raises the idempotency errors for a mismatch or a concurrent request.
        """
        if len(key) > 255:
            raise invalid_request(
                "Idempotency-Key must be at most 255 characters long.", replayable=False
            )
        self.prune()
        scoped = (api_key, key)
        saved = self._saved.get(scoped)
        if saved is not None:
            if saved.fingerprint != fingerprint:
                raise idempotency_mismatch(key)
            return saved
        running = self._in_flight.get(scoped)
        if running is not None:
            if running != fingerprint:
                raise idempotency_mismatch(key)
            raise idempotency_in_flight(key)
        self._in_flight[scoped] = fingerprint
        return None

    def finish(
        self, api_key: str, key: str, fingerprint: str, result: tuple[int, bytes, str] | None
    ) -> None:
        """Release the key; save `(status, body, request_id)` unless None (not replayable)."""
        scoped = (api_key, key)
        self._in_flight.pop(scoped, None)
        if result is not None:
            status, body, request_id = result
            self._saved[scoped] = Saved(fingerprint, status, body, request_id, self._clock.now())

    def prune(self) -> None:
        horizon = self._clock.now() - self._ttl()
        while self._saved:
            scoped, saved = next(iter(self._saved.items()))
            if saved.created > horizon:
                break
            del self._saved[scoped]

    def reset(self) -> None:
        self._saved.clear()
        self._in_flight.clear()
