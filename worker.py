"""The worker process: builds clients and activity classes, registers everything, runs.

`mahnwerk worker` runs `main()`; tests call `build_worker()` with their own client.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.claims import ClaimActivities
from activities.collection import CollectionActivities
from activities.events import EventDispatcher
from activities.invoices import InvoiceActivities
from activities.ledger import LedgerActivities
from activities.methods import MethodActivities
from activities.notices import NoticeActivities
from activities.payments import (
    PaymentActivities,
    StripeAccounts,
    TokenBucket,
    make_stripe_client,
)
from activities.ratelimit import SharedRate
from activities.refunds import RefundActivities
from core import metrics
from core.codec import KEY_CACHE_SIZE
from core.db import make_engine, make_session_factory
from core.logging import configure_logging
from core.metrics import worker_runtime
from core.payload_visits import one_pass_payload_visits
from core.sandbox import compile_sandbox_snippets, direct_serialization_context
from core.sellers import SellerDirectory
from core.settings import ConfigError, Settings, check_startup, get_settings
from core.stripe_account import creditor_id_problem
from core.temporal import connect_client
from domain.interest import base_rate_coverage, with_rates
from domain.schedule import berlin_date
from workflows.contract import ContractWorkflow
from workflows.queues import (
    MAIL_ACTIVITIES,
    STRIPE_ACTIVITIES,
    StripeQueueRouting,
    mail_queue,
    stripe_queue,
)

log = logging.getLogger("mahnwerk.worker")

# Deterministic, side-effect-free modules the workflow uses: pass them through the sandbox
# instead of re-importing them per workflow run (DESIGN.md decision 10). That includes our
# own workflow package: measured in a 2,000-contract wave, re-executing workflows/contract.py
# (the @workflow.defn class set-up) in a fresh sandbox for every workflow instance the cache
# had evicted was the worker's largest CPU cost (py-spy: ~40 % of the event-loop thread),
# and each cached instance carried its own copy of the module. What the sandbox checked at
# run time in that code, tests/workflows/test_determinism.py now checks statically; the
# replay tests check the commands.
PASSTHROUGH = (
    "domain",
    "workflows",
    "yaml",
)


class WorkerGroup:
    """The worker of the public task queue and the one of the internal Stripe queue
    (workflows/queues.py), run and stopped together: `async with parts.worker:`."""

    def __init__(self, *workers: Worker) -> None:
        self.workers = workers
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> WorkerGroup:
        async with AsyncExitStack() as stack:
            for w in self.workers:
                await stack.enter_async_context(w)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers))

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers))


@dataclass
class WorkerParts:
    worker: WorkerGroup
    dispatcher: EventDispatcher
    executor: ThreadPoolExecutor
    executors: list[ThreadPoolExecutor] = field(default_factory=list)  # all, for shutdown


def _activity_name(fn: Callable[..., Any]) -> str:
    defn = activity._Definition.from_callable(fn)
    return defn.name if defn is not None and defn.name else getattr(fn, "__name__", "")


# The fewest customer keys a worker's codec keeps in memory (see codec_key_cache_size).
MIN_CODEC_KEY_CACHE = KEY_CACHE_SIZE


def codec_key_cache_size(settings: Settings) -> int:
    """How many customer data keys (and workflow → key entries) the worker's payload codec
    keeps in memory: the codec's default (10,000, as the API keeps), or twice the workflow
    cache when that is more.

    A wave larger than this cycles through its contracts' keys: every activation and every
    activity of a contract then looks its key up again (an indexed read, in a thread). With
    twice the workflow cache (1,600) a 2,000-wave on one worker did so for every payload —
    11 % of the worker's GIL time while it debited (py-spy, bench/RESULTS.md, issue 17). The
    caches keep raw keys, not ciphers, since the eighth session (core/codec.py `_Shared`):
    10,000 of each take ~3–4 MiB, as 1,600 ciphers did; the sixth session had cut the cache to
    1,600 because 10,000 ciphers held ~20 MiB per worker of a parked 100,000."""
    return max(MIN_CODEC_KEY_CACHE, 2 * settings.worker_max_cached_workflows)


def warn_base_rates(settings: Settings) -> None:
    """At start-up: say when the § 247 BGB table does not cover today (issue 11 item 7)."""
    cov = base_rate_coverage(with_rates(settings.extra_base_rates), berlin_date(datetime.now(UTC)))
    if not cov.covered or cov.missing:
        log.warning(
            "no § 247 BGB base rate for %s: interest after %s is not computed (claims name the "
            "missing half-year); add it with MAHNWERK_BASE_RATES, see `mahnwerk base-rates`",
            ", ".join(cov.missing),
            cov.covered_until or "the table",
        )


def build_worker(
    client: Client,
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    task_queue: str | None = None,
    max_cached_workflows: int | None = None,
    on_events: Callable[[], None] | None = None,
    mailer: Callable[..., None] | None = None,
) -> WorkerParts:
    sessions = session_factory or make_session_factory(make_engine(settings.database_url))
    warn_base_rates(settings)
    compile_sandbox_snippets()  # the sandbox's exec snippets compiled once (core/sandbox.py)
    direct_serialization_context()  # a payload's context without entering the sandbox (same)
    one_pass_payload_visits()  # a workflow task's payloads visited once (core/payload_visits.py)
    metrics.configure(settings)  # the `seller` label's bound
    dispatcher = EventDispatcher(
        sessions, settings.events_url, settings.events_secret.get_secret_value()
    )
    stripe_client = make_stripe_client(
        settings.stripe_api_key.get_secret_value(), settings.stripe_api_base
    )
    # Client-side rate limit (MAHNWERK_STRIPE_RATE_LIMIT; Stripe allows 25/s in test mode,
    # 100/s live): shared by all activity threads of this worker.
    limiter = TokenBucket(settings.effective_stripe_rate_limit)
    # Each seller's debits on its own Stripe account, each account with its own rate limit
    # (issue 14; the platform's account uses the bucket above).
    accounts = StripeAccounts(
        SellerDirectory(settings, sessions),
        settings.stripe_api_base,
        stripe_client,
        limiter,
        settings.stripe_rate_limit,
    )
    payments = PaymentActivities(
        stripe_client,
        sessions,
        limiter=limiter,
        accounts=accounts,
        # PaymentIntent creates per second and Stripe account, all workers together
        create_rate=SharedRate(sessions, settings.effective_stripe_activity_rate),
    )
    # A method's lookups: the account's requests and, like the creates, each endpoint's rate
    methods = MethodActivities(
        stripe_client,
        throttle=payments._throttle,
        accounts=accounts,
        endpoint_rate=payments.create_rate,
    )
    refunds = RefundActivities(stripe_client, throttle=payments._throttle, accounts=accounts)
    ledger = LedgerActivities(sessions, on_events=on_events or dispatcher.wake, settings=settings)
    invoices = InvoiceActivities(settings, sessions, on_events=on_events or dispatcher.wake)
    notices = (
        NoticeActivities(settings, sessions, mailer=mailer)
        if mailer
        else NoticeActivities(settings, sessions)
    )
    collection = CollectionActivities(settings, sessions)
    claims = ClaimActivities(settings)
    executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="activity")
    queue = task_queue or settings.task_queue
    # On SIGTERM, running activities get this long to finish (a debit mid-call, a notice
    # mid-send) before they are cancelled and retried elsewhere: MAHNWERK_WORKER_GRACEFUL_
    # SHUTDOWN_TIMEOUT, shorter than the orchestrator's stop grace period.
    grace = timedelta(seconds=settings.worker_graceful_shutdown_timeout)
    activities: list[Callable[..., Any]] = [
        payments.charge,
        payments.payment_status,
        methods.describe_payment_method,
        refunds.refund_payments,
        ledger.sync_ledger,
        notices.send_notice,
        collection.build_case_file,
        collection.deliver_case_file,
        collection.deliver_collection_message,
        claims.base_rates,
        claims.claim_interest,  # legacy: settlements of contracts started before PATCH_CLAIM
        invoices.issue_invoice,
        invoices.issue_credit_note,
    ]
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[ContractWorkflow],
        activities=activities,
        activity_executor=executor,
        max_concurrent_activities=64,
        max_cached_workflows=(
            settings.worker_max_cached_workflows
            if max_cached_workflows is None
            else max_cached_workflows
        ),
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.worker_sticky_timeout),
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
        ),
        # Stripe's activities go to their own queue (workflows/queues.py); this worker
        # still serves them on the public queue for debits scheduled before that routing.
        interceptors=[StripeQueueRouting()],
        graceful_shutdown_timeout=grace,
    )

    def side_worker(
        task_queue: str, names: frozenset[str], slots: int, prefix: str, **options: Any
    ) -> tuple[Worker, ThreadPoolExecutor]:
        """A worker of an internal queue with its own slots and threads (workflows/queues.py)."""
        pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=prefix)
        return Worker(
            client,
            task_queue=task_queue,
            activities=[a for a in activities if _activity_name(a) in names],
            activity_executor=pool,
            max_concurrent_activities=slots,
            graceful_shutdown_timeout=grace,
            **options,
        ), pool

    # The Stripe queue's own slots: a debit waiting for a token of the rate limit holds
    # one of these, never one of the 64 the ledger writes need.
    stripe_worker, stripe_executor = side_worker(
        stripe_queue(queue),
        STRIPE_ACTIVITIES,
        settings.stripe_concurrency,
        "stripe",
        # One Stripe budget for the whole deployment (issue 10 item 7): the server hands out
        # at most this many Stripe activities per second on this queue, whichever worker
        # polls; each process's token bucket only smooths its own bursts.
        max_task_queue_activities_per_second=settings.effective_stripe_activity_rate,
    )
    # The mail queue's: a notice holds a database connection while the mail server answers.
    mail_worker, mail_executor = side_worker(
        mail_queue(queue), MAIL_ACTIVITIES, settings.mail_concurrency, "mail"
    )
    return WorkerParts(
        WorkerGroup(worker, stripe_worker, mail_worker),
        dispatcher,
        executor,
        [executor, stripe_executor, mail_executor],
    )


async def run(settings: Settings) -> None:
    problem = creditor_id_problem(
        make_stripe_client(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base),
        settings.seller_creditor_id,
    )
    if problem:
        raise ConfigError(problem)
    # SDK metrics plus the business counters on MAHNWERK_WORKER_METRICS_PORT (Prometheus).
    client = await connect_client(
        settings,
        runtime=worker_runtime(settings),
        key_cache_size=codec_key_cache_size(settings),
    )
    parts = build_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    dispatch = asyncio.create_task(parts.dispatcher.run())
    heartbeat = (
        asyncio.create_task(_heartbeat(client, settings.worker_health_file))
        if settings.worker_health_file is not None
        else None
    )
    log.info(
        "worker polling task queues %s, %s and %s on %s",
        settings.task_queue,
        stripe_queue(settings.task_queue),
        mail_queue(settings.task_queue),
        settings.temporal_address,
    )
    async with parts.worker:
        await stop.wait()
        log.info(
            "worker stopping: running activities get %ss to finish",
            f"{settings.worker_graceful_shutdown_timeout:g}",
        )
        if heartbeat is not None:
            heartbeat.cancel()  # unhealthy from here on: no new traffic is sent our way
    dispatch.cancel()
    for ex in parts.executors:
        ex.shutdown(wait=False)


HEARTBEAT_SECONDS = 10.0


async def _heartbeat(client: Client, path: Path) -> None:
    """Touch `path` while this worker polls and Temporal answers its health check: the
    container health check (`mahnwerk worker-health`) reads the file's age. A blocked event
    loop or a lost connection lets the file age, and the orchestrator restarts us."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            healthy = await client.service_client.check_health(
                timeout=timedelta(seconds=HEARTBEAT_SECONDS / 2)
            )
        except Exception as exc:  # RPCError, timeouts: the file ages, we keep trying
            log.warning("Temporal health check failed: %s", type(exc).__name__)
            healthy = False
        if healthy:
            path.touch()
        await asyncio.sleep(HEARTBEAT_SECONDS)


def main() -> None:
    settings = get_settings()
    check_startup(settings, "worker")  # also when started as `python worker.py`
    configure_logging(settings.log_level)  # one key=value line per event, with workflow ids
    logging.getLogger("stripe").setLevel(logging.WARNING)  # one line per request otherwise
    asyncio.run(run(settings))
    # The worker has drained (graceful shutdown done, executors stopped). Leave without the
    # interpreter's finalisation: the Temporal SDK's native threads may still call into
    # Python while it tears down, which aborted the process (SIGABRT, "PyGILState_Release")
    # in about one SIGTERM in three on this machine. Nothing is left to flush but our streams.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
