"""Exactly once with N workers (issue 13 item 5): every `mahnwerk worker` runs an event
dispatcher, and several of them poll one outbox.

From the outside: dispatchers in processes of their own (each with its own engine and
connections, as worker replicas have) post to one receiving HTTP server; the receiver counts
every request per event id. PostgreSQL: the dispatchers share the work through
`FOR UPDATE SKIP LOCKED` claims. SQLite: one of them holds the dispatcher lease and delivers,
the others stand by. Either way each event reaches the platform exactly once, and a
dispatcher killed while it holds claims delays its events by one lease, no more, no less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.events import verify
from activities.ledger import LedgerActivities
from core.db import make_engine, make_session_factory
from core.models import OutboxEvent
from tests.activities.test_events import _sync
from tests.conftest import fresh_database, insert_ledger_contract

SECRET = "whsec_events_claims_test"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Receiver:
    """The platform's endpoint: answers 200 to every correctly signed event after a short
    delay (so deliveries of two dispatchers overlap), and records each request's event id and
    arrival time."""

    delay: float = 0.01
    received: list[tuple[str, datetime]] = field(default_factory=list)
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(eid for eid, _ in self.received)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event = json.loads(body)
                signed = verify(body, self.headers.get("Mahnwerk-Signature", ""), SECRET)
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.received.append((event["id"], datetime.now(UTC)))
                    receiver.bad_signatures += not signed
                self.send_response(200 if signed else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # two dispatchers open a connection per contract

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this test's own: the SQLite dispatcher lease a killed dispatcher of an
    earlier test still holds must not make this one wait."""
    with fresh_database(tmp_path_factory) as url:
        yield url


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.start()
    yield rec
    rec.stop()


def dispatcher(db_url: str, url: str, lease: float, mode: str = "run") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.activities.dispatcher_proc", db_url, url, SECRET]
        + [str(lease), mode],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def write_events(sessions: sessionmaker[Session], contracts: int, per: int, tag: str) -> list[str]:
    """Events as the workflows' ledger writes produce them: `per` facts for each contract."""
    ledger = LedgerActivities(sessions)
    ids: list[str] = []
    now = datetime.now(UTC)
    for n in range(contracts):
        cid = f"claim-{tag}-{n}"
        insert_ledger_contract(sessions, cid)
        ids += _sync(ledger, cid, [(f"e{k}", "payment.failed") for k in range(per)], now)
    return ids


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop(procs: list[subprocess.Popen[str]]) -> str:
    out = []
    for p in procs:
        if p.poll() is None:
            p.kill()
        out.append(p.communicate(timeout=10)[0])
    return "\n".join(out)


def test_two_dispatchers_deliver_each_event_exactly_once(
    db_url: str, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    tag = uuid.uuid4().hex[:8]
    first = write_events(sessions, contracts=20, per=5, tag=tag)
    procs = [dispatcher(db_url, receiver.url, lease=30) for _ in range(2)]
    try:
        # more events while both poll: their rounds overlap with new rows arriving
        time.sleep(0.5)
        later = write_events(sessions, contracts=20, per=5, tag=tag + "b")
        ids = first + later
        wait_for(lambda: set(ids) <= receiver.counts().keys(), 90, "every event to arrive")
        time.sleep(1.0)  # a second delivery would come within a few polls
    finally:
        logs = stop(procs)
    counts = receiver.counts()
    twice = {eid: n for eid, n in counts.items() if eid in set(ids) and n > 1}
    assert not twice, f"delivered more than once: {twice}\n{logs}"
    assert receiver.bad_signatures == 0
    with sessions() as s:
        rows = list(s.scalars(select(OutboxEvent).where(OutboxEvent.event_id.in_(ids))))
    assert len(rows) == len(ids) == 200
    for r in rows:
        assert r.delivered_at is not None and r.attempts == 1, (r.event_id, r.attempts)
        assert r.claimed_by is None and r.claimed_until is None, r.event_id


def test_a_dead_dispatchers_claims_expire_and_another_delivers_them_once(
    db_url: str, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = write_events(sessions, contracts=4, per=3, tag=tag)
    lease = 4.0
    dead = dispatcher(db_url, receiver.url, lease=lease, mode="claim-and-die")
    out = dead.communicate(timeout=60)[0]
    assert dead.returncode == -9, out  # killed holding its claims
    assert out.startswith("claimed "), out
    with sessions() as s:
        rows = list(s.scalars(select(OutboxEvent).where(OutboxEvent.event_id.in_(ids))))
    claimed = [r for r in rows if r.claimed_by is not None]
    assert len(claimed) == len(ids), out  # ours are among what it claimed
    expiry = max(r.claimed_until for r in claimed if r.claimed_until)
    other = dispatcher(db_url, receiver.url, lease=lease)
    try:
        wait_for(lambda: set(ids) <= receiver.counts().keys(), 60, "the claimed events")
        time.sleep(0.5)
    finally:
        logs = stop([other])
    counts = receiver.counts()
    assert all(counts[eid] == 1 for eid in ids), (counts, logs)
    # none of them went out while the dead dispatcher's claim still held them
    arrivals = [at for eid, at in receiver.received if eid in set(ids)]
    assert min(arrivals) >= expiry, (min(arrivals), expiry)
