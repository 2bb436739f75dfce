"""MAHNWERK_DEBIT_SPREAD (issue 17): a due wave's debits spread over the due day's first
hour, each contract at its own fixed offset — on the time-skipping server, through the API
and the real worker, as a deployment with the setting runs it."""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from core.settings import Settings
from domain.schedule import BERLIN
from tests.stack import Stack

SPREAD = 3600


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"debit_spread": SPREAD})


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_each_contract_is_debited_at_its_own_offset_after_the_due_instant(
    stack: Stack,
) -> None:
    started = []
    t0 = datetime.now(UTC)
    for _ in range(2):
        cid, handle = await stack.start(
            contract_id=f"ord-spread-{uuid.uuid4().hex[:8]}", count=3, amount=4900
        )
        started.append((cid, handle))
    for cid, handle in started:
        view = await stack.result(handle)
        assert view.status == "completed"
        assert len(stack.debits(cid)) == 3  # one debit per installment, none twice
        schedule = (await stack.contract(cid))["schedule"]
        offset = timedelta(seconds=zlib.crc32(cid.encode()) % SPREAD)
        first, *later = schedule
        # due when the contract started (today, Berlin midnight): debited at checkout, not
        # held back for the spread
        assert _at(first["due_at"]) <= t0
        assert _at(first["attempts"][0]["attempted_at"]) - t0 < timedelta(minutes=5)
        for inst in later:
            due = _at(inst["due_at"])
            assert due.astimezone(BERLIN).hour == 0  # the due date itself does not move
            attempted = _at(inst["attempts"][0]["attempted_at"])
            # at the contract's own offset (to the second: the test server fires the timer)
            assert abs((attempted - due) - offset) < timedelta(seconds=2), (cid, inst)
            assert attempted.astimezone(BERLIN).date() == due.astimezone(BERLIN).date()
            assert inst["status"] == "paid"
