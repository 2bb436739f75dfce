"""The stand-in's state and the services the endpoints share.

All state lives on one asyncio event loop; endpoints and timers mutate it synchronously, so
no locks are needed and every request sees a consistent store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .clock import Clock
from .config import StandinConfig
from .faults import Faults
from .idempotency import IdempotencyStore
from .objects import event as build_event
from .ratelimit import RateLimiter
from .scheduler import Scheduler
from .store import Obj, Store
from .webhooks import WebhookDispatcher


@dataclass(frozen=True)
class RequestRef:
    """The `request` of an event: the API request that caused it (null for timers)."""

    id: str | None = None
    idempotency_key: str | None = None

    def to_json(self) -> Obj:
        return {"id": self.id, "idempotency_key": self.idempotency_key}


NO_REQUEST = RequestRef()


class Engine:
    def __init__(self, config: StandinConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.store = Store()
        # Events are kept as compact JSON: they are immutable and the bulk of the data.
        self.events: dict[str, str] = {}
        self.event_types: dict[str, str] = {}
        self.scheduler = Scheduler()
        self.faults = Faults(lambda: self.config)
        self.idempotency = IdempotencyStore(self.clock, lambda: self.config.idempotency_ttl)
        self.webhooks = WebhookDispatcher(lambda: self.config, self.faults)
        self.rate_limiter = RateLimiter(lambda: self.config)

    def now(self) -> int:
        return self.clock.timestamp()

    def emit(self, type_: str, obj: Obj, request: RequestRef, previous: Obj | None = None) -> str:
        """Record an event (retrievable via /v1/events) and queue its webhook deliveries."""
        evt = build_event(
            self.now(),
            type_,
            obj,
            self.config.api_version,
            len(self.config.webhook_urls),
            request.to_json(),
            previous,
        )
        self.events[evt["id"]] = json.dumps(evt, separators=(",", ":"))
        self.event_types[evt["id"]] = type_
        self.store.index("event").add(evt["id"])
        self.store.index(f"event:type:{type_}").add(evt["id"])
        self.webhooks.enqueue(evt)
        return str(evt["id"])

    def event(self, evt_id: str) -> Obj | None:
        raw = self.events.get(evt_id)
        if raw is None:
            return None
        result: Obj = json.loads(raw)
        return result

    def reset(self) -> None:
        """Forget everything (objects, events, keys, timers, deliveries, clock offset)."""
        self.scheduler.cancel_all()
        self.webhooks.reset()
        self.idempotency.reset()
        self.rate_limiter.reset()
        self.store = Store()
        self.events = {}
        self.event_types = {}
        self.clock.reset()
