"""What one cached, sleeping workflow costs a worker's memory (bare Temporal, no Mahnwerk).

A worker keeps up to `max_cached_workflows` workflows in memory (the SDK's sticky cache), and
a parked contract stays cached until evicted. This measures the RSS a worker process gains
per cached workflow, for a sleeping workflow of a given shape: sandboxed or not, with N
activities run before the sleep (each adds ~6 history events), with an input of a given
size. Each configuration runs in a fresh process with its own dev server; the worker's RSS
is read before the first start, once half of them and once all have reached their timer;
the cost per workflow is the slope over the second half (the first also pay one-off costs).

    python -m bench.cache_memory [--n 1000] [--no-record]

It explains bench.parked's worker RSS: Mahnwerk's own per-contract cost is that run's slope
over `--worker-max-cached` (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.common import (
    BIN,
    ROOT,
    add_record_option,
    append_results,
    console,
    loadavg,
    markdown_table,
    rss_mib,
    run_benchmark,
    table,
)

if TYPE_CHECKING:
    from temporalio.client import Client

    from bench.sleeper_workflow import SleeperInput


@dataclass(frozen=True)
class Shape:
    sandboxed: bool
    activities: int
    input_kib: int

    @property
    def label(self) -> str:
        runner = "sandboxed" if self.sandboxed else "unsandboxed"
        return f"{runner}, {self.activities} activities, input {self.input_kib} KiB"


SHAPES = (
    Shape(True, 0, 0),
    Shape(False, 0, 0),
    Shape(True, 10, 0),
    Shape(True, 0, 3),
    Shape(True, 0, 20),
)


def _rss() -> float:
    """This process's RSS in MiB."""
    rss = rss_mib(os.getpid())
    if rss is None:
        raise RuntimeError("no VmRSS in /proc/self/status")
    return rss


async def _child(shape: Shape, n: int) -> dict[str, float]:
    """In a fresh process: a dev server, one worker, n workflows parked on their timers."""
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    from bench.sleeper_workflow import SleeperInput, SleeperWorkflow, step

    temporal = shutil.which("temporal", path=str(BIN)) or shutil.which("temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal,
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
    )
    async with env:
        runner = SandboxedWorkflowRunner() if shape.sandboxed else UnsandboxedWorkflowRunner()
        queue = f"bench-sleeper-{uuid.uuid4().hex[:8]}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[SleeperWorkflow],
            activities=[step],
            workflow_runner=runner,
            max_cached_workflows=n + 100,  # all of them stay cached
        ):
            await asyncio.sleep(3)
            gc.collect()
            before = _rss()
            inp = SleeperInput("x" * (shape.input_kib * 1024), shape.activities)
            half = await _park(env.client, queue, inp, n // 2, shape.activities)
            rest = await _park(env.client, queue, inp, n - n // 2, shape.activities)
    # The slope over the second half: the first workflows also pay one-off costs (the
    # sandbox's first imports, the SDK's first buffers), which are not per workflow.
    return {
        "before": before,
        "half": half,
        "after": rest,
        "per": (rest - half) * 1024 / (n - n // 2),  # KiB
    }


async def _park(client: Client, queue: str, inp: SleeperInput, n: int, activities: int) -> float:
    """Start n workflows, wait until each has reached its timer; the worker's RSS then."""
    from bench.sleeper_workflow import SleeperWorkflow

    handles = []
    for first in range(0, n, 50):
        handles += await asyncio.gather(
            *(
                client.start_workflow(
                    SleeperWorkflow.run,
                    inp,
                    id=f"sleeper-{uuid.uuid4().hex}",
                    task_queue=queue,
                )
                for _ in range(first, min(n, first + 50))
            )
        )
    want = 5 + 6 * activities  # started, the tasks, each activity's 6 events, the timer
    pending = list(handles)
    for _ in range(600):
        descs = await asyncio.gather(*(h.describe() for h in pending))
        pending = [
            h
            for h, d in zip(pending, descs, strict=True)
            if d.raw_description.workflow_execution_info.history_length < want
        ]
        if not pending:
            break
        await asyncio.sleep(1)
    else:
        raise RuntimeError(f"{len(pending)} of {n} workflows never reached their timer")
    await asyncio.sleep(3)
    gc.collect()
    return _rss()


def _measure(shape: Shape, n: int) -> dict[str, float]:
    argv = [
        sys.executable,
        "-m",
        "bench.cache_memory",
        "--child",
        json.dumps([shape.sandboxed, shape.activities, shape.input_kib, n]),
    ]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{shape.label}: {out.stderr.strip()[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def main_async(args: argparse.Namespace) -> None:
    if args.child:
        sandboxed, activities, input_kib, n = json.loads(args.child)
        result = await _child(Shape(sandboxed, activities, input_kib), n)
        print(json.dumps(result), flush=True)
        # The SDK's runtime threads can abort the interpreter's finalization ("PyGILState_
        # Release: thread state … must be current"); the result is out, nothing is left open.
        os._exit(0)
    load_before = loadavg()
    cols = [
        "workflow shape",
        "worker RSS: before, half parked, all parked",
        "per cached workflow (second half)",
    ]
    rows = []
    for shape in SHAPES:
        console.print(f"[dim]{shape.label}: {args.n} workflows …[/dim]")
        r = _measure(shape, args.n)
        rows.append(
            [
                shape.label,
                f"{r['before']:.0f}, {r['half']:.0f}, {r['after']:.0f} MiB",
                f"{r['per']:.1f} KiB",
            ]
        )
    console.print(table(f"What a cached, sleeping workflow costs ({args.n} each)", cols, rows))
    load = f"load average before {load_before}, after {loadavg()}"
    console.print(load)
    if not args.no_record:
        append_results(
            f"bench.cache_memory, {args.n} workflows per shape",
            [("", markdown_table(cols, rows))],
            [load, "one worker process, its own dev server per shape; RSS from /proc"],
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cache_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=1000, help="workflows parked per shape")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    add_record_option(parser)
    run_benchmark(parser, main_async)


if __name__ == "__main__":
    main()
