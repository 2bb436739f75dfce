"""Webhook delivery, signed as Stripe signs it.

Stripe POSTs the event JSON to each endpoint with
`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, which
`stripe.Webhook.construct_event(body, header, secret)` verifies (300 s tolerance). Delivery is
asynchronous and unordered; a non-2xx answer or a network error is retried with exponential
backoff, as Stripe does (docs.stripe.com/webhooks: in live mode for up to 3 days, with
exponential backoff).
The schedule (`retry_schedule`): the n-th retry waits `webhook_retry_delay * 2**(n-1)`
seconds, capped at `webhook_retry_max_delay`; delivery gives up (status `failed`) after
`webhook_max_attempts` attempts or when the next attempt would come later than
`webhook_retry_horizon` seconds after the first (default 3 days). Tests use short delays;
`python -m stripe_standin --webhook-live-schedule` sets a live-like one (first retry after a
minute, at most 12 hours apart, for 3 days). With `webhook_drop` (faults.py) a delivery may be lost
entirely: status `dropped`, never attempted nor retried. The body is pretty-printed as
Stripe's is, so a receiver that re-serializes JSON before verifying fails here as it would
in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .config import StandinConfig
from .faults import Faults
from .store import Obj

log = logging.getLogger("stripe_standin")

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header value for `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@dataclass
class Delivery:
    event_id: str
    type: str
    url: str
    body: str
    generation: int
    secret: str = ""  # the endpoint's signing secret
    attempts: int = 0
    status: str = "pending"  # pending | retrying | succeeded | failed | dropped
    first_attempt_at: float | None = None
    next_attempt_at: float | None = None
    http_status: int | None = None
    last_error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> Obj:
        return {
            "event": self.event_id,
            "type": self.type,
            "url": self.url,
            "status": self.status,
            "http_status": self.http_status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "history": list(self.history),
        }


def retry_delay(cfg: StandinConfig, attempts: int) -> float | None:
    """Seconds before the next attempt after `attempts` failed ones; None: give up."""
    if attempts >= cfg.webhook_max_attempts:
        return None
    delay = cfg.webhook_retry_delay * 2 ** (attempts - 1)
    if cfg.webhook_retry_max_delay is not None:
        delay = min(delay, cfg.webhook_retry_max_delay)
    return delay


def retry_schedule(cfg: StandinConfig) -> list[float]:
    """Offsets (seconds after the first attempt) of every retry of a delivery that keeps
    failing, as the dispatcher would make them."""
    offsets: list[float] = []
    elapsed = 0.0
    attempts = 1
    while (delay := retry_delay(cfg, attempts)) is not None:
        if elapsed + delay > cfg.webhook_retry_horizon:
            break
        elapsed += delay
        offsets.append(elapsed)
        attempts += 1
    return offsets


class WebhookDispatcher:
    """A queue drained by `webhook_concurrency` sender tasks sharing one httpx client."""

    def __init__(self, config: Callable[[], StandinConfig], faults: Faults) -> None:
        self._config = config
        self._faults = faults
        self._queue: asyncio.Queue[Delivery] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._generation = 0
        self._timers: set[asyncio.TimerHandle] = set()
        self.log: list[Delivery] = []

    async def start(self) -> None:
        cfg = self._config()
        self._queue = asyncio.Queue()
        self._client = httpx.AsyncClient(
            timeout=cfg.webhook_timeout, headers={"User-Agent": USER_AGENT}
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"standin-webhook-{i}")
            for i in range(cfg.webhook_concurrency)
        ]

    async def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def enqueue(self, event: Obj, targets: list[tuple[str, str]] | None = None) -> None:
        """Deliver `event` to each (url, signing secret); default: the platform's
        endpoints (`webhook_urls`, `webhook_secret`)."""
        if targets is None:
            cfg = self._config()
            targets = [(url, cfg.webhook_secret) for url in cfg.webhook_urls]
        if not targets or self._queue is None:
            return
        body = json.dumps(event, indent=2)
        for url, secret in targets:
            delivery = Delivery(event["id"], event["type"], url, body, self._generation, secret)
            self.log.append(delivery)
            self._queue.put_nowait(delivery)

    def reset(self) -> None:
        self._generation += 1
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self.log = []
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()

    def pending(self) -> int:
        return sum(1 for d in self.log if d.status in ("pending", "retrying"))

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            delivery = await self._queue.get()
            if delivery.generation != self._generation:
                continue
            try:
                await self._attempt(delivery)
            except Exception:  # keep the sender alive whatever happens
                log.exception("webhook delivery of %s failed unexpectedly", delivery.event_id)

    async def _attempt(self, delivery: Delivery) -> None:
        cfg = self._config()
        delivery.attempts += 1
        delivery.next_attempt_at = None
        if delivery.first_attempt_at is None:
            delivery.first_attempt_at = time.time()
        delivery.http_status = None
        delivery.last_error = None
        if delivery.attempts == 1 and self._faults.drop_webhook(delivery.event_id, delivery.url):
            # Lost entirely (webhook_drop): no attempt reaches the endpoint, none is retried.
            delivery.status = "dropped"
            delivery.last_error = "dropped (fault injection)"
            delivery.body = ""
            delivery.history.append({"at": time.time(), "http_status": None, "error": "dropped"})
            return
        else:
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(delivery.body, delivery.secret),
            }
            assert self._client is not None
            try:
                response = await self._client.post(
                    delivery.url, content=delivery.body.encode(), headers=headers
                )
                delivery.http_status = response.status_code
            except httpx.HTTPError as exc:
                delivery.last_error = f"{type(exc).__name__}: {exc}"
        if delivery.generation != self._generation:
            return
        ok = delivery.http_status is not None and 200 <= delivery.http_status < 300
        delivery.history.append(
            {"at": time.time(), "http_status": delivery.http_status, "error": delivery.last_error}
        )
        delay = None if ok else retry_delay(cfg, delivery.attempts)
        elapsed = time.time() - delivery.first_attempt_at
        if delay is None or elapsed + delay > cfg.webhook_retry_horizon:
            delivery.status = "succeeded" if ok else "failed"
            delivery.body = ""  # done: keep the log small with many events
        else:
            delivery.status = "retrying"
            delivery.next_attempt_at = time.time() + delay
            self._retry_later(delay, delivery)

    def _retry_later(self, delay: float, delivery: Delivery) -> None:
        loop = asyncio.get_running_loop()

        def requeue() -> None:
            self._timers.discard(handle)
            if self._queue is not None and delivery.generation == self._generation:
                self._queue.put_nowait(delivery)

        handle = loop.call_later(delay, requeue)
        self._timers.add(handle)
