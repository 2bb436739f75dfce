"""The bare-Temporal baseline: a workflow with the commands of a paid Mahnwerk installment
and nothing else, and the worker that runs it (`python -m bench.bare --task-queue …`).

A paid installment in Mahnwerk is, after its due date: the timer fires, `charge` runs,
the search attributes are upserted, `sync_ledger` runs, and the next timer starts (see
`python -m bench.history`). The baseline does the same commands with no-op activities:
timer until the due instant → activity → search-attribute upsert → activity → done. The
worker has Mahnwerk's settings: sandboxed workflows, synchronous activities on a 64-thread
pool, 64 concurrent activities, the same `max_cached_workflows`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from bench.bare_workflow import BareWorkflow, bare_first, bare_second


def _sticky_timeout() -> float:
    """MAHNWERK_WORKER_STICKY_TIMEOUT's default: the bare worker is configured as ours."""
    from core.settings import Settings

    return float(Settings.model_fields["worker_sticky_timeout"].default)


STICKY_TIMEOUT = _sticky_timeout()


async def run_worker(address: str, task_queue: str, max_cached: int) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    client = await Client.connect(address)
    executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="activity")
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow],
        activities=[bare_first, bare_second],
        activity_executor=executor,
        max_concurrent_activities=64,
        max_cached_workflows=max_cached,
        # as Mahnwerk's worker (MAHNWERK_WORKER_STICKY_TIMEOUT's default)
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=STICKY_TIMEOUT),
        workflow_runner=SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"bare worker polling {task_queue} on {address}", flush=True)
    async with worker:
        await stop.wait()
    executor.shutdown(wait=False)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--max-cached-workflows", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(run_worker(args.address, args.task_queue, args.max_cached_workflows))


if __name__ == "__main__":
    main()
