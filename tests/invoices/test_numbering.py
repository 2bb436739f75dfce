"""Invoice numbers are gapless and unique, also when many are issued at once (issue 15).

Run against PostgreSQL (DATABASE_URL) the counter row is locked with SELECT … FOR UPDATE;
on SQLite the writers are serialised. Either way: 200 invoices issued in parallel by
several threads take exactly the next 200 numbers, none twice, none skipped, and a number
is never taken by an invoice that already existed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.invoicing import InvoiceError, issue_credit_note, issue_invoice
from core.models import Invoice, InvoiceCounter, OutboxEvent, TimelineEvent
from core.settings import Settings
from tests.invoices.helpers import add_contract

ISSUED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # 2026-12-01 00:00 Berlin


def _sequences(sessions: sessionmaker[Session], series: str) -> list[int]:
    with sessions() as s:
        return sorted(
            s.scalars(
                select(Invoice.sequence).where(
                    Invoice.seller_key == "default", Invoice.series == series
                )
            )
        )


def _counter(sessions: sessionmaker[Session], series: str) -> int:
    with sessions() as s:
        row = s.get(InvoiceCounter, ("default", series))
        return row.last_value if row else 0


def test_200_invoices_in_parallel_are_gapless_and_unique(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    contracts = [add_contract(sessions, count=10) for _ in range(20)]
    jobs = [(cid, seq) for cid in contracts for seq in range(1, 11)]  # 200 invoices
    before = _counter(sessions, "invoice")
    start = threading.Barrier(8)

    def issue(batch: list[tuple[str, int]]) -> list[tuple[str, int, str, bool]]:
        start.wait()  # all threads begin together
        out = []
        for cid, seq in batch:
            issued = issue_invoice(
                sessions,
                contract_id=cid,
                seq=seq,
                amount=9900,
                due_at=DUE + timedelta(days=31 * (seq - 1)),
                issued_at=ISSUED,
                settings=settings,
            )
            out.append((cid, seq, issued.number, issued.created))
        return out

    # 8 threads; every job is given to two of them, so each invoice is asked for twice at
    # about the same time (a retried activity racing its first attempt)
    batches = [jobs[i::4] for i in range(4)] * 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [r for rs in pool.map(issue, batches) for r in rs]

    by_key: dict[tuple[str, int], set[str]] = {}
    for cid, seq, number, _ in results:
        by_key.setdefault((cid, seq), set()).add(number)
    assert all(len(numbers) == 1 for numbers in by_key.values())  # same key → same number
    assert sum(created for *_, created in results) == 200  # the repeats created nothing
    numbers = sorted(n for ns in by_key.values() for n in ns)
    assert len(set(numbers)) == 200
    expected = [f"RE-{v:06d}" for v in range(before + 1, before + 201)]
    assert numbers == expected  # the next 200: no gap, no duplicate
    assert _counter(sessions, "invoice") == before + 200
    # and across everything this database holds: 1 … n without a gap
    seqs = _sequences(sessions, "invoice")
    assert seqs == list(range(1, len(seqs) + 1))
    with sessions() as s:
        events = s.scalars(
            select(OutboxEvent).where(
                OutboxEvent.contract_id.in_(contracts), OutboxEvent.type == "invoice.issued"
            )
        ).all()
        assert len(events) == 200  # one event per invoice, none for a repeat
        assert {e.payload["data"]["number"] for e in events} == set(numbers)


def test_a_failed_issue_takes_no_number(
    sessions: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = add_contract(sessions)
    before = _counter(sessions, "invoice")
    import core.invoicing as invoicing

    def broken(row, *a):  # type: ignore[no-untyped-def]
        raise RuntimeError("the database went away mid-way")

    monkeypatch.setattr(invoicing, "_event_rows", broken)
    with pytest.raises(RuntimeError):
        issue_invoice(
            sessions,
            contract_id=cid,
            seq=1,
            amount=9900,
            due_at=DUE,
            issued_at=ISSUED,
            settings=settings,
        )
    assert _counter(sessions, "invoice") == before  # rolled back with the invoice
    monkeypatch.undo()
    issued = issue_invoice(
        sessions,
        contract_id=cid,
        seq=1,
        amount=9900,
        due_at=DUE,
        issued_at=ISSUED,
        settings=settings,
    )
    assert issued.number == f"RE-{before + 1:06d}"


def test_invoice_document_is_stored_with_its_hash_and_immutable(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    cid = add_contract(sessions)
    issued = issue_invoice(
        sessions,
        contract_id=cid,
        seq=2,
        amount=9900,
        due_at=DUE + timedelta(days=31),
        issued_at=ISSUED,
        settings=settings,
    )
    from core.invoicing import InvoiceTampered, verified
    from domain.invoice import document_hash

    with sessions() as s:
        row = s.scalar(select(Invoice).where(Invoice.number == issued.number))
        assert row is not None
        doc = verified(row)
        stored_hash = row.sha256
        assert stored_hash == document_hash(doc)
        assert doc["lines"][0]["description"] == "Kurs X — Rate 2 von 6"
        # the period paid for: from its due day to the day before the next installment
        assert (doc["lines"][0]["period_start"], doc["lines"][0]["period_end"]) == (
            "2027-01-01",
            "2027-01-31",
        )
        assert (row.net, row.tax, row.gross) == (8319, 1581, 9900)
        assert doc["issue_date"] == "2026-12-01"
        timeline = s.scalars(
            select(TimelineEvent).where(
                TimelineEvent.contract_id == cid, TimelineEvent.type == "invoice.issued"
            )
        ).all()
        assert [t.data["number"] for t in timeline] == [issued.number]
        row.gross = 1  # an update is refused: corrections are credit notes
        with pytest.raises(InvoiceError, match="immutable"):
            s.commit()
        s.rollback()
    # a document changed behind the application's back no longer verifies
    changed = Invoice(
        number=issued.number,
        document={**doc, "totals": {**doc["totals"], "gross": 1}},
        sha256=stored_hash,
    )
    with pytest.raises(InvoiceTampered):
        verified(changed)


def test_credit_notes_refer_to_the_invoice_and_have_their_own_series(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    cid = add_contract(sessions)
    with pytest.raises(InvoiceError, match="has no invoice"):
        issue_credit_note(
            sessions,
            contract_id=cid,
            seq=1,
            amount=100,
            reason="refund",
            ref="re_x",
            issued_at=ISSUED,
            settings=settings,
        )
    invoice = issue_invoice(
        sessions,
        contract_id=cid,
        seq=1,
        amount=9900,
        due_at=DUE,
        issued_at=ISSUED,
        settings=settings,
    )
    before = _counter(sessions, "credit_note")
    later = ISSUED + timedelta(days=9)
    first = issue_credit_note(
        sessions,
        contract_id=cid,
        seq=1,
        amount=4950,
        reason="withdrawal",
        ref="re_1",
        issued_at=later,
        settings=settings,
    )
    again = issue_credit_note(
        sessions,
        contract_id=cid,
        seq=1,
        amount=4950,
        reason="withdrawal",
        ref="re_1",
        issued_at=later,
        settings=settings,
    )
    assert again == first.__class__(**{**first.__dict__, "created": False})
    assert first.number == f"RK-{before + 1:06d}"
    with pytest.raises(InvoiceError, match="exceeds"):
        issue_credit_note(
            sessions,
            contract_id=cid,
            seq=1,
            amount=4951,
            reason="refund",
            ref="re_2",
            issued_at=later,
            settings=settings,
        )
    rest = issue_credit_note(
        sessions,
        contract_id=cid,
        seq=1,
        amount=4950,
        reason="refund",
        ref="re_2",
        issued_at=later,
        settings=settings,
    )
    assert rest.number == f"RK-{before + 2:06d}"  # the refused one took no number
    with sessions() as s:
        row = s.scalar(select(Invoice).where(Invoice.number == first.number))
        assert row is not None and row.refers_to == invoice.number
        assert row.document["refers_to"] == {"number": invoice.number, "issue_date": "2026-12-01"}
        assert row.document["type_code"] == "381"
        assert (row.net, row.tax, row.gross) == (4160, 790, 4950)
        assert row.document["lines"][0]["description"] == (
            f"Widerruf: Rechnungskorrektur zu {invoice.number}"
        )
    seqs = _sequences(sessions, "credit_note")
    assert seqs == list(range(1, len(seqs) + 1))


def test_credit_notes_in_the_invoice_series(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    shared = settings.model_copy(update={"credit_note_series": "invoice"})
    cid = add_contract(sessions)
    invoice = issue_invoice(
        sessions,
        contract_id=cid,
        seq=1,
        amount=9900,
        due_at=DUE,
        issued_at=ISSUED,
        settings=shared,
    )
    note = issue_credit_note(
        sessions,
        contract_id=cid,
        seq=1,
        amount=9900,
        reason="refund",
        ref="re_all",
        issued_at=ISSUED,
        settings=shared,
    )
    n = int(invoice.number.removeprefix("RE-"))
    assert note.number == f"RE-{n + 1:06d}"  # the next number of the one series
    seqs = _sequences(sessions, "invoice")
    assert seqs == list(range(1, len(seqs) + 1))


def test_invoices_waiting_together_are_numbered_together_and_a_bad_one_fails_alone(
    sessions: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: the invoices queued in a process are numbered in one transaction (a due
    wave queued behind one counter row); one that cannot be stored fails alone, and the
    others take the next numbers without a gap."""
    import core.invoicing as invoicing

    contracts = [add_contract(sessions) for _ in range(6)]
    bad = contracts[3]
    before = _counter(sessions, "invoice")
    real_event, real_batch = invoicing._event_rows, invoicing._number_batch
    leading = threading.Event()
    sizes: list[int] = []

    def record(row, *a):  # type: ignore[no-untyped-def]
        if row["contract_id"] == contracts[0] and not leading.is_set():
            leading.set()
            time.sleep(0.5)  # the first batch is in progress: the others queue meanwhile
        if row["contract_id"] == bad:
            raise RuntimeError("this invoice cannot be stored")
        return real_event(row, *a)

    def batch(sessions_, jobs, *a):  # type: ignore[no-untyped-def]
        sizes.append(len(jobs))
        return real_batch(sessions_, jobs, *a)

    monkeypatch.setattr(invoicing, "_event_rows", record)
    monkeypatch.setattr(invoicing, "_number_batch", batch)

    def issue(cid: str) -> str:
        return issue_invoice(
            sessions,
            contract_id=cid,
            seq=1,
            amount=9900,
            due_at=DUE,
            issued_at=ISSUED,
            settings=settings,
        ).number

    with ThreadPoolExecutor(max_workers=6) as pool:
        first = pool.submit(issue, contracts[0])
        assert leading.wait(5)
        rest = {cid: pool.submit(issue, cid) for cid in contracts[1:]}
        numbers = [first.result()]
        for cid, fut in rest.items():
            if cid == bad:
                with pytest.raises(RuntimeError, match="cannot be stored"):
                    fut.result()
            else:
                numbers.append(fut.result())
    assert max(sizes) >= 2, sizes  # queued invoices went in one transaction
    assert sorted(numbers) == [f"RE-{v:06d}" for v in range(before + 1, before + 6)]
    assert _counter(sessions, "invoice") == before + 5  # the bad one took no number
