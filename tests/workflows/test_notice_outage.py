"""SMTP down for days during a Mahnung (issue 13 item 4): the notice is re-sent until the
mail server takes it, the platform hears of each failure, the ladder stands still meanwhile
(no lock before the customer got the Mahnung whose deadline announces it), and the customer
gets each notice exactly once — on the time-skipping server, through the API."""

from __future__ import annotations

import ast
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.mailer import send_email
from activities.notice_render import format_day
from api.main import create_app
from core import metrics
from core.models import Notice
from core.settings import PROJECT_ROOT, Settings
from domain.schedule import BERLIN
from tests.conftest import ADMIN, PLATFORM, api_client, start_test_server
from tests.stack import Stack, unique_email
from tests.workflows.ladder import rungs
from worker import build_worker

LOST = "pm_card_visa_chargeDeclinedLostCard"


def _alerts(kind: str) -> float:
    """The alerts of `kind`, summed over the `seller` label (issue 14 part 5)."""
    return sum(
        sample.value
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.name == "mahnwerk_alerts_total" and sample.labels.get("type") == kind
    )


async def _timeline(stack: Stack, cid: str) -> list[dict[str, Any]]:
    resp = await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()["data"]
    return rows


def _at(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["occurred_at"])


async def test_mahnung_undelivered_for_days_is_resent_and_holds_the_ladder(
    settings: Settings, sessions: sessionmaker[Session], standin: Any, smtp: Any
) -> None:
    down = {"on": False}
    refused: list[str] = []

    def flaky_smtp(*args: Any, **kwargs: Any) -> None:
        if down["on"]:
            refused.append("refused")
            raise ConnectionError("SMTP server unreachable (test outage)")
        send_email(*args, **kwargs)

    email = unique_email()
    alerts_before = _alerts("notice.failed")
    async with await start_test_server() as env:
        parts = build_worker(env.client, settings, session_factory=sessions, mailer=flaky_smtp)
        app = create_app(settings, sessions)
        app.state.mahnwerk._client = env.client
        async with parts.worker, api_client(app) as http:
            stack = Stack(env, http, settings, standin, smtp)
            await stack.pin_date(6, 15)  # no holiday moves the rungs for the next weeks
            due = (await env.get_current_time()).astimezone(BERLIN).date()
            cid, handle = await stack.start(
                count=1, payment_method=LOST, email=email, first_due=due.isoformat()
            )
            plan = rungs(due)
            # The reminder goes out; then the mail server goes away before the Mahnung and
            # stays away until past the lock rung's planned time (the activity gives up
            # after one day; the workflow sends again after 1 h, 2 h, 4 h, … up to a day).
            await stack.sleep_until(plan["reminder"].at + timedelta(hours=2))
            # the payment-failed message at the decline (issue 12), then the reminder
            assert len(stack.mails(email)) == 2
            down["on"] = True
            outage_end = plan["lock"].at + timedelta(hours=12)
            await stack.sleep_until(outage_end)
            assert refused, "the Mahnung was attempted during the outage"
            c = await stack.contract(cid)
            assert c["status"] == "in_dunning" and c["dunning"]["stage"] == "mahnung_1"
            rows = await _timeline(stack, cid)
            failed = [r for r in rows if r["type"] == "notice.failed"]
            assert len(failed) >= 2  # the first give-up and at least one failed re-send
            assert all(r["data"]["stage"] == "mahnung_1" for r in failed)
            assert all(r["data"]["ladder_held"] and not r["data"]["permanent"] for r in failed)
            assert [r["data"]["attempt"] for r in failed] == list(range(1, len(failed) + 1))
            assert _alerts("notice.failed") - alerts_before == len(failed)
            # Past the lock rung's original time: nothing was escalated meanwhile.
            assert "access.locked" not in [r["type"] for r in rows]

            down["on"] = False
            await stack.sleep_until(outage_end + timedelta(days=3))
            subjects = [str(m["Subject"]) for m in stack.mails(email)]
            # payment failed, reminder, Mahnung 1: each once
            assert len(subjects) == 3, subjects
            rows = await _timeline(stack, cid)
            late = [r for r in rows if r["type"] == "notice.delivered_late"]
            assert len(late) == 1 and late[0]["data"]["stage"] == "mahnung_1"
            delivered = _at(late[0])
            assert delivered >= outage_end
            # The printed last day to pay is counted from the delivery, not from the rung.
            resp = await http.get(f"/v1/contracts/{cid}/notices", headers=ADMIN)
            mahnung = [n for n in resp.json()["data"] if n["stage"] == "mahnung_1"]
            assert len(mahnung) == 1 and mahnung[0]["status"] == "sent"
            with sessions() as s:
                row = s.scalars(
                    select(Notice).where(Notice.contract_id == cid, Notice.stage == "mahnung_1")
                ).one()
                last_day = date.fromisoformat(row.data["deadline_day"])
            assert format_day(last_day, "de") in mahnung[0]["text"]
            assert last_day > date.fromisoformat(plan["lock"].deadline)
            assert (last_day - delivered.astimezone(BERLIN).date()).days >= 6

            # The lock comes after that last day, not at its original time.
            await stack.sleep_until(datetime.combine(last_day, datetime.min.time(), BERLIN))
            assert (await stack.contract(cid))["access"] == "granted"
            await stack.sleep_until(
                datetime.combine(last_day + timedelta(days=2), datetime.min.time(), BERLIN)
            )
            rows = await _timeline(stack, cid)
            locked = [r for r in rows if r["type"] == "access.locked"]
            assert len(locked) == 1
            assert _at(locked[0]).astimezone(BERLIN).date() > last_day
            assert len(stack.mails(email)) == 4  # + the lock notice, once
            desc = await handle.describe()
            assert desc.status is not None and desc.status.name == "RUNNING"
        parts.executor.shutdown(wait=False)


def test_no_assert_statements_in_workflow_code() -> None:
    """An `assert` in workflow code fails the workflow task for ever (issue 13 item 4);
    workflows raise ApplicationError or handle the case."""
    found = []
    for path in sorted(Path(PROJECT_ROOT / "workflows").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assert):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []
