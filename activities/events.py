"""Deliver platform events (SPEC.md §5) from the outbox: signed, at least once, in order
per contract, retried with backoff until the receiver answers 2xx.

The ledger activity writes each event in the same transaction as the fact it reports, so
an event can never be lost or sent for something that did not happen; this dispatcher
runs beside the worker and only moves rows from "pending" to "delivered".

Several workers run a dispatcher each (docker-compose runs two replicas). A dispatcher
*claims* the rows it is about to post (`claimed_by`, `claimed_until`) in one transaction:

- PostgreSQL: `SELECT … FOR UPDATE SKIP LOCKED`, then the claim is written before COMMIT;
  a second dispatcher polling at the same moment skips the locked rows, and afterwards
  skips the claimed ones. Two dispatchers share the work, never an event.
- SQLite has no SKIP LOCKED: a dispatcher first renews (or takes over, once it ran out)
  the `outbox-dispatcher` row of `leases`. That UPDATE is the transaction's first
  statement, so it takes SQLite's single write lock: claims are serialised, and only the
  holder delivers — one dispatcher at a time, the others stand by.

A claim lasts `lease` (60 s); a dispatcher posts an event only while its claim still covers
the whole request (`timeout`), so a dispatcher that dies holding rows delays them by at most
one lease and never overlaps with the one that takes over. (The leases compare the
processes' clocks: keep the hosts NTP-synchronised, as any lease-based system needs.)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Lease, OutboxEvent

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=5)
LEASE = timedelta(seconds=60)
SQLITE_LEASE = "outbox-dispatcher"


def dispatcher_name() -> str:
    """Who holds a claim: host, process and a random part (a restarted process on the same
    host with the same pid is another dispatcher)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """`Mahnwerk-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` (SPEC.md §5)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(body: bytes, header: str, secret: str, tolerance: int = 300) -> bool:
    """For receivers (and our tests): check a Mahnwerk-Signature header."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if tolerance and abs(time.time() - t) > tolerance:
        return False
    expected = sign(body, secret, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# -- Standard Webhooks (https://www.standardwebhooks.com, spec v1) ------------------------------
#
# Besides `Mahnwerk-Signature`, every delivery carries `webhook-id`, `webhook-timestamp` and
# `webhook-signature`, so a platform can verify it with any Standard Webhooks library. The
# spec's secret is `whsec_<base64 of the key bytes>`. How MAHNWERK_EVENTS_SECRET maps to it:
#
# - a secret already in that form (`whsec_` + valid base64) *is* the Standard Webhooks
#   secret: the receiver configures the same string in both places;
# - any other secret's UTF-8 bytes are the key, and the receiver's Standard Webhooks secret
#   is `whsec_` + base64 of them, which `mahnwerk events-secret` prints.
#
# `Mahnwerk-Signature` is unchanged in either case: its HMAC key is the secret string as is.

STANDARD_PREFIX = "whsec_"


def standard_key(secret: str) -> bytes:
    """The Standard Webhooks signing key for MAHNWERK_EVENTS_SECRET (see above)."""
    if secret.startswith(STANDARD_PREFIX):
        try:
            key = base64.b64decode(secret[len(STANDARD_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if key:
            return key
    return secret.encode()


def standard_secret(secret: str) -> str:
    """What a receiver passes to a Standard Webhooks library (`Webhook("whsec_…")`)."""
    return STANDARD_PREFIX + base64.b64encode(standard_key(secret)).decode()


def standard_signature(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """`webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature_headers(
    event_id: str, body: bytes, secret: str, timestamp: int | None = None
) -> dict[str, str]:
    """Every signature header of one delivery, both schemes over the same timestamp."""
    t = int(time.time()) if timestamp is None else timestamp
    return {
        "Mahnwerk-Signature": sign(body, secret, t),
        "Mahnwerk-Event-Id": event_id,
        "webhook-id": event_id,
        "webhook-timestamp": str(t),
        "webhook-signature": standard_signature(event_id, t, body, secret),
    }


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 12)), MAX_BACKOFF)


# POSTs in flight at once. A round posts the events of every contract concurrently (in order
# within a contract); unbounded, a due wave's 8,000 events opened a hundred connections, and
# httpx checked each of them for expiry on every request — 40 % of the worker's event loop,
# which also runs the workflows (issue 17).
POST_CONCURRENCY = 8


class EventDispatcher:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        url: str | None,
        secret: str,
        *,
        poll_interval: float = 2.0,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lease: timedelta = LEASE,
        name: str | None = None,
    ) -> None:
        self.sessions = session_factory
        self.clock = clock  # injectable: tests simulate an hour of outage in no time
        self.url = url
        self.secret = secret
        self.poll_interval = poll_interval
        self.timeout = timeout
        if lease <= timedelta(seconds=2 * timeout):
            raise ValueError(f"the claim lease ({lease}) must exceed two request timeouts")
        self.lease = lease
        self.name = name or dispatcher_name()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._posting: asyncio.Semaphore | None = None  # made on the loop that posts
        self._client: httpx.Client | None = None

    def wake(self) -> None:
        """Thread-safe nudge after new events were committed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _pending(self) -> list[OutboxEvent]:
        """Claim the due events this dispatcher delivers next (see the module docstring)."""
        return self._claim()

    def _claim(self) -> list[OutboxEvent]:
        """Due, unclaimed events, oldest first, at most one contiguous run per contract,
        claimed for this dispatcher until now + lease.

        Only rows that are due are loaded, so contracts waiting out a backoff can never
        crowd the others out of the batch; a contract whose oldest undelivered event is not
        due yet, or is claimed by another dispatcher, is skipped entirely (its later events
        wait behind it: order per contract).
        """
        now = self.clock()
        until = now + self.lease
        with transaction(self.sessions) as s:
            if s.get_bind().dialect.name == "sqlite" and not self._lead(s, now, until):
                return []
            free = or_(OutboxEvent.claimed_until.is_(None), OutboxEvent.claimed_until <= now)
            rows = list(
                s.scalars(
                    select(OutboxEvent)
                    .where(
                        OutboxEvent.delivered_at.is_(None),
                        OutboxEvent.next_attempt_at <= now,
                        free,
                    )
                    .order_by(OutboxEvent.id)
                    .limit(500)
                    # PostgreSQL: rows another dispatcher is claiming right now are skipped,
                    # not waited for (SQLAlchemy renders nothing for SQLite, whose write
                    # lock, taken by the lease above, already serialises the claims).
                    .with_for_update(skip_locked=True)
                )
            )
            contracts = {r.contract_id for r in rows}
            first_undelivered = (
                dict(
                    s.execute(
                        select(OutboxEvent.contract_id, func.min(OutboxEvent.id))
                        .where(
                            OutboxEvent.delivered_at.is_(None),
                            OutboxEvent.contract_id.in_(contracts),
                        )
                        .group_by(OutboxEvent.contract_id)
                    ).all()
                )
                if contracts
                else {}
            )
            # A contract whose oldest undelivered event is not due yet (or held by another
            # dispatcher) waits as a whole. (Its later events were never tried, so once the
            # oldest is due they are due too.)
            ready = {r.contract_id for r in rows if first_undelivered.get(r.contract_id) == r.id}
            mine = [r for r in rows if r.contract_id in ready]
            if mine:
                s.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id.in_([r.id for r in mine]))
                    .values(claimed_by=self.name, claimed_until=until)
                )
                for r in mine:  # what this round reads back (the rows are detached below)
                    r.claimed_by, r.claimed_until = self.name, until
        return mine

    def _lead(self, s: Session, now: datetime, until: datetime) -> bool:
        """SQLite: renew or take over the dispatcher lease; False while another holds it."""
        taken = s.execute(
            update(Lease)
            .where(
                Lease.name == SQLITE_LEASE,
                or_(
                    Lease.holder == self.name,
                    Lease.expires_at.is_(None),
                    Lease.expires_at <= now,
                ),
            )
            .values(holder=self.name, expires_at=until)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return True
        if s.get(Lease, SQLITE_LEASE) is None:  # first dispatcher ever on this database
            s.add(Lease(name=SQLITE_LEASE, holder=self.name, expires_at=until))
            s.flush()
            return True
        return False

    def _release(self, event_ids: Sequence[str]) -> None:
        """Give back claimed rows this round did not post (an earlier event of the contract
        failed, or the claim would not have covered the request)."""
        if not event_ids:
            return
        with transaction(self.sessions) as s:
            s.execute(
                update(OutboxEvent)
                .where(
                    OutboxEvent.event_id.in_(list(event_ids)),
                    OutboxEvent.claimed_by == self.name,
                )
                .values(claimed_by=None, claimed_until=None)
            )

    def _mark_failed(self, event_id: str, error: str | None) -> None:
        with transaction(self.sessions) as s:
            row = s.scalar(select(OutboxEvent).where(OutboxEvent.event_id == event_id))
            if row is None or row.delivered_at is not None:
                return
            row.attempts += 1
            row.last_error = (error or "")[:2000]
            row.next_attempt_at = self.clock() + backoff(row.attempts)
            if row.claimed_by == self.name:
                row.claimed_by, row.claimed_until = None, None

    def _mark_delivered(self, event_ids: Sequence[str]) -> None:
        """One UPDATE (no read first) for the delivered events of one contract's run: each
        is counted, stamped, and its claim given back if it is still ours. A row delivered
        meanwhile is left as it is."""
        if not event_ids:
            return
        mine = OutboxEvent.claimed_by == self.name
        with transaction(self.sessions) as s:
            s.execute(
                update(OutboxEvent)
                .where(
                    OutboxEvent.event_id.in_(list(event_ids)), OutboxEvent.delivered_at.is_(None)
                )
                .values(
                    attempts=OutboxEvent.attempts + 1,
                    delivered_at=self.clock(),
                    last_error=None,
                    # SET reads the row as it was: both see the old `claimed_by`
                    claimed_by=case((mine, None), else_=OutboxEvent.claimed_by),
                    claimed_until=case((mine, None), else_=OutboxEvent.claimed_until),
                )
                .execution_options(synchronize_session=False)
            )

    def _covered(self, row: OutboxEvent) -> bool:
        """The claim still covers a whole request: it cannot run out while the POST is in
        flight, so no other dispatcher can take the row over and post it too."""
        until = row.claimed_until
        return until is not None and self.clock() + timedelta(seconds=self.timeout) < until

    def _post_and_mark(
        self,
        event_id: str,
        body: bytes,
        headers: dict[str, str],
        delivered: list[str],
        last: bool,
    ) -> tuple[bool, str | None]:
        """POST one event and record the answers, in one thread (one hop off the loop).

        A delivered event joins `delivered`, its contract's run so far; the run is marked
        delivered in one UPDATE after its last event, or before a failure is recorded (issue
        17: one transaction per contract's run instead of one per event). Each of them was
        posted while its claim covered the whole request, and the run's POSTs follow one
        another, so the mark comes before the claim of the first runs out: no other
        dispatcher can take one of them over meanwhile."""
        ok, err = self._post(body, headers)
        if ok:
            delivered.append(event_id)
        if last or not ok:
            self._mark_delivered(delivered)
            delivered.clear()
        if not ok:
            self._mark_failed(event_id, err)
        return ok, err

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[bool, str | None]:
        """POST one event (in a thread of the loop's executor: see `_http`)."""
        assert self.url
        try:
            resp = self._http().post(self.url, content=body, headers=headers)
            ok = 200 <= resp.status_code < 300
            return ok, None if ok else f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"

    def _http(self) -> httpx.Client:
        """The dispatcher's HTTP client. Synchronous, used from threads: httpx's async
        client cost the worker's event loop — the loop that runs the workflows — 40–56 % of
        its time in a due wave (anyio looked for an async library and scanned the pool's
        connections on every request; issue 17)."""
        if self._client is None:
            limits = httpx.Limits(
                max_connections=POST_CONCURRENCY, max_keepalive_connections=POST_CONCURRENCY
            )
            self._client = httpx.Client(timeout=self.timeout, limits=limits)
        return self._client

    async def _deliver(
        self, row: OutboxEvent, delivered: list[str] | None = None, last: bool = True
    ) -> bool:
        """POST `row`; marked at once when `last`, else left in `delivered` for the mark
        after the contract's run (`_post_and_mark`)."""
        assert self.url
        body = json.dumps(row.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            **signature_headers(row.event_id, body, self.secret),
        }
        ok, err = await asyncio.to_thread(
            self._post_and_mark,
            row.event_id,
            body,
            headers,
            delivered if delivered is not None else [],
            last,
        )
        if not ok:
            log.warning("event %s (%s) not delivered: %s", row.event_id, row.type, err)
        return ok

    async def run_once(self) -> int:
        """One round: post what is pending."""
        rows = await asyncio.to_thread(self._pending)
        by_contract: dict[str, list[OutboxEvent]] = {}
        for row in rows:
            by_contract.setdefault(row.contract_id, []).append(row)

        unsent: list[str] = []

        if self._posting is None:
            self._posting = asyncio.Semaphore(POST_CONCURRENCY)
        posting = self._posting

        async def one_contract(events: list[OutboxEvent]) -> int:
            sent = 0
            delivered: list[str] = []  # posted, not marked yet (`_post_and_mark`)
            try:
                for n, ev in enumerate(events):
                    # The claim is checked once this POST may go (not before waiting its
                    # turn): it must still cover the whole request then.
                    async with posting:
                        if not self._covered(ev):
                            unsent.extend(e.event_id for e in events[n:])  # given back below
                            break
                        if not await self._deliver(ev, delivered, last=n == len(events) - 1):
                            # keep order: later events wait for this one (it was given back)
                            unsent.extend(e.event_id for e in events[n + 1 :])
                            break
                    sent += 1
            finally:
                if delivered:  # a claim ran short before the run's end, or the round failed
                    await asyncio.to_thread(self._mark_delivered, list(delivered))
            return sent

        try:
            results = await asyncio.gather(*(one_contract(evs) for evs in by_contract.values()))
        finally:
            await asyncio.to_thread(self._release, unsent)
        return sum(results)

    async def run(self) -> None:
        if not self.url:
            log.info("MAHNWERK_EVENTS_URL not set: platform events stay in the outbox")
            return
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    await self.run_once()
                except Exception:  # the DB may be briefly away; try again next round
                    log.exception("event dispatch round failed")
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
                except TimeoutError:
                    pass
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None
