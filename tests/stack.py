"""The whole app on a Temporal test server, driven from the outside: the HTTP API (in
process, ASGI) starts contracts and runs support actions; the real worker debits through
the Stripe stand-in, writes the ledger and sends notices to a real SMTP server."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from domain.schedule import BERLIN, berlin_date
from tests.conftest import PLATFORM, contract_body
from workflows.types import ContractView, workflow_id_for

# The workflow's current details: "… at 2027-01-13 08:00:00 Europe/Berlin" (ContractView)
_WAKE = re.compile(r" at (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) Europe/Berlin")


@dataclass
class Stack:
    env: WorkflowEnvironment
    http: httpx.AsyncClient
    settings: Settings
    standin: Any
    smtp: Any
    started: list[str] = field(default_factory=list)
    # The client the API and worker use (with the payload codec); None: env.client.
    client: Client | None = None

    @property
    def temporal(self) -> Client:
        """The client that reads payloads (decrypts them) as the API and worker do."""
        return self.client or self.env.client

    async def today(self) -> str:
        return berlin_date(await self.env.get_current_time())

    async def pin_clock(self, day: int, at: time = time(10)) -> datetime:
        """Skip the test server's clock to the next `day` of a month at `at` Berlin time, so a
        test whose outcome depends on the calendar (paydays, month ends, TARGET holidays)
        runs from the same point of the month whatever the real date. The test server starts
        at the wall clock and only moves forward, so this is the nearest pin it allows."""
        now = await self.env.get_current_time()
        local = now.astimezone(BERLIN)
        year, month = local.year, local.month
        while True:
            target = datetime.combine(date(year, month, day), at, BERLIN)
            if target > now:
                break
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        await self.env.sleep(target - now)
        return target

    async def pin_date(
        self, month: int, day: int, *, weekday: int | None = None, at: time = time(10)
    ) -> datetime:
        """Skip the clock to the next `month`/`day` (this year or a later one) at `at` Berlin
        time, then on to the first day that is `weekday` (Monday = 0), if given: for tests
        whose deadlines depend on weekends and holidays (§ 193 BGB, the send window). The
        test server only moves forward, so this is the nearest such date it allows."""
        now = await self.env.get_current_time()
        year = now.astimezone(BERLIN).year
        while True:
            target_day = date(year, month, day)
            while weekday is not None and target_day.weekday() != weekday:
                target_day += timedelta(days=1)
            target = datetime.combine(target_day, at, BERLIN)
            if target > now:
                break
            year += 1
        await self.env.sleep(target - now)
        return target

    async def sleep_until(self, when: datetime) -> None:
        """Skip the clock to `when` (no-op if it has passed)."""
        now = await self.env.get_current_time()
        if when > now:
            await self.env.sleep(when - now)

    async def start(self, **kw: Any) -> tuple[str, WorkflowHandle[Any, Any]]:
        kw.setdefault("first_due", await self.today())
        body = contract_body(**kw)
        resp = await self.http.post("/v1/contracts", json=body, headers=PLATFORM)
        assert resp.status_code == 201, resp.text
        cid = body["contract_id"]
        self.started.append(cid)
        handle = self.temporal.get_workflow_handle(workflow_id_for(cid), result_type=ContractView)
        return cid, handle

    async def result(self, handle: WorkflowHandle[Any, Any]) -> ContractView:
        """Wait for the workflow's end, letting the test server skip time meanwhile."""
        async with self.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            view: ContractView = await handle.result()
        return view

    async def settled(
        self, handle: WorkflowHandle[Any, Any], status: str, *, limit: int = 500
    ) -> ContractView:
        """Skip the clock, wake-up by wake-up, until the contract shows `status` with nothing
        in flight: no activity, no workflow task, nothing waiting for the collection partner.

        For a contract whose workflow goes on after a hand-off (issue 12: the case stays
        open), where `result` would wait for ever — and where letting the test server skip
        freely would run it into the server's own execution timeout: the clock moves only
        to the workflow's next wake-up (as its current details name it), never beyond."""
        for _ in range(limit):
            view: ContractView = await handle.query("view", result_type=ContractView)
            done = (
                view.status == status
                and not view.deliveries
                and (view.case is None or view.case.notice_sent)
            )
            desc = await handle.describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                if done:
                    return view
                raise AssertionError(f"workflow {desc.status} in {view.status}, not {status}")
            raw = desc.raw_description
            idle = not raw.pending_activities and not raw.HasField("pending_workflow_task")
            if done and idle:
                return view
            wake = _WAKE.search(view.waiting_for)
            if wake is not None and idle:
                at = datetime.fromisoformat(wake.group(1)).replace(tzinfo=BERLIN)
                await self.sleep_until(at + timedelta(seconds=1))
            else:
                await self.env.sleep(timedelta(seconds=30))  # something is in flight
        raise AssertionError(f"contract not settled in {status!r}: waiting for {view.waiting_for}")

    async def contract(self, cid: str) -> dict[str, Any]:
        resp = await self.http.get(f"/v1/contracts/{cid}", headers=PLATFORM)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def debits(self, cid: str) -> list[dict[str, Any]]:
        return [
            d for d in self.standin.ledger() if (d.get("metadata") or {}).get("contract_id") == cid
        ]

    def mails(self, to: str) -> list[Any]:
        return [m for m in self.smtp.store.messages() if to in str(m["To"])]


def unique_email() -> str:
    return f"kunde-{uuid.uuid4().hex[:8]}@example.org"


async def activities_run(handle: Any) -> list[tuple[str, str | None]]:
    """The activities a workflow ran, in history order: (type, task queue), the queue None
    for a local activity (a marker in the history, PATCH_LEAN)."""
    import json

    out: list[tuple[str, str | None]] = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            out.append((attrs.activity_type.name, attrs.task_queue.name))
        elif event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                data = json.loads(marker.details["data"].payloads[0].data)
                out.append((data["activity_type"], None))
    return out
