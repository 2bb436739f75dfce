"""The ledger write (`LedgerActivities.sync_ledger`, SQLAlchemy Core since issue 17) against a
real database: every recorded history's writes replayed, and what a retried write leaves
alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from activities.ledger import LedgerActivities, event_id_for
from bench import ledger_write
from core.db import make_engine, make_session_factory
from core.migrate import upgrade
from core.models import AccessState, Contract, Installment, OutboxEvent, TimelineEvent
from tests.conftest import insert_ledger_contract
from workflows.types import Fact, InstallmentState, LedgerSync


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def test_every_recorded_history_replays_and_a_retry_records_nothing(tmp_path: Path) -> None:
    """bench.ledger_write over all histories once: each history's writes record its facts,
    the same write retried records none."""
    histories = ledger_write.load_histories(ledger_write.HISTORIES)
    assert len(histories) >= 10
    timings = ledger_write.run(f"sqlite:///{tmp_path / 'bench.db'}", len(histories), None)
    writes = sum(len(h.inputs) for h in histories)
    assert len(timings["first"].wall) == len(timings["retry"].wall) == writes
    assert timings["first"].facts >= writes  # every write records at least one fact
    assert timings["retry"].facts == 0
    assert timings["first paid"].facts > 0


def _state(contract_id: str, **changes: Any) -> LedgerSync:
    """A ledger write of a contract in good standing, with `changes`."""
    base = LedgerSync(
        contract_id=contract_id,
        status="active",
        stage="none",
        access="granted",
        overdue_amount=0,
        fees=0,
        case_no=0,
        case_opened_at=None,
    )
    return replace(base, **changes)


def _installment(seq: int, due: datetime, status: str, paid: int = 0) -> InstallmentState:
    return InstallmentState(seq=seq, due_at=due, amount=9900, status=status, paid=paid)


def test_a_write_changes_only_what_differs(sessions: sessionmaker[Session]) -> None:
    insert_ledger_contract(sessions, "c-1", status="active")
    ledger = LedgerActivities(sessions)
    due = datetime(2026, 12, 1, tzinfo=UTC)
    at = due + timedelta(hours=1)
    inp = _state(
        "c-1",
        installments=[
            _installment(1, due, "paid", 9900),
            _installment(2, due + timedelta(days=31), "scheduled"),
        ],
        facts=[
            Fact(
                key="paid:c-1:1:1",
                type="payment.succeeded",
                occurred_at=at,
                data={"n": 1},
                event="payment.succeeded",
            ),
            Fact(key="note:c-1", type="note", occurred_at=at, data={}),
        ],
    )
    assert ledger.sync_ledger(inp) == 2
    with sessions() as s:
        rows = {r.seq: r for r in s.scalars(select(Installment))}
        first_paid_at, second_stamp = rows[1].paid_at, rows[2].updated_at
        assert rows[1].status == "paid" and first_paid_at is not None
        assert rows[2].status == "scheduled" and rows[2].paid_at is None
        access = s.get(AccessState, ("cus-c-1", "course-x"))
        assert access is not None and access.access == "granted"
        event = s.scalar(select(OutboxEvent))
        assert event is not None and event.event_id == event_id_for("paid:c-1:1:1")
        assert event.payload["customer_id"] == "cus-c-1"
        assert event.payload["seller_id"] == "default"
        assert event.attempts == 0 and event.delivered_at is None

    # The second installment is paid later; the first stays as it was (its paid_at too).
    later = replace(
        inp,
        installments=[
            _installment(1, due, "paid", 9900),
            _installment(2, due + timedelta(days=31), "paid", 9900),
        ],
        facts=[
            *inp.facts,
            Fact(
                key="paid:c-1:2:1",
                type="payment.succeeded",
                occurred_at=at,
                data={"n": 2},
                event="payment.succeeded",
            ),
        ],
        access="locked",
        status="completed",
    )
    assert ledger.sync_ledger(later) == 1
    assert ledger.sync_ledger(later) == 0  # retried
    with sessions() as s:
        rows = {r.seq: r for r in s.scalars(select(Installment))}
        assert rows[1].paid_at == first_paid_at
        assert rows[2].status == "paid" and rows[2].paid_at is not None
        assert rows[2].updated_at > second_stamp
        assert s.scalar(select(func.count()).select_from(TimelineEvent)) == 3
        ids = list(s.scalars(select(OutboxEvent.event_id).order_by(OutboxEvent.id)))
        assert ids == [event_id_for("paid:c-1:1:1"), event_id_for("paid:c-1:2:1")]
        access = s.get(AccessState, ("cus-c-1", "course-x"))
        assert access is not None and access.access == "locked"
        contract = s.get(Contract, "c-1")
        assert contract is not None and contract.status == "completed"
        unchanged = rows[1].updated_at
    ledger.sync_ledger(later)
    with sessions() as s:  # an installment that did not change is not written
        row = s.scalars(select(Installment).where(Installment.seq == 1)).one()
        assert row.updated_at == unchanged


def test_a_write_for_a_contract_not_in_the_ledger_fails_whole(
    sessions: sessionmaker[Session],
) -> None:
    ledger = LedgerActivities(sessions)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    inp = _state("missing", facts=[Fact(key="k", type="note", occurred_at=at, data={})])
    with pytest.raises(RuntimeError, match="contract missing is not in the ledger"):
        ledger.sync_ledger(inp)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(TimelineEvent)) == 0
