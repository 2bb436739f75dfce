"""The baseline workflow (see bench/bare.py): imported by the sandbox for every run, so it
imports no more than Mahnwerk's workflow module does outside its passed-through modules."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

WORKFLOW = "bench_bare"
SA_STATUS = SearchAttributeKey.for_keyword("MahnwerkStatus")


@dataclass
class BareInput:
    due: str  # RFC 3339 instant
    upsert: bool = True


@dataclass
class BareResult:
    woke: float  # workflow.now() of the task after the timer (Mahnwerk: attempted_at)
    done: float  # the second activity's clock (Mahnwerk: installments.paid_at)


@activity.defn(name="bare_first")
def bare_first(seq: int) -> float:
    return time.time()


@activity.defn(name="bare_second")
def bare_second(seq: int) -> float:
    return time.time()  # the workflow's "recorded" instant (what sync_ledger is to Mahnwerk)


@workflow.defn(name=WORKFLOW)
class BareWorkflow:
    @workflow.run
    async def run(self, inp: BareInput) -> BareResult:
        due = datetime.fromisoformat(inp.due)
        delta = due - workflow.now()
        if delta > timedelta(0):
            await workflow.sleep(delta)
        woke = workflow.now().timestamp()
        await workflow.execute_activity(bare_first, 1, start_to_close_timeout=timedelta(seconds=60))
        if inp.upsert:
            workflow.upsert_search_attributes([SA_STATUS.value_set("completed")])
        done: float = await workflow.execute_activity(
            bare_second, 2, start_to_close_timeout=timedelta(seconds=60)
        )
        return BareResult(woke, done)
