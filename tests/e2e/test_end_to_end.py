"""End to end on the Temporal dev server: the real `mahnwerk api` and `mahnwerk worker`
processes, PostgreSQL (or SQLite), the SMTP server, the Stripe stand-in delivering signed
webhooks over HTTP, and a platform receiver for Mahnwerk's events. Assertions are on what
a user sees: HTTP answers, e-mails, events, the stand-in's ledger."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from activities.events import verify
from core.seller import DEMO_SELLER_ENV
from core.settings import PROJECT_ROOT
from domain.schedule import berlin_date
from tests.conftest import PLATFORM, SUPPORT, binary, contract_body, fresh_database

EVENTS_SECRET = "e2e-events-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """The platform's webhook endpoint: verifies Mahnwerk-Signature, keeps every event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not verify(body, self.headers.get("Mahnwerk-Signature", ""), EVENTS_SECRET):
                    receiver.bad_signatures += 1
                    self.send_response(400)
                else:
                    receiver.events.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def types_for(self, contract_id: str) -> list[str]:
        return [e["type"] for e in self.events if e.get("contract_id") == contract_id]


@dataclass
class E2E:
    api: str
    http: httpx.AsyncClient
    standin: Any
    smtp: Any
    receiver: Receiver
    temporal: Any

    async def until(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}")

    async def contract(self, cid: str) -> dict[str, Any]:
        resp = await self.http.get(f"/v1/contracts/{cid}", headers=PLATFORM)
        assert resp.status_code == 200, resp.text
        return resp.json()


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "core.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=[
            SearchAttributeKey.for_keyword("MahnwerkStatus"),
            SearchAttributeKey.for_keyword("DunningStage"),
            SearchAttributeKey.for_keyword("CustomerId"),
            SearchAttributeKey.for_int("OverdueAmount"),
            SearchAttributeKey.for_bool("AccessLocked"),
            SearchAttributeKey.for_keyword("SellerId"),
        ],
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def e2e_db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # A ledger of its own: the worker process here delivers every pending outbox event it
    # finds, and must not see other tests' contracts.
    with fresh_database(tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
async def e2e(
    dev_env: WorkflowEnvironment,
    e2e_db_url: str,
    standin: Any,
    smtp: Any,
    receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[E2E]:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **DEMO_SELLER_ENV,  # `mahnwerk api`/`worker` refuse to start without them
        "DATABASE_URL": e2e_db_url,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "STRIPE_API_BASE": standin.url,
        "STRIPE_API_KEY": "sk_test_mahnwerk",
        "STRIPE_WEBHOOK_SECRET": "whsec_test_mahnwerk",
        "MAHNWERK_SMTP_URL": f"smtp://{smtp.host}:{smtp.port}",
        "MAHNWERK_EVENTS_URL": receiver.url,
        "MAHNWERK_EVENTS_SECRET": EVENTS_SECRET,
        "MAHNWERK_API_KEYS": "platform:shop:platform-key-123,support:anna:support-key-123,"
        "admin:root:admin-key-123",
        "MAHNWERK_TASK_QUEUE": "mahnwerk-e2e",
        # test secrets and the demo seller: what only dev mode accepts (core.settings)
        "MAHNWERK_ENV": "dev",
    }
    logs = tmp_path_factory.mktemp("logs")
    procs = [
        _spawn(["worker"], env, logs / "worker.log"),
        _spawn(["api", "--port", str(port)], env, logs / "api.log"),
    ]
    standin.set_config(webhook_url=f"{api}/v1/webhooks/stripe")
    try:
        async with httpx.AsyncClient(base_url=api, timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"API not ready: {(logs / 'api.log').read_text()}")
                await asyncio.sleep(0.3)
            yield E2E(api, http, standin, smtp, receiver, dev_env.client)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for name in ("worker.log", "api.log"):
            text = (logs / name).read_text(errors="replace")
            if "Traceback" in text:
                print(f"--- {name} ---\n{text[-4000:]}")


async def test_card_contract_is_debited(e2e: E2E) -> None:
    # due today (00:00 Berlin, already past): debited at once; the others next months
    body = contract_body(count=3, first_due=berlin_date(datetime.now(UTC)))
    resp = await e2e.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid = body["contract_id"]
    # a replay of the same checkout is answered 200 and debits nothing more
    again = await e2e.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert again.status_code == 200 and again.json()["contract_id"] == cid

    async def first_paid() -> bool:
        c = await e2e.contract(cid)
        return c["schedule"][0]["status"] == "paid"

    await e2e.until("installment 1 paid", first_paid)
    # A refused action (409) leaves no trace in the history on a real server: the Update's
    # validator rejects it inside a speculative workflow task that is never persisted.
    handle = e2e.temporal.get_workflow_handle(f"contract-{cid}")
    before = len((await handle.fetch_history()).events)
    refused = await e2e.http.post(
        f"/v1/contracts/{cid}/resume", json={"reason": "x"}, headers=SUPPORT
    )
    assert refused.status_code == 409 and "not paused" in refused.json()["error"]["message"]
    assert len((await handle.fetch_history()).events) == before
    debits = [d for d in e2e.standin.ledger() if d["metadata"].get("contract_id") == cid]
    assert [d["amount"] for d in debits] == [9900]
    await e2e.until(
        "payment.succeeded event", lambda: "payment.succeeded" in e2e.receiver.types_for(cid)
    )
    assert e2e.receiver.bad_signatures == 0


async def test_a_card_debits_own_webhook_costs_its_workflow_nothing(e2e: E2E) -> None:
    """Stripe reports a card debit twice: as the answer to the charge activity (which the
    workflow acts on) and as `payment_intent.succeeded`, delivered to the API, often while
    the activity is still recording the answer. That webhook is answered, and the workflow
    gets no signal (no workflow task) for what it already knows (issue 17)."""
    body = contract_body(count=1, first_due=berlin_date(datetime.now(UTC)))
    resp = await e2e.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid = body["contract_id"]

    async def paid() -> bool:
        return (await e2e.contract(cid))["schedule"][0]["status"] == "paid"

    await e2e.until("installment 1 paid", paid)

    def delivered() -> list[dict[str, Any]]:
        events = [
            e
            for e in e2e.standin.events(type="payment_intent.succeeded")
            if e["data"]["object"]["metadata"].get("contract_id") == cid
        ]
        return [
            w
            for e in events
            for w in e2e.standin.webhooks(event=e["id"])
            if w["status"] == "succeeded" and w["http_status"] == 200
        ]

    (webhook,) = await e2e.until("payment_intent.succeeded delivered", delivered)
    assert webhook["url"].endswith("/v1/webhooks/stripe")
    handle = e2e.temporal.get_workflow_handle(f"contract-{cid}")
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in (await handle.fetch_history()).events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals == []


async def test_failing_contract_reminds_locks_and_settlement_unlocks(e2e: E2E) -> None:
    email = f"e2e-{os.getpid()}-{time.time_ns()}@example.org"
    body = contract_body(
        count=2,
        policy="demo",
        first_due="2026-01-01T00:00:00+00:00",
        payment_method="pm_card_visa_chargeDeclinedLostCard",
        email=email,
    )
    # due "now": the contract starts with its first installment already due
    body["installments"]["first_due"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    body["installments"]["interval"] = "P1M"
    resp = await e2e.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid = body["contract_id"]

    # (the first e-mail says at once that the payment failed, issue 12; the reminder follows)
    reminder = await e2e.until(
        "the reminder e-mail",
        lambda: [
            m
            for m in e2e.smtp.store.messages()
            if email in str(m["To"]) and str(m["Subject"]).startswith("Zahlungserinnerung")
        ],
        timeout=60,
    )
    text = reminder[0].get_body(preferencelist=("plain",)).get_content()
    assert "99,00" in text
    await e2e.until(
        "access.locked event",
        lambda: "access.locked" in e2e.receiver.types_for(cid),
        timeout=60,
    )
    c = await e2e.contract(cid)
    assert c["access"] == "locked"
    customer = c["customer_id"]
    access = await e2e.http.get(f"/v1/access/{customer}/course-x", headers=PLATFORM)
    assert access.json()["access"] == "locked"

    # the customer transfers the claim; support records it
    claim = c["claim"]["total"]
    resp = await e2e.http.post(
        f"/v1/contracts/{cid}/settlements",
        json={"amount": claim, "method": "bank_transfer", "reference": "Überweisung 4711"},
        headers=SUPPORT,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["access"] == "granted"
    access = await e2e.http.get(f"/v1/access/{customer}/course-x", headers=PLATFORM)
    assert access.json()["access"] == "granted"
    await e2e.until(
        "access.unlocked event",
        lambda: "access.unlocked" in e2e.receiver.types_for(cid),
    )
    types = e2e.receiver.types_for(cid)
    assert types.index("access.locked") < types.index("access.unlocked")
    assert len({e["id"] for e in e2e.receiver.events}) == len(e2e.receiver.events)
    # no debit was ever taken from the lost card
    assert not [d for d in e2e.standin.ledger() if d["metadata"].get("contract_id") == cid]


async def test_sepa_debit_settles_via_webhook(e2e: E2E) -> None:
    import stripe

    from core.demo import sepa_mandate

    client = stripe.StripeClient("sk_test_mahnwerk", base_addresses={"api": e2e.standin.url})
    # A SEPA debit needs a mandate (Stripe refuses one without): set up as a platform does
    # at checkout, a SetupIntent on the customer.
    customer, pm = sepa_mandate(client, "DE89370400440532013000")
    body = contract_body(kind="one_off", payment_method=pm, amount=49700, stripe_customer=customer)
    resp = await e2e.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid = body["contract_id"]

    async def completed() -> bool:
        return (await e2e.contract(cid))["status"] == "completed"

    await e2e.until("SEPA debit settled", completed, timeout=60)
    types = e2e.receiver.types_for(cid)
    await e2e.until(
        "payment.succeeded event", lambda: "payment.succeeded" in e2e.receiver.types_for(cid)
    )
    types = e2e.receiver.types_for(cid)
    assert types.index("access.granted") < types.index("payment.succeeded")
