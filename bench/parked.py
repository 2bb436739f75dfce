"""Parked capacity (issue 6, benchmark 3; issue 17): N contracts asleep until their due date,
then all of them waking at T — beside N bare Temporal workflows parked and woken the same way.

    python -m bench.parked --n 10000
    python -m bench.parked --n 100000 --workers 2 --stripe-rate-limit 1000

A fresh dev server, the stand-in, PostgreSQL and K `mahnwerk worker` subprocesses
(`--workers`, default 1; `max_cached_workflows` is what the worker has:
MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS). The driver parks N installment contracts (count 1,
due at T) through the API's code: by default in-process (`build_input`, the ledger insert
and `start_workflow` of api/routes/contracts.py at `--concurrency` concurrent starts, so
parking is not bounded by the HTTP API), or with `--via http` as `POST /v1/contracts` to the
API subprocess. A contract is parked when its first workflow task and ledger write are
done (`contract.started` in the timeline); each start looks the payment method up at Stripe
once, a Stripe activity under the Stripe rate (`--stripe-rate-limit`).

Measured: time to park them all; every 10,000 parked (`--sample-every`) the workers' and the
server's RSS, the Temporal SQLite database (file + WAL) and the PostgreSQL database size;
worker and server RSS once parked (after `--settle` seconds; target: worker ≤ 300 MiB); at
T, every workflow waking — `workflow.now()` of the task that starts the debit
(PaymentAttempt.attempted_at) minus T — and debiting (settled_at − T), with the peak RSS
while waking.

Then, on the same server with Mahnwerk's processes stopped, the bare park: N workflows of
`bench.bare_workflow` (a timer until T2, then the bare workflow's activity, upsert and
activity) started on K `bench.bare` workers with the same cache; parked when every start
returned and the workflow task queue's backlog is empty; woke = `workflow.now()` of the task
after the timer. The ratio of the p99 wake lateness Mahnwerk/bare is issue 17's figure
(target ≤ 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from bench.common import (
    CODEC,
    PLATFORM,
    CpuMeter,
    Stack,
    add_stack_options,
    append_results,
    console,
    cpu_rows,
    free_port,
    loadavg,
    log_problems,
    markdown_table,
    nearest_rank,
    parse_workers,
    percentile,
    plural,
    reset_database,
    rss_mib,
    run_benchmark,
    stack,
    table,
    task_queue_info,
)
from bench.due_wave import (
    BYTECODE,
    STARTED_SQL,
    bare_completed,
    bare_results,
    default_cache,
    monitor,
    pg,
    scalar,
    wave_body,
)

MIB = 1024 * 1024
VIA = {
    "inprocess": "in-process with the API's code (build_input, the ledger insert, start_workflow)",
    "http": "over HTTP (POST /v1/contracts to the API subprocess)",
}
TRACE_COLS = [
    "parked",
    "after s",
    "worker RSS MiB (sum: each)",
    "server RSS MiB",
    "Temporal SQLite MiB (db + WAL)",
    "PostgreSQL MiB",
]


def marks_for(n: int, every: int) -> list[int]:
    """Where to sample while parking: every `every`, and at N."""
    every = max(1, every)
    return [*range(every, n, every), n]


def sample_row(stk: Stack, done: int, t0: float, workers: list[str], note: str = "") -> list[str]:
    """One row of TRACE_COLS: sizes and memory now."""
    rss = [rss_mib(stk.procs[w].pid) or 0.0 for w in workers if w in stk.procs]
    each = ", ".join(f"{r:.0f}" for r in rss)
    server = rss_mib(stk.procs["temporal server"].pid) or 0.0
    conn = pg(stk.db_url)
    try:
        pg_bytes = int(scalar(conn, "select pg_database_size(current_database())"))
    finally:
        conn.close()
    return [
        str(done),
        f"{time.monotonic() - t0:.0f}{note}",
        f"{sum(rss):.0f}" + (f" ({each})" if len(rss) > 1 else ""),
        f"{server:.0f}",
        f"{stk.sqlite_bytes() / MIB:.0f}",
        f"{pg_bytes / MIB:.0f}",
    ]


# -- Mahnwerk's park ---------------------------------------------------------------------------


async def park(
    stk: Stack,
    n: int,
    due_s: str,
    concurrency: int,
    tag: str,
    via: str,
    marks: list[int],
    workers: list[str],
    trace: list[list[str]],
) -> tuple[float, int]:
    """Start N contracts through the API's code (in-process or over HTTP); returns the seconds
    until all are parked and the number of creation errors. `trace` gets a TRACE_COLS row at
    each mark."""
    from api.routes import contracts as routes
    from api.schemas import ContractCreate
    from core.db import make_engine, make_session_factory, transaction
    from core.settings import load_settings
    from core.temporal import connect_client

    settings = load_settings(
        database_url=stk.db_url,
        temporal_address=stk.temporal_address,
        task_queue=stk.task_queue,
        codec_key=stk.codec_key,  # the API's code in this process encrypts as the API does
    )
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    errors: list[str] = []
    sessions = make_session_factory(make_engine(stk.db_url))

    def insert(body: Any, inp: Any) -> None:
        with transaction(sessions) as s:
            routes._insert(s, body, inp, routes._hash(body))

    async def starter_inprocess(client: Any) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = ContractCreate.model_validate(wave_body(due_s, tag, i))
            inp = routes.build_input(body, settings, datetime.now(UTC))
            await asyncio.to_thread(insert, body, inp)
            await routes._start_workflow(client, settings, inp)

    async def starter_http(http: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = wave_body(due_s, tag, i)
            for attempt in range(5):
                try:
                    resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
                except httpx.HTTPError as exc:
                    if attempt == 4:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(1)
                    continue
                if resp.status_code in (200, 201):
                    break
                if attempt == 4 or resp.status_code < 500:
                    errors.append(f"{resp.status_code} {resp.text[:200]}")
                    break
                await asyncio.sleep(1)

    conn = pg(stk.db_url)
    http: httpx.AsyncClient | None = None
    if via == "http":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http = httpx.AsyncClient(base_url=stk.api_url, timeout=60, limits=limits)
        starters = asyncio.gather(*(starter_http(http) for _ in range(concurrency)))
    else:
        client = await connect_client(settings)
        starters = asyncio.gather(*(starter_inprocess(client) for _ in range(concurrency)))
    marks = list(marks)
    t0 = time.monotonic()
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("parked (first task + ledger write done)", total=n)
            while True:
                await asyncio.sleep(1)
                parked = int(scalar(conn, STARTED_SQL))
                progress.update(task, completed=parked)
                while marks and parked >= marks[0]:
                    marks.pop(0)
                    trace.append(sample_row(stk, parked, t0, workers))
                if parked >= n:
                    break
                stk.check_alive()
                if starters.done():
                    if starters.exception():
                        raise starters.exception()  # type: ignore[misc]
                    if errors and parked + len(errors) >= n:
                        console.print(f"  [red]{len(errors)} creation errors: {errors[0]}[/red]")
                        break
            await starters
    finally:
        if http is not None:
            await http.aclose()
        conn.close()
    return time.monotonic() - t0, len(errors)


@dataclass
class Park:
    """One side's figures (Mahnwerk or bare)."""

    name: str
    n: int
    workers: list[str]
    park_s: float = 0.0
    park_note: str = ""
    margin: float = 0.0
    rss_parked: dict[str, float] = field(default_factory=dict)
    server_parked: float = 0.0
    woke: list[float] = field(default_factory=list)  # lateness, s
    watched: float = 0.0  # seconds from T to the end of the wake's watch
    done: list[float] = field(default_factory=list)  # lateness of the last measured step, s
    meter: CpuMeter | None = None
    trace: list[list[str]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def worker_rss(self) -> str:
        vals = [self.rss_parked.get(w, 0.0) for w in self.workers]
        if len(vals) == 1:
            return f"{vals[0]:.0f} MiB"
        each = ", ".join(f"{v:.0f}" for v in vals)
        return f"{sum(vals):.0f} MiB in all ({each})"

    def worker_rss_max(self) -> float:
        return max((self.rss_parked.get(w, 0.0) for w in self.workers), default=0.0)

    def peak(self) -> str:
        if self.meter is None:
            return ""
        peak = self.meter.peak_rss()
        each = [peak.get(w, 0.0) for w in self.workers]
        text = ", ".join(f"{v:.0f}" for v in each)
        if len(each) > 1:
            key = next(iter(self.meter.sums), "")
            text = f"{peak.get(key, 0.0):.0f} in all ({text})"
        return f"workers {text} MiB, server {peak.get('temporal server', 0.0):.0f} MiB"

    def late(self, p: float) -> float | None:
        """The wake lateness's p-th percentile over all N; None when it falls among the
        contracts not yet woken when the watch ended (later than `watched`)."""
        return censored_percentile(self.woke, self.n, p)

    def late_text(self, p: float, values: list[float] | None = None) -> str:
        """The p-th percentile of `values` (the wake lateness by default) as text, over all
        N: "> watched s" when it falls among those not measured by the watch's end."""
        value = censored_percentile(self.woke if values is None else values, self.n, p)
        return f"> {self.watched:.0f} s" if value is None else f"{value:.1f} s"

    def woke_text(self) -> str:
        early = sum(1 for x in self.woke if x < 0)
        text = (
            f"{len(self.woke)}/{self.n}; p50 {self.late_text(50)}, p99 {self.late_text(99)}, "
            f"max {max(self.woke, default=float('nan')):.1f} s; {early} early"
        )
        if len(self.woke) < self.n:
            text += (
                f"; the watch ended {self.watched:.0f} s after T with "
                f"{self.n - len(self.woke)} not woken ({len(self.woke) / self.watched:.1f}/s)"
            )
        return text

    def done_text(self) -> str:
        p50, p99 = self.late_text(50, self.done), self.late_text(99, self.done)
        last = max(self.done, default=0.0)
        # done per second from T to the last one; none after T: no rate to give
        rate = f"{len(self.done) / last:.1f}/s" if last > 0 else "no rate (none done after T)"
        return f"{len(self.done)}/{self.n}; p50 {p50}, p99 {p99}; {rate}"


async def settle(stk: Stack, seconds: float, workers: list[str]) -> tuple[dict[str, float], float]:
    """RSS of the workers and the server after `seconds` with nothing to do."""
    await asyncio.sleep(seconds)
    rss = {w: rss_mib(stk.procs[w].pid) or 0.0 for w in workers}
    return rss, rss_mib(stk.procs["temporal server"].pid) or 0.0


async def mahnwerk_park(stk: Stack, args: argparse.Namespace, workers: list[str]) -> Park:
    n = args.n
    lead = args.lead if args.lead is not None else 120 + n / 18
    timeout = args.timeout if args.timeout is not None else max(600.0, n / 20)
    res = Park("Mahnwerk", n, workers)
    due = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
    due_s = due.isoformat().replace("+00:00", "Z")
    tag = f"park-{uuid.uuid4().hex[:6]}"
    console.print(
        f"[bold]Mahnwerk, {plural(len(workers), 'worker')}[/bold]: parking {n} contracts due "
        f"{due_s} ({args.via}, {args.concurrency} at a time) …"
    )
    marks = marks_for(n, args.sample_every)
    res.park_s, errors = await park(
        stk, n, due_s, args.concurrency, tag, args.via, marks, workers, res.trace
    )
    console.print(f"  parked in {res.park_s:.0f} s ({n / res.park_s:.1f}/s), {errors} errors")
    res.rss_parked, res.server_parked = await settle(stk, args.settle, workers)
    res.trace.append(
        sample_row(stk, n, time.monotonic() - res.park_s - args.settle, workers, " (settled)")
    )
    res.notes["creation errors"] = str(errors)
    res.notes["load average once parked"] = loadavg()
    res.margin = due.timestamp() - time.time()
    if res.margin < 1:
        console.print("  [yellow]parking took past T: the wake overlaps it; raise --lead[/yellow]")
    conn = pg(stk.db_url)

    async def woke() -> int:
        return int(scalar(conn, "select count(*) from payment_attempts"))

    res.meter = CpuMeter(stk.pids(), pg_url=stk.db_url, sums={"mahnwerk workers": workers})
    await monitor(res.meter, due, woke, n, timeout, "woke and debited", stk)
    res.watched = time.time() - due.timestamp()
    rows = conn.execute("select attempted_at, settled_at from payment_attempts").fetchall()
    conn.close()
    t = due.timestamp()
    res.woke = [r[0].timestamp() - t for r in rows]
    res.done = [r[1].timestamp() - t for r in rows if r[1] is not None]
    res.notes["worker logs: error / warning lines"] = "; ".join(
        f"{w}: {c}" for w, c in log_problems(stk, workers).items()
    )
    return res


# -- the bare park ------------------------------------------------------------------------------


async def bare_park(stk: Stack, args: argparse.Namespace, max_cached: int) -> Park:
    from temporalio.client import Client

    from bench.bare_workflow import WORKFLOW, BareInput

    n = args.n
    timeout = args.timeout if args.timeout is not None else max(600.0, n / 20)
    tq = f"bare-park-{uuid.uuid4().hex[:6]}"
    workers = stk.start_bare_workers(args.workers, tq, max_cached)
    res = Park("bare", n, workers)
    client = await Client.connect(stk.temporal_address)
    bare_lead = args.bare_lead if args.bare_lead is not None else 60 + n / 50
    due = (datetime.now(UTC) + timedelta(seconds=bare_lead)).replace(microsecond=0)
    console.print(
        f"[bold]Bare Temporal, {plural(args.workers, 'worker')}[/bold]: parking {n} workflows "
        f"due {due:%H:%M:%S} ({args.concurrency} starts at a time) …"
    )
    ids = [f"{tq}-{i:07d}" for i in range(n)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for wid in ids:
        queue.put_nowait(wid)
    started = 0

    async def starter() -> None:
        nonlocal started
        while True:
            try:
                wid = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await client.start_workflow(WORKFLOW, BareInput(due.isoformat()), id=wid, task_queue=tq)
            started += 1

    marks = marks_for(n, args.sample_every)
    t0 = time.monotonic()
    starters = asyncio.gather(*(starter() for _ in range(args.concurrency)))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("started (start_workflow returned)", total=n)
        while not starters.done():
            await asyncio.sleep(1)
            progress.update(task, completed=started)
            while marks and started >= marks[0] and started < n:
                marks.pop(0)
                res.trace.append(sample_row(stk, started, t0, workers, " (started)"))
            stk.check_alive()
        await starters
    start_s = time.monotonic() - t0
    # Parked: every workflow's first task done (its timer started). The server knows how
    # many workflow tasks wait in the queue; empty twice in a row, a second apart.
    zero, backlog = 0, None
    while zero < 2 and time.monotonic() - t0 < start_s + 600:
        try:
            backlog = (await task_queue_info(client, tq))["backlog"]
        except Exception:
            backlog = None
        if backlog is None:
            break
        zero = zero + 1 if backlog == 0 else 0
        if zero < 2:
            await asyncio.sleep(1)
    res.park_s = time.monotonic() - t0
    res.park_note = f"starts returned after {start_s:.0f} s ({n / start_s:.0f}/s); " + (
        f"the workflow task backlog was empty after {res.park_s:.0f} s (read twice, 1 s apart)"
        if backlog == 0
        else "the server reports no backlog: parked = starts returned"
    )
    if backlog is None:
        res.park_s = start_s
    console.print(f"  parked in {res.park_s:.0f} s: {res.park_note}")
    res.trace.append(sample_row(stk, n, t0, workers, " (parked)"))
    res.rss_parked, res.server_parked = await settle(stk, args.settle, workers)
    res.trace.append(sample_row(stk, n, t0, workers, " (settled)"))
    res.margin = due.timestamp() - time.time()
    if res.margin < 1:
        console.print("  [yellow]the bare park took past T2; raise --bare-lead[/yellow]")

    async def completed() -> int:
        return await bare_completed(client, tq)

    pids = {"temporal server": stk.procs["temporal server"].pid}
    pids.update({w: stk.procs[w].pid for w in workers})
    res.meter = CpuMeter(pids, sums={"bare workers": workers})
    await monitor(res.meter, due, completed, n, timeout, "bare workflows woke and completed", stk)
    res.watched = time.time() - due.timestamp()
    results = await bare_results(client, ids)
    t = due.timestamp()
    res.woke = [r.woke - t for r in results]
    res.done = [r.done - t for r in results]
    res.notes["workflow type"] = WORKFLOW
    for w in workers:
        stk.stop(w)
    return res


# -- the run ------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    n = args.n
    load_before = loadavg()
    console.print(f"load average before: {load_before}")
    reset_database(args.database_url)
    max_cached = args.worker_max_cached if args.worker_max_cached is not None else default_cache()
    bare: Park | None = None
    with stack(args.database_url, args.keep, args.bytecode_cache, args.codec) as stk:
        stk.task_queue = f"parked-{uuid.uuid4().hex[:6]}"
        stk.stripe_rate_limit = args.stripe_rate_limit
        stk.stripe_create_rate_limit = args.stripe_create_rate_limit
        stk.start_temporal()
        await stk.wait_temporal_ready()
        stk.start_smtp()
        stk.start_standin(None)
        extra: dict[str, str] = {}
        if args.worker_max_cached is not None:
            extra["MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS"] = str(args.worker_max_cached)
        workers = stk.start_workers(args.workers, **extra)
        rss_start = sum(rss_mib(stk.procs[w].pid) or 0.0 for w in workers)
        if args.via == "http":
            stk.start_api(free_port())
        mw = await mahnwerk_park(stk, args, workers)
        for name in ("mahnwerk api", *workers, "stripe stand-in"):
            stk.stop(name)
        if args.bare:
            bare = await bare_park(stk, args, max_cached)
    load_after = loadavg()
    rates = stk.stripe_rates()

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b > 0 else "n/a"

    target_rss = "≤ 300 MiB per worker " + ("met" if mw.worker_rss_max() <= 300 else "MISSED")
    p99_ratio = p99_verdict = ""
    if bare:
        p99_ratio, p99_verdict = lateness_ratio(mw, bare, 99, 1.5)
    cols = ["parked capacity", "Mahnwerk", "bare", "Mahnwerk/bare, target"]

    def b(text: str) -> str:
        return text if bare is not None else "(--no-bare)"

    results = [
        ["worker processes", str(args.workers), b(str(args.workers)), ""],
        [
            "parked",
            f"{n} in {mw.park_s:.0f} s ({n / mw.park_s:.1f}/s)",
            b(f"{n} in {bare.park_s:.0f} s ({n / bare.park_s:.1f}/s)" if bare else ""),
            ratio(mw.park_s, bare.park_s) if bare else "",
        ],
        [
            f"worker RSS once parked (+{args.settle:.0f} s)",
            mw.worker_rss() + f" (at start {rss_start:.0f})",
            b(bare.worker_rss() if bare else ""),
            target_rss,
        ],
        [
            "server RSS once parked",
            f"{mw.server_parked:.0f} MiB",
            b(f"{bare.server_parked:.0f} MiB (both parks on it)" if bare else ""),
            "",
        ],
        ["peak RSS while waking", mw.peak(), b(bare.peak() if bare else ""), ""],
        [
            "time to spare between parked and T",
            f"{mw.margin:.0f} s",
            b(f"{bare.margin:.0f} s" if bare else ""),
            "",
        ],
        [
            "woke (workflow.now() of the task after the timer) − T",
            mw.woke_text(),
            b(bare.woke_text() if bare else ""),
            f"p99 {p99_ratio or 'n/a'}" + (f", {p99_verdict}" if p99_verdict else ""),
        ],
        [
            "debited (Mahnwerk) / 2nd activity done (bare) − T",
            mw.done_text(),
            b(bare.done_text() if bare else ""),
            "",
        ],
        ["bytecode cache", BYTECODE[args.bytecode_cache], "", ""],
        ["payload codec", CODEC[args.codec], "", ""],
        [
            "worker settings",
            f"max_cached_workflows {max_cached}; contracts created {args.via} at "
            f"{args.concurrency}; Stripe: {rates.describe()}",
            b(f"max_cached_workflows {max_cached}; {args.concurrency} concurrent starts"),
            "",
        ],
        *[[k, v, "", ""] for k, v in mw.notes.items()],
        ["bare: how parked was told", "", b(bare.park_note if bare else ""), ""],
        ["load average", f"before {load_before}, after {load_after}", "", ""],
    ]
    console.print(table(f"Parked capacity, N = {n}", cols, results))
    console.print(table("Mahnwerk: while parking", TRACE_COLS, mw.trace))
    if bare:
        console.print(
            table(
                "bare: while parking (on the same server, after Mahnwerk)", TRACE_COLS, bare.trace
            )
        )
    cpu_cols = ["process", "CPU s", "cores"]
    assert mw.meter is not None
    cpu = cpu_rows(mw.meter)
    console.print(table(f"CPU while Mahnwerk's woke ({mw.meter.wall:.0f} s)", cpu_cols, cpu))
    bare_cpu = cpu_rows(bare.meter) if bare and bare.meter else []
    if bare and bare.meter:
        console.print(
            table(f"CPU while the bare ones woke ({bare.meter.wall:.0f} s)", cpu_cols, bare_cpu)
        )
    if args.no_record:
        return
    sections = [
        ("", markdown_table(cols, results)),
        ("Mahnwerk: while parking", markdown_table(TRACE_COLS, mw.trace)),
    ]
    if bare:
        sections.append(
            (
                "bare: while parking (same server, after Mahnwerk)",
                markdown_table(TRACE_COLS, bare.trace),
            )
        )
    sections.append(
        (f"CPU while Mahnwerk's woke ({mw.meter.wall:.0f} s wall)", markdown_table(cpu_cols, cpu))
    )
    if bare and bare.meter:
        sections.append(
            (
                f"CPU while the bare ones woke ({bare.meter.wall:.0f} s wall)",
                markdown_table(cpu_cols, bare_cpu),
            )
        )
    append_results(
        f"Parked capacity, N = {n}, {plural(args.workers, 'worker')}",
        sections,
        [
            f"Contracts created {VIA[args.via]} "
            f"at {args.concurrency} concurrent; {plural(args.workers, 'mahnwerk worker')} with "
            f"max_cached_workflows {max_cached}. The bare park ran on the same server after "
            "Mahnwerk's, whose workflows stay in its database (completed). Shared machine "
            "(load average above).",
        ],
    )


def censored_percentile(values: list[float], n: int, p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) over n values of which `values` were measured
    and the other n − len(values) are known only to be larger than all of them (contracts
    not woken when the watch ended): None when the rank falls among those."""
    if len(values) >= n:
        return percentile(values, p)
    ordered = sorted(values)
    k = nearest_rank(p, n)
    return ordered[k] if k < len(ordered) else None


def lateness_ratio(mw: Park, bare: Park, p: float, target: float) -> tuple[str, str]:
    """Mahnwerk's p-th wake lateness over bare's, and the verdict against `target`; a bound
    (">" or "<") where one side's percentile is only known to exceed its watch."""
    a, b = mw.late(p), bare.late(p)
    if a is not None and b is not None:
        if b <= 0:
            return "n/a", ""
        r = a / b
        return f"{r:.2f}", f"≤ {target} " + ("met" if r <= target else "MISSED")
    if a is None and b is not None and b > 0:
        r = mw.watched / b
        return f"> {r:.2f}", (f"≤ {target} MISSED" if r > target else "not known")
    if b is None and a is not None and bare.watched > 0:
        r = a / bare.watched
        return f"< {r:.2f}", (f"≤ {target} met" if r <= target else "not known")
    return "n/a (neither side woke in full)", "not known"


def one_count(raw: str) -> int:
    ks = parse_workers(raw)
    if len(ks) != 1:
        raise argparse.ArgumentTypeError("one worker count (bench.due_wave takes a list)")
    return ks[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.parked",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument(
        "--workers",
        type=one_count,
        default=1,
        help="worker processes: K `mahnwerk worker` (and K bare workers) on one task queue",
    )
    parser.add_argument(
        "--lead", type=float, default=None, help="seconds from now to T (default 120 + N/18)"
    )
    parser.add_argument(
        "--bare-lead",
        type=float,
        default=None,
        help="seconds from the bare park's start to its T2 (default 60 + N/50)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="contracts (and bare workflows) started at once"
    )
    parser.add_argument(
        "--via",
        choices=["inprocess", "http"],
        default="inprocess",
        help="create contracts with the API's code in this process (default) or over HTTP "
        "through the API subprocess",
    )
    parser.add_argument(
        "--sample-every",
        type=int,
        default=10_000,
        help="sample RSS and database sizes every this many parked (and at N)",
    )
    parser.add_argument(
        "--settle", type=float, default=15, help="seconds idle before 'RSS once parked'"
    )
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare park")
    parser.add_argument(
        "--worker-max-cached",
        type=int,
        default=None,
        help="MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS for the workers, and the bare workers' "
        "cache (default: the worker's own)",
    )
    parser.add_argument(
        "--stripe-rate-limit",
        type=float,
        default=None,
        help="sets MAHNWERK_STRIPE_RATE_LIMIT and MAHNWERK_STRIPE_CREATE_RATE_LIMIT (the "
        "deployment-wide Stripe activity rate is the smaller; default 25/s each for a test "
        "key). Each contract's start looks its payment method up at Stripe once: parking "
        "runs at most at that rate",
    )
    parser.add_argument(
        "--stripe-create-rate-limit",
        type=float,
        default=None,
        help="MAHNWERK_STRIPE_CREATE_RATE_LIMIT alone (default: --stripe-rate-limit's value)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="for each wake, seconds (default max(600, N/20))",
    )
    add_stack_options(parser)
    run_benchmark(parser, main_async)


if __name__ == "__main__":
    main()
