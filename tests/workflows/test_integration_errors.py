"""Issue 10 item 3 through the whole stack: Stripe refusing our request (a 400) is our
integration error. The customer is left untouched — no e-mail, no fee, no lock — the
installment shows `stalled` with Stripe's error, the platform gets `integration.error`, and
once the fault is lifted the debit goes through exactly once (by backoff, or at once when
an admin asks)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from core.models import OutboxEvent
from tests.conftest import ADMIN, PLATFORM
from tests.stack import Stack, unique_email


@pytest.fixture
def fault_400(standin: Any) -> Iterator[Any]:
    standin.set_config(fault_400=1.0)
    try:
        yield standin
    finally:
        standin.set_config(fault_400=0.0)


async def _events(stack: Stack, cid: str) -> list[dict[str, Any]]:
    resp = await stack.http.get(f"/v1/contracts/{cid}/events", headers=PLATFORM)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def test_a_400_stalls_the_debit_and_leaves_the_customer_untouched(
    stack: Stack, fault_400: Any
) -> None:
    email = unique_email()
    cid, _ = await stack.start(count=2, email=email)
    # Three weeks: the reminder (D+3) and the first Mahnung with its fee and lock (D+14)
    # would all have happened for a declined debit.
    await stack.env.sleep(timedelta(days=21))
    contract = await stack.contract(cid)
    first = contract["schedule"][0]
    assert first["status"] == "stalled", first
    assert first["stalled"]["code"] == "parameter_unknown"
    assert "mahnwerk_injected" in first["stalled"]["message"]
    assert all(a["status"] == "error" for a in first["attempts"]), first["attempts"]
    assert len(first["attempts"]) >= 5  # retried with backoff meanwhile
    # untouched: no notice, no fee, no lock, no dunning
    assert stack.mails(email) == []
    assert contract["status"] == "active" and contract["access"] == "granted"
    assert contract["dunning"]["stage"] == "none"
    assert contract["claim"]["total"] == 0
    types = [e["type"] for e in await _events(stack, cid)]
    assert "integration.error" in types and types.count("installment.stalled") == 1, types
    assert not {"payment.failed", "payment_method.required", "notice.sent"} & set(types)
    assert not stack.debits(cid)
    # the platform hears of it as an event (outbox)
    outbox = [e for e in stack_outbox(stack, cid) if e == "integration.error"]
    assert outbox, "integration.error not queued for the platform"

    # The cause is fixed; an admin retries at once. Exactly one debit.
    fault_400.set_config(fault_400=0.0)
    resp = await stack.http.post(f"/v1/contracts/{cid}/retry-debit", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    await stack.env.sleep(timedelta(minutes=5))
    contract = await stack.contract(cid)
    assert contract["schedule"][0]["status"] == "paid", contract["schedule"][0]
    assert contract["schedule"][0]["stalled"] is None
    assert len(stack.debits(cid)) == 1
    assert stack.mails(email) == []
    # nothing stalled any more: a second retry is refused, naming why
    resp = await stack.http.post(f"/v1/contracts/{cid}/retry-debit", headers=ADMIN)
    assert resp.status_code == 409 and "stalled" in resp.json()["error"]["message"]


async def test_a_stalled_debit_goes_through_by_backoff_once_the_fault_is_lifted(
    stack: Stack, fault_400: Any
) -> None:
    cid, _ = await stack.start(count=1)
    await stack.env.sleep(timedelta(hours=2))
    assert (await stack.contract(cid))["schedule"][0]["status"] == "stalled"
    fault_400.set_config(fault_400=0.0)
    await stack.env.sleep(timedelta(days=1, hours=1))  # the backoff is at most a day
    contract = await stack.contract(cid)
    assert contract["schedule"][0]["status"] == "paid", contract["schedule"]
    assert contract["status"] == "completed"
    assert len(stack.debits(cid)) == 1


async def test_retry_debit_is_admin_only(stack: Stack) -> None:
    cid, _ = await stack.start(count=1)
    resp = await stack.http.post(f"/v1/contracts/{cid}/retry-debit", headers=PLATFORM)
    assert resp.status_code == 403


def stack_outbox(stack: Stack, cid: str) -> list[str]:
    """The event types queued for the platform (SPEC §5 outbox) for this contract."""
    engine = create_engine(stack.settings.database_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.scalars(select(OutboxEvent.type).where(OutboxEvent.contract_id == cid))
            )
    finally:
        engine.dispose()
