"""What every benchmark shares: the machine, /proc readings, the processes of the stack.

The stack is the embedded one (issue 6): `temporal server start-dev` with WAL pragmas and
the SPEC.md §7 search attributes on a fresh database file, the Stripe stand-in, the API and
the worker as subprocesses (so none shares a GIL with another or with the driver), the
SMTP catcher, PostgreSQL (database `bench`, emptied and migrated per run).

CPU and memory come from /proc (no psutil): `utime + stime` of /proc/<pid>/stat, VmRSS of
/proc/<pid>/status, and the machine's busy time from /proc/stat.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "RESULTS.md"
DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/bench"
API_KEY = "bench-platform-key-123"
PLATFORM = {"Authorization": f"Bearer {API_KEY}"}
WEBHOOK_SECRET = "whsec_bench_mahnwerk"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SEARCH_ATTRIBUTES = {
    "MahnwerkStatus": "Keyword",
    "DunningStage": "Keyword",
    "CustomerId": "Keyword",
    "OverdueAmount": "Int",
    "AccessLocked": "Bool",
    "SellerId": "Keyword",
}

# The payload codec's key ring of the bench's API and workers (a fixed test key; id `bench`).
BENCH_CODEC_KEY = "bench:" + base64.b64encode(bytes(range(32))).decode()
CODEC = {
    True: "on (MAHNWERK_CODEC_KEY: AES-GCM, per-customer data keys, as production)",
    False: "off (--no-codec: payloads unencrypted, as the benches before 6 Dec 2026, 4th session)",
}

# Piped to a file, rich would wrap the tables at 80 columns; COLUMNS still wins.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark that starts its own stack takes."""
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--keep", action="store_true", help="keep logs and the Temporal DB")
    parser.add_argument(
        "--no-bytecode-cache",
        dest="bytecode_cache",
        action="store_false",
        help="run without .pyc files (PYTHONDONTWRITEBYTECODE=1), as the Docker image does",
    )
    parser.add_argument(
        "--no-codec",
        dest="codec",
        action="store_false",
        help="leave MAHNWERK_CODEC_KEY unset: payloads reach Temporal unencrypted (as every "
        "bench before 6 Dec 2026, fourth session); by default the API and the workers encrypt "
        "them as production must (SPEC.md §7)",
    )
    add_record_option(parser)


def add_record_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")


def run_benchmark(
    parser: argparse.ArgumentParser,
    main_async: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
) -> None:
    """Parse the options and run the benchmark, stopping cleanly on SIGTERM/SIGINT."""
    args = parser.parse_args()
    exit_on_signals()
    asyncio.run(main_async(args))


def exit_on_signals() -> None:
    """SIGTERM and SIGINT stop the run cleanly (the stack's processes too), also when the
    benchmark was started in the background, where the shell ignores SIGINT."""

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


# -- the machine ------------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict[str, str]:
    import temporalio

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    try:
        cli = subprocess.run(
            [str(BIN / "temporal"), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        cli = "?"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if dirty:
            commit += " (+ uncommitted changes in the work tree)"
    except OSError:
        commit = "?"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": f"{os.cpu_count()} × {model}",
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "temporalio": temporalio.__version__,
        "temporal CLI": cli.replace("\n", " "),
        "commit": commit,
    }


def machine_cpu() -> tuple[float, float]:
    """(busy, total) seconds of all CPUs since boot, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])  # without guest (already in user)
    return (total - idle) / CLK_TCK, total / CLK_TCK


# -- one process ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of proc(5)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[nearest_rank(p, len(ordered))]


def nearest_rank(p: float, n: int) -> int:
    """The index of the p-th percentile among n sorted values: the smallest value with at
    least p % of the n at or below it (ceil(p/100 · n), counted from 1)."""
    return max(0, min(n - 1, math.ceil(p / 100 * n - 1e-9) - 1))


# -- CPU accounting over a window ---------------------------------------------------------------


@dataclass
class CpuMeter:
    """CPU seconds per named process group between `start()` and `stop()`.

    Groups are fixed pids (server, worker, …) plus, when `pg_db` is set, the PostgreSQL
    backends connected to that database (found through pg_stat_activity at each sample, so
    backends opened during the window count too; one that closes between two samples loses
    at most its last second).

    `sums` names sets of those processes (e.g. K worker processes) whose CPU is also shown
    summed (`cpu_rows`) and whose RSS is summed per sample (the peak of the sum).
    """

    pids: dict[str, int]
    pg_url: str | None = None
    sums: dict[str, list[str]] = field(default_factory=dict)
    interval: float = 1.0
    _first: dict[str, dict[int, float]] = field(default_factory=dict)
    _last: dict[str, dict[int, float]] = field(default_factory=dict)
    _machine0: tuple[float, float] = (0.0, 0.0)
    _machine1: tuple[float, float] = (0.0, 0.0)
    _t0: float = 0.0
    _t1: float = 0.0
    _conn: Any = None
    _peak_rss: dict[str, float] = field(default_factory=dict)

    def _pg_pids(self) -> list[int]:
        if self.pg_url is None:
            return []
        if self._conn is None:
            import psycopg

            url = self.pg_url.replace("postgresql+psycopg://", "postgresql://")
            self._conn = psycopg.connect(url, autocommit=True)
        rows = self._conn.execute(
            "select pid from pg_stat_activity where datname = current_database() "
            "and pid <> pg_backend_pid()"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def _sample(self) -> dict[str, dict[int, float]]:
        groups: dict[str, dict[int, float]] = {}
        for name, pid in self.pids.items():
            cpu = cpu_seconds(pid)
            groups[name] = {pid: cpu} if cpu is not None else {}
            rss = rss_mib(pid)
            if rss is not None:
                self._peak_rss[name] = max(self._peak_rss.get(name, 0.0), rss)
        for total, names in self.sums.items():
            summed = sum(rss_mib(self.pids[n]) or 0.0 for n in names if n in self.pids)
            self._peak_rss[total] = max(self._peak_rss.get(total, 0.0), summed)
        if self.pg_url is not None:
            pg: dict[int, float] = {}
            for pid in self._pg_pids():
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    pg[pid] = cpu
            groups["postgres (bench backends)"] = pg
        return groups

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._machine0 = machine_cpu()
        self._first = self._sample()
        self._last = {k: dict(v) for k, v in self._first.items()}

    def sample(self) -> None:
        for name, seen in self._sample().items():
            self._last.setdefault(name, {}).update(seen)

    def stop(self) -> None:
        self.sample()
        self._t1 = time.monotonic()
        self._machine1 = machine_cpu()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def wall(self) -> float:
        return self._t1 - self._t0

    def seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, last in self._last.items():
            first = self._first.get(name, {})
            out[name] = sum(cpu - first.get(pid, 0.0) for pid, cpu in last.items())
        return out

    def machine_busy(self) -> float:
        return self._machine1[0] - self._machine0[0]

    def peak_rss(self) -> dict[str, float]:
        return dict(self._peak_rss)


def cpu_rows(meter: CpuMeter) -> list[tuple[str, str, str]]:
    """(process, CPU s, cores busy on average) rows, plus ours and the machine's total; the
    meter's `sums` (several processes of one kind) as an extra row, not counted twice."""
    wall = max(meter.wall, 1e-9)
    rows = []
    ours = 0.0
    seconds = meter.seconds()
    for name, sec in seconds.items():
        ours += sec
        rows.append((name, f"{sec:.1f}", f"{sec / wall:.2f}"))
    for total, names in meter.sums.items():
        if len(names) > 1:
            sec = sum(seconds.get(n, 0.0) for n in names)
            rows.append(
                (f"{total} (sum of the {len(names)} above)", f"{sec:.1f}", f"{sec / wall:.2f}")
            )
    busy = meter.machine_busy()
    rows.append(("all of the above", f"{ours:.1f}", f"{ours / wall:.2f}"))
    rows.append(("whole machine (incl. others' jobs)", f"{busy:.1f}", f"{busy / wall:.2f}"))
    return rows


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            self.popen.wait(5)


def spawn(name: str, argv: list[str], logdir: Path, env: dict[str, str] | None = None) -> Proc:
    log = logdir / f"{name}.log"
    out = log.open("wb")
    popen = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env if env is not None else dict(os.environ),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.close()
    return Proc(name, popen, log)


def wait_for(what: str, check: Any, timeout: float, procs: Sequence[Proc] = ()) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited while waiting for {what}:\n{p.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


# The SDK's workflow-cache counters (Prometheus names as the Rust core exports them).
CACHE_METRICS = {
    "hits": "temporal_sticky_cache_hit",
    "misses (full history replayed)": "temporal_sticky_cache_miss",
    "forced evictions (cache full)": "temporal_sticky_cache_total_forced_eviction",
}


def worker_cache_counters(port: int) -> dict[str, float] | None:
    """The workflow cache's counters of the worker serving metrics on `port` (summed over
    labels); None if it does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    out = dict.fromkeys(CACHE_METRICS, 0.0)
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        for key, metric in CACHE_METRICS.items():
            if name in (metric, f"{metric}_total"):
                out[key] += float(line.rsplit(" ", 1)[1])
    return out


@dataclass
class Stack:
    """The processes of one benchmark run; `close()` stops them in reverse order."""

    workdir: Path
    db_url: str = DEFAULT_DB
    procs: dict[str, Proc] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)  # Mahnwerk workers'
    temporal_address: str = ""
    standin_url: str = ""
    # (per account, per endpoint) requests/s the stand-in enforces; None: no limits
    standin_limits: tuple[float, float] | None = None
    api_url: str = ""
    smtp_url: str = ""
    task_queue: str = "mahnwerk-bench"
    # False: run our processes with PYTHONDONTWRITEBYTECODE=1 and no .pyc files, as the
    # Docker image does; True: give them a bytecode cache outside the work tree.
    bytecode_cache: bool = True
    # MAHNWERK_CODEC_KEY of the API and the workers: payloads encrypted as in production
    # (which refuses to start without a key); None: unencrypted (`--no-codec`).
    codec_key: str | None = None
    # MAHNWERK_STRIPE_RATE_LIMIT *and* MAHNWERK_STRIPE_CREATE_RATE_LIMIT for the workers
    # (None: their defaults, 25/s each for a test key): the per-process token bucket and the
    # deployment-wide activity rate of the Stripe queue, min(create, rate) (core/settings.py
    # `effective_stripe_activity_rate`). Lifting only the first left the second at 25/s.
    stripe_rate_limit: float | None = None
    # MAHNWERK_STRIPE_CREATE_RATE_LIMIT alone (None: the same as stripe_rate_limit)
    stripe_create_rate_limit: float | None = None
    # Settings for the API *and* the workers (e.g. the wave's --no-invoices, --no-messages)
    extra_env: dict[str, str] = field(default_factory=dict)
    _catcher: Any = None

    # Temporal ---------------------------------------------------------------------------
    def start_temporal(self) -> Proc:
        port = free_port()
        argv = [
            str(BIN / "temporal"),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--db-filename",
            str(self.workdir / "temporal.db"),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
        ]
        for name, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        proc = spawn("temporal", argv, self.workdir, env)
        self.procs["temporal server"] = proc
        self.temporal_address = f"127.0.0.1:{port}"

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_for("the Temporal dev server", ready, 60, [proc])
        return proc

    async def wait_temporal_ready(self) -> None:
        """The frontend answers and the search attributes are registered."""
        import asyncio

        from temporalio.client import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                client = await Client.connect(self.temporal_address)
                await client.count_workflows("MahnwerkStatus = 'x'")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    # SMTP, stand-in ------------------------------------------------------------------------
    def start_smtp(self) -> None:
        from core.smtp_catcher import start_smtp_catcher

        self._catcher = start_smtp_catcher()
        self.smtp_url = f"smtp://{self._catcher.host}:{self._catcher.port}"

    def start_standin(
        self, webhook_url: str | None, limits: tuple[float, float] | None = None
    ) -> Proc:
        """The Stripe stand-in; `limits` = (requests/s per account, requests/s per endpoint):
        it enforces them as Stripe does (429 `rate_limit`, stripe_standin/ratelimit.py) and
        counts what it refused (`standin_refused`)."""
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "stripe_standin",
            "--port",
            str(port),
            "--webhook-secret",
            WEBHOOK_SECRET,
        ]
        if webhook_url:
            argv += ["--webhook-url", webhook_url]
        if limits is not None:
            argv += [
                "--rate-limit",
                "--rate-limit-global",
                f"{limits[0]:g}",
                "--rate-limit-endpoint",
                f"{limits[1]:g}",
            ]
        proc = spawn("standin", argv, self.workdir, self.pyenv())
        self.standin_limits = limits
        self.procs["stripe stand-in"] = proc
        self.standin_url = f"http://127.0.0.1:{port}"
        wait_for("the stand-in", lambda: http_ok(f"{self.standin_url}/_standin/health"), 30, [proc])
        return proc

    def standin_refused(self) -> dict[str, int]:
        """Requests the stand-in refused for its rate limits so far, per endpoint."""
        health = httpx.get(f"{self.standin_url}/_standin/health", timeout=30).json()
        return {str(k): int(v) for k, v in (health.get("rate_limited") or {}).items()}

    # Mahnwerk -----------------------------------------------------------------------------
    def pyenv(self) -> dict[str, str]:
        """The environment of our Python subprocesses (bytecode cache as configured)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAHNWERK_")}
        env.pop("PYTHONPYCACHEPREFIX", None)
        if self.bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.workdir / "pycache")
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env["PYTHONPYCACHEPREFIX"] = str(self.workdir / "no-pycache")  # stays empty
        return env

    def env(self, **extra: str) -> dict[str, str]:
        from core.seller import DEMO_SELLER_ENV

        env = self.pyenv()
        env.update(DEMO_SELLER_ENV)  # `mahnwerk api`/`worker` refuse to start without them
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "DATABASE_URL": self.db_url,
                "TEMPORAL_ADDRESS": self.temporal_address,
                "STRIPE_API_BASE": self.standin_url,
                "STRIPE_API_KEY": "sk_test_bench",
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "MAHNWERK_SMTP_URL": self.smtp_url or "smtp://127.0.0.1:1",
                "MAHNWERK_TASK_QUEUE": self.task_queue,
                "MAHNWERK_API_KEYS": f"platform:bench:{API_KEY}",
                "MAHNWERK_WORKER_METRICS_PORT": "0",  # never collide with a test's worker
                "MAHNWERK_ENV": "dev",  # bench secrets and the demo seller (core.settings)
            }
        )
        if self.codec_key is not None:
            env["MAHNWERK_CODEC_KEY"] = self.codec_key
        if self.stripe_rate_limit is not None:
            env["MAHNWERK_STRIPE_RATE_LIMIT"] = f"{self.stripe_rate_limit:g}"
        create = (
            self.stripe_create_rate_limit
            if self.stripe_create_rate_limit is not None
            else self.stripe_rate_limit
        )
        if create is not None:
            env["MAHNWERK_STRIPE_CREATE_RATE_LIMIT"] = f"{create:g}"
        env.update(self.extra_env)
        env.update(extra)
        return env

    def stripe_rates(self) -> StripeRates:
        """The Stripe limits the workers run with (as core.settings computes them)."""
        return stripe_rates(self.stripe_rate_limit, self.stripe_create_rate_limit)

    def start_worker(self, name: str = "mahnwerk worker", **extra: str) -> Proc:
        argv = [sys.executable, "-m", "core.cli", "worker"]
        # its Prometheus metrics (the SDK's workflow cache counters) on a port of its own
        port = free_port()
        self.metrics_ports[name] = port
        extra = {"MAHNWERK_WORKER_METRICS_PORT": str(port), **extra}
        proc = spawn(name.replace(" ", "-"), argv, self.workdir, self.env(**extra))
        self.procs[name] = proc
        time.sleep(0.5)
        if not proc.alive():
            raise RuntimeError(f"{name} exited:\n{proc.tail()}")
        return proc

    def start_workers(self, k: int, **extra: str) -> list[str]:
        """K `mahnwerk worker` processes on the same task queue (as docker-compose runs
        replicas); returns their names ("mahnwerk worker" for one, else "… 1".."… K")."""
        names = worker_names("mahnwerk worker", k)
        for name in names:
            self.start_worker(name, **extra)
        return names

    def start_bare_workers(self, k: int, task_queue: str, max_cached: int) -> list[str]:
        """K `python -m bench.bare` processes polling `task_queue`."""
        names = worker_names("bare worker", k)
        for name in names:
            argv = [
                sys.executable,
                "-m",
                "bench.bare",
                "--address",
                self.temporal_address,
                "--task-queue",
                task_queue,
                "--max-cached-workflows",
                str(max_cached),
            ]
            self.procs[name] = spawn(name.replace(" ", "-"), argv, self.workdir, self.pyenv())
        return names

    def sqlite_bytes(self) -> int:
        """The dev server's SQLite database: the file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += (self.workdir / f"temporal.db{suffix}").stat().st_size
        return total

    def start_api(self, port: int | None = None) -> Proc:
        port = port or free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "core.cli", "api", "--port", str(port)]
        proc = spawn("api", argv, self.workdir, self.env(MAHNWERK_PUBLIC_URL=self.api_url))
        self.procs["mahnwerk api"] = proc
        wait_for("the API", lambda: http_ok(f"{self.api_url}/readyz"), 60, [proc])
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
        if self._catcher is not None:
            self._catcher.stop()

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items() if p.alive()}

    def check_alive(self) -> None:
        for p in self.procs.values():
            if not p.alive():
                raise RuntimeError(f"{p.name} exited:\n{p.tail()}")


def worker_names(base: str, k: int) -> list[str]:
    return [base] if k == 1 else [f"{base} {i}" for i in range(1, k + 1)]


def parse_workers(raw: str) -> list[int]:
    """`--workers 2` or `--workers 1,2`: worker process counts, each ≥ 1."""
    try:
        ks = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or comma list: {raw!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError(f"worker counts must be ≥ 1: {raw!r}")
    return ks


def plural(k: int, word: str) -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


@dataclass(frozen=True)
class StripeRates:
    """What the workers are configured with, per core/settings.py."""

    requests: float  # MAHNWERK_STRIPE_RATE_LIMIT or the key's default: each process's bucket
    create: float  # MAHNWERK_STRIPE_CREATE_RATE_LIMIT or 25/s
    activities: float  # min of both: the Stripe queue's rate, for the whole deployment

    def describe(self) -> str:
        return (
            f"{self.activities:g} Stripe activities/s for the whole deployment (the Stripe "
            f"queue's task-queue rate = min(MAHNWERK_STRIPE_CREATE_RATE_LIMIT {self.create:g}, "
            f"MAHNWERK_STRIPE_RATE_LIMIT {self.requests:g})); each worker process also "
            f"throttles itself to {self.requests:g} requests/s"
        )


def stripe_rates(requests: float | None, create: float | None) -> StripeRates:
    from core.settings import STRIPE_CREATE_RATE_LIMIT, default_stripe_rate_limit

    req = requests if requests is not None else default_stripe_rate_limit("sk_test_bench")
    if create is None:
        create = requests if requests is not None else STRIPE_CREATE_RATE_LIMIT
    return StripeRates(req, create, min(req, create))


async def task_queue_info(client: Any, task_queue: str, activities: bool = False) -> dict[str, Any]:
    """The server's view of a task queue: approximate backlog and, for an activity queue,
    the rate limit in effect (None where the server does not say)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    kind = (
        TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        if activities
        else TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
    )
    resp = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=kind,
            report_stats=True,
            report_config=True,
        )
    )
    out: dict[str, Any] = {"pollers": len(resp.pollers), "backlog": None, "rate": None}
    if resp.HasField("stats"):
        out["backlog"] = int(resp.stats.approximate_backlog_count)
    if resp.HasField("effective_rate_limit"):
        out["rate"] = float(resp.effective_rate_limit.requests_per_second)
    return out


# -- a receiver for Mahnwerk's platform events ---------------------------------------------------


@dataclass
class Delivery:
    event_id: str  # the `webhook-id` header, else the body's `id`
    body_id: str
    at: float
    signed: bool  # Mahnwerk-Signature checks out with the dev secret


class EventReceiver:
    """MAHNWERK_EVENTS_URL for the workers: a stdlib HTTP server in a thread of the driver,
    answering 200 at once and recording every delivery (SPEC.md §5: each event has an `id`,
    sent as Standard Webhooks' `webhook-id` header too). HTTP/1.1 keep-alive, a thread per
    connection (the dispatcher posts to many contracts at once)."""

    def __init__(self, secret: str | None = None) -> None:
        import http.server
        import json
        import threading

        from activities.events import verify
        from core.settings import DEV_EVENTS_SECRET

        self.secret = secret or DEV_EVENTS_SECRET
        self.deliveries: list[Delivery] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    body_id = str(json.loads(body).get("id", ""))
                except (ValueError, AttributeError):
                    body_id = ""
                header = self.headers.get("webhook-id") or ""
                signed = verify(body, self.headers.get("Mahnwerk-Signature") or "", receiver.secret)
                receiver.deliveries.append(
                    Delivery(header or body_id, body_id, time.time(), signed)
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/events"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def report(self, outbox: dict[str, bool]) -> dict[str, Any]:
        """Deliveries against the ledger's outbox (`outbox`: event_id → delivered_at set)."""
        from collections import Counter

        seen = Counter(d.event_id for d in self.deliveries)
        dup_ids = [e for e, c in seen.items() if c > 1]
        delivered = {e for e, ok in outbox.items() if ok}
        return {
            "received": len(self.deliveries),
            "distinct": len(seen),
            "duplicate_ids": len(dup_ids),
            "extra_deliveries": len(self.deliveries) - len(seen),
            "max_per_id": max(seen.values(), default=0),
            "no_id": sum(1 for d in self.deliveries if not d.event_id),
            "header_body_differ": sum(
                1 for d in self.deliveries if d.body_id and d.event_id != d.body_id
            ),
            "bad_signature": sum(1 for d in self.deliveries if not d.signed),
            "outbox": len(outbox),
            "outbox_delivered": len(delivered),
            "outbox_pending": len(outbox) - len(delivered),
            "unknown": len(set(seen) - set(outbox)),
            "delivered_not_received": len(delivered - set(seen)),
            "received_not_marked": len((set(seen) & set(outbox)) - delivered),
            "dup_examples": dup_ids[:3],
        }


def log_problems(stk: Stack, names: Sequence[str]) -> dict[str, str]:
    """Per process: "E errors / W warnings" — lines of its log at level error (or a
    traceback) and at level warning (the worker logs logfmt, `level=…`)."""
    out: dict[str, str] = {}
    for name in names:
        proc = stk.procs.get(name)
        if proc is None:
            continue
        try:
            lines = proc.log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        errors = sum(1 for x in lines if "level=error" in x or x.startswith("Traceback"))
        warnings = sum(1 for x in lines if "level=warning" in x)
        out[name] = f"{errors} / {warnings}"
    return out


# The bench database is held by one run at a time: a PostgreSQL advisory lock (local to the
# database) on a connection this process keeps until it exits. A second run against the same
# database would empty the first one's ledger under its parked contracts (it happened: the
# seventh session's 100,000 park, bench/RESULTS.md).
BENCH_LOCK_KEY = 0x6D61686E  # "mahn"
_held: dict[str, Any] = {}


class DatabaseInUse(SystemExit):
    pass


def hold_database(url: str) -> None:
    """Take the bench database for this process, or exit naming the run that has it."""
    if url in _held or not url.startswith("postgresql"):
        return
    from sqlalchemy import text

    from core.db import make_engine

    engine = make_engine(url)
    conn = engine.connect()
    if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": BENCH_LOCK_KEY}).scalar():
        holder = conn.execute(
            text(
                "SELECT l.pid, a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                "AND l.objid = :k AND l.database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"
            ),
            {"k": BENCH_LOCK_KEY},
        ).first()
        conn.close()
        engine.dispose()
        since = f" since {holder.backend_start:%H:%M:%S}" if holder is not None else ""
        raise DatabaseInUse(
            f"error: the bench database {engine.url.database!r} is in use by another bench "
            f"run{since} (PostgreSQL backend {holder.pid if holder else '?'}); resetting it "
            "would empty that run's ledger. Wait for it, or give this run its own database "
            "with --database-url (DATABASE_URL is not read)"
        )
    conn.commit()  # the lock is the session's, not the transaction's
    _held[url] = (engine, conn)


def reset_database(url: str) -> None:
    """Empty the bench database and apply the real migrations (held for this run first)."""
    from sqlalchemy import text

    from core.db import make_engine
    from core.migrate import upgrade
    from core.models import Base

    hold_database(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    upgrade(url)


@contextlib.contextmanager
def stack(
    db_url: str = DEFAULT_DB, keep: bool = False, bytecode_cache: bool = True, codec: bool = True
) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="mahnwerk-bench-"))
    s = Stack(
        workdir,
        db_url=db_url,
        bytecode_cache=bytecode_cache,
        codec_key=BENCH_CODEC_KEY if codec else None,
    )
    try:
        yield s
    finally:
        s.close()
        if not keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            console.print(f"[dim]logs and the Temporal database kept in {workdir}[/dim]")


# -- output ------------------------------------------------------------------------------------


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="left" if c == columns[0] else "right")
    for r in rows:
        t.add_row(*r)
    return t


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def append_results(title: str, sections: Sequence[tuple[str, str]], notes: Sequence[str]) -> None:
    """Append one run to bench/RESULTS.md: the machine, the load, the tables, notes."""
    m = machine()
    out = [f"\n## {title} — {m['date']}\n"]
    out.append(
        f"Machine: {m['cpus']}, {m['memory']}; Python {m['python']}, temporalio "
        f"{m['temporalio']}, {m['temporal CLI']}; commit {m['commit']}.\n"
    )
    for heading, body in sections:
        if heading:
            out.append(f"**{heading}**\n")
        out.append(body + "\n")
    for n in notes:
        out.append(f"- {n}")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `python -m bench.*`.\n")
    with RESULTS.open("a") as f:
        f.write("\n".join(out) + "\n")
    console.print(f"[dim]appended to {RESULTS.relative_to(ROOT)}[/dim]")
