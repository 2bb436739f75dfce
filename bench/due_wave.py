"""Due-date wave (issue 6, benchmark 1): N installments due at the same instant.

    python -m bench.due_wave --n 2000

One run, one Temporal dev server (WAL, search attributes, fresh database file):

1. Mahnwerk: the API creates N installment contracts (count 1, `pm_card_visa`) all due at
   the instant T; the worker debits them through the Stripe stand-in when T comes.
   Measured from T: installments debited per second and the lateness of each debit
   (PaymentAttempt.settled_at, written right after the stand-in confirmed; the stand-in's
   own ledger only has whole seconds) and of each ledger write (Installment.paid_at,
   written by `sync_ledger`, the last activity of a paid installment).
2. Bare Temporal on the same server: N workflows of `bench.bare_workflow` (timer until T2,
   activity, search-attribute upsert, activity) on their own worker process with the same
   settings; completions per second and lateness the same way (the second activity's
   clock).

CPU seconds of every process over each wave (from T until the last one is done) say what
bounds it. Results are printed and appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from bench.common import (
    PLATFORM,
    CpuMeter,
    Stack,
    add_stack_options,
    append_results,
    console,
    cpu_rows,
    loadavg,
    markdown_table,
    percentile,
    reset_database,
    run_benchmark,
    spawn,
    stack,
    table,
)

# -- creating contracts through the API ----------------------------------------------------------


def wave_body(due: str, tag: str, i: int) -> dict[str, Any]:
    from tests.conftest import contract_body

    return contract_body(f"{tag}-{i:06d}", kind="installments", count=1, first_due=due)


@dataclass
class Created:
    n: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def create_contracts(
    api_url: str, bodies: list[dict[str, Any]], concurrency: int, label: str
) -> Created:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    result = Created(len(bodies), 0.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=len(bodies))
        async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as http:

            async def one_client() -> None:
                while True:
                    try:
                        body = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    t0 = time.perf_counter()
                    for attempt in range(5):
                        try:
                            resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
                        except httpx.HTTPError as exc:
                            if attempt == 4:
                                result.errors.append(f"{type(exc).__name__}: {exc}")
                            await asyncio.sleep(1)
                            continue
                        if resp.status_code in (200, 201):
                            break
                        if attempt == 4 or resp.status_code < 500:
                            result.errors.append(f"{resp.status_code} {resp.text[:200]}")
                            break
                        await asyncio.sleep(1)
                    result.latencies.append(time.perf_counter() - t0)
                    progress.advance(task)

            t0 = time.monotonic()
            await asyncio.gather(*(one_client() for _ in range(concurrency)))
            result.seconds = time.monotonic() - t0
    return result


BYTECODE = {
    True: "on (.pyc files)",
    False: "off (PYTHONDONTWRITEBYTECODE=1, no .pyc, as in the Docker image)",
}
STARTED_SQL = "select count(*) from timeline_events where type = 'contract.started'"

# -- PostgreSQL reads ----------------------------------------------------------------------------


def pg(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def scalar(conn: psycopg.Connection[Any], sql: str, *args: Any) -> Any:
    row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


async def audit(client: Any, ids: list[str], label: str) -> dict[str, str]:
    """Event counts over a sample of histories: what the server and worker really did."""
    from collections import Counter

    from temporalio.api.enums.v1 import EventType

    counts: Counter[str] = Counter()
    sticky_timeouts = 0
    for wid in ids:
        hist = await client.get_workflow_handle(wid).fetch_history()
        for e in hist.events:
            name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
            counts[name] += 1
            if name == "WORKFLOW_TASK_TIMED_OUT":
                sticky_timeouts += 1
    k = max(len(ids), 1)
    return {
        f"{label}: events per workflow ({len(ids)} sampled)": f"{sum(counts.values()) / k:.1f}",
        f"{label}: workflow tasks per workflow": f"{counts['WORKFLOW_TASK_COMPLETED'] / k:.1f}",
        f"{label}: workflow task timeouts (sticky queue, then a full replay)": (
            f"{counts['WORKFLOW_TASK_TIMED_OUT']} in {len(ids)} workflows"
        ),
        f"{label}: signals (webhook before the debit was recorded)": (
            f"{counts['WORKFLOW_EXECUTION_SIGNALED']} in {len(ids)} workflows"
        ),
    }


# -- one wave -------------------------------------------------------------------------------------


@dataclass
class Wave:
    name: str
    n: int
    due: datetime
    done_times: list[float]  # epoch seconds of the measured step, one per item
    meter: CpuMeter
    extra: dict[str, str] = field(default_factory=dict)

    def lateness(self) -> list[float]:
        t = self.due.timestamp()
        return [d - t for d in self.done_times]

    def rate(self) -> float:
        late = self.lateness()
        return len(late) / max(max(late), 1e-9) if late else 0.0

    def row(self) -> list[str]:
        late = self.lateness()
        return [
            self.name,
            f"{len(late)}/{self.n}",
            f"{self.rate():.1f}",
            f"{percentile(late, 50):.2f}",
            f"{percentile(late, 99):.2f}",
            f"{max(late) if late else float('nan'):.2f}",
        ]


async def monitor(
    meter: CpuMeter,
    due: datetime,
    count: Any,
    n: int,
    timeout: float,
    label: str,
    stk: Stack,
) -> float:
    """Sample CPU every second from just before `due` until `count()` reaches n."""
    wait = due.timestamp() - time.time() - 1.0
    if wait > 0:
        console.print(f"  waiting {wait:.0f} s for the due instant {due:%H:%M:%S} UTC …")
        await asyncio.sleep(wait)
    meter.start()
    t_end = time.monotonic() + timeout
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=n)
        done = 0
        while time.monotonic() < t_end:
            await asyncio.sleep(1.0)
            meter.sample()
            done = await count()
            progress.update(task, completed=done)
            if done >= n:
                break
            stk.check_alive()
    meter.stop()
    return float(done)


async def mahnwerk_wave(
    stk: Stack, n: int, lead: float, concurrency: int, timeout: float
) -> tuple[Wave, Created]:
    conn = pg(stk.db_url)
    due = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
    due_s = due.isoformat().replace("+00:00", "Z")
    tag = f"wave-{uuid.uuid4().hex[:6]}"
    bodies = [wave_body(due_s, tag, i) for i in range(n)]
    console.print(f"[bold]Mahnwerk[/bold]: creating {n} contracts due {due_s} …")
    created = await create_contracts(stk.api_url, bodies, concurrency, "POST /v1/contracts")
    console.print(
        f"  created in {created.seconds:.1f} s ({n / created.seconds:.1f}/s), "
        f"{len(created.errors)} errors, {due.timestamp() - time.time():.0f} s before T"
    )
    if created.errors:
        console.print(f"  [red]first error: {created.errors[0]}[/red]")
    # Each contract's first workflow task writes the ledger (contract.started): let the
    # worker finish those before T, so the wave measures the wave only.
    deadline = due.timestamp() - 1
    while time.time() < deadline:
        started = scalar(conn, STARTED_SQL)
        if started >= n:
            break
        await asyncio.sleep(1)
    idle_margin = due.timestamp() - time.time()
    started = scalar(conn, STARTED_SQL)
    if idle_margin < 1:
        console.print(
            f"  [yellow]only {started}/{n} contracts had started by T: the wave overlaps the "
            "start-up; raise --lead[/yellow]"
        )

    async def paid() -> int:
        return int(scalar(conn, "select count(*) from installments where status = 'paid'"))

    meter = CpuMeter(stk.pids(), pg_url=stk.db_url)
    await monitor(meter, due, paid, n, timeout, "installments paid", stk)
    rows = conn.execute(
        "select pa.settled_at, i.paid_at from installments i join payment_attempts pa "
        "on pa.contract_id = i.contract_id and pa.installment_seq = i.seq "
        "and pa.status = 'succeeded' where i.status = 'paid'"
    ).fetchall()
    debited = [r[0].timestamp() for r in rows if r[0] is not None]
    recorded = [r[1].timestamp() for r in rows if r[1] is not None]
    attempts = scalar(conn, "select count(*) from payment_attempts")
    conn.close()
    ledger = httpx.get(f"{stk.standin_url}/_standin/ledger", timeout=120).json()
    ours = [e for e in ledger if str(e["metadata"].get("contract_id", "")).startswith(tag)]
    per_contract: dict[str, int] = {}
    for e in ours:
        cid = e["metadata"]["contract_id"]
        per_contract[cid] = per_contract.get(cid, 0) + 1
    twice = sum(1 for v in per_contract.values() if v > 1)
    standin_late = [e["succeeded_at"] - due.timestamp() for e in ours]
    webhooks = httpx.get(f"{stk.standin_url}/_standin/webhooks", timeout=120).json()
    extra = {
        "stand-in ledger": f"{len(ours)} debits for {len(per_contract)} contracts, "
        f"{twice} debited twice",
        "stand-in succeeded_at (whole s)": f"p50 {percentile(standin_late, 50):.0f} s, "
        f"p99 {percentile(standin_late, 99):.0f} s after T",
        "payment attempts": str(attempts),
        "webhook deliveries": str(len(webhooks)),
        "contracts started before T": f"{started}/{n} ({idle_margin:.0f} s to spare)",
    }
    from temporalio.client import Client

    client = await Client.connect(stk.temporal_address)
    sample = [f"contract-{tag}-{i:06d}" for i in range(0, n, max(1, n // 50))][:50]
    extra.update(await audit(client, sample, "Mahnwerk"))
    debit = Wave("Mahnwerk: debited (charge done)", n, due, debited, meter, extra)
    wave = Wave("Mahnwerk: recorded (sync_ledger done)", n, due, recorded, meter, extra)
    wave.extra["_debit_row"] = "|".join(debit.row())
    return wave, created


async def bare_wave(
    stk: Stack, n: int, concurrency: int, timeout: float, max_cached: int
) -> tuple[Wave, float]:
    from temporalio.client import Client

    from bench.bare_workflow import WORKFLOW, BareInput

    tq = f"bare-{uuid.uuid4().hex[:6]}"
    worker = spawn(
        "bare-worker",
        [
            sys.executable,
            "-m",
            "bench.bare",
            "--address",
            stk.temporal_address,
            "--task-queue",
            tq,
            "--max-cached-workflows",
            str(max_cached),
        ],
        stk.workdir,
        stk.pyenv(),
    )
    stk.procs["bare worker"] = worker
    client = await Client.connect(stk.temporal_address)
    # start_workflow runs at a few hundred per second: 20 s + N/50 s is plenty
    due = (datetime.now(UTC) + timedelta(seconds=20 + n / 50)).replace(microsecond=0)
    console.print(f"[bold]Bare Temporal[/bold]: starting {n} workflows due {due:%H:%M:%S} …")
    ids = [f"{tq}-{i:06d}" for i in range(n)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for wid in ids:
        queue.put_nowait(wid)

    async def starter() -> None:
        while True:
            try:
                wid = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await client.start_workflow(WORKFLOW, BareInput(due.isoformat()), id=wid, task_queue=tq)

    t0 = time.monotonic()
    await asyncio.gather(*(starter() for _ in range(concurrency)))
    start_s = time.monotonic() - t0
    console.print(
        f"  started in {start_s:.1f} s ({n / start_s:.0f}/s), "
        f"{due.timestamp() - time.time():.0f} s before T"
    )

    async def completed() -> int:
        resp = await client.count_workflows(
            f"WorkflowType = '{WORKFLOW}' AND ExecutionStatus = 'Completed' AND TaskQueue = '{tq}'"
        )
        return resp.count

    server = stk.procs["temporal server"].pid
    meter = CpuMeter({"temporal server": server, "bare worker": worker.pid})
    await monitor(meter, due, completed, n, timeout, "bare workflows completed", stk)
    sem = asyncio.Semaphore(32)

    async def result(wid: str) -> float | None:
        async with sem:
            try:
                handle = client.get_workflow_handle(wid, result_type=float)
                return float(await asyncio.wait_for(handle.result(), 30))
            except Exception:
                return None

    done = [r for r in await asyncio.gather(*(result(w) for w in ids)) if r is not None]
    sample = ids[:: max(1, n // 50)][:50]
    extra = await audit(client, sample, "bare")
    wave = Wave("Bare Temporal: completed (2nd activity done)", n, due, done, meter, extra)
    return wave, n / start_s


async def main_async(args: argparse.Namespace) -> None:
    n = args.n
    lead = args.lead if args.lead is not None else 60 + n / 25
    timeout = args.timeout if args.timeout is not None else max(180.0, n / 4)
    load_before = loadavg()
    console.print(f"load average before: {load_before}")
    reset_database(args.database_url)
    with stack(args.database_url, args.keep, args.bytecode_cache) as stk:
        stk.task_queue = f"mahnwerk-bench-{uuid.uuid4().hex[:6]}"
        stk.stripe_rate_limit = args.stripe_rate_limit
        stk.start_temporal()
        await stk.wait_temporal_ready()
        stk.start_smtp()
        from bench.common import free_port

        api_port = free_port()
        stk.start_standin(
            f"http://127.0.0.1:{api_port}/v1/webhooks/stripe" if args.webhooks else None
        )
        extra = {}
        if args.worker_max_cached is not None:
            extra["MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS"] = str(args.worker_max_cached)
        stk.start_worker(**extra)
        stk.start_api(api_port)
        mw, created = await mahnwerk_wave(stk, n, lead, args.concurrency, timeout)
        worker_rss = mw.meter.peak_rss().get("mahnwerk worker", 0.0)
        # the bare wave runs alone on the same server: stop Mahnwerk's processes
        for name in ("mahnwerk api", "mahnwerk worker", "stripe stand-in"):
            stk.stop(name)
        bare, start_rate = await bare_wave(stk, n, 16, timeout, args.max_cached)
        bare_rss = bare.meter.peak_rss().get("bare worker", 0.0)
        server_rss = bare.meter.peak_rss().get("temporal server", 0.0)
    load_after = loadavg()
    console.print(f"load average after: {load_after}")

    cols = ["wave", "done", "per s", "p50 late s", "p99 late s", "max late s"]
    debit_row = mw.extra.pop("_debit_row").split("|")
    rows = [debit_row, mw.row(), bare.row()]
    ratio = mw.rate() / bare.rate() if bare.rate() else float("nan")
    ratio_debit = float(debit_row[2]) / bare.rate() if bare.rate() else float("nan")
    console.print(table(f"Due-date wave, N = {n}", cols, rows))
    verdict = "met" if ratio >= 0.7 else "MISSED"
    console.print(
        f"ratio Mahnwerk/bare: {ratio:.2f} (recorded), {ratio_debit:.2f} (debited) — "
        f"target ≥ 0.7 {verdict}"
    )
    cpu_cols = ["process", "CPU s", "cores"]
    mw_cpu = cpu_rows(mw.meter)
    bare_cpu = cpu_rows(bare.meter)
    console.print(table(f"CPU over the Mahnwerk wave ({mw.meter.wall:.0f} s)", cpu_cols, mw_cpu))
    console.print(table(f"CPU over the bare wave ({bare.meter.wall:.0f} s)", cpu_cols, bare_cpu))
    info = [
        ("N", str(n)),
        (
            "contract creation (API)",
            f"{created.seconds:.1f} s, {n / created.seconds:.1f}/s at "
            f"{args.concurrency} clients, {len(created.errors)} errors",
        ),
        ("bare start_workflow", f"{start_rate:.0f}/s at 16 concurrent calls"),
        (
            "peak RSS",
            f"Mahnwerk worker {worker_rss:.0f} MiB, bare worker {bare_rss:.0f} MiB, "
            f"server {server_rss:.0f} MiB",
        ),
        (
            "webhooks",
            "on (the stand-in posts its events to the API: 3 per card debit)"
            if args.webhooks
            else "off",
        ),
        ("bytecode cache", BYTECODE[args.bytecode_cache]),
        (
            "Stripe client-side rate limit (worker)",
            f"{args.stripe_rate_limit:g}/s (MAHNWERK_STRIPE_RATE_LIMIT)"
            if args.stripe_rate_limit is not None
            else "the worker's default: 25 requests/s for a test key (2 per debit)",
        ),
        *mw.extra.items(),
        *bare.extra.items(),
        ("load average", f"before {load_before}, after {load_after}"),
    ]
    console.print(table("Details", ["", "value"], info))
    if args.no_record:
        return
    append_results(
        f"Due-date wave, N = {n}",
        [
            ("", markdown_table(cols, rows)),
            (
                "",
                f"Ratio Mahnwerk/bare: **{ratio:.2f}** on ledger-recorded installments "
                f"(both activities done), {ratio_debit:.2f} on debits — target ≥ 0.7: {verdict}.",
            ),
            (
                f"CPU over the Mahnwerk wave ({mw.meter.wall:.0f} s wall)",
                markdown_table(cpu_cols, mw_cpu),
            ),
            (
                f"CPU over the bare wave ({bare.meter.wall:.0f} s wall)",
                markdown_table(cpu_cols, bare_cpu),
            ),
            ("", markdown_table(["", "value"], info)),
        ],
        [
            "Rates are N / (last done − T); lateness is done − T. Shared machine: other "
            "engineers' test suites ran at the same time (load average above).",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.due_wave", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="installments in the wave")
    parser.add_argument(
        "--lead", type=float, default=None, help="seconds from now to T (default 60 + N/25)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="API clients creating")
    parser.add_argument("--timeout", type=float, default=None, help="per wave, seconds")
    parser.add_argument(
        "--max-cached", type=int, default=500, help="bare worker's cache (as Mahnwerk's default)"
    )
    parser.add_argument(
        "--worker-max-cached",
        type=int,
        default=None,
        help="MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS for Mahnwerk's worker (default: its own, 500)",
    )
    parser.add_argument("--no-webhooks", dest="webhooks", action="store_false")
    parser.add_argument(
        "--stripe-rate-limit",
        type=float,
        default=None,
        help="MAHNWERK_STRIPE_RATE_LIMIT for the worker (default: its own, 25/s for test keys)",
    )
    add_stack_options(parser)
    run_benchmark(parser, main_async)


if __name__ == "__main__":
    main()
