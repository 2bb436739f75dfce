"""Browser tests: the system's Chromium (Debian's `chromium` package, which .ci/run
installs) driven by Playwright, against the API served by a real uvicorn on 127.0.0.1.

Playwright is only the driver here: it never downloads a browser of its own
(`playwright install` is not used); it launches the Chromium at CHROMIUM (default
/usr/bin/chromium). Without it, the browser tests skip and say why. Screenshots go to
ARTIFACTS (`build/test-artifacts/`, or MAHNWERK_TEST_ARTIFACTS).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core.settings import PROJECT_ROOT, Settings

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("MAHNWERK_TEST_ARTIFACTS", PROJECT_ROOT / "build" / "test-artifacts")
)


def chromium_path() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not found:
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install Debian's `chromium` package "
            "(.ci/run does: apt-get install -y chromium) or set CHROMIUM"
        )
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    return found


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
            )
        )
        self.task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> LiveServer:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises why it could not start
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


@pytest.fixture
async def live_api(
    settings: Settings, sessions: sessionmaker[Session]
) -> AsyncIterator[LiveServer]:
    """The API on a real port of 127.0.0.1 (reads that need no Temporal)."""
    app = create_app(settings, sessions)
    async with LiveServer(app) as server:
        yield server
