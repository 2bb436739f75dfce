"""Chaos harness (issue 6): the real processes, a wave of contracts, faults, invariants.

Everything is real and started here: a Temporal dev server as a subprocess this harness
controls (so it can be restarted on the same SQLite file), the `mahnwerk api` and
two `mahnwerk worker` replicas (each in a process group of its own, so `kill -9` reaches
exactly them), a Stripe stand-in and an SMTP catcher of their own, and a fresh ledger
(PostgreSQL schema or SQLite file).

A wave is a set of contracts all due at one instant, mixing debits that succeed, soft
declines that a retry recovers, soft and hard declines that walk the whole dunning ladder,
small claims that are written off, and SEPA debits settled by webhook. While it runs, a
test injects one kind of fault; afterwards `check_wave` asserts what a user would check:

* the stand-in's ledger: each installment that should be paid is debited exactly once,
  nothing else is debited, and no idempotency key ever produced two PaymentIntents;
* Mahnwerk's API: every contract in the state its scenario implies, every debit in the
  ledger recorded as that installment's payment (no lost payment);
* the SMTP catcher's mailbox: every notice the scenario implies exactly once, no other.

`MAHNWERK_CHAOS_LONG=1` (set by `make chaos`) scales the waves and the number of faults up.
Every random choice comes from one seed, printed, and settable with MAHNWERK_CHAOS_SEED.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import stripe
from temporalio.client import Client, WorkflowExecutionStatus

from core.devstack import SEARCH_ATTRIBUTES
from core.seller import DEMO_SELLER_ENV
from core.settings import PROJECT_ROOT
from tests.conftest import ADMIN, PLATFORM, SUPPORT, binary, contract_body

LONG = os.environ.get("MAHNWERK_CHAOS_LONG", "") not in ("", "0")
POLICY_DIR = Path(__file__).parent / "policies"
STRIPE_KEY = "sk_test_mahnwerk"
WEBHOOK_SECRET = "whsec_test_mahnwerk"
API_KEYS = "platform:shop:platform-key-123,support:anna:support-key-123,admin:root:admin-key-123"
# How long a wave may take after its due instant. Generous: a killed worker's activities
# are retried only after their start-to-close timeout (60 s for a debit or a notice), and
# the machine has 2 cores shared with other test runs.
SETTLE_TIMEOUT = 420.0

__all__ = ["ADMIN", "LONG", "SUPPORT"]


def scaled(short: int, long: int) -> int:
    return long if LONG else short


def chaos_seed(name: str) -> int:
    """The seed of one test's random choices: MAHNWERK_CHAOS_SEED, else a fresh one."""
    raw = os.environ.get("MAHNWERK_CHAOS_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(1, 2**31)
    print(f"\n[chaos] {name}: seed {seed} (rerun with MAHNWERK_CHAOS_SEED={seed})")
    return seed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, chars: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path.name}: no log)"
    return f"--- {path.name} (last {chars} chars) ---\n{text[-chars:]}"


# -- processes -----------------------------------------------------------------------------


class Proc:
    """A child in a process group of its own, logging to a file (appending across restarts)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} is running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.starts} of {self.name} ===\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)  # the whole group: no orphaned grandchild

    def kill9(self) -> None:
        """SIGKILL the process group and reap it: nothing runs any cleanup."""
        assert self.popen is not None
        self.signal(signal.SIGKILL)
        self.popen.wait(30)

    def stop(self, timeout: float = 15) -> None:
        if self.popen is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(10)

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")


def mahnwerk(name: str, args: list[str], env: dict[str, str], log: Path) -> Proc:
    return Proc(name, [sys.executable, "-m", "core.cli", *args], env, log)


class DevServer(Proc):
    """`temporal server start-dev` on a database file, so a restart keeps every workflow."""

    def __init__(self, db_file: Path, log: Path) -> None:
        self.port = free_port()
        argv = [
            binary("temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--headless",
            "--db-filename",
            str(db_file),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
        ]
        for name, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        # The CLI reads TEMPORAL_* as its own options: keep ours away from it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        super().__init__("temporal", argv, env, log)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"the Temporal dev server exited\n{log_tail(self.log)}")
            try:
                client = await Client.connect(self.address)
                await client.count_workflows()  # frontend and visibility both answer
                return
            except Exception as exc:  # noqa: BLE001 - anything but ready: try again
                last = exc
            await asyncio.sleep(0.5)
        raise AssertionError(f"Temporal dev server not ready: {last}\n{log_tail(self.log)}")


# -- scenarios -------------------------------------------------------------------------------

PAID = "paid"  # card, 3 installments a few seconds apart, all succeed
SOFT_RECOVERS = "soft_recovers"  # installment 2 declines softly once, the retry succeeds
SOFT_LADDER = "soft_ladder"  # insufficient funds every time: retries, then the whole ladder
HARD_LADDER = "hard_ladder"  # lost card: no retry, whole ladder, hand-off (claim >= 50 €)
HARD_WRITE_OFF = "hard_write_off"  # lost card, small claim: ladder, then written off
SEPA = "sepa"  # SEPA one-off: processing, settled by webhook

FULL_LADDER = ("reminder", "mahnung_1", "lock", "mahnung_2")
# A SEPA debit is announced to the customer before it is taken (pre-notification, issue 5);
# a one-off due at checkout is announced at once, for installment 1, attempt 1.
SEPA_NOTICES = ("sepa_prenotification_1_1",)


@dataclass(frozen=True)
class Expect:
    status: str
    paid: tuple[int, ...]  # installment numbers Mahnwerk shows as paid
    notices: tuple[str, ...]  # notice stages sent exactly once (case 1)
    access: str
    # installment numbers debited exactly once in the stand-in's ledger (None: `paid`)
    debited: tuple[int, ...] | None = None
    processing: tuple[int, ...] = ()  # installments Mahnwerk shows as processing

    @property
    def ledger(self) -> tuple[int, ...]:
        return self.paid if self.debited is None else self.debited


# Customer messages beyond dunning (issue 12), exactly once like every notice: a paid plan
# says so; a hard decline is told at once (case 1). A soft decline recovered by a retry
# before the reminder says nothing (the customer never heard of the case).
PLAN_DONE = ("plan_completed",)
HARD_FAILED = ("payment_failed_1",)

EXPECTATIONS: dict[str, Expect] = {
    PAID: Expect("completed", (1, 2, 3), PLAN_DONE, "granted"),  # paid: as many as the wave has
    SOFT_RECOVERS: Expect("completed", (1, 2), PLAN_DONE, "granted"),
    SOFT_LADDER: Expect("handed_off", (), (*FULL_LADDER, "handoff"), "locked"),
    HARD_LADDER: Expect("handed_off", (), (*HARD_FAILED, *FULL_LADDER, "handoff"), "locked"),
    HARD_WRITE_OFF: Expect("written_off", (), (*HARD_FAILED, *FULL_LADDER), "locked"),
    SEPA: Expect("completed", (1,), SEPA_NOTICES, "granted"),
}


class WorkflowBroken(AssertionError):
    """A contract's workflow failed, timed out or was terminated."""


@dataclass
class Contract:
    cid: str
    scenario: str
    email: str
    override: Expect | None = None  # what a fault changed about the expected outcome
    installments: int = 1

    @property
    def expect(self) -> Expect:
        if self.override is not None:
            return self.override
        base = EXPECTATIONS[self.scenario]
        if self.scenario == PAID:
            return replace(base, paid=tuple(range(1, self.installments + 1)))
        return base


@dataclass
class Wave:
    tag: str
    due: datetime
    contracts: list[Contract] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [c.cid for c in self.contracts]


def wave_mix(units: int, sepa: bool = True) -> list[str]:
    """`units` of each scenario (SEPA at most 2 per wave: each needs its own mandate)."""
    mix: list[str] = []
    for _ in range(units):
        mix += [PAID, PAID, SOFT_RECOVERS, SOFT_LADDER, HARD_LADDER, HARD_WRITE_OFF]
    if sepa:
        mix += [SEPA] * min(units, 2)
    return mix


# -- the stack -------------------------------------------------------------------------------


class ChaosStack:
    def __init__(
        self,
        db_url: str,
        standin: Any,
        smtp: Any,
        workdir: Path,
        app_name: str,
    ) -> None:
        self.db_url = db_url
        self.standin = standin
        self.smtp = smtp
        self.workdir = workdir
        self.app_name = app_name  # application_name of our PostgreSQL connections
        self.temporal = DevServer(workdir / "temporal.db", workdir / "temporal.log")
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        env = {
            **os.environ,
            **DEMO_SELLER_ENV,  # `mahnwerk api`/`worker` refuse to start without them
            "DATABASE_URL": db_url,
            "TEMPORAL_ADDRESS": self.temporal.address,
            "STRIPE_API_BASE": standin.url,
            "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "MAHNWERK_SMTP_URL": f"smtp://{smtp.host}:{smtp.port}",
            "MAHNWERK_API_KEYS": API_KEYS,
            "MAHNWERK_TASK_QUEUE": f"mahnwerk-chaos-{uuid.uuid4().hex[:6]}",
            "MAHNWERK_POLICY_DIR": str(POLICY_DIR),
            "MAHNWERK_WORKER_METRICS_PORT": "0",
            # A killed worker's queued workflow tasks wait this long before the other replica
            # takes them (the default, 300 s, is sized for a due wave's backlog and a crash
            # now and then; these tests kill a worker every few seconds).
            "MAHNWERK_WORKER_STICKY_TIMEOUT": "10",
            "MAHNWERK_BASE_RATES": "2026-07-01:127,2027-01-01:127,2027-07-01:127",
            # test secrets and the demo seller: what only dev mode accepts (core.settings)
            "MAHNWERK_ENV": "dev",
        }
        env.pop("MAHNWERK_EVENTS_URL", None)
        env.pop("MAHNWERK_COLLECTION_URL", None)
        # Two worker replicas, as docker-compose runs them (issue 13 item 5): they share the
        # task queues and the outbox, and kill_worker kills them alternately, so there is
        # always one polling while the other restarts.
        self.workers = [
            mahnwerk(f"worker-{n}", ["worker"], env, workdir / f"worker-{n}.log") for n in (1, 2)
        ]
        self.api = mahnwerk("api", ["api", "--port", str(self.api_port)], env, workdir / "api.log")
        self.http = httpx.AsyncClient(base_url=self.api_url, timeout=30)
        self.stripe = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": standin.url})
        self.worker_kills = 0
        # notices delivered twice in the documented gap (see check_wave), for the report
        self.resent_copies: list[str] = []
        self.client: Client | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.temporal.start()
        await self.temporal.ready()
        self.client = await Client.connect(self.temporal.address)
        self.api.start()
        for worker in self.workers:
            await self.start_worker(worker)
        self.standin.set_config(webhook_url=f"{self.api_url}/v1/webhooks/stripe")
        await self.until("the API to be ready", self._ready, timeout=90)

    async def _ready(self) -> bool:
        if not self.api.alive():
            raise AssertionError(f"the API exited\n{log_tail(self.api.log)}")
        try:
            return (await self.http.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def worker(self) -> Proc:
        """The first worker replica (tests that look at one worker's log or starts)."""
        return self.workers[0]

    async def start_worker(self, worker: Proc) -> None:
        """Start a worker and wait until it polls its task queue."""
        offset = worker.log_size()
        worker.start()

        def polling() -> bool:
            if not worker.alive():
                raise AssertionError(f"{worker.name} exited\n{log_tail(worker.log)}")
            return "worker polling task queue" in worker.log_since(offset)

        await self.until(f"{worker.name} to poll", polling, timeout=90)

    async def kill_worker(self) -> str:
        """`kill -9` one worker replica — the two alternately — then start it again;
        returns its name."""
        victim = self.workers[self.worker_kills % len(self.workers)]
        victim.kill9()
        self.worker_kills += 1
        await self.start_worker(victim)
        return victim.name

    async def restart_temporal(self, sig: signal.Signals) -> float:
        """Stop the dev server (SIGTERM: shutdown; SIGKILL: crash), start it on the same
        database file and port; returns the seconds it was away."""
        t0 = time.monotonic()
        if sig == signal.SIGKILL:
            self.temporal.kill9()
        else:
            self.temporal.stop(timeout=30)
        self.temporal.start()
        await self.temporal.ready()
        return time.monotonic() - t0

    async def close(self) -> None:
        for p in (*self.workers, self.api, self.temporal):
            p.stop()
        await self.http.aclose()

    def diagnostics(self) -> str:
        return "\n".join(log_tail(p.log) for p in (*self.workers, self.api, self.temporal))

    # -- helpers -----------------------------------------------------------------------------

    async def until(
        self, what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.5
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            await asyncio.sleep(every)

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """An API call that rides out transport faults and 5xx (a database connection just
        dropped, say) — retried a few times, as a platform's HTTP client would."""
        last: str = ""
        for _ in range(10):
            try:
                resp = await self.http.request(method, path, **kw)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 500:
                    return resp
                last = f"{resp.status_code} {resp.text[:300]}"
            await asyncio.sleep(1)
        raise AssertionError(f"{method} {path} kept failing: {last}")

    def sepa_method(self) -> tuple[str, str]:
        """(customer, payment method): a SEPA method with the mandate Stripe requires,
        set up on a customer as a platform does at checkout (SetupIntent)."""
        from core.demo import sepa_mandate

        customer, pm = sepa_mandate(self.stripe, "DE89370400440532013000")
        return str(customer), str(pm)

    # -- the wave ----------------------------------------------------------------------------

    async def create_wave(
        self,
        tag: str,
        mix: list[str],
        *,
        paid_count: int = 3,
        paid_interval: int = 3,
        lead: float = 6.0,
    ) -> Wave:
        """Create the contracts of `mix`, all due `lead` seconds from now (more if creating
        them takes longer); returns once every one exists. PAID contracts have `paid_count`
        installments `paid_interval` seconds apart."""
        due = (datetime.now(UTC) + timedelta(seconds=lead + 0.25 * len(mix))).replace(microsecond=0)
        wave = Wave(tag, due)
        due_text = due.isoformat()
        bodies: list[dict[str, Any]] = []
        for i, scenario in enumerate(mix):
            cid = f"{tag}-{i:03d}-{scenario}"
            email = f"{cid}@example.org"
            kw: dict[str, Any] = {"email": email, "first_due": due_text}
            if scenario == PAID:
                kw |= {
                    "policy": "chaos",
                    "count": paid_count,
                    "interval": f"PT{paid_interval}S",
                    "amount": 4900,
                }
            elif scenario == SOFT_RECOVERS:
                kw |= {"policy": "chaos_soft", "count": 2, "interval": "PT2S", "amount": 4900}
                # the first debit of installment 2 declines softly; its retry succeeds
                self.standin.script(
                    {"contract_id": cid, "installment": "2"}, ["insufficient_funds"]
                )
            elif scenario == SOFT_LADDER:
                kw |= {
                    "policy": "chaos",
                    "count": 1,
                    "amount": 9900,
                    "payment_method": "pm_card_visa_chargeDeclinedInsufficientFunds",
                }
            elif scenario == HARD_LADDER:
                kw |= {
                    "policy": "chaos",
                    "count": 1,
                    "amount": 9900,
                    "payment_method": "pm_card_visa_chargeDeclinedLostCard",
                }
            elif scenario == HARD_WRITE_OFF:
                kw |= {
                    "policy": "chaos",
                    "count": 1,
                    "amount": 3000,
                    "payment_method": "pm_card_visa_chargeDeclinedLostCard",
                }
            elif scenario == SEPA:
                kw |= {"policy": "chaos", "kind": "one_off", "amount": 4900}
                kw["stripe_customer"], kw["payment_method"] = self.sepa_method()
            else:  # pragma: no cover - a typo in a test
                raise ValueError(scenario)
            body = contract_body(cid, **kw)
            if scenario == SEPA:
                body["one_off"]["due"] = due_text
            bodies.append(body)
            count = body["installments"]["count"] if "installments" in body else 1
            wave.contracts.append(Contract(cid, scenario, email, installments=count))

        sem = asyncio.Semaphore(4)

        async def create(body: dict[str, Any]) -> None:
            async with sem:
                resp = await self.request("POST", "/v1/contracts", json=body, headers=PLATFORM)
            assert resp.status_code in (200, 201), f"{body['contract_id']}: {resp.text}"

        await asyncio.gather(*(create(b) for b in bodies))
        late = (datetime.now(UTC) - due).total_seconds()
        print(
            f"[chaos] wave {tag}: {len(mix)} contracts due {due:%H:%M:%S}Z "
            f"({Counter(mix)}), created {f'{late:.1f}s late' if late > 0 else 'in time'}"
        )
        return wave

    async def contract(self, cid: str) -> dict[str, Any]:
        resp = await self.request("GET", f"/v1/contracts/{cid}", headers=PLATFORM)
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def settled(self, wave: Wave, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until every contract of the wave shows its expected status and its workflow
        has nothing in flight (no pending activity or workflow task), so no debit or e-mail
        can still be on its way when the invariants are checked."""
        pending = {c.cid: c for c in wave.contracts}
        assert self.client is not None
        client = self.client
        started = time.monotonic()

        async def quiet(c: Contract) -> bool:
            view = await self.contract(c.cid)
            if view["status"] != c.expect.status:
                return False
            desc = await client.get_workflow_handle(f"contract-{c.cid}").describe()
            if desc.status == WorkflowExecutionStatus.COMPLETED:
                return True
            if desc.status != WorkflowExecutionStatus.RUNNING:
                raise WorkflowBroken(f"{c.cid}: workflow {desc.status}")
            if c.expect.status == "written_off":
                return False  # nothing is left of the wave's plans: the workflow ends
            # Paid in full, the workflow sleeps through the chargeback window (or waits for
            # its next poll of a SEPA debit); handed off, it waits for payments and the
            # partner's reports (issue 12: the case stays open) once the announcement and
            # the case file are out: settled once nothing is in flight.
            raw = desc.raw_description
            return not raw.pending_activities and not raw.HasField("pending_workflow_task")

        async def all_quiet() -> bool:
            for cid, c in list(pending.items()):
                if await quiet(c):
                    del pending[cid]
            return not pending

        try:
            await self.until("every contract of the wave to settle", all_quiet, timeout, 2.0)
        except AssertionError as exc:
            lines = []
            for c in list(pending.values())[:10]:
                view = await self.contract(c.cid)
                desc = await client.get_workflow_handle(f"contract-{c.cid}").describe()
                raw = desc.raw_description
                activities = [
                    f"{a.activity_type.name} attempt {a.attempt}"
                    + (f" ({a.last_failure.message[:200]})" if a.HasField("last_failure") else "")
                    for a in raw.pending_activities
                ]
                lines.append(
                    f"  {c.cid}: status={view['status']} stage={view['dunning']['stage']} "
                    f"schedule={[i['status'] for i in view['schedule']]}, expected "
                    f"{c.expect.status}; workflow {desc.status}, pending {activities}"
                )
            raise AssertionError(
                f"{exc}: {len(pending)} contract(s) not settled\n"
                + "\n".join(lines)
                + "\n"
                + self.diagnostics()
            ) from None
        print(f"[chaos] wave {wave.tag} settled {time.monotonic() - started:.0f}s after start")

    # -- invariants --------------------------------------------------------------------------

    async def check_wave(self, wave: Wave) -> None:
        problems: list[str] = []
        ids = set(wave.ids)

        # 1. the stand-in's ledger: exactly one debit per installment that should be paid
        ledger = [d for d in self.standin.ledger() if d["metadata"].get("contract_id") in ids]
        debits: dict[str, Counter[int]] = defaultdict(Counter)
        for d in ledger:
            debits[d["metadata"]["contract_id"]][int(d["metadata"]["installment"])] += 1
        for c in wave.contracts:
            got = debits.get(c.cid, Counter())
            want = Counter(dict.fromkeys(c.expect.ledger, 1))
            if got != want:
                problems.append(f"{c.cid} ({c.scenario}): debits {dict(got)}, want {dict(want)}")

        # 2. no idempotency key ever made two PaymentIntents
        keys: Counter[str] = Counter()
        intents = self.payment_intents(ids)
        for pi in intents:
            keys[pi["metadata"].get("idempotency_key", pi["id"])] += 1
        problems += [f"idempotency key {k}: {n} PaymentIntents" for k, n in keys.items() if n > 1]
        missing = {d["payment_intent"] for d in ledger} - {pi["id"] for pi in intents}
        if missing:  # the search must see every debit, or the check above proves nothing
            problems.append(f"PaymentIntents of debits not found by search: {sorted(missing)}")

        # 3. the API: status, access, and every debit in the ledger recorded as the payment
        for c in wave.contracts:
            view = await self.contract(c.cid)
            if view["status"] != c.expect.status or view["access"] != c.expect.access:
                problems.append(
                    f"{c.cid} ({c.scenario}): status {view['status']}, access "
                    f"{view['access']}; want {c.expect.status}, {c.expect.access}"
                )
            schedule = {int(i["seq"]): i for i in view["schedule"]}
            paid = sorted(n for n, i in schedule.items() if i["status"] == "paid")
            processing = sorted(n for n, i in schedule.items() if i["status"] == "processing")
            if paid != sorted(c.expect.paid) or processing != sorted(c.expect.processing):
                problems.append(
                    f"{c.cid} ({c.scenario}): API says installments {paid} paid, "
                    f"{processing} processing; want {sorted(c.expect.paid)}, "
                    f"{sorted(c.expect.processing)}"
                )
            for d in ledger:
                if d["metadata"]["contract_id"] != c.cid:
                    continue
                seq = int(d["metadata"]["installment"])
                recorded = _payment_intents_of(schedule.get(seq, {}))
                if d["payment_intent"] not in recorded:
                    problems.append(
                        f"{c.cid}: debit {d['payment_intent']} of installment {seq} is not "
                        f"recorded on it (API has {sorted(recorded)}): a lost payment"
                    )

        # 4. the mailbox: each expected notice exactly once, nothing else; and each one is
        # the notice Mahnwerk recorded as sent (same Message-ID)
        mails: dict[str, Counter[str]] = defaultdict(Counter)
        message_ids: dict[str, Counter[str]] = defaultdict(Counter)
        for m in self.smtp.store.messages():
            cid = str(m.get("X-Mahnwerk-Contract", ""))
            if cid in ids:
                number = str(m.get("X-Mahnwerk-Notice", ""))
                stage = number.removeprefix(f"MW-{cid}-").partition("-")[2]
                mails[cid][stage] += 1
                message_ids[cid][str(m.get("Message-ID", ""))] += 1
        for c in wave.contracts:
            sent = mails.get(c.cid, Counter())
            wanted = Counter(dict.fromkeys(c.expect.notices, 1))
            resent = {stage for stage, n in sent.items() if n > 1}
            if resent:
                # The one gap DESIGN.md decision 4 documents: a worker killed after the SMTP
                # server accepted a notice and before the COMMIT that records it. SMTP has no
                # idempotency, so the retry sends the identical message again — same
                # Message-ID, flagged `possible_duplicate` on the timeline. Anything else
                # (another Message-ID, an unflagged copy) is a broken invariant.
                flagged = await self._flagged_duplicates(c.cid)
                for stage in sorted(resent):
                    ids_of_stage = {
                        mid for mid in message_ids.get(c.cid, {}) if f"-{stage}." in mid
                    }
                    if stage in flagged and len(ids_of_stage) == 1:
                        self.resent_copies.append(f"{c.cid} {stage} x{sent[stage]}")
                        sent[stage] = 1
            if sent != wanted:
                problems.append(f"{c.cid} ({c.scenario}): mails {dict(sent)}, want {dict(wanted)}")
            resp = await self.request("GET", f"/v1/contracts/{c.cid}/notices", headers=SUPPORT)
            assert resp.status_code == 200, resp.text
            notices = {n["message_id"]: n for n in resp.json()["data"]}
            unsent = sorted(n["stage"] for n in notices.values() if n["status"] != "sent")
            if unsent:
                problems.append(f"{c.cid}: notices {unsent} recorded but not marked sent")
            if set(notices) != set(message_ids.get(c.cid, {})):
                problems.append(
                    f"{c.cid}: Message-IDs recorded {sorted(notices)} != mailed "
                    f"{sorted(message_ids.get(c.cid, {}))}"
                )

        if problems:
            raise AssertionError(
                f"wave {wave.tag}: {len(problems)} invariant(s) broken:\n  "
                + "\n  ".join(problems)
                + "\n"
                + self.diagnostics()
            )
        if self.resent_copies:
            print(
                "[chaos] WARNING: notices delivered twice (same Message-ID, flagged "
                f"possible_duplicate: a worker died between SMTP and COMMIT): {self.resent_copies}"
            )
        print(
            f"[chaos] wave {wave.tag}: {len(ledger)} debits, "
            f"{sum(sum(m.values()) for m in mails.values())} notices, all as expected"
        )

    async def audit(self, wave: Wave) -> Counter[str]:
        """What the faults did, from the histories: activities that needed more than one
        attempt (a dead worker's activity is retried after its start-to-close timeout, a
        Stripe 5xx after a backoff) and workflow tasks that timed out or failed."""
        from temporalio.api.enums.v1 import EventType

        assert self.client is not None
        seen: Counter[str] = Counter()
        for cid in wave.ids:
            handle = self.client.get_workflow_handle(f"contract-{cid}")
            async for e in handle.fetch_history_events():
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    if e.activity_task_started_event_attributes.attempt > 1:
                        seen["activities retried"] += 1
                elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                    seen["workflow tasks timed out"] += 1
                elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    seen["workflow tasks failed"] += 1
        print(f"[chaos] wave {wave.tag}: histories show {dict(seen) or 'no retries'}")
        return seen

    def succeeded_events(self, cids: Iterable[str]) -> list[str]:
        """Ids of the stand-in's payment_intent.succeeded events of these contracts."""
        wanted = set(cids)
        return [
            e["id"]
            for e in self.standin.events(type="payment_intent.succeeded")
            if (e["data"]["object"].get("metadata") or {}).get("contract_id") in wanted
        ]

    def dropped_webhooks(self) -> set[str]:
        """Ids of events whose delivery the stand-in's fault injection dropped."""
        return {d["event"] for d in self.standin.webhooks(status="dropped")}

    def standin_faults(self) -> dict[str, int]:
        """How many faults the (in-process) stand-in injected, by kind."""
        engine = self.standin.server.config.app.state.engine
        return dict(engine.faults.injected)

    async def _flagged_duplicates(self, cid: str) -> set[str]:
        """Notice stages whose `notice.sent` timeline event says `possible_duplicate`."""
        resp = await self.request("GET", f"/v1/contracts/{cid}/events", headers=PLATFORM)
        assert resp.status_code == 200, resp.text
        return {
            str(e["data"].get("stage"))
            for e in resp.json()["data"]
            if e["type"] == "notice.sent" and (e.get("data") or {}).get("possible_duplicate")
        }

    def payment_intents(self, ids: set[str]) -> list[dict[str, Any]]:
        """Every PaymentIntent of these contracts (declined ones too), from the stand-in."""
        out: list[dict[str, Any]] = []
        for cid in ids:
            found = self.stripe.v1.payment_intents.search(
                params={"query": f"metadata['contract_id']:'{cid}'", "limit": 100}
            )
            out += [pi.to_dict() for pi in found.data]
        return out


def _payment_intents_of(installment: dict[str, Any]) -> set[str]:
    found = set()
    for a in installment.get("attempts", []) or []:
        if a.get("payment_intent"):
            found.add(a["payment_intent"])
    if installment.get("payment_intent"):
        found.add(installment["payment_intent"])
    return found


@contextlib.contextmanager
def own_standin_and_smtp() -> Iterator[tuple[Any, Any]]:
    """A stand-in and an SMTP catcher of the chaos tests' own: their faults, scripts,
    ledger and mailbox never mix with other tests'."""
    from core.smtp_catcher import run_smtp_catcher
    from stripe_standin.testing import run_standin

    with (
        run_standin(sepa_delay=2.0, webhook_secret=WEBHOOK_SECRET) as standin,
        run_smtp_catcher() as smtp,
    ):
        yield standin, smtp


@contextlib.asynccontextmanager
async def chaos_stack(db_url: str, workdir: Path) -> AsyncIterator[ChaosStack]:
    app_name = f"mahnwerk-chaos-{uuid.uuid4().hex[:8]}"
    if db_url.startswith("postgresql"):
        sep = "&" if "?" in db_url else "?"
        db_url = f"{db_url}{sep}application_name={app_name}"
    with own_standin_and_smtp() as (standin, smtp):
        stack = ChaosStack(db_url, standin, smtp, workdir, app_name)
        try:
            await stack.start()
            yield stack
        finally:
            await stack.close()


async def chaos_loop(
    rng: random.Random,
    rounds: int,
    gap: tuple[float, float],
    action: Callable[[int], Awaitable[str]],
) -> list[str]:
    """`rounds` times: wait a random gap, then run the fault; returns what each did."""
    done: list[str] = []
    for n in range(rounds):
        await asyncio.sleep(rng.uniform(*gap))
        done.append(await action(n))
    return done
