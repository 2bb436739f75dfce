"""A contract's replay (issue 17): what a workflow-cache miss costs the worker.

    python -m bench.replay --n 200
    python -m bench.replay --n 200 --history lean-dunning-new-card

When a worker's wave is larger than its workflow cache (MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS,
800), the workflow task that follows a contract's debit finds the contract evicted and
replays its history from the start: in a 2,000-wave on one worker, about two replays per
contract. This measures one replay as the worker does it — the contract workflow, the
worker's sandbox (its pass-through modules and compiled snippets), its payload converter and
one-pass payload visits — on a recorded history of `tests/histories/`, whole and cut where
a wave's task replays it: after the first debit's completion (what the task after the debit
replays). Payloads are not encrypted here (the histories were recorded without the codec;
the codec's share is measured by the waves).

Printed per history: events, replays, CPU and wall ms per replay, and CPU µs per event.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    add_record_option,
    append_results,
    console,
    loadavg,
    markdown_table,
    run_benchmark,
    table,
)

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "histories"


@dataclass
class Cut:
    name: str
    events: list[dict[str, Any]]


def cut_after_first_debit(events: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The history up to the first `charge` activity's completion (the events the task
    after a wave's debit replays), or None when it has no charge."""
    charges: set[str] = set()
    for i, event in enumerate(events):
        scheduled = event.get("activityTaskScheduledEventAttributes")
        if scheduled and scheduled["activityType"]["name"] == "charge":
            charges.add(str(event["eventId"]))
        done = event.get("activityTaskCompletedEventAttributes")
        if done and str(done["scheduledEventId"]) in charges:
            return events[: i + 1]
    return None


def cuts(name: str) -> list[Cut]:
    path = HISTORIES / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"no history {path}")
    events = json.loads(path.read_text())["events"]
    out = [Cut(f"{name}, whole", events)]
    first = cut_after_first_debit(events)
    if first is not None:
        out.append(Cut(f"{name}, to the first debit's completion", first))
    return out


async def replay(cut: Cut, n: int) -> tuple[float, float]:
    """CPU and wall seconds of `n` replays of `cut` through one Replayer (one worker)."""
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from core.payload_visits import one_pass_payload_visits
    from core.sandbox import compile_sandbox_snippets, direct_serialization_context
    from core.settings import Settings
    from core.temporal import data_converter
    from worker import PASSTHROUGH
    from workflows.contract import ContractWorkflow

    compile_sandbox_snippets()
    direct_serialization_context()
    one_pass_payload_visits()
    text = json.dumps({"events": cut.events})
    replayer = Replayer(
        workflows=[ContractWorkflow],
        data_converter=data_converter(Settings(codec_key=None)),
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
        ),
    )

    parsed = WorkflowHistory.from_json("contract-replay", text)  # parsed once, not timed

    async def histories(count: int, tag: str) -> Any:
        for i in range(count):
            yield WorkflowHistory(f"contract-replay-{tag}-{i}", parsed.events)

    # warm-up: the sandbox's first instance imports the workflow modules
    await replayer.replay_workflows(histories(3, "warm"), raise_on_replay_failure=True)
    c0, w0 = time.process_time(), time.perf_counter()
    result = await replayer.replay_workflows(histories(n, "run"), raise_on_replay_failure=True)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    assert not result.replay_failures, result.replay_failures
    return cpu, wall


COLUMNS = ["history", "events", "replays", "CPU ms/replay", "wall ms/replay", "CPU µs/event"]


async def main_async(args: argparse.Namespace) -> None:
    load_before = loadavg()
    console.print(f"load average before: {load_before}")
    rows = []
    for name in args.history:
        for cut in cuts(name):
            cpu, wall = await replay(cut, args.n)
            events = len(cut.events)
            rows.append(
                [
                    cut.name,
                    str(events),
                    str(args.n),
                    f"{cpu / args.n * 1000:.1f}",
                    f"{wall / args.n * 1000:.1f}",
                    f"{cpu / args.n / events * 1e6:.0f}",
                ]
            )
    console.print(table("Replays (the worker's sandbox and converter, no codec)", COLUMNS, rows))
    load_after = loadavg()
    console.print(f"load average after: {load_after}")
    if not args.no_record:
        append_results(
            f"Replay ({args.n} per history)",
            [("", markdown_table(COLUMNS, rows))],
            [f"load average before {load_before}, after {load_after}"],
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="replays per history")
    parser.add_argument(
        "--history",
        action="append",
        help="a history of tests/histories (name without .json; repeatable; "
        "default: lean-plan-paid)",
    )
    add_record_option(parser)
    run_benchmark(parser, _with_default)


async def _with_default(args: argparse.Namespace) -> None:
    args.history = args.history or ["lean-plan-paid"]
    await main_async(args)


if __name__ == "__main__":
    main()
