"""One chaos stack per test: a dev server, API, worker, stand-in, SMTP catcher and ledger
of its own (tests/chaos/harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.chaos.harness import ChaosStack, chaos_stack
from tests.conftest import fresh_database


@pytest.fixture
async def chaos(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChaosStack]:
    with fresh_database(tmp_path_factory) as url:
        async with chaos_stack(url, tmp_path_factory.mktemp("chaos")) as stack:
            yield stack
