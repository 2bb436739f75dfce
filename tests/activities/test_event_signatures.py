"""Standard Webhooks headers on every event (issue 16 item 3), verified by the platform's
side with the reference `standardwebhooks` library, next to `Mahnwerk-Signature`.

The event is written by the real ledger writer and posted by the real dispatcher to a real
HTTP receiver, which verifies what arrived exactly as a platform would. Both forms of
MAHNWERK_EVENTS_SECRET are covered: a plain string (the receiver configures the `whsec_…`
that `mahnwerk events-secret` prints) and a secret already in the `whsec_<base64>` form (the
receiver configures the same string).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from activities.events import EventDispatcher, standard_secret, verify
from activities.ledger import LedgerActivities
from core.models import OutboxEvent
from core.settings import PROJECT_ROOT
from tests.conftest import insert_ledger_contract
from workflows.types import Fact, LedgerSync

PLAIN_SECRET = "mahnwerk-events-plain-secret-1"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class Receiver:
    """A platform endpoint that keeps every request (body and headers as received)."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((body, dict(self.headers.items())))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


def _contract_with_event(sessions: sessionmaker[Session], ledger: LedgerActivities) -> str:
    cid = f"sig-{uuid.uuid4().hex[:10]}"
    insert_ledger_contract(sessions, cid)
    now = datetime.now(UTC)
    ledger.sync_ledger(
        LedgerSync(
            contract_id=cid,
            status="in_dunning",
            stage="mahnung_1",
            access="locked",
            overdue_amount=10150,
            fees=250,
            case_no=1,
            case_opened_at=now,
            facts=[
                Fact(
                    key=f"lock:{cid}:1",
                    type="access.locked",
                    occurred_at=now,
                    data={"case": 1, "stage": "mahnung_1", "overdue_amount": 10150},
                    event="access.locked",
                )
            ],
        )
    )
    return cid


@pytest.mark.parametrize(
    ("secret", "receiver_secret"),
    [
        (PLAIN_SECRET, "whsec_" + base64.b64encode(PLAIN_SECRET.encode()).decode()),
        (STANDARD_SECRET, STANDARD_SECRET),
    ],
    ids=["plain-secret", "whsec-secret"],
)
async def test_events_verify_with_the_standard_webhooks_library(
    sessions: sessionmaker[Session], receiver: Receiver, secret: str, receiver_secret: str
) -> None:
    assert standard_secret(secret) == receiver_secret  # what `mahnwerk events-secret` prints
    dispatcher = EventDispatcher(sessions, receiver.url, secret)
    ledger = LedgerActivities(sessions)
    cid = _contract_with_event(sessions, ledger)
    with sessions() as s:  # this contract's event only (the outbox is shared by the tests)
        row = s.scalars(select(OutboxEvent).where(OutboxEvent.contract_id == cid)).one()
    assert await dispatcher._deliver(row)  # the dispatcher's own POST
    assert len(receiver.requests) == 1
    body, headers = receiver.requests[0]
    lower = {k.lower(): v for k, v in headers.items()}
    event = json.loads(body)

    # the platform's side: the reference library, with the secret it was given
    verified = Webhook(receiver_secret).verify(body, lower)
    assert verified["id"] == event["id"] and verified["type"] == "access.locked"
    assert lower["webhook-id"] == event["id"] == lower["mahnwerk-event-id"]
    assert lower["webhook-signature"].startswith("v1,")
    # one timestamp for both schemes; Mahnwerk-Signature verifies with the secret as is
    assert lower["mahnwerk-signature"].startswith(f"t={lower['webhook-timestamp']},v1=")
    assert verify(body, lower["mahnwerk-signature"], secret)

    # what the library refuses: a changed body, another secret, another id
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver_secret).verify(body.replace(b"mahnung_1", b"mahnung_2"), lower)
    other = "whsec_" + base64.b64encode(b"another key, not the one we sign").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, lower)
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver_secret).verify(body, {**lower, "webhook-id": "evt_other"})


def test_cli_prints_the_standard_webhooks_secret() -> None:
    env = {**os.environ, "MAHNWERK_EVENTS_SECRET": PLAIN_SECRET}
    out = subprocess.run(
        [sys.executable, "-m", "core.cli", "events-secret"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    printed = out.stdout.strip()
    assert printed == standard_secret(PLAIN_SECRET)
    assert base64.b64decode(printed.removeprefix("whsec_")) == PLAIN_SECRET.encode()
