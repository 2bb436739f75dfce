"""Deliver platform events (SPEC.md §5) from the outbox: signed, at least once, in order
per contract, retried with backoff until the receiver answers 2xx.

The ledger activity writes each event in the same transaction as the fact it reports, so
an event can never be lost or sent for something that did not happen; this dispatcher
runs beside the worker and only moves rows from "pending" to "delivered".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import OutboxEvent

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=5)


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


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 12)), MAX_BACKOFF)


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
    ) -> None:
        self.sessions = session_factory
        self.clock = clock  # injectable: tests simulate an hour of outage in no time
        self.url = url
        self.secret = secret
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Thread-safe nudge after new events were committed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _pending(self) -> list[OutboxEvent]:
        """Due events, oldest first, at most one contiguous run per contract.

        Only rows that are due are loaded, so contracts waiting out a backoff can never
        crowd the others out of the batch; a contract whose oldest undelivered event is not
        due yet is skipped entirely (its later events wait behind it: order per contract).
        """
        now = self.clock()
        with self.sessions() as s:
            rows = list(
                s.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.delivered_at.is_(None), OutboxEvent.next_attempt_at <= now)
                    .order_by(OutboxEvent.id)
                    .limit(500)
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
        # A contract whose oldest undelivered event is not due yet waits as a whole. (Its
        # later events were never tried, so once the oldest is due they are due too.)
        ready = {r.contract_id for r in rows if first_undelivered.get(r.contract_id) == r.id}
        return [r for r in rows if r.contract_id in ready]

    def _mark(self, event_id: str, ok: bool, error: str | None) -> None:
        with transaction(self.sessions) as s:
            row = s.scalar(select(OutboxEvent).where(OutboxEvent.event_id == event_id))
            if row is None:
                return
            row.attempts += 1
            if ok:
                row.delivered_at = self.clock()
                row.last_error = None
            else:
                row.last_error = (error or "")[:2000]
                row.next_attempt_at = self.clock() + backoff(row.attempts)

    async def _deliver(self, client: httpx.AsyncClient, row: OutboxEvent) -> bool:
        assert self.url
        body = json.dumps(row.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Mahnwerk-Signature": sign(body, self.secret),
            "Mahnwerk-Event-Id": row.event_id,
        }
        try:
            resp = await client.post(self.url, content=body, headers=headers)
            ok = 200 <= resp.status_code < 300
            err = None if ok else f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            ok, err = False, f"{type(exc).__name__}: {exc}"
        await asyncio.to_thread(self._mark, row.event_id, ok, err)
        if not ok:
            log.warning("event %s (%s) not delivered: %s", row.event_id, row.type, err)
        return ok

    async def run_once(self, client: httpx.AsyncClient) -> int:
        rows = await asyncio.to_thread(self._pending)
        by_contract: dict[str, list[OutboxEvent]] = {}
        for row in rows:
            by_contract.setdefault(row.contract_id, []).append(row)

        async def one_contract(events: list[OutboxEvent]) -> int:
            sent = 0
            for ev in events:
                if not await self._deliver(client, ev):
                    break  # keep order: later events wait for this one
                sent += 1
            return sent

        results = await asyncio.gather(*(one_contract(evs) for evs in by_contract.values()))
        return sum(results)

    async def run(self) -> None:
        if not self.url:
            log.info("MAHNWERK_EVENTS_URL not set: platform events stay in the outbox")
            return
        self._loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while True:
                try:
                    await self.run_once(client)
                except Exception:  # the DB may be briefly away; try again next round
                    log.exception("event dispatch round failed")
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
                except TimeoutError:
                    pass
