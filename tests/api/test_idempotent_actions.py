"""Idempotent, prompt support actions (issue 13 item 3), from the outside: the HTTP API on
the time-skipping server with the real worker, ledger, stand-in and SMTP.

- a settlement POSTed twice with one Idempotency-Key is counted once, and the second answer
  is the first — also after the workflow has ended; the same key with another body is 422;
- two settlements that together exceed what is open, validated against the same state
  (sent while no worker runs, so the contract sees both at once): one applies, the other is
  refused with 409; both answered 202 first, with a status URL that later holds the answer;
- a support action answers within 5 s while SMTP is down (the notice is being retried), and
  the notice still goes out once SMTP is back.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.models import OutboxEvent, TimelineEvent
from core.settings import Settings
from domain.schedule import BERLIN
from tests.conftest import SUPPORT, api_client, start_test_server
from tests.stack import Stack, unique_email
from tests.workflows.ladder import after, rungs

LOST = "pm_card_visa_chargeDeclinedLostCard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Rig:
    """The stack plus its worker, which a test may stop and start again."""

    stack: Stack
    settings: Settings
    sessions: sessionmaker[Session]
    parts: Any = None

    async def start_worker(self) -> None:
        from worker import build_worker

        # No workflow cache: with no sticky queue a restarted worker gets the next workflow
        # task at once, not after the dead worker's sticky timeout.
        self.parts = build_worker(
            self.stack.env.client,
            self.settings,
            session_factory=self.sessions,
            max_cached_workflows=0,
        )
        await self.parts.worker.__aenter__()

    async def stop_worker(self) -> None:
        await self.parts.worker.__aexit__(None, None, None)
        self.parts.executor.shutdown(wait=False)
        self.parts = None


async def rig_for(
    settings: Settings, sessions: sessionmaker[Session], standin: Any, smtp: Any
) -> AsyncIterator[Rig]:
    from api.main import create_app

    async with await start_test_server() as env:
        app = create_app(settings, sessions)
        app.state.mahnwerk._client = env.client
        async with api_client(app) as http:
            rig = Rig(Stack(env, http, settings, standin, smtp), settings, sessions)
            await rig.start_worker()
            try:
                yield rig
            finally:
                if rig.parts is not None:
                    await rig.stop_worker()


@pytest.fixture
async def rig(
    settings: Settings, sessions: sessionmaker[Session], standin: Any, smtp: Any
) -> AsyncIterator[Rig]:
    async for r in rig_for(settings, sessions, standin, smtp):
        yield r


def counted(sessions: sessionmaker[Session], cid: str, model: Any, type_: str) -> int:
    with sessions() as s:
        return int(
            s.scalar(select(func.count()).where(model.contract_id == cid, model.type == type_)) or 0
        )


async def settle(
    http: httpx.AsyncClient, cid: str, amount: int, key: str | None, ref: str = "Überweisung"
) -> httpx.Response:
    headers = SUPPORT | ({"Idempotency-Key": key} if key else {})
    body = {"amount": amount, "method": "bank_transfer", "reference": ref}
    return await http.post(f"/v1/contracts/{cid}/settlements", json=body, headers=headers)


async def test_a_retried_settlement_is_counted_once_and_answered_alike(rig: Rig) -> None:
    stack = rig.stack
    cid, handle = await stack.start(count=2, payment_method=LOST)
    await stack.env.sleep(timedelta(days=2))  # installment 1 open, installment 2 scheduled
    key = str(uuid.uuid4())
    first = await settle(stack.http, cid, 5000, key)
    assert first.status_code == 200, first.text
    view = await stack.contract(cid)
    again = await settle(stack.http, cid, 5000, key)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await stack.contract(cid) == view  # the contract view did not move
    assert view["schedule"][0]["paid_amount"] == 5000 - first.json()["allocation"].get(
        "interest_1", 0
    )
    assert counted(rig.sessions, cid, TimelineEvent, "settlement.recorded") == 1
    assert counted(rig.sessions, cid, OutboxEvent, "payment.succeeded") == 1
    # the status URL holds the same answer
    status = await stack.http.get(f"/v1/contracts/{cid}/actions/{key}", headers=SUPPORT)
    assert status.status_code == 200, status.text
    assert status.json()["state"] == "done" and status.json()["response"] == first.json()
    # the same key with another body: refused, naming the conflict; nothing changes
    other = await settle(stack.http, cid, 4000, key)
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in other.json()["error"]["message"]
    assert counted(rig.sessions, cid, TimelineEvent, "settlement.recorded") == 1

    # Pay the rest: the contract completes and its workflow ends. A retry of either
    # settlement still gets its first answer (kept in the ledger, not only in Temporal).
    rest_key = str(uuid.uuid4())
    rest_amount = first.json()["overdue_amount"] + 9900
    rest = await settle(stack.http, cid, rest_amount, rest_key)
    assert rest.status_code == 200, rest.text
    assert rest.json()["status"] == "completed"
    assert (await stack.result(handle)).status == "completed"
    for k, amount, answer in ((rest_key, rest_amount, rest), (key, 5000, first)):
        retry = await settle(stack.http, cid, amount, k)
        assert retry.status_code == 200, retry.text
        assert retry.json() == answer.json()
    assert counted(rig.sessions, cid, TimelineEvent, "settlement.recorded") == 2
    # without the header every request is an action of its own, as before
    late = await settle(stack.http, cid, 100, None)
    assert late.status_code == 409, late.text


async def answer_of(rig: Rig, cid: str, amount: int, key: str, first: httpx.Response) -> Any:
    """The final answer of an action first answered 202: read its status URL; retry the
    POST with the same key now and then (safe by design) in case Temporal forgot it."""
    assert first.status_code == 202, first.text
    url = first.json()["status_url"]
    assert first.headers["Location"] == url == f"/v1/contracts/{cid}/actions/{key}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = await rig.stack.http.get(url, headers=SUPPORT)
        if status.status_code == 200:
            return status.json()
        assert status.status_code == 202 and status.json()["state"] == "pending"
        retry = await settle(rig.stack.http, cid, amount, key)
        if retry.status_code != 202:
            return {"http_status": retry.status_code, "response": retry.json()}
        await asyncio.sleep(0.5)
    raise AssertionError(f"no answer for {key}")


async def test_concurrent_settlements_beyond_the_claim_never_both_apply(rig: Rig) -> None:
    stack = rig.stack
    cid, _ = await stack.start(count=1, payment_method=LOST)
    await stack.env.sleep(timedelta(days=2))
    open_amount = (await stack.contract(cid))["claim"]["total"]
    assert open_amount == 9900
    # Each alone is within the claim (the validator allows it); together they exceed it.
    # Sent while no worker runs: the contract receives and validates both at once.
    await rig.stop_worker()
    keys = [str(uuid.uuid4()), str(uuid.uuid4())]
    t0 = time.monotonic()
    firsts = await asyncio.gather(*(settle(stack.http, cid, 6000, k) for k in keys))
    assert time.monotonic() - t0 < 8  # 202 after MAHNWERK_ACTION_WAIT_SECONDS (4 s)
    await rig.start_worker()
    answers = [await answer_of(rig, cid, 6000, k, r) for k, r in zip(keys, firsts, strict=True)]
    assert sorted(a["http_status"] for a in answers) == [200, 409], answers
    refused = next(a for a in answers if a["http_status"] == 409)["response"]["error"]
    assert refused["code"] == "conflict" and "exceeds what is still payable" in refused["message"]
    assert counted(rig.sessions, cid, TimelineEvent, "settlement.recorded") == 1
    c = await stack.contract(cid)
    paid = c["schedule"][0]["paid_amount"]
    assert 0 < paid <= 6000 and c["claim"]["total"] == 9900 - paid  # one settlement, no credit


@pytest.fixture
async def rig_without_smtp(
    settings: Settings, sessions: sessionmaker[Session], standin: Any
) -> AsyncIterator[tuple[Rig, int]]:
    """The stack with the worker's SMTP pointing at a port where nothing listens (yet)."""
    port = free_port()
    down = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"})
    async for r in rig_for(down, sessions, standin, None):
        yield r, port


async def test_a_support_action_answers_promptly_while_smtp_is_down(
    rig_without_smtp: tuple[Rig, int],
) -> None:
    from core.smtp_catcher import run_smtp_catcher

    rig, port = rig_without_smtp
    stack = rig.stack
    email = unique_email()
    cid, _ = await stack.start(count=2, payment_method=LOST, email=email)
    # The reminder is due 3 days after the due date (later when a weekend or holiday moves
    # its deadline; in the send window); an hour later its notice is still being retried
    # (SMTP refuses connections; retried for up to a day).
    due = datetime.fromisoformat((await stack.contract(cid))["schedule"][0]["due_at"])
    reminder = rungs(due.astimezone(BERLIN).date())["reminder"]
    await stack.env.sleep(after(reminder) - await stack.env.get_current_time())
    c = await stack.contract(cid)
    assert c["dunning"]["stage"] == "reminder"
    t0 = time.monotonic()
    resp = await stack.http.post(
        f"/v1/contracts/{cid}/contest",
        json={"reason": "Kunde bestreitet die Forderung"},
        headers=SUPPORT | {"Idempotency-Key": str(uuid.uuid4())},
    )
    took = time.monotonic() - t0
    assert resp.status_code == 200, resp.text
    assert took < 5, f"the action took {took:.1f}s while SMTP was down"
    assert (await stack.contract(cid))["contested"] is True
    # SMTP comes back: the reminder goes out at its next retry, once.
    with run_smtp_catcher(port=port) as catcher:

        def mails() -> list[Any]:
            return [m for m in catcher.store.messages() if email in str(m["To"])]

        deadline = time.monotonic() + 60
        while not mails() and time.monotonic() < deadline:
            await stack.env.sleep(timedelta(minutes=5))  # the retries back off up to 10 min
            await asyncio.sleep(0.2)
        await stack.env.sleep(timedelta(minutes=30))
        assert len(mails()) == 1, [m["Subject"] for m in mails()]
        assert "Zahlungserinnerung" in str(mails()[0]["Subject"]), mails()[0]["Subject"]
    types = [
        e["type"]
        for e in (await stack.http.get(f"/v1/contracts/{cid}/events", headers=SUPPORT)).json()[
            "data"
        ]
    ]
    assert "notice.failed" not in types and "claim.contested" in types
