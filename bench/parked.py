"""Parked capacity (issue 6, benchmark 3): N contracts asleep until their due date.

    python -m bench.parked --n 10000

A fresh dev server, the stand-in, PostgreSQL and ONE worker subprocess (`mahnwerk worker`,
so `max_cached_workflows` is what the worker has: MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS,
default 500). The driver parks N installment contracts (count 1, due at T) with the API's
own code path — `build_input`, the ledger
insert and `start_workflow` from api/routes/contracts.py, called in-process at 16
concurrent starts, so parking is not bounded by the HTTP API (see bench.checkout for
that). A contract is parked when its first workflow task and ledger write are done.

Measured: time to park them all; worker and server RSS (VmRSS) once parked (target:
worker ≤ 300 MiB); at T, every workflow waking — `workflow.now()` of the task that starts
the debit (PaymentAttempt.attempted_at) minus T — and debiting (settled_at − T).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from bench.common import (
    CpuMeter,
    add_stack_options,
    append_results,
    console,
    cpu_rows,
    loadavg,
    markdown_table,
    percentile,
    reset_database,
    rss_mib,
    run_benchmark,
    stack,
    table,
)
from bench.due_wave import BYTECODE, STARTED_SQL, monitor, pg, scalar, wave_body


async def park(
    stk: Any, n: int, due_s: str, concurrency: int, tag: str, trace: list[list[str]]
) -> float:
    """Start N contracts the way the API does; returns seconds until all are parked.
    `trace` gets (parked, seconds, worker RSS, server RSS) rows along the way."""
    from api.routes import contracts as routes
    from api.schemas import ContractCreate
    from core.db import make_engine, make_session_factory, transaction
    from core.settings import load_settings
    from core.temporal import connect_client

    settings = load_settings(
        database_url=stk.db_url,
        temporal_address=stk.temporal_address,
        task_queue=stk.task_queue,
    )
    # the policy file is the same for every contract: parse it once (driver CPU only)
    load_policy = functools.lru_cache(maxsize=8)(routes.load_policy)
    routes.load_policy = load_policy  # type: ignore[assignment]
    sessions = make_session_factory(make_engine(stk.db_url))
    client = await connect_client(settings)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    def insert(body: Any, inp: Any) -> None:
        with transaction(sessions) as s:
            routes._insert(s, body, inp, routes._hash(body))

    async def starter() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = ContractCreate.model_validate(wave_body(due_s, tag, i))
            inp = routes.build_input(body, settings, datetime.now(UTC))
            await asyncio.to_thread(insert, body, inp)
            await routes._start_workflow(client, settings, inp)

    conn = pg(stk.db_url)
    worker = stk.procs["mahnwerk worker"].pid
    server = stk.procs["temporal server"].pid
    marks = [m for m in (500, 1000, 2000, 3000, 5000, 7500) if m < n]
    t0 = time.monotonic()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("parked (first task + ledger write done)", total=n)
        starters = asyncio.gather(*(starter() for _ in range(concurrency)))
        while True:
            await asyncio.sleep(1)
            parked = int(scalar(conn, STARTED_SQL))
            progress.update(task, completed=parked)
            while marks and parked >= marks[0]:
                marks.pop(0)
                trace.append(
                    [
                        str(parked),
                        f"{time.monotonic() - t0:.0f}",
                        f"{rss_mib(worker) or 0:.0f}",
                        f"{rss_mib(server) or 0:.0f}",
                    ]
                )
            if parked >= n:
                break
            stk.check_alive()
            if starters.done() and starters.exception():
                raise starters.exception()  # type: ignore[misc]
        await starters
    conn.close()
    return time.monotonic() - t0


async def main_async(args: argparse.Namespace) -> None:
    n = args.n
    lead = args.lead if args.lead is not None else 120 + n / 18
    load_before = loadavg()
    console.print(f"load average before: {load_before}")
    reset_database(args.database_url)
    with stack(args.database_url, args.keep, args.bytecode_cache) as stk:
        stk.task_queue = f"parked-{uuid.uuid4().hex[:6]}"
        stk.start_temporal()
        await stk.wait_temporal_ready()
        stk.start_smtp()
        stk.start_standin(None)
        stk.stripe_rate_limit = args.stripe_rate_limit
        extra: dict[str, str] = {}
        if args.worker_max_cached is not None:
            extra["MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS"] = str(args.worker_max_cached)
        worker = stk.start_worker(**extra)
        server = stk.procs["temporal server"]
        rss_start = rss_mib(worker.pid) or 0.0
        due = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
        due_s = due.isoformat().replace("+00:00", "Z")
        tag = f"park-{uuid.uuid4().hex[:6]}"
        console.print(f"parking {n} contracts due {due_s} …")
        trace: list[list[str]] = []
        park_s = await park(stk, n, due_s, args.concurrency, tag, trace)
        console.print(f"  parked in {park_s:.0f} s ({n / park_s:.1f}/s)")
        await asyncio.sleep(5)  # the last timers started; nothing else runs
        worker_rss = rss_mib(worker.pid) or 0.0
        server_rss = rss_mib(server.pid) or 0.0
        trace.append(
            [str(n), f"{park_s:.0f} (+5 s idle)", f"{worker_rss:.0f}", f"{server_rss:.0f}"]
        )
        load_parked = loadavg()
        console.print(
            f"  RSS once parked: worker {worker_rss:.0f} MiB, server {server_rss:.0f} MiB"
        )
        margin = due.timestamp() - time.time()
        conn = pg(stk.db_url)

        async def woke() -> int:
            return int(scalar(conn, "select count(*) from payment_attempts"))

        meter = CpuMeter(stk.pids(), pg_url=stk.db_url)
        await monitor(meter, due, woke, n, args.timeout, "woke and debited", stk)
        rows = conn.execute("select attempted_at, settled_at from payment_attempts").fetchall()
        conn.close()
        peak = meter.peak_rss()
    load_after = loadavg()
    t = due.timestamp()
    woke_late = [r[0].timestamp() - t for r in rows]
    debit_late = [r[1].timestamp() - t for r in rows if r[1] is not None]
    early = sum(1 for x in woke_late if x < 0)
    woke_max = max(woke_late, default=float("nan"))
    cols = ["parked capacity", "value", "target"]
    results = [
        ["contracts parked", f"{n} in {park_s:.0f} s ({n / park_s:.1f}/s)", ""],
        [
            "worker RSS once parked",
            f"{worker_rss:.0f} MiB (at start {rss_start:.0f} MiB)",
            "≤ 300 MiB " + ("met" if worker_rss <= 300 else "MISSED"),
        ],
        ["server RSS once parked", f"{server_rss:.0f} MiB", ""],
        [
            "peak RSS while waking",
            f"worker {peak.get('mahnwerk worker', 0):.0f} MiB, "
            f"server {peak.get('temporal server', 0):.0f} MiB",
            "",
        ],
        [
            "woke (task starting the debit) − T",
            f"{len(woke_late)}/{n}; p50 {percentile(woke_late, 50):.1f} s, "
            f"p99 {percentile(woke_late, 99):.1f} s, max {woke_max:.1f} s"
            f"; {early} early",
            "all on time",
        ],
        [
            "debited − T",
            f"{len(debit_late)}/{n}; p50 {percentile(debit_late, 50):.1f} s, "
            f"p99 {percentile(debit_late, 99):.1f} s; "
            f"{len(debit_late) / max(max(debit_late, default=1), 1e-9):.1f}/s",
            "",
        ],
        ["time to spare between parked and T", f"{margin:.0f} s", ""],
        ["bytecode cache", BYTECODE[args.bytecode_cache], ""],
        [
            "worker settings",
            f"max_cached_workflows {args.worker_max_cached or 'default'}, Stripe limit "
            + (f"{args.stripe_rate_limit:g}/s" if args.stripe_rate_limit else "default"),
            "",
        ],
        ["load average", f"before {load_before}, parked {load_parked}, after {load_after}", ""],
    ]
    console.print(table(f"Parked capacity, N = {n}", cols, results))
    trace_cols = ["parked", "after s", "worker RSS MiB", "server RSS MiB"]
    console.print(table("RSS while parking", trace_cols, trace))
    cpu_cols = ["process", "CPU s", "cores"]
    cpu = cpu_rows(meter)
    console.print(table(f"CPU while waking ({meter.wall:.0f} s)", cpu_cols, cpu))
    if args.no_record:
        return
    append_results(
        f"Parked capacity, N = {n}",
        [
            ("", markdown_table(cols, results)),
            ("RSS while parking", markdown_table(trace_cols, trace)),
            (f"CPU while waking ({meter.wall:.0f} s wall)", markdown_table(cpu_cols, cpu)),
        ],
        [
            "Parked with the API's code in-process (build_input, the ledger insert, "
            "start_workflow) at 16 concurrent starts; the worker is `mahnwerk worker` "
            "(max_cached_workflows 500, its default). Shared machine (load average above).",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.parked", description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument(
        "--lead", type=float, default=None, help="seconds from now to T (default 120 + N/18)"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--worker-max-cached",
        type=int,
        default=None,
        help="MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS for the worker (default: its own)",
    )
    parser.add_argument(
        "--stripe-rate-limit",
        type=float,
        default=None,
        help="MAHNWERK_STRIPE_RATE_LIMIT for the worker (default: 25/s for a test key; each "
        "contract's start looks its payment method up at Stripe once)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="for the wake, seconds")
    add_stack_options(parser)
    run_benchmark(parser, main_async)


if __name__ == "__main__":
    main()
