"""Due-date wave (issue 6, benchmark 1; issue 17): N installments due at the same instant.

    python -m bench.due_wave --n 2000
    python -m bench.due_wave --n 2000 --workers 1,2 --stripe-rate-limit 1000

For each worker count K of `--workers` (default 1), on a fresh Temporal dev server (WAL,
search attributes, fresh database file) and a freshly migrated PostgreSQL database:

1. Mahnwerk: the API creates N installment contracts (count 1, `pm_card_visa`) all due at
   the instant T; K `mahnwerk worker` processes on the same task queue (as docker-compose
   runs replicas) debit them through the Stripe stand-in when T comes. Measured from T:
   installments debited per second and the lateness of each debit
   (PaymentAttempt.settled_at, written right after the stand-in confirmed; the stand-in's
   own ledger only has whole seconds) and of each ledger write (Installment.paid_at,
   written by `sync_ledger`, the last activity of a paid installment). The workers deliver
   their platform events to a receiver in this driver (MAHNWERK_EVENTS_URL): events
   received, distinct ids, ids delivered more than once, against the outbox. PaymentIntent
   creates per second against the configured Stripe rate.
2. Bare Temporal on the same server: N workflows of `bench.bare_workflow` (timer until T2,
   activity, search-attribute upsert, activity) on K bare worker processes with the same
   settings; completions per second and lateness the same way (the second activity's
   clock).

CPU seconds of every process over each wave (from T until the last one is done) say what
bounds it. Results are printed and appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from bench.common import (
    CODEC,
    PLATFORM,
    ROOT,
    CpuMeter,
    EventReceiver,
    Stack,
    add_stack_options,
    append_results,
    console,
    cpu_rows,
    free_port,
    loadavg,
    log_problems,
    markdown_table,
    parse_workers,
    percentile,
    plural,
    reset_database,
    run_benchmark,
    stack,
    stripe_rates,
    table,
    task_queue_info,
    worker_cache_counters,
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

    from temporalio.api.enums.v1 import EventType, TimeoutType

    counts: Counter[str] = Counter()
    timeouts: Counter[str] = Counter()  # by kind: schedule-to-start (sticky), start-to-close
    for wid in ids:
        hist = await client.get_workflow_handle(wid).fetch_history()
        for e in hist.events:
            name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
            counts[name] += 1
            if name == "WORKFLOW_TASK_TIMED_OUT":
                kind = e.workflow_task_timed_out_event_attributes.timeout_type
                timeouts[TimeoutType.Name(kind).removeprefix("TIMEOUT_TYPE_").lower()] += 1
    k = max(len(ids), 1)
    return {
        f"{label}: events per workflow ({len(ids)} sampled)": f"{sum(counts.values()) / k:.1f}",
        f"{label}: workflow tasks per workflow": f"{counts['WORKFLOW_TASK_COMPLETED'] / k:.1f}",
        f"{label}: workflow task timeouts (then a full replay)": (
            f"{counts['WORKFLOW_TASK_TIMED_OUT']} in {len(ids)} workflows"
            + (
                f" ({', '.join(f'{n} {k}' for k, n in sorted(timeouts.items()))})"
                if timeouts
                else ""
            )
        ),
        f"{label}: signals (webhook before the debit was recorded)": (
            f"{counts['WORKFLOW_EXECUTION_SIGNALED']} in {len(ids)} workflows"
        ),
        f"{label}: events by type per workflow": events_by_type(counts, k),
    }


def events_by_type(counts: Counter[str], k: int) -> str:
    """`WORKFLOW_TASK_* 3.0, ACTIVITY_TASK_* 2.0, MARKER_RECORDED 4.0, …` per workflow: the
    workflow task's and an activity's three events each counted once, by what they are."""
    grouped: Counter[str] = Counter()
    for name, n in counts.items():
        for prefix in ("WORKFLOW_TASK_", "ACTIVITY_TASK_"):
            if name.startswith(prefix):
                if name.endswith("_COMPLETED"):
                    grouped[prefix + "*"] += n
                elif not name.endswith(("_SCHEDULED", "_STARTED")):
                    grouped[name] += n  # timed out, failed, …
                break
        else:
            grouped[name] += n
    return ", ".join(f"{name} {n / k:.1f}" for name, n in grouped.most_common())


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

    def row(self, name: str | None = None) -> list[str]:
        late = self.lateness()
        return [
            name or self.name,
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
    every: Any = None,
) -> float:
    """Sample CPU every second from just before `due` until `count()` reaches n
    (`every()`, if given, runs after each sample)."""
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
            if every is not None:
                await every(done)
            progress.update(task, completed=done)
            if done >= n:
                break
            stk.check_alive()
    meter.stop()
    return float(done)


# -- the Stripe rate ----------------------------------------------------------------------------


def per_second(times: list[float]) -> dict[str, float]:
    """How a series of instants spreads over time: the most in any 1-second window
    ([t, t + 1) for every t), the average rate from the first to the last, and the counts
    per whole second between them (the first and the last, partial, second left out)."""
    ts = sorted(times)
    nan = float("nan")
    if not ts:
        return {
            "n": 0,
            "max_window": 0,
            "avg": nan,
            "min": nan,
            "median": nan,
            "max": nan,
            "seconds": 0,
            "span": nan,
        }
    best, j = 0, 0
    for i, t in enumerate(ts):
        while t - ts[j] >= 1.0:
            j += 1
        best = max(best, i - j + 1)
    span = ts[-1] - ts[0]
    counts = Counter(math.floor(t) for t in ts)
    first, last = math.floor(ts[0]), math.floor(ts[-1])
    inner = [counts.get(sec, 0) for sec in range(first + 1, last)]
    if not inner:  # everything within two seconds
        inner = [counts.get(sec, 0) for sec in range(first, last + 1)]
    return {
        "n": len(ts),
        "max_window": best,
        "avg": (len(ts) - 1) / span if span > 0 else nan,
        "min": min(inner),
        "median": statistics.median(inner),
        "max": max(inner),
        "seconds": len(inner),
        "span": span,
    }


# -- the outbox and the receiver ------------------------------------------------------------------


async def drain_outbox(conn: psycopg.Connection[Any], timeout: float) -> float:
    """Wait until the dispatchers delivered every outbox row (or `timeout`); seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        pending = scalar(conn, "select count(*) from outbox_events where delivered_at is null")
        if not pending:
            break
        await asyncio.sleep(1)
    return time.monotonic() - t0


def outbox_state(conn: psycopg.Connection[Any]) -> dict[str, bool]:
    rows = conn.execute("select event_id, delivered_at is not null from outbox_events").fetchall()
    return {str(r[0]): bool(r[1]) for r in rows}


# -- the Mahnwerk wave -----------------------------------------------------------------------------


@dataclass
class MahnwerkResult:
    debit: Wave
    recorded: Wave
    created: Created
    workers: list[str]
    stripe: dict[str, float]
    stripe_standin_max: int
    stripe_server_rate: float | None
    # requests the stand-in refused with 429 (its Stripe limits on), per endpoint: while the
    # contracts were created and started, and from T to the end of the wave; None if off
    refused_setup: dict[str, int] | None
    refused_wave: dict[str, int] | None
    events: dict[str, Any] | None
    events_drain_s: float
    worker_log_errors: dict[str, str]


async def mahnwerk_wave(
    stk: Stack,
    n: int,
    lead: float,
    concurrency: int,
    timeout: float,
    workers: list[str],
    receiver: EventReceiver | None,
    drain_timeout: float,
) -> MahnwerkResult:
    conn = pg(stk.db_url)
    due = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
    due_s = due.isoformat().replace("+00:00", "Z")
    tag = f"wave-{uuid.uuid4().hex[:6]}"
    bodies = [wave_body(due_s, tag, i) for i in range(n)]
    console.print(
        f"[bold]Mahnwerk, {plural(len(workers), 'worker')}[/bold]: creating {n} contracts "
        f"due {due_s} …"
    )
    created = await create_contracts(stk.api_url, bodies, concurrency, "POST /v1/contracts")
    console.print(
        f"  created in {created.seconds:.1f} s ({n / created.seconds:.1f}/s), "
        f"{len(created.errors)} errors, {due.timestamp() - time.time():.0f} s before T"
    )
    if created.errors:
        console.print(f"  [red]first error: {created.errors[0]}[/red]")
    # Each contract's first workflow task writes the ledger (contract.started): let the
    # workers finish those before T, so the wave measures the wave only.
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

    pids = {**stk.pids(), "bench driver (events receiver)": os.getpid()}
    meter = CpuMeter(pids, pg_url=stk.db_url, sums={"mahnwerk workers": workers})
    refused_setup = stk.standin_refused() if stk.standin_limits is not None else None
    await monitor(meter, due, paid, n, timeout, "installments paid", stk)
    refused_wave = None
    if refused_setup is not None:
        refused_wave = {k: v - refused_setup.get(k, 0) for k, v in stk.standin_refused().items()}
    rows = conn.execute(
        "select pa.settled_at, i.paid_at from installments i join payment_attempts pa "
        "on pa.contract_id = i.contract_id and pa.installment_seq = i.seq "
        "and pa.status = 'succeeded' where i.status = 'paid'"
    ).fetchall()
    debited = [r[0].timestamp() for r in rows if r[0] is not None]
    recorded = [r[1].timestamp() for r in rows if r[1] is not None]
    attempts = scalar(conn, "select count(*) from payment_attempts")
    # every settled debit (one PaymentIntent create each, the activity's first try)
    settled = [
        r[0].timestamp()
        for r in conn.execute(
            "select settled_at from payment_attempts where settled_at is not null"
        ).fetchall()
    ]
    drain_s = 0.0
    events = None
    if receiver is not None:
        drain_s = await drain_outbox(conn, drain_timeout)
        events = receiver.report(outbox_state(conn))
    conn.close()
    from temporalio.client import Client

    from workflows.queues import stripe_queue

    client = await Client.connect(stk.temporal_address)
    try:
        server_rate = (await task_queue_info(client, stripe_queue(stk.task_queue), True))["rate"]
    except Exception:  # an older server: not reported
        server_rate = None
    ledger = httpx.get(f"{stk.standin_url}/_standin/ledger", timeout=120).json()
    ours = [e for e in ledger if str(e["metadata"].get("contract_id", "")).startswith(tag)]
    per_contract: dict[str, int] = {}
    for e in ours:
        cid = e["metadata"]["contract_id"]
        per_contract[cid] = per_contract.get(cid, 0) + 1
    twice = sum(1 for v in per_contract.values() if v > 1)
    standin_late = [e["succeeded_at"] - due.timestamp() for e in ours]
    standin_max = max(Counter(e["succeeded_at"] for e in ours).values(), default=0)
    webhooks = httpx.get(f"{stk.standin_url}/_standin/webhooks", timeout=120).json()
    extra = {
        "stand-in ledger": f"{len(ours)} debits for {len(per_contract)} contracts, "
        f"{twice} debited twice",
        "stand-in succeeded_at (whole s)": f"p50 {percentile(standin_late, 50):.0f} s, "
        f"p99 {percentile(standin_late, 99):.0f} s after T",
        "payment attempts": str(attempts),
        "webhook deliveries (stand-in → API)": str(len(webhooks)),
        "contracts started before T": f"{started}/{n} ({idle_margin:.0f} s to spare)",
    }
    if refused_setup is not None and refused_wave is not None:
        extra["stand-in 429s by endpoint (set-up; wave)"] = (
            "; ".join(
                f"{k}: {refused_setup.get(k, 0)}; {refused_wave.get(k, 0)}"
                for k in sorted(set(refused_setup) | set(refused_wave))
            )
            or "none"
        )
    for w in workers:
        cache = worker_cache_counters(stk.metrics_ports[w])
        extra[f"{w}: workflow cache over the run"] = (
            ", ".join(f"{v:.0f} {k}" for k, v in cache.items()) if cache else "not reported"
        )
    sample = [f"contract-{tag}-{i:06d}" for i in range(0, n, max(1, n // 50))][:50]
    extra.update(await audit(client, sample, "Mahnwerk"))
    return MahnwerkResult(
        debit=Wave("Mahnwerk: debited (charge done)", n, due, debited, meter, extra),
        recorded=Wave("Mahnwerk: recorded (sync_ledger done)", n, due, recorded, meter, extra),
        created=created,
        workers=workers,
        stripe=per_second(settled),
        stripe_standin_max=standin_max,
        stripe_server_rate=server_rate,
        refused_setup=refused_setup,
        refused_wave=refused_wave,
        events=events,
        events_drain_s=drain_s,
        worker_log_errors=log_problems(stk, workers),
    )


# -- the bare wave ---------------------------------------------------------------------------------


async def start_bare(
    client: Any, ids: list[str], due: datetime, task_queue: str, concurrency: int
) -> float:
    """Start the bare workflows (`concurrency` calls at a time); returns the seconds taken."""
    from bench.bare_workflow import WORKFLOW, BareInput

    queue: asyncio.Queue[str] = asyncio.Queue()
    for wid in ids:
        queue.put_nowait(wid)

    async def starter() -> None:
        while True:
            try:
                wid = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await client.start_workflow(
                WORKFLOW, BareInput(due.isoformat()), id=wid, task_queue=task_queue
            )

    t0 = time.monotonic()
    await asyncio.gather(*(starter() for _ in range(concurrency)))
    return time.monotonic() - t0


async def bare_results(client: Any, ids: list[str]) -> list[Any]:
    """The finished bare workflows' results (BareResult), 32 fetches at a time."""
    from bench.bare_workflow import BareResult

    sem = asyncio.Semaphore(32)

    async def result(wid: str) -> BareResult | None:
        async with sem:
            try:
                handle = client.get_workflow_handle(wid, result_type=BareResult)
                return await asyncio.wait_for(handle.result(), 30)
            except Exception:
                return None

    return [r for r in await asyncio.gather(*(result(w) for w in ids)) if r is not None]


async def bare_completed(client: Any, task_queue: str) -> int:
    from bench.bare_workflow import WORKFLOW

    resp = await client.count_workflows(
        f"WorkflowType = '{WORKFLOW}' AND ExecutionStatus = 'Completed' "
        f"AND TaskQueue = '{task_queue}'"
    )
    return int(resp.count)


async def bare_wave(
    stk: Stack, n: int, k: int, concurrency: int, timeout: float, max_cached: int
) -> tuple[Wave, float, list[str]]:
    from temporalio.client import Client

    tq = f"bare-{uuid.uuid4().hex[:6]}"
    workers = stk.start_bare_workers(k, tq, max_cached)
    client = await Client.connect(stk.temporal_address)
    # start_workflow runs at a few hundred per second: 20 s + N/50 s is plenty
    due = (datetime.now(UTC) + timedelta(seconds=20 + n / 50)).replace(microsecond=0)
    console.print(
        f"[bold]Bare Temporal, {plural(k, 'worker')}[/bold]: starting {n} workflows due "
        f"{due:%H:%M:%S} …"
    )
    ids = [f"{tq}-{i:06d}" for i in range(n)]
    start_s = await start_bare(client, ids, due, tq, concurrency)
    console.print(
        f"  started in {start_s:.1f} s ({n / start_s:.0f}/s), "
        f"{due.timestamp() - time.time():.0f} s before T"
    )

    async def completed() -> int:
        return await bare_completed(client, tq)

    pids = {"temporal server": stk.procs["temporal server"].pid}
    pids.update({name: stk.procs[name].pid for name in workers})
    meter = CpuMeter(pids, sums={"bare workers": workers})
    await monitor(meter, due, completed, n, timeout, "bare workflows completed", stk)
    done = [r.done for r in await bare_results(client, ids)]
    sample = ids[:: max(1, n // 50)][:50]
    extra = await audit(client, sample, "bare")
    wave = Wave("Bare Temporal: completed (2nd activity done)", n, due, done, meter, extra)
    for name in workers:
        stk.stop(name)
    return wave, n / start_s, workers


# -- one run per worker count ----------------------------------------------------------------------


@dataclass
class Run:
    k: int
    mw: MahnwerkResult
    bare: Wave
    bare_start_rate: float
    bare_workers: list[str]
    load_before: str
    load_after: str
    bare_max_cached: int

    def ratio(self) -> float:
        return self.mw.recorded.rate() / self.bare.rate() if self.bare.rate() else float("nan")

    def ratio_debit(self) -> float:
        return self.mw.debit.rate() / self.bare.rate() if self.bare.rate() else float("nan")


def quiet_policies(workdir: Path) -> Path:
    """The shipped policies with every customer message beyond dunning switched off
    (`messages:` of domain.policy; `--no-messages`): a paid installment sends no mail."""
    from domain.policy import MESSAGE_KINDS, load_policy

    out = workdir / "policies-quiet"
    out.mkdir()
    for src in sorted((ROOT / "policies").glob("*.yaml")):
        text = src.read_text()
        if "\nmessages:" in text:
            raise SystemExit(f"{src}: has a messages section; --no-messages cannot add one")
        off = "".join(f"  {kind}: false\n" for kind in MESSAGE_KINDS)
        (out / src.name).write_text(text.rstrip("\n") + "\nmessages:\n" + off)
        policy = load_policy(src.stem, out)
        assert not any(policy.messages.enabled(kind) for kind in MESSAGE_KINDS), src
    return out


def default_cache() -> int:
    """Mahnwerk's worker's own max_cached_workflows (MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS)."""
    from core.settings import Settings

    return int(Settings.model_fields["worker_max_cached_workflows"].default)


async def one_run(args: argparse.Namespace, k: int) -> Run:
    n = args.n
    lead = args.lead if args.lead is not None else 60 + n / 25
    timeout = args.timeout if args.timeout is not None else max(180.0, n / 4)
    load_before = loadavg()
    console.rule(f"{plural(k, 'worker')} (load average {load_before})")
    reset_database(args.database_url)
    receiver = EventReceiver() if args.events else None
    try:
        with stack(args.database_url, args.keep, args.bytecode_cache, args.codec) as stk:
            stk.task_queue = f"mahnwerk-bench-{uuid.uuid4().hex[:6]}"
            stk.stripe_rate_limit = args.stripe_rate_limit
            stk.stripe_create_rate_limit = args.stripe_create_rate_limit
            if not args.invoices:  # pinned into each contract at checkout: the API's too
                stk.extra_env["MAHNWERK_INVOICING"] = "false"
            if not args.messages:
                stk.extra_env["MAHNWERK_POLICY_DIR"] = str(quiet_policies(stk.workdir))
            stk.start_temporal()
            await stk.wait_temporal_ready()
            stk.start_smtp()
            api_port = free_port()
            rates = stripe_rates(args.stripe_rate_limit, args.stripe_create_rate_limit)
            stk.start_standin(
                f"http://127.0.0.1:{api_port}/v1/webhooks/stripe" if args.webhooks else None,
                (rates.requests, rates.create) if args.standin_limits else None,
            )
            extra = {}
            if args.worker_max_cached is not None:
                extra["MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS"] = str(args.worker_max_cached)
            if receiver is not None:
                extra["MAHNWERK_EVENTS_URL"] = receiver.url
            for setting in args.worker_env:
                name, sep, value = setting.partition("=")
                if not sep or not name.startswith("MAHNWERK_"):
                    raise SystemExit(f"--worker-env {setting!r}: expected MAHNWERK_NAME=VALUE")
                extra[name] = value
            workers = stk.start_workers(k, **extra)
            stk.start_api(api_port)
            mw = await mahnwerk_wave(
                stk, n, lead, args.concurrency, timeout, workers, receiver, args.events_drain
            )
            # the bare wave runs alone on the same server: stop Mahnwerk's processes
            for name in ("mahnwerk api", *workers, "stripe stand-in"):
                stk.stop(name)
            max_cached = (
                args.max_cached
                if args.max_cached is not None
                else (
                    args.worker_max_cached
                    if args.worker_max_cached is not None
                    else default_cache()
                )
            )
            bare, start_rate, bare_workers = await bare_wave(stk, n, k, 16, timeout, max_cached)
    finally:
        if receiver is not None:
            receiver.close()
    return Run(k, mw, bare, start_rate, bare_workers, load_before, loadavg(), max_cached)


# -- the report ------------------------------------------------------------------------------------


def worker_cpu_ms(meter: CpuMeter, names: list[str], n: int) -> float:
    sec = meter.seconds()
    return 1000 * sum(sec.get(x, 0.0) for x in names) / max(n, 1)


def events_row(run: Run) -> list[str]:
    e = run.mw.events
    label = f"Mahnwerk, {plural(run.k, 'worker')}"
    if e is None:
        return [label, "off", "", "", "", "", ""]
    dups = f"{e['duplicate_ids']} ids ({e['extra_deliveries']} extra posts)"
    if e["duplicate_ids"]:
        dups += f", at most {e['max_per_id']} per id, e.g. {', '.join(e['dup_examples'])}"
    notes = (
        f"{e['bad_signature']} bad signatures, {e['no_id']} without id; drained "
        f"{run.mw.events_drain_s:.0f} s after the wave"
    )
    if e["header_body_differ"]:
        notes += f"; {e['header_body_differ']} with webhook-id ≠ body id"
    return [
        label,
        str(e["received"]),
        str(e["distinct"]),
        dups,
        f"{e['outbox']} ({e['outbox_delivered']} delivered, {e['outbox_pending']} pending)",
        f"{e['unknown']} / {e['delivered_not_received']} / {e['received_not_marked']}",
        notes,
    ]


def stripe_row(run: Run, configured: float) -> list[str]:
    s = run.mw.stripe
    server = run.mw.stripe_server_rate
    return [
        f"Mahnwerk, {plural(run.k, 'worker')}",
        f"{configured:g}" + (f" (server: {server:g})" if server is not None else ""),
        f"{s['max_window']}",
        f"{s['avg']:.1f}",
        f"{s['min']:.0f} / {s['median']:.0f} / {s['max']:.0f} over {s['seconds']} s",
        f"{run.mw.stripe_standin_max}",
        refused_cell(run.mw.refused_wave, run.mw.refused_setup),
        f"{s['n']} in {s['span']:.1f} s",
    ]


CREATE_ENDPOINT = "POST /v1/payment_intents"


def refused_cell(wave: dict[str, int] | None, setup: dict[str, int] | None) -> str:
    """The stand-in's 429s: creates refused in the wave / all requests refused in the wave
    (and while the contracts were created, if any); "off" without its limits."""
    if wave is None:
        return "off"
    cell = f"{wave.get(CREATE_ENDPOINT, 0)} / {sum(wave.values())}"
    before = sum((setup or {}).values())
    return cell + (f" (set-up: {before})" if before else "")


async def main_async(args: argparse.Namespace) -> None:
    n = args.n
    ks: list[int] = args.workers
    runs: list[Run] = []
    failed: list[str] = []
    for k in ks:
        try:
            runs.append(await one_run(args, k))
        except Exception as exc:  # report the worker counts that did run
            console.print_exception()
            failed.append(f"{plural(k, 'worker')}: {type(exc).__name__}: {str(exc)[:300]}")
    if not runs:
        raise SystemExit("no run finished: " + "; ".join(failed))
    for f in failed:
        console.print(f"[red]failed, not in the tables: {f}[/red]")
    load_first, load_last = runs[0].load_before, runs[-1].load_after

    cols = [
        "wave",
        "done",
        "per s",
        "p50 late s",
        "p99 late s",
        "max late s",
        "worker CPU ms/inst",
        "ratio to bare",
    ]
    rows: list[list[str]] = []
    for r in runs:
        rows.append(
            r.mw.recorded.row(f"Mahnwerk, {plural(r.k, 'worker')} (recorded)")
            + [f"{worker_cpu_ms(r.mw.recorded.meter, r.mw.workers, n):.0f}", f"{r.ratio():.2f}"]
        )
    for r in runs:
        rows.append(
            r.mw.debit.row(f"Mahnwerk, {plural(r.k, 'worker')} (debited)")
            + ["", f"{r.ratio_debit():.2f}"]
        )
    for r in runs:
        rows.append(
            r.bare.row(f"bare, {plural(r.k, 'worker')}")
            + [f"{worker_cpu_ms(r.bare.meter, r.bare_workers, n):.0f}", ""]
        )
    console.rule("results")
    console.print(table(f"Due-date wave, N = {n}", cols, rows))
    for r in runs:
        verdict = "met" if r.ratio() >= 0.9 else "missed"
        console.print(
            f"{plural(r.k, 'worker')}: ratio Mahnwerk/bare {r.ratio():.2f} (recorded), "
            f"{r.ratio_debit():.2f} (debited) — issue 17's ≥ 0.9 {verdict}"
        )

    rates = stripe_rates(args.stripe_rate_limit, args.stripe_create_rate_limit)
    stripe_cols = [
        "run",
        "configured creates/s",
        "most creates in any 1 s",
        "average first→last /s",
        "per second min / median / max",
        "stand-in: most in one whole second",
        "stand-in 429s: creates / all",
        "debits",
    ]
    stripe_table = [stripe_row(r, rates.activities) for r in runs]
    console.print(
        table("PaymentIntent creates (payment_attempts.settled_at)", stripe_cols, stripe_table)
    )
    ev_cols = [
        "run",
        "posts received",
        "distinct ids",
        "delivered more than once",
        "outbox rows",
        "unknown / marked not received / received not marked",
        "notes",
    ]
    ev_table = [events_row(r) for r in runs]
    console.print(table("Platform events (MAHNWERK_EVENTS_URL → the driver)", ev_cols, ev_table))

    cpu_cols = ["process", "CPU s", "cores"]
    cpu_sections: list[tuple[str, str]] = []
    for r in runs:
        mw_cpu = cpu_rows(r.mw.recorded.meter)
        bare_cpu = cpu_rows(r.bare.meter)
        wall = r.mw.recorded.meter.wall
        t1 = f"CPU over the Mahnwerk wave, {plural(r.k, 'worker')} ({wall:.0f} s)"
        t2 = f"CPU over the bare wave, {plural(r.k, 'worker')} ({r.bare.meter.wall:.0f} s)"
        console.print(table(t1, cpu_cols, mw_cpu))
        console.print(table(t2, cpu_cols, bare_cpu))
        cpu_sections += [
            (t1, markdown_table(cpu_cols, mw_cpu)),
            (t2, markdown_table(cpu_cols, bare_cpu)),
        ]

    info: list[tuple[str, str]] = [("N", str(n)), ("worker processes", ", ".join(map(str, ks)))]
    for r in runs:
        c = r.mw.created
        p = f"{plural(r.k, 'worker')}: "
        mw_peak = r.mw.recorded.meter.peak_rss()
        bare_peak = r.bare.meter.peak_rss()
        info += [
            (
                p + "contract creation (API)",
                f"{c.seconds:.1f} s, {n / c.seconds:.1f}/s at {args.concurrency} clients, "
                f"{len(c.errors)} errors",
            ),
            (p + "bare start_workflow", f"{r.bare_start_rate:.0f}/s at 16 concurrent calls"),
            (
                p + "peak RSS",
                "Mahnwerk worker(s) "
                + ", ".join(f"{mw_peak.get(w, 0):.0f}" for w in r.mw.workers)
                + " MiB; bare worker(s) "
                + ", ".join(f"{bare_peak.get(w, 0):.0f}" for w in r.bare_workers)
                + f" MiB; server {bare_peak.get('temporal server', 0):.0f} MiB",
            ),
            (
                p + "worker logs: error / warning lines",
                "; ".join(f"{w}: {c}" for w, c in r.mw.worker_log_errors.items()) or "-",
            ),
            (p + "bare max_cached_workflows", str(r.bare_max_cached)),
            (p + "load average", f"before {r.load_before}, after {r.load_after}"),
        ]
        info += [(p + key, val) for key, val in r.mw.recorded.extra.items()]
        info += [(p + key, val) for key, val in r.bare.extra.items()]
    info += [
        (
            "webhooks",
            "on (the stand-in posts its events to the API: 3 per card debit)"
            if args.webhooks
            else "off",
        ),
        (
            "platform events",
            "on: MAHNWERK_EVENTS_URL = a receiver in the driver (answers 200 at once)"
            if args.events
            else "off (MAHNWERK_EVENTS_URL unset: the outbox is not delivered)",
        ),
        (
            "invoices",
            "on (the default seller invoices each installment when due)"
            if args.invoices
            else "off (MAHNWERK_INVOICING=false: no invoice, no invoice.issued event)",
        ),
        (
            "customer messages",
            "on (the policies' defaults: plan_completed mails the paid plan's receipt)"
            if args.messages
            else "off (policies with every `messages:` kind false: no mail for a paid plan)",
        ),
        ("bytecode cache", BYTECODE[args.bytecode_cache]),
        ("payload codec", CODEC[args.codec]),
        ("worker settings (--worker-env)", ", ".join(args.worker_env) or "the defaults"),
        (
            "Stripe limits (workers)",
            rates.describe()
            + (
                ""
                if args.stripe_rate_limit is not None or args.stripe_create_rate_limit is not None
                else " — the defaults for a test key"
            ),
        ),
        (
            "Stripe limits (stand-in)",
            f"on: it refuses with 429, as Stripe does, what exceeds {rates.requests:g} "
            f"requests/s per account or {rates.create:g}/s per endpoint (token buckets of one "
            "second's requests, stripe_standin/ratelimit.py); the charge retries a 429"
            if args.standin_limits
            else "off (--no-standin-limits)",
        ),
    ]
    console.print(table("Details", ["", "value"], info))
    if args.no_record:
        return
    ratios = "; ".join(
        f"{plural(r.k, 'worker')}: **{r.ratio():.2f}** recorded, {r.ratio_debit():.2f} debited"
        for r in runs
    )
    append_results(
        f"Due-date wave, N = {n}, workers {','.join(map(str, ks))}",
        [
            ("", markdown_table(cols, rows)),
            ("", f"Ratio Mahnwerk/bare (same worker count): {ratios} — issue 17's target ≥ 0.9."),
            (
                "PaymentIntent creates (payment_attempts.settled_at)",
                markdown_table(stripe_cols, stripe_table),
            ),
            (
                "Platform events (MAHNWERK_EVENTS_URL → a receiver in the driver)",
                markdown_table(ev_cols, ev_table),
            ),
            *cpu_sections,
            ("", markdown_table(["", "value"], info)),
        ],
        [
            "Rates are N / (last done − T); lateness is done − T. Each worker count ran on a "
            "fresh dev server and a freshly migrated database. Load average: before "
            f"{load_first}, after {load_last}.",
            *[f"Failed, not in the tables: {f}" for f in failed],
            "Creates per second: `payment_attempts.settled_at`, written by `charge` right "
            "after the stand-in answered its one PaymentIntent create (a first try creates "
            "without a search); the stand-in's own `succeeded_at` has whole seconds only.",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.due_wave",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=2000, help="installments in the wave")
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=[1],
        help="worker processes: K, or a comma list (1,2) for one run per K, each on a fresh "
        "server and database; K `mahnwerk worker` and K bare workers (default 1)",
    )
    parser.add_argument(
        "--lead", type=float, default=None, help="seconds from now to T (default 60 + N/25)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="API clients creating")
    parser.add_argument("--timeout", type=float, default=None, help="per wave, seconds")
    parser.add_argument(
        "--max-cached",
        type=int,
        default=None,
        help="bare workers' cache (default: the Mahnwerk workers' own, "
        "--worker-max-cached or MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS's default)",
    )
    parser.add_argument(
        "--worker-max-cached",
        type=int,
        default=None,
        help="MAHNWERK_WORKER_MAX_CACHED_WORKFLOWS for Mahnwerk's workers (default: their own)",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for Mahnwerk's workers, e.g. MAHNWERK_WORKER_STICKY_TIMEOUT=120 "
        "(repeatable; the bench otherwise passes no MAHNWERK_ variable of its own environment)",
    )
    parser.add_argument(
        "--no-webhooks",
        dest="webhooks",
        action="store_false",
        help="the stand-in posts no webhooks to the API",
    )
    parser.add_argument(
        "--no-events",
        dest="events",
        action="store_false",
        help="leave MAHNWERK_EVENTS_URL unset (the outbox is not delivered; as before issue 17)",
    )
    parser.add_argument(
        "--no-invoices",
        dest="invoices",
        action="store_false",
        help="MAHNWERK_INVOICING=false for the API and the workers: no invoice per installment "
        "(with --no-messages and --no-events: the wave without the product's own work beside "
        "the debit and the ledger)",
    )
    parser.add_argument(
        "--no-messages",
        dest="messages",
        action="store_false",
        help="policies with every customer message off (no receipt mail for a paid plan)",
    )
    parser.add_argument(
        "--events-drain",
        type=float,
        default=120,
        help="after the wave, wait up to this long for the outbox to be delivered (s)",
    )
    parser.add_argument(
        "--stripe-rate-limit",
        type=float,
        default=None,
        help="sets both MAHNWERK_STRIPE_RATE_LIMIT (each worker's token bucket) and "
        "MAHNWERK_STRIPE_CREATE_RATE_LIMIT (with it, the deployment-wide Stripe activity "
        "rate: min of the two) for the workers; default: 25/s each for a test key",
    )
    parser.add_argument(
        "--no-standin-limits",
        dest="standin_limits",
        action="store_false",
        help="the stand-in enforces no rate limit (by default it refuses with 429, as Stripe "
        "does, what exceeds the configured rates per account and per endpoint, and the "
        "report counts the refusals)",
    )
    parser.add_argument(
        "--stripe-create-rate-limit",
        type=float,
        default=None,
        help="MAHNWERK_STRIPE_CREATE_RATE_LIMIT alone (default: --stripe-rate-limit's value), "
        "e.g. --stripe-rate-limit 100 --stripe-create-rate-limit 25 for a live key's defaults",
    )
    add_stack_options(parser)
    run_benchmark(parser, main_async)


if __name__ == "__main__":
    main()
