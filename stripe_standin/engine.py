"""The stand-in's state and the services the endpoints share.

All state lives on one asyncio event loop; endpoints and timers mutate it synchronously, so
no locks are needed and every request sees a consistent store.

**Accounts (Stripe Connect).** Every object lives on one Stripe account, as at Stripe: the
platform's own (`acct_standin`, what any `sk_test_…` key reaches), a *connected* account
(reached with the platform's key and the `Stripe-Account` header; its events carry
`account` and go to the Connect webhook endpoints) or a *standalone* account with a key of
its own (a seller without Connect; its events go to its own endpoint). Each account has its
own `Store`: an object of account A is `resource_missing` (404) when asked for with account
B's header, as Stripe answers. The account of the request being served is a context
variable (`Engine.store` reads it), and timers scheduled while serving it keep it
(`loop.call_later` runs callbacks in a copy of the context they were scheduled in).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

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

PLATFORM_ACCOUNT = "acct_standin"
_current_account: ContextVar[str] = ContextVar("standin_account", default=PLATFORM_ACCOUNT)


@dataclass
class Account:
    """A Stripe account the stand-in serves (see the module docstring)."""

    id: str
    kind: str  # platform | connected | standalone
    api_key: str | None = None  # standalone: its own secret key
    creditor_id: str | None = None  # SEPA creditor id (GET /v1/account)
    webhook_urls: list[str] = field(default_factory=list)  # standalone: its endpoints
    webhook_secret: str | None = None  # standalone: their signing secret

    def to_json(self) -> Obj:
        return {
            "id": self.id,
            "type": self.kind,
            "api_key": self.api_key,
            "creditor_id": self.creditor_id,
            "webhook_urls": list(self.webhook_urls),
            "webhook_secret": self.webhook_secret,
        }


class Engine:
    def __init__(self, config: StandinConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.accounts: dict[str, Account] = {
            PLATFORM_ACCOUNT: Account(PLATFORM_ACCOUNT, "platform")
        }
        self.stores: dict[str, Store] = {PLATFORM_ACCOUNT: Store()}
        # Events are kept as compact JSON: they are immutable and the bulk of the data.
        self.events: dict[str, str] = {}
        self.event_types: dict[str, str] = {}
        self.scheduler = Scheduler()
        self.faults = Faults(lambda: self.config)
        self.idempotency = IdempotencyStore(self.clock, lambda: self.config.idempotency_ttl)
        self.webhooks = WebhookDispatcher(lambda: self.config, self.faults)
        self.rate_limiter = RateLimiter(lambda: self.config)
        for acct_id in config.accounts:
            self.add_account(Account(acct_id, "connected"))

    def now(self) -> int:
        return self.clock.timestamp()

    # -- accounts --------------------------------------------------------------------------

    @property
    def account(self) -> str:
        """The account of the request (or timer) being served."""
        return _current_account.get()

    @property
    def store(self) -> Store:
        """The objects of the current account."""
        return self.stores[_current_account.get()]

    @contextlib.contextmanager
    def acting_as(self, account: str) -> Iterator[None]:
        token = _current_account.set(account)
        try:
            yield
        finally:
            _current_account.reset(token)

    def enter(self, account: str) -> None:
        """Serve the rest of this request (its task) as `account`."""
        _current_account.set(account)

    def _new_store(self) -> Store:
        platform = self.stores[PLATFORM_ACCOUNT]
        # One ledger and one list of scripted outcomes across accounts (test tools).
        return Store(ledger=platform.ledger, scripts=platform.scripts)

    def add_account(self, account: Account) -> Account:
        """Register `account`; the same account again is a no-op (tests set up theirs)."""
        existing = self.accounts.get(account.id)
        if existing is not None:
            if existing == account:
                return existing
            raise ValueError(f"account {account.id} exists with other settings")
        if account.kind == "standalone":
            if not account.api_key:
                raise ValueError("a standalone account needs its own api_key")
            if any(a.api_key == account.api_key for a in self.accounts.values()):
                raise ValueError("another account has this api_key")
        self.accounts[account.id] = account
        self.stores[account.id] = self._new_store()
        return account

    def account_for_key(self, api_key: str) -> str:
        """The account a secret key belongs to: a standalone account's own key, else the
        platform's (every other `sk_test_…` key)."""
        for acct in self.accounts.values():
            if acct.kind == "standalone" and acct.api_key == api_key:
                return acct.id
        return PLATFORM_ACCOUNT

    def locate(self, obj_id: str) -> str:
        """The account holding `obj_id` (control routes act on any account's objects)."""
        for acct_id, store in self.stores.items():
            if obj_id in store.objects:
                return acct_id
        return PLATFORM_ACCOUNT

    def object_count(self) -> int:
        return sum(len(s.objects) for s in self.stores.values())

    def _webhook_targets(self) -> list[tuple[str, str]]:
        acct = self.accounts[self.account]
        if acct.kind == "connected":
            secret = self.config.connect_webhook_secret
            return [(url, secret) for url in self.config.connect_webhook_urls]
        if acct.kind == "standalone":
            return [(url, acct.webhook_secret or "") for url in acct.webhook_urls]
        return [(url, self.config.webhook_secret) for url in self.config.webhook_urls]

    def emit(self, type_: str, obj: Obj, request: RequestRef, previous: Obj | None = None) -> str:
        """Record an event (retrievable via /v1/events on its account) and queue its webhook
        deliveries: the platform's endpoints, the Connect endpoints (a connected account's
        event, carrying `account`) or a standalone account's own."""
        acct = self.accounts[self.account]
        targets = self._webhook_targets()
        evt = build_event(
            self.now(),
            type_,
            obj,
            self.config.api_version,
            len(targets),
            request.to_json(),
            previous,
            account=acct.id if acct.kind == "connected" else None,
        )
        self.events[evt["id"]] = json.dumps(evt, separators=(",", ":"))
        self.event_types[evt["id"]] = type_
        self.store.index("event").add(evt["id"])
        self.store.index(f"event:type:{type_}").add(evt["id"])
        self.webhooks.enqueue(evt, targets)
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
        # Accounts stay (they are set up like the configuration); their objects go.
        self.stores = {PLATFORM_ACCOUNT: Store()}
        for acct_id in self.accounts:
            if acct_id != PLATFORM_ACCOUNT:
                self.stores[acct_id] = self._new_store()
        self.events = {}
        self.event_types = {}
        self.clock.reset()
