# The SDK types response fields as Optional / expandable; the tests know which are set.
# mypy: disable-error-code="union-attr, arg-type, index, attr-defined, typeddict-item"
"""`python -m stripe_standin`: the startup line, and a clean error for a busy port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "stripe_standin", "--port", str(port)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=20,
        )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: port {port} is already in use (MAHNWERK_STRIPE_STANDIN_PORT)"
    )
    assert "Traceback" not in result.stderr


def test_serves_and_prints_startup_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stripe_standin", "--port", str(port), "--sepa-delay", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == f"stripe stand-in listening on http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_standin/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert health.json()["ok"] is True
        config = httpx.get(f"http://127.0.0.1:{port}/_standin/config").json()
        assert config["sepa_delay"] == 0.1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
