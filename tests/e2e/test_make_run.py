"""Smoke test of the embedded stack: `mahnwerk dev` comes up whole and Ctrl-C leaves nothing.

Slow (it starts the real Temporal dev server, stand-in, SMTP catcher, worker and API), so it
runs only with MAHNWERK_SMOKE=1. It uses free ports and its own var dir and database, so it
does not disturb a dev stack that is already running on the default ports.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from core.settings import PROJECT_ROOT

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("MAHNWERK_SMOKE") != "1", reason="smoke test: set MAHNWERK_SMOKE=1"
    ),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, state) of every process we can see."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _descendants(root: int) -> set[int]:
    table = _processes()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (ppid, _, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _eventually(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.5)
    return cond()


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_mahnwerk_dev_comes_up_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    api, temporal, ui, standin, smtp = (_free_port() for _ in range(5))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'mahnwerk.db'}",
        "MAHNWERK_VAR_DIR": str(tmp_path / "var"),
        "MAHNWERK_STRIPE_STANDIN_PORT": str(standin),
        "MAHNWERK_SMTP_URL": f"smtp://127.0.0.1:{smtp}",
    }
    for name in ("MAHNWERK_API_KEYS", "STRIPE_API_BASE", "TEMPORAL_ADDRESS", "MAHNWERK_PUBLIC_URL"):
        env.pop(name, None)
    script = Path(sys.executable).parent / "mahnwerk"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "core.cli"]
    argv = [*command, "dev", "--port", str(api), "--temporal-port", str(temporal)]
    argv += ["--ui-port", str(ui), "--no-demo-data"]

    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    seen: set[int] = set()
    try:
        up = _eventually(
            lambda: proc.poll() is None and _http_ok(f"http://127.0.0.1:{api}/healthz"), 120
        )
        assert up, f"stack did not come up (exit {proc.poll()}):\n{log_path.read_text()}"
        assert _eventually(lambda: _tcp_open(ui), 30), "Temporal UI port is not open"
        assert _eventually(lambda: "Ctrl-C stops everything" in log_path.read_text(), 10)

        keys = tmp_path / "var" / "dev-api-keys"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o600

        from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
        from temporalio.client import Client

        async def search_attributes() -> set[str]:
            client = await Client.connect(f"127.0.0.1:{temporal}")
            resp = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace="default")
            )
            return set(resp.custom_attributes)

        assert {"MahnwerkStatus", "DunningStage", "CustomerId", "OverdueAmount",
                "AccessLocked"} <= asyncio.run(search_attributes())  # fmt: skip

        seen = _descendants(proc.pid)
        commands = " | ".join(_cmdline(pid) for pid in seen)
        for part in ("server start-dev", "stripe_standin", "core.smtp_catcher", "worker", "api"):
            assert part in commands, f"no {part!r} among the children: {commands}"
        table = _processes()
        groups = {table[pid][1] for pid in seen if pid in table}

        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        assert proc.wait(90) == 0, log_path.read_text()

        def nothing_left() -> bool:
            table = _processes()
            return not [
                pid
                for pid, (_, pgid, state) in table.items()
                if state != "Z" and (pid in seen or pgid in groups)
            ]

        assert _eventually(nothing_left, 10), "processes of the stack survived Ctrl-C"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in seen:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
