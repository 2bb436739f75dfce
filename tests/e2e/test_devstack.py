"""`mahnwerk dev`: refuses to start with one clear line, and never leaves a process behind.

The supervisor tests run it in a real subprocess and signal that process, because what we
promise is about processes: after Ctrl-C, SIGTERM or even SIGKILL of `mahnwerk dev`, nothing
it started is still running.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.devstack import (
    SEARCH_ATTRIBUTES,
    Supervisor,
    child_env,
    find_temporal_binary,
    load_or_create_dev_keys,
    plan_stack,
    temporal_argv,
    temporal_ready,
)
from core.settings import PROJECT_ROOT, load_settings

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


# -- helpers ------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for init to reap it."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return raw.rpartition(")")[2].split()[0] != "Z"


def _eventually(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- refusing to start --------------------------------------------------------------------------


def test_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli("dev", "--port", str(port))

    assert result.returncode == 2
    assert result.stderr == f"error: port {port} (API, --port) is already in use\n"
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""  # nothing was started, not even the migrations


def test_bad_setting_is_one_line_naming_the_variable() -> None:
    env = {**os.environ, "DATABASE_URL": "mysql://x"}
    result = _cli("dev", "--port", str(_free_port()), env=env)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    # The variable the user must fix, by its real name (not MAHNWERK_DATABASE_URL).
    assert re.search(r"(?<![A-Z_])DATABASE_URL\b", lines[0]), lines[0]


def test_same_port_twice_is_refused() -> None:
    port = _free_port()
    result = _cli("dev", "--port", str(port), "--temporal-port", str(port))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert f"port {port}" in result.stderr


# -- planning -----------------------------------------------------------------------------------


def test_dev_keys_are_stable_and_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "dev-api-keys"
    first = load_or_create_dev_keys(path)
    second = load_or_create_dev_keys(path)

    assert first == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    roles = [entry.split(":")[0] for entry in first.split(",")]
    assert roles == ["platform", "support", "admin"]


def test_user_settings_win_except_the_temporal_address() -> None:
    environ = {
        "MAHNWERK_SMTP_URL": "smtp://127.0.0.1:2525",
        "MAHNWERK_API_KEYS": "",  # empty counts as unset, as in the settings
        "TEMPORAL_ADDRESS": "127.0.0.1:7999",
        "STRIPE_API_BASE": "http://127.0.0.1:12999",
    }
    settings = load_settings(smtp_url=environ["MAHNWERK_SMTP_URL"])

    # A local TEMPORAL_ADDRESS picks the port of the Temporal we start; the flag beats it.
    assert plan_stack(settings, environ=environ).temporal_port == 7999
    plan = plan_stack(settings, port=8111, temporal_port=7444, environ=environ)
    env = child_env(plan, settings, "platform:p:abcdefgh12", environ)

    assert env["MAHNWERK_SMTP_URL"] == "smtp://127.0.0.1:2525"
    assert env["STRIPE_API_BASE"] == "http://127.0.0.1:12999"
    assert env["MAHNWERK_API_KEYS"] == "platform:p:abcdefgh12"
    assert env["TEMPORAL_ADDRESS"] == "127.0.0.1:7444"  # the stack's own Temporal, always
    assert env["MAHNWERK_PUBLIC_URL"] == "http://127.0.0.1:8111"
    assert plan.smtp_port == 2525


def test_remote_stripe_and_smtp_are_not_replaced_by_local_stand_ins() -> None:
    settings = load_settings(
        stripe_api_base="https://api.stripe.com", smtp_url="smtps://mail.example.com:465"
    )
    plan = plan_stack(settings, environ={})
    assert plan.standin_port is None
    assert plan.smtp_port is None
    assert [label.split(",")[0] for _, label in plan.ports()] == [
        "API",
        "Temporal frontend",
        "Temporal UI",
    ]


# -- the supervisor -----------------------------------------------------------------------------

DRIVER = textwrap.dedent(
    """
    import sys, json
    from core.devstack import Supervisor

    sup = Supervisor(grace=float(sys.argv[1]))
    sup.install_signal_handlers()
    for i, argv in enumerate(json.loads(sys.argv[2])):
        sup.start(f"c{i}", argv)
    sup.say("PIDS " + " ".join(str(c.proc.pid) for c in sup.children))
    sys.exit(sup.run())
    """
)

SLEEPER = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]


class Driver:
    """A supervisor in its own process, with its output collected line by line."""

    def __init__(self, children: list[list[str]], grace: float = 10.0) -> None:
        import json
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(grace), json.dumps(children)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def check() -> bool:
            found[:] = [m for line in list(self.lines) if (m := re.search(pattern, line))]
            return bool(found)

        assert _eventually(check, timeout), f"no {pattern!r} in {self.lines} / {self.errors}"
        return found[0]

    def child_pids(self) -> list[int]:
        return [int(p) for p in self.wait_for(r"^PIDS ([\d ]+)$").group(1).split()]

    def finish(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        for t in self._threads:
            t.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def driver() -> Iterator[Callable[..., Driver]]:
    started: list[Driver] = []
    pids: list[int] = []

    def make(children: list[list[str]], grace: float = 10.0) -> Driver:
        d = Driver(children, grace)
        started.append(d)
        return d

    yield make
    for d in started:  # never leave anything behind, even when an assertion failed
        with_pids = [ln for ln in d.lines if ln.startswith("PIDS ")]
        if with_pids:
            pids.extend(int(p) for p in with_pids[0].split()[1:])
        d.kill()
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@linux_only
def test_sigterm_stops_every_child_and_grandchild(driver: Callable[..., Driver]) -> None:
    shell_with_grandchild = ["sh", "-c", "sleep 60 & echo grandchild $!; wait"]
    d = driver([SLEEPER, shell_with_grandchild])
    pids = d.child_pids()
    grandchild = int(d.wait_for(r"\[c1\]\s+grandchild (\d+)").group(1))
    d.wait_for(r"\[c0\]\s+ready")
    assert all(_alive(p) for p in [*pids, grandchild])

    d.proc.send_signal(signal.SIGTERM)

    assert d.finish() == 0
    assert _eventually(lambda: not any(_alive(p) for p in [*pids, grandchild]))


@linux_only
def test_sigint_stops_a_child_that_ignores_sigterm(driver: Callable[..., Driver]) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('ready', flush=True); time.sleep(60)",
    ]
    d = driver([SLEEPER, stubborn], grace=1.0)
    pids = d.child_pids()
    d.wait_for(r"\[c1\]\s+ready")

    started = time.monotonic()
    d.proc.send_signal(signal.SIGINT)

    assert d.finish() == 0
    assert time.monotonic() - started < 10
    assert _eventually(lambda: not any(_alive(p) for p in pids))
    assert any("c1 did not stop within 1 s" in line for line in d.errors)


@linux_only
def test_a_child_dying_stops_the_others_with_one_line(driver: Callable[..., Driver]) -> None:
    dies = [sys.executable, "-c", "import time, sys; time.sleep(1); sys.exit(3)"]
    d = driver([SLEEPER, dies])
    pids = d.child_pids()

    assert d.finish() == 1
    assert d.errors == ["error: c1 exited unexpectedly (exit code 3); stopping everything"]
    assert _eventually(lambda: not any(_alive(p) for p in pids))


@linux_only
def test_children_die_with_a_sigkilled_supervisor(driver: Callable[..., Driver]) -> None:
    d = driver([SLEEPER, SLEEPER])
    pids = d.child_pids()
    d.wait_for(r"\[c1\]\s+ready")
    assert all(_alive(p) for p in pids)

    d.proc.kill()  # no handler of ours runs: only PR_SET_PDEATHSIG can clean up
    d.finish()

    assert _eventually(lambda: not any(_alive(p) for p in pids))


def test_supervisor_prefixes_each_line_with_the_childs_name(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("w") as fh:
        sup = Supervisor(out=fh, color=False)
        sup.start("alpha", [sys.executable, "-c", "print('one'); print('two')"])
        sup.start("beta", [sys.executable, "-c", "import sys; print('err', file=sys.stderr)"])
        assert _eventually(lambda: all(c.proc.poll() is not None for c in sup.children))
        sup.stop()
    lines = out.read_text().splitlines()
    assert sorted(lines) == sorted(["[alpha]  one", "[alpha]  two", "[beta]   err"])


# -- the real Temporal dev server ---------------------------------------------------------------


@linux_only
def test_temporal_dev_server_starts_with_our_flags_and_search_attributes(tmp_path: Path) -> None:
    """The flags are accepted by the shipped CLI, the probe sees it ready, nothing survives."""
    import asyncio

    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.client import Client

    plan = plan_stack(load_settings(), port=_free_port(), temporal_port=_free_port(),
                      ui_port=_free_port(), environ={})  # fmt: skip
    sup = Supervisor(color=False)
    try:
        proc = sup.start(
            "temporal",
            temporal_argv(find_temporal_binary(), plan, tmp_path / "temporal.db"),
            quiet_on_stop=True,
        )
        assert _eventually(
            lambda: temporal_ready(plan.temporal_address, plan.namespace), timeout=45
        ), "Temporal did not become ready"

        async def search_attributes() -> dict[str, int]:
            client = await Client.connect(plan.temporal_address)
            resp = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=plan.namespace)
            )
            return dict(resp.custom_attributes)

        registered = asyncio.run(search_attributes())
        assert set(SEARCH_ATTRIBUTES) <= set(registered)
    finally:
        sup.stop()
    assert proc.poll() is not None
    assert _eventually(lambda: not _alive(proc.pid))
