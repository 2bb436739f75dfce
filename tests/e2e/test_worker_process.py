"""The worker process as an orchestrator sees it: a health check that turns healthy once it
polls, and a clean exit on SIGTERM within the graceful-shutdown time (docker-compose.yml)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.seller import DEMO_SELLER_ENV
from core.settings import Settings
from tests.conftest import binary
from worker import build_worker

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=binary("temporal"))
    yield env
    await env.shutdown()


def _health(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "worker-health"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_worker_health_check_and_graceful_stop(
    dev_server: WorkflowEnvironment, db_url: str, tmp_path: Path
) -> None:
    health_file = tmp_path / "worker.alive"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MAHNWERK_", "TEMPORAL_"))},
        **DEMO_SELLER_ENV,  # `mahnwerk worker` refuses to start without the seller's details
        "MAHNWERK_ENV": "dev",
        "DATABASE_URL": db_url,
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "MAHNWERK_TASK_QUEUE": f"health-{uuid.uuid4().hex[:8]}",
        "MAHNWERK_WORKER_METRICS_PORT": "0",
        "MAHNWERK_WORKER_HEALTH_FILE": str(health_file),
        "MAHNWERK_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT": "5",
    }
    before = _health(env)
    assert before.returncode == 1 and "does not exist" in before.stdout

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "worker"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for _ in range(120):  # until the first heartbeat, at most 60 s
            result = _health(env)
            if result.returncode == 0 or proc.poll() is not None:
                break
            await asyncio.sleep(0.5)
        assert result.returncode == 0, (result.stdout, log.read_text())
        assert result.stdout.startswith("healthy")

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 0, text
    assert "worker stopping: running activities get 5s to finish" in text


async def test_workers_are_built_with_the_graceful_shutdown_setting(
    settings: Settings, dev_server: WorkflowEnvironment
) -> None:
    parts = build_worker(
        dev_server.client, settings.model_copy(update={"worker_graceful_shutdown_timeout": 42.0})
    )
    try:
        for worker in parts.worker.workers:  # the public queue's and the Stripe queue's
            assert worker.config()["graceful_shutdown_timeout"] == timedelta(seconds=42)
    finally:
        for ex in parts.executors:
            ex.shutdown(wait=False)
