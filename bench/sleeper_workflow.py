"""The workflow of bench/cache_memory.py: takes an input, runs some activities, then sleeps
for a month — a parked contract's shape without Mahnwerk's code. Imported by the sandbox
for every run, so it imports nothing beyond the SDK."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW = "bench_sleeper"


@dataclass
class SleeperInput:
    blob: str  # the workflow input's size (a contract's is ~3 KiB of JSON)
    activities: int  # activities run one after the other before the sleep
    result_bytes: int = 16  # each activity's result


@activity.defn(name="bench_sleeper_step")
async def step(size: int) -> str:
    return "y" * size


@workflow.defn(name=WORKFLOW)
class SleeperWorkflow:
    @workflow.run
    async def run(self, inp: SleeperInput) -> None:
        for _ in range(inp.activities):
            await workflow.execute_activity(
                step, inp.result_bytes, start_to_close_timeout=timedelta(seconds=30)
            )
        await workflow.sleep(timedelta(days=30))
