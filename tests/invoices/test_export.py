"""The monthly export for the accountant (issue 15): a month's invoices, credit notes,
payments, settlements, refunds, dunning fees and write-offs of one seller as CSV in the
columns of a DATEV Buchungsstapel — from the CLI (`mahnwerk export`) and the admin API."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core.cli import main
from core.export import COLUMNS, export_month, month_range, parse_accounts
from core.invoicing import issue_credit_note, issue_invoice
from core.models import PaymentAttempt, TimelineEvent
from core.settings import Settings
from tests.conftest import ADMIN, PLATFORM, api_client
from tests.invoices.helpers import add_contract

# A month of its own (the tests share one database): March 2027, Berlin time
MONTH = "2027-03"
DUE = datetime(2027, 2, 28, 23, 0, tzinfo=UTC)  # 2027-03-01 00:00 Berlin
ISSUED = datetime(2027, 3, 1, 6, 0, tzinfo=UTC)


def _fact(s: Session, cid: str, type_: str, when: datetime, data: dict) -> None:  # type: ignore[type-arg]
    s.add(
        TimelineEvent(
            contract_id=cid,
            key=f"{type_}:{cid}:{when.isoformat()}",
            type=type_,
            occurred_at=when,
            data=data,
        )
    )


@pytest.fixture
def month_of_bookings(sessions: sessionmaker[Session], settings: Settings) -> dict[str, str]:
    seller = settings.model_copy(update={"seller_tax_number": "21/815/08150"})
    german = add_contract(sessions, first_due="2027-03-01")
    austrian = add_contract(
        sessions,
        first_due="2027-03-01",
        customer={
            "type": "business",
            "vat_id": "ATU12345678",
            "name": "Beispiel GmbH",
            "address": {"line1": "Ring 1", "postal_code": "1010", "city": "Wien", "country": "AT"},
        },
    )
    one = issue_invoice(
        sessions,
        contract_id=german,
        seq=1,
        amount=9900,
        due_at=DUE,
        issued_at=ISSUED,
        settings=seller,
    )
    rc = issue_invoice(
        sessions,
        contract_id=austrian,
        seq=1,
        amount=49700,
        due_at=DUE,
        issued_at=ISSUED,
        settings=seller,
    )
    note = issue_credit_note(
        sessions,
        contract_id=german,
        seq=1,
        amount=1900,
        reason="refund",
        ref="re_1",
        issued_at=datetime(2027, 3, 10, 9, tzinfo=UTC),
        settings=seller,
    )
    # April's invoice is not March's
    issue_invoice(
        sessions,
        contract_id=german,
        seq=2,
        amount=9900,
        due_at=datetime(2027, 3, 31, 22, tzinfo=UTC),
        issued_at=datetime(2027, 3, 31, 22, 30, tzinfo=UTC),
        settings=seller,
    )
    with sessions() as s, s.begin():
        s.add(
            PaymentAttempt(
                contract_id=german,
                installment_seq=1,
                attempt=1,
                idempotency_key=f"{german}:1:1",
                amount=9900,
                currency="eur",
                payment_intent="pi_export_1",
                status="succeeded",
                attempted_at=datetime(2027, 3, 1, 7, tzinfo=UTC),
                settled_at=datetime(2027, 3, 1, 7, tzinfo=UTC),
            )
        )
        _fact(
            s,
            german,
            "refund.created",
            datetime(2027, 3, 10, 9, tzinfo=UTC),
            {"installment": 1, "amount": 1900},
        )
        _fact(
            s,
            austrian,
            "fee.charged",
            datetime(2027, 3, 15, 9, tzinfo=UTC),
            {"stage": "mahnung_1", "amount": 250},
        )
        _fact(
            s,
            austrian,
            "settlement.recorded",
            datetime(2027, 3, 20, 9, tzinfo=UTC),
            {"amount": 10000, "reference": "Überweisung 20.03."},
        )
        _fact(
            s,
            austrian,
            "contract.written_off",
            datetime(2027, 3, 30, 9, tzinfo=UTC),
            {"amount": 39950, "principal": 39700},
        )
        # the night of 31 March in UTC is 1 April in Berlin: April's
        _fact(
            s,
            german,
            "fee.charged",
            datetime(2027, 3, 31, 22, 30, tzinfo=UTC),
            {"stage": "mahnung_1", "amount": 250},
        )
    return {"german": one.number, "reverse_charge": rc.number, "credit": note.number}


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter=";"))


def test_a_month_of_bookings(
    sessions: sessionmaker[Session], month_of_bookings: dict[str, str]
) -> None:
    numbers = month_of_bookings
    with sessions() as s:
        text = export_month(s, month=MONTH)
    assert text.splitlines()[0].split(";") == list(COLUMNS)
    rows = [r for r in _rows(text) if r["Vertrag"]]
    by_kind = {(r["Art"], r["Belegfeld 1"]): r for r in rows}
    invoice = by_kind[("invoice", numbers["german"])]
    assert (invoice["Umsatz (ohne Soll/Haben-Kz)"], invoice["Soll/Haben-Kennzeichen"]) == (
        "99,00",
        "S",
    )
    assert (invoice["Konto"], invoice["Gegenkonto (ohne BU-Schlüssel)"]) == ("1400", "8400")
    assert invoice["Belegdatum"] == "0103" and invoice["Leistungsdatum"] == "01032027"
    rc = by_kind[("invoice", numbers["reverse_charge"])]
    assert (
        rc["Gegenkonto (ohne BU-Schlüssel)"] == "8336" and rc["EU-Land u. UStID"] == "ATU12345678"
    )
    credit = by_kind[("credit_note", numbers["credit"])]
    assert (credit["Umsatz (ohne Soll/Haben-Kz)"], credit["Soll/Haben-Kennzeichen"]) == (
        "19,00",
        "H",
    )
    assert credit["Belegfeld 2"] == numbers["german"]  # the invoice it corrects
    payment = by_kind[("payment", numbers["german"])]
    assert (payment["Konto"], payment["Gegenkonto (ohne BU-Schlüssel)"]) == ("1360", "1400")
    refund = by_kind[("refund", numbers["german"])]
    assert (
        refund["Soll/Haben-Kennzeichen"] == "H" and refund["Umsatz (ohne Soll/Haben-Kz)"] == "19,00"
    )
    kinds = sorted(r["Art"] for r in rows)
    assert kinds.count("fee") == 1  # the fee of 1 April (Berlin) is April's
    assert kinds.count("invoice") == 2  # the invoice of 1 April too
    fee = next(r for r in rows if r["Art"] == "fee")
    assert (
        fee["Konto"],
        fee["Gegenkonto (ohne BU-Schlüssel)"],
        fee["Umsatz (ohne Soll/Haben-Kz)"],
    ) == ("1400", "2700", "2,50")
    settlement = next(r for r in rows if r["Art"] == "settlement")
    assert settlement["Konto"] == "1200" and settlement["Belegfeld 1"] == "Überweisung 20.03."
    write_off = next(r for r in rows if r["Art"] == "write_off")
    assert (write_off["Konto"], write_off["Gegenkonto (ohne BU-Schlüssel)"]) == ("2400", "1400")
    assert write_off["Umsatz (ohne Soll/Haben-Kz)"] == "399,50"
    # other accounts on request
    with sessions() as s:
        own = export_month(s, month=MONTH, accounts=parse_accounts("receivables=10000"))
    assert {r["Konto"] for r in _rows(own) if r["Art"] == "invoice"} == {"10000"}
    # another seller has none of these
    with sessions() as s:
        assert _rows(export_month(s, month=MONTH, seller_id="other")) == []


def test_cli_and_admin_route(
    sessions: sessionmaker[Session],
    settings: Settings,
    month_of_bookings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MAHNWERK_ENV", "dev")
    out = tmp_path / "buchungen.csv"
    with pytest.raises(SystemExit) as exc:
        main(["export", "--month", MONTH, "--out", str(out)])
    assert exc.value.code == 0
    text = out.read_bytes().decode("cp1252")  # DATEV reads ANSI
    assert "Umsatz (ohne Soll/Haben-Kz)" in text and month_of_bookings["german"] in text
    assert "Überweisung 20.03." in text
    with pytest.raises(SystemExit) as exc:
        main(["export", "--month", "2027-13"])
    assert exc.value.code == 2
    assert "YYYY-MM" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--month", "2027-04", "--encoding", "utf-8"])
    assert month_of_bookings["german"] not in capsys.readouterr().out  # April has another


async def test_admin_route(
    sessions: sessionmaker[Session], settings: Settings, month_of_bookings: dict[str, str]
) -> None:
    app = create_app(settings, sessions)
    async with api_client(app) as http:
        resp = await http.get(f"/v1/exports/datev?month={MONTH}", headers=ADMIN)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
        assert month_of_bookings["reverse_charge"] in resp.text
        assert (
            await http.get(f"/v1/exports/datev?month={MONTH}", headers=PLATFORM)
        ).status_code == 403
        bad = await http.get("/v1/exports/datev?month=March", headers=ADMIN)
        assert bad.status_code == 422 and "month" in bad.json()["error"]["message"]


def test_month_range_is_berlin_time() -> None:
    start, end, _ = month_range("2027-03")
    assert start == datetime(2027, 2, 28, 23, tzinfo=UTC)  # CET
    assert end == datetime(2027, 3, 31, 22, tzinfo=UTC)  # CEST from 28 March
    with pytest.raises(ValueError):
        parse_accounts("kasse=1000")
