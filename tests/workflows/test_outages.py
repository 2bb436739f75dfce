"""No outage fails a contract (issue 13 item 4), on the time-skipping server with the real
worker, API, ledger, stand-in and mail server: Stripe down for 30 minutes while a SEPA debit
is processing, SMTP down for an hour during a Mahnung, the collection partner down for two
days at the hand-off. No workflow fails; nothing is lost or doubled — one debit each in the
stand-in's ledger, each notice once in the mailbox, the case file acknowledged once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowExecutionStatus

from activities.mailer import send_email
from api.main import create_app
from core.settings import Settings
from domain.schedule import BERLIN
from tests.conftest import PLATFORM, api_client, start_test_server
from tests.stack import Stack, unique_email
from tests.workflows.ladder import rungs
from tests.workflows.test_payments import sepa_method, until_settled_at_bank
from worker import build_worker

LOST = "pm_card_visa_chargeDeclinedLostCard"


class Partner:
    """A collection partner's endpoint: 503 while `down`, else 200."""

    def __init__(self) -> None:
        self.down = False
        self.answers: list[int] = []
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                status = 503 if partner.down else 200
                partner.answers.append(status)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cases"


@pytest.fixture
def partner() -> Iterator[Partner]:
    p = Partner()
    thread = threading.Thread(target=p.server.serve_forever, daemon=True)
    thread.start()
    yield p
    p.server.shutdown()
    p.server.server_close()


async def _types(stack: Stack, cid: str) -> list[str]:
    resp = await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)
    assert resp.status_code == 200, resp.text
    return [r["type"] for r in resp.json()["data"]]


async def test_outages_of_stripe_smtp_and_the_partner_fail_no_contract(
    settings: Settings,
    sessions: sessionmaker[Session],
    standin: Any,
    smtp: Any,
    partner: Partner,
) -> None:
    smtp_down = {"on": False}
    refused: list[str] = []

    def flaky_smtp(*args: Any, **kwargs: Any) -> None:
        if smtp_down["on"]:
            refused.append("refused")
            raise ConnectionError("SMTP server unreachable (test outage)")
        send_email(*args, **kwargs)

    cfg = settings.model_copy(update={"collection_url": partner.url})
    standin.set_config(sepa_delay=0.2)
    async with await start_test_server() as env:
        parts = build_worker(env.client, cfg, session_factory=sessions, mailer=flaky_smtp)
        app = create_app(cfg, sessions)
        app.state.mahnwerk._client = env.client
        try:
            async with parts.worker, api_client(app) as http:
                stack = Stack(env, http, cfg, standin, smtp)
                await stack.pin_date(6, 15)  # no holiday moves the rungs for weeks
                due = (await env.get_current_time()).astimezone(BERLIN).date()
                plan = rungs(due)
                card_mail, sepa_mail = unique_email(), unique_email()
                card, card_handle = await stack.start(
                    count=1, payment_method=LOST, email=card_mail, first_due=due.isoformat()
                )
                sepa, sepa_handle = await stack.start(
                    count=1,
                    payment_method=sepa_method(stack, "DE89370400440532013000"),
                    email=sepa_mail,
                    first_due=due.isoformat(),
                )
                for _ in range(20):  # the debit goes out right after the announcement
                    c = await stack.contract(sepa)
                    if c["schedule"][0]["status"] == "processing":
                        break
                    await env.sleep(timedelta(seconds=30))
                assert c["schedule"][0]["status"] == "processing", c["schedule"]

                # 1. Stripe answers 500 to everything for 30 minutes while the debit is
                # processing, around the workflow's poll of its status (every 6 h; the
                # bank has settled it meanwhile). The poll fails through all its retries.
                debited = datetime.fromisoformat(c["schedule"][0]["attempts"][0]["attempted_at"])
                await until_settled_at_bank(stack, sepa)
                await stack.sleep_until(debited + timedelta(hours=6, minutes=-10))
                standin.set_config(fault_5xx=1.0)
                await env.sleep(timedelta(minutes=30))
                assert (await stack.contract(sepa))["schedule"][0]["status"] == "processing"
                standin.set_config(fault_5xx=0.0)
                await env.sleep(timedelta(hours=2))
                c = await stack.contract(sepa)
                assert c["status"] == "completed", c
                (debit,) = stack.debits(sepa)  # one debit, never sent again
                assert debit["succeeded_at"] and not debit["disputed"]
                assert "payment.poll_failed" in await _types(stack, sepa)

                # 2. The mail server is away for an hour when Mahnung 1 is due.
                await stack.sleep_until(plan["mahnung_1"].at - timedelta(minutes=5))
                smtp_down["on"] = True
                await stack.sleep_until(plan["mahnung_1"].at + timedelta(minutes=55))
                smtp_down["on"] = False
                await env.sleep(timedelta(hours=1))
                assert refused, "the Mahnung was attempted during the outage"
                assert (await stack.contract(card))["dunning"]["stage"] == "mahnung_1"

                # 3. The collection partner is down for two days from the hand-off.
                partner.down = True
                await stack.sleep_until(plan["collection"].at + timedelta(days=2))
                assert partner.answers and set(partner.answers) == {503}
                partner.down = False
                await env.sleep(timedelta(days=1))

                assert partner.answers.count(200) == 1  # acknowledged once, never re-sent
                c = await stack.contract(card)
                assert c["status"] == "handed_off"
                types = await _types(stack, card)
                assert "notice.failed" not in types  # an hour's outage: retried in time
                assert types.count("collection.case_file_delivered") == 1
                stages = [str(m["Subject"]) for m in stack.mails(card_mail)]
                # payment failed (issue 12), reminder, Mahnung 1, lock, Mahnung 2, hand-off:
                # each exactly once
                assert len(stages) == len(set(stages)) == 6, stages
                # the SEPA pre-notification and the plan's end (issue 12), each once
                sepa_subjects = [str(m["Subject"]) for m in stack.mails(sepa_mail)]
                assert len(sepa_subjects) == 2, sepa_subjects
                assert sepa_subjects[1].startswith("Alle Raten bezahlt"), sepa_subjects
                assert stack.debits(card) == []  # declined: no money moved
                assert len(c["schedule"][0]["attempts"]) == 1  # a hard decline: not retried

                for handle in (card_handle, sepa_handle):
                    desc = await handle.describe()
                    assert desc.status in (
                        WorkflowExecutionStatus.COMPLETED,
                        WorkflowExecutionStatus.RUNNING,
                    ), desc.status
        finally:
            standin.set_config(sepa_delay=2.0, fault_5xx=0.0)
            parts.executor.shutdown(wait=False)
