"""`build_case_file` and `deliver_case_file` against a real, migrated ledger.

The ledger is the session database of tests/conftest.py (SQLite, or PostgreSQL when
DATABASE_URL is set), built by the real migrations, so these tests also exercise
`0002_collection_cases`. Each test writes its own contract by hand: a contract row with
terms evidence, two open installments of 99,00 € due 2025-05-01 and 2025-06-01, three
declined debits and two sent notices. What a user checks: the case file's itemisation
against hand-computed numbers, one row per (contract, case), and delivery retried until
the receiver acknowledges it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.collection import CollectionActivities
from activities.events import verify
from core.db import transaction
from core.models import CollectionCase, Contract, Installment, Notice, PaymentAttempt
from core.settings import Settings, load_settings
from domain.schedule import berlin_midnight
from workflows.types import CaseFileInput, CaseFileResult

SECRET = "collection-test-secret"
AMOUNT = 9900
DUES = ("2025-05-01", "2025-06-01")  # both open; a third installment is paid
AS_OF = datetime(2025, 9, 30, 12, 0, tzinfo=UTC)  # 2025-09-30 in Berlin
RETURN_DEBIT = ("Rücklastschriftkosten", 350)


# -- the ledger ------------------------------------------------------------------------------


def make_contract(
    sessions: sessionmaker[Session],
    customer_type: str = "consumer",
    product: dict[str, Any] | None = None,
) -> str:
    """A contract in dunning with two open installments, attempts and notices."""
    cid = f"ord-{uuid.uuid4().hex[:10]}"
    customer = {
        "id": "cus-42",
        "name": "Erika Mustermann" if customer_type == "consumer" else "Muster Coaching GmbH",
        "email": "erika@example.org",
        "locale": "de",
        "type": customer_type,
        "address": {
            "line1": "Musterstr. 1",
            "postal_code": "10115",
            "city": "Berlin",
            "country": "DE",
        },
    }
    terms = {
        "version": "agb-2025-01",
        "accepted_at": "2025-03-27T10:00:00+01:00",
        "ip": "203.0.113.7",
        "text_sha256": "ab" * 32,
    }
    with transaction(sessions) as s:
        s.add(
            Contract(
                id=cid,
                kind="installments",
                policy_name="default",
                policy={"name": "default"},
                customer_id="cus-42",
                customer=customer,
                product_id="course-x",
                product=product or {"id": "course-x", "name": "Kurs X"},
                currency="eur",
                terms=terms,
                payment={"stripe_customer": "cus_test", "payment_method": "pm_card_visa"},
                request={"contract_id": cid},
                request_hash="0" * 64,
                workflow_id=f"contract-{cid}",
                status="handed_off",
                stage="handoff",
                case_no=1,
                created_at=datetime(2025, 3, 27, 9, 0, tzinfo=UTC),
            )
        )
        s.flush()
        for seq, (due, status) in enumerate(
            [("2025-04-01", "paid"), (DUES[0], "open"), (DUES[1], "open")], start=1
        ):
            s.add(
                Installment(
                    contract_id=cid,
                    seq=seq,
                    due_at=berlin_midnight(datetime.fromisoformat(due).date()),
                    amount=AMOUNT,
                    paid_amount=AMOUNT if status == "paid" else 0,
                    status=status,
                )
            )
        for seq, attempt, day, code in [
            (2, 1, "2025-05-01", "insufficient_funds"),
            (2, 2, "2025-05-04", "insufficient_funds"),
            (3, 1, "2025-06-01", "expired_card"),
        ]:
            s.add(
                PaymentAttempt(
                    contract_id=cid,
                    installment_seq=seq,
                    attempt=attempt,
                    idempotency_key=f"{cid}:{seq}:{attempt}",
                    amount=AMOUNT,
                    currency="eur",
                    payment_method="pm_card_visa",
                    payment_intent=f"pi_{cid}_{seq}_{attempt}",
                    status="declined",
                    decline_code=code,
                    failure_class="soft",
                    attempted_at=datetime.fromisoformat(f"{day}T06:00:00+00:00"),
                )
            )
        for stage, day in [("reminder", "2025-05-05"), ("mahnung_1", "2025-05-15")]:
            sent = datetime.fromisoformat(f"{day}T08:00:00+00:00")
            s.add(
                Notice(
                    contract_id=cid,
                    case_no=1,
                    stage=stage,
                    notice_number=f"MW-{cid}-1-{stage}",
                    locale="de",
                    recipient="erika@example.org",
                    subject=f"{stage} zu {cid}",
                    text="Text",
                    html="<p>Text</p>",
                    message_id=f"<MW-{cid}-1-{stage}@lernwerk.example>",
                    status="sent",
                    created_at=sent,
                    sent_at=sent,
                )
            )
    return cid


def make_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "seller_name": "Lernwerk GmbH",
        "seller_address": "Hauptstraße 5, 80331 München",
        "seller_email": "buchhaltung@lernwerk.example",
        "seller_creditor_id": "DE98ZZZ09999999999",
        "events_secret": SECRET,
    }
    values.update(overrides)
    return load_settings(**values)


def build(
    acts: CollectionActivities,
    cid: str,
    route: str = "court",
    *,
    as_of: datetime = AS_OF,
    fees: int = 250,
    waived: bool = False,
) -> CaseFileResult:
    inp = CaseFileInput(
        contract_id=cid,
        case_no=1,
        route=route,
        as_of=as_of,
        fees=fees,
        costs=[RETURN_DEBIT],
        interest_waived=waived,
    )
    result: CaseFileResult = ActivityEnvironment().run(acts.build_case_file, inp)
    return result


def stored_file(sessions: sessionmaker[Session], case_id: int) -> dict[str, Any]:
    with sessions() as s:
        row = s.get(CollectionCase, case_id)
        assert row is not None
        return row.file


def by_label(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["label"]: item for item in items}


@pytest.fixture
def acts(db_url: str, sessions: sessionmaker[Session]) -> CollectionActivities:
    return CollectionActivities(make_settings(db_url), sessions)


# -- interest, hand-computed -------------------------------------------------------------------
#
# Base rate (§ 247 BGB): 2.27 % from 2025-01-01, 1.27 % from 2025-07-01. Interest runs from
# the day after the due date up to and including 2025-09-30, per period
# amount × rate × days / 365, summed exactly and rounded half-up once per installment.
#
# Installment 2 (due 2025-05-01): 2025-05-02 … 2025-06-30 = 30 + 30 = 60 days,
#                                 2025-07-01 … 2025-09-30 = 31 + 31 + 30 = 92 days.
# Installment 3 (due 2025-06-01): 2025-06-02 … 2025-06-30 = 29 days, then the same 92 days.


def interest(days_first_half: int, rate_first: int, rate_second: int) -> Fraction:
    """9900 ct × rate(bp)/10,000 × days/365 for both periods, exactly."""
    return Fraction(AMOUNT * rate_first * days_first_half, 10_000 * 365) + Fraction(
        AMOUNT * rate_second * 92, 10_000 * 365
    )


def test_consumer_case_file_itemised(
    acts: CollectionActivities, sessions: sessionmaker[Session]
) -> None:
    cid = make_contract(sessions, "consumer")
    result = build(acts, cid, "court")

    # consumer: base + 5 pp → 7.27 % (first half of 2025), 6.27 % (from 2025-07-01)
    # inst 2: 9900×727×60/3,650,000 = 118.3118… + 9900×627×92/3,650,000 = 156.4580… = 274.77 → 275
    # inst 3: 9900×727×29/3,650,000 =  57.1840… + 156.4580…                       = 213.64 → 214
    assert interest(60, 727, 627) == Fraction(2507274, 9125)  # 274.7698…
    assert interest(29, 727, 627) == Fraction(106821, 500)  # 213.642
    file = stored_file(sessions, result.case_id)
    items = file["interest"]["items"]
    assert file["interest"]["status"] == "computed"
    assert [i["amount"] for i in items] == [275, 214]
    first = items[0]
    assert (first["from"], first["to"], first["days"]) == ("2025-05-02", "2025-09-30", 152)
    assert first["rate_text"] == "5 Prozentpunkte über dem Basiszinssatz (§ 288 Abs. 1 BGB)"
    assert [(p["from"], p["to"], p["days"], p["rate_bp"], p["rate"]) for p in first["periods"]] == [
        ("2025-05-02", "2025-06-30", 60, 727, "7,27 %"),
        ("2025-07-01", "2025-09-30", 92, 627, "6,27 %"),
    ]
    assert items[1]["periods"][0]["days"] == 29

    # consumer: no lump sum; dunning fees and the return-debit costs claimed as incurred
    assert file["fees"] == {
        "items": [
            {
                "label": "Mahnkosten",
                "amount": 250,
                "credited_to_lump_sum": 0,
                "paid": 0,
                "waived": 0,
                "claimed": 250,
            }
        ],
        "total": 250,
    }
    assert by_label(file["costs"]["items"])["Rücklastschriftkosten"]["claimed"] == 350
    assert file["costs"]["total"] == 350
    assert file["lump_sum_crediting"] is None

    # 2 × 99,00 + 4,89 interest + 2,50 fees + 3,50 costs = 208,89 €
    assert result == CaseFileResult(
        case_id=result.case_id,
        principal=19800,
        interest=489,
        fees=250,
        costs=350,
        total=20889,
        route="court",
        missing_base_rate=None,
    )
    assert file["totals"] == {
        "principal": 19800,
        "interest": 489,
        "fees": 250,
        "costs": 350,
        "total": 20889,
    }

    # the unpaid installments, the parties, the evidence
    assert [
        (i["invoice_number"], i["invoice_date"], i["due_date"], i["amount"])
        for i in file["installments"]
    ] == [
        (f"{cid}-2", "2025-05-01", "2025-05-01", 9900),
        (f"{cid}-3", "2025-06-01", "2025-06-01", 9900),
    ]
    assert file["creditor"] == {
        "seller_id": "default",  # the settings' seller (issue 14)
        "name": "Lernwerk GmbH",
        "address": "Hauptstraße 5, 80331 München",
        "email": "buchhaltung@lernwerk.example",
        "sepa_creditor_id": "DE98ZZZ09999999999",
    }
    assert file["debtor"]["name"] == "Erika Mustermann"
    assert file["debtor"]["type"] == "consumer"
    assert file["debtor"]["address"]["postal_code"] == "10115"
    assert file["contract"]["kind"] == "installments"
    assert file["contract"]["created_at"].startswith("2025-03-27T09:00:00")
    assert file["terms"] == {
        "version": "agb-2025-01",
        "accepted_at": "2025-03-27T10:00:00+01:00",
        "ip": "203.0.113.7",
        "text_sha256": "ab" * 32,
    }
    assert [(a["installment_seq"], a["attempt"], a["decline_code"]) for a in file["attempts"]] == [
        (2, 1, "insufficient_funds"),
        (2, 2, "insufficient_funds"),
        (3, 1, "expired_card"),
    ]
    assert [(n["stage"], n["notice_number"], n["sent_at"][:10]) for n in file["notices"]] == [
        ("reminder", f"MW-{cid}-1-reminder", "2025-05-05"),
        ("mahnung_1", f"MW-{cid}-1-mahnung_1", "2025-05-15"),
    ]
    assert file["route"] == "court"
    assert file["case_id"] == result.case_id
    # § 199 (1) BGB: 3 years from the end of 2025
    assert file["limitation_end"] == "2028-12-31"

    # court: the online Mahnantrag
    m = file["mahnantrag"]
    assert (m["catalogue_number"], m["catalogue_label"]) == (16, "Lehrgangs-/Unterrichtskosten")
    assert m["product_category"] == "course"  # the product has none: the settings default
    assert m["principal"] == 19800
    assert (m["interest_mode"], m["interest_pp"]) == ("pp_above_base", 5)
    assert [(c["invoice_number"], c["principal"], c["interest_from"]) for c in m["claims"]] == [
        (f"{cid}-2", 9900, "2025-05-02"),
        (f"{cid}-3", 9900, "2025-06-02"),
    ]
    assert m["claims"][0]["interest_text_en"] == (
        "5 percentage points above the base rate from 2025-05-02"
    )
    assert m["ancillary"] == [
        {"label": "Mahnkosten", "amount": 250},
        {"label": "Rücklastschriftkosten", "amount": 350},
    ]
    # KV 1100 GKG: 0.5 × 40,00 € (value ≤ 500 €) = 20,00 €, at least 38,00 €
    assert m["court_fee_estimate"] == 3800


def test_business_case_file_with_lump_sums(db_url: str, sessions: sessionmaker[Session]) -> None:
    acts = CollectionActivities(make_settings(db_url, product_category="purchase"), sessions)
    cid = make_contract(
        sessions, "business", {"id": "c-1", "name": "Coaching", "category": "coaching"}
    )
    result = build(acts, cid, "court")
    file = stored_file(sessions, result.case_id)

    # business: base + 9 pp → 11.27 %, then 10.27 %
    # inst 2: 9900×1127×60/3,650,000 = 183.4077… + 9900×1027×92/3,650,000 = 256.2717… = 439.68 → 440
    # inst 3: 9900×1127×29/3,650,000 =  88.6470… + 256.2717…                         = 344.92 → 345
    assert interest(60, 1127, 1027) == Fraction(4012074, 9125)  # 439.6794…
    assert interest(29, 1127, 1027) == Fraction(12589533, 36500)  # 344.9187…
    assert [i["amount"] for i in file["interest"]["items"]] == [440, 345]
    assert file["interest"]["rate_text"] == (
        "9 Prozentpunkte über dem Basiszinssatz (§ 288 Abs. 2 BGB)"
    )

    # § 288 (5) BGB: 40 € for each of the 2 installments in default = 80 €; the 2,50 €
    # dunning fee is a cost of legal pursuit and credited against it (sentence 3): 0 claimed.
    # The return-debit costs are damage, not pursuit costs: claimed in full.
    assert file["fees"]["items"] == [
        {
            "label": "Mahnkosten",
            "amount": 250,
            "credited_to_lump_sum": 250,
            "paid": 0,
            "waived": 0,
            "claimed": 0,
        }
    ]
    costs = by_label(file["costs"]["items"])
    lump = costs["Verzugspauschale § 288 Abs. 5 BGB"]
    assert (lump["amount"], lump["claimed"], lump["installments"]) == (8000, 8000, 2)
    assert costs["Rücklastschriftkosten"]["claimed"] == 350
    assert file["lump_sum_crediting"] == {
        "lump_sums": 8000,
        "pursuit_costs": 250,
        "credited": 250,
        "basis": "§ 288 Abs. 5 Satz 3 BGB",
    }
    # 198,00 + 7,85 + 0 + 83,50 = 289,35 €
    assert (result.principal, result.interest, result.fees, result.costs, result.total) == (
        19800,
        785,
        0,
        8350,
        28935,
    )

    m = file["mahnantrag"]
    # the product's own category wins over the settings default
    assert (m["catalogue_number"], m["catalogue_label"]) == (5, "Dienstleistungsvertrag")
    assert m["interest_pp"] == 9
    assert [c["interest_from"] for c in m["claims"]] == ["2025-05-02", "2025-06-02"]
    assert m["ancillary"] == [
        {"label": "Verzugspauschale § 288 Abs. 5 BGB", "amount": 8000},
        {"label": "Rücklastschriftkosten", "amount": 350},
    ]


def test_inkasso_and_waived_interest(
    acts: CollectionActivities, sessions: sessionmaker[Session]
) -> None:
    cid = make_contract(sessions, "consumer")
    result = build(acts, cid, "inkasso", waived=True)
    file = stored_file(sessions, result.case_id)
    assert result.route == "inkasso" and result.interest == 0
    assert file["interest"]["status"] == "waived" and file["interest"]["items"] == []
    assert file["mahnantrag"] is None
    assert result.total == 19800 + 250 + 350


def test_idempotent_one_row_per_case(
    acts: CollectionActivities, sessions: sessionmaker[Session]
) -> None:
    cid = make_contract(sessions)
    first = build(acts, cid)
    again = build(acts, cid, fees=999)  # a retry never rebuilds: the stored file answers
    assert again == first
    with sessions() as s:
        count = s.scalar(
            select(func.count())
            .select_from(CollectionCase)
            .where(CollectionCase.contract_id == cid)
        )
    assert count == 1


def test_race_on_insert_rereads_the_winner(
    acts: CollectionActivities, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two attempts both find no row, both build; the unique key lets one insert and the
    other gets an IntegrityError and returns the winner's file."""
    cid = make_contract(sessions)
    winner = build(acts, cid)
    real = acts._stored
    calls = {"n": 0}

    def stale_first(contract_id: str, case_no: int, file_no: int = 0) -> CollectionCase | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else real(contract_id, case_no, file_no)

    monkeypatch.setattr(acts, "_stored", stale_first)
    loser = build(acts, cid, fees=999)
    assert calls["n"] == 2
    assert loser == winner


def test_missing_base_rate_is_flagged_not_guessed(
    db_url: str, acts: CollectionActivities, sessions: sessionmaker[Session]
) -> None:
    cid = make_contract(sessions)
    as_of = datetime(2026, 8, 1, 10, 0, tzinfo=UTC)  # needs the (unknown) 2026-07-01 rate
    result = build(acts, cid, as_of=as_of)
    assert result.missing_base_rate == "2026-07-01"
    # Issue 11: interest is claimed up to the last day with a known rate (2026-06-30) and
    # the rest named as missing, never guessed. Up to 2026-06-30 (rates: 2.27 % in 2025-H1,
    # 1.27 % 2025-H2 and 2026-H1, + 5 pp):
    # inst 2: (9900×727×60 + 9900×627×365) / 3,650,000 = 118.3118… + 620.73 = 739.04 → 739
    # inst 3: (9900×727×29 + 9900×627×365) / 3,650,000 =  57.1840… + 620.73 = 677.91 → 678
    assert float(interest(60, 727, 627) - Fraction(9900 * 627 * 92, 3_650_000)) == pytest.approx(
        118.3118, abs=1e-4
    )
    section = stored_file(sessions, result.case_id)["interest"]
    assert section["status"] == "computed" and section["interest_until"] == "2026-06-30"
    assert section["reason"].startswith("no § 247 BGB base rate known for 2026-07-01")
    assert [(i["to"], i["amount"]) for i in section["items"]] == [
        ("2026-06-30", 739),
        ("2026-06-30", 678),
    ]
    assert result.interest == section["total"] == 739 + 678
    assert result.total == 19800 + 250 + 350 + result.interest
    file = stored_file(sessions, result.case_id)
    # the Mahnantrag claims "5 pp above the base rate" from a date: the court computes it,
    # so it needs no rate and stays in the application
    assert file["mahnantrag"]["interest_pp"] == 5

    # with the rate supplied from the Bundesbank notice (MAHNWERK_BASE_RATES) it computes
    configured = CollectionActivities(make_settings(db_url, base_rates="2026-07-01:127"), sessions)
    other = make_contract(sessions)
    computed = build(configured, other, as_of=as_of)
    assert computed.missing_base_rate is None and computed.interest > 0


def test_unknown_contract_or_route_is_not_retried(acts: CollectionActivities) -> None:
    with pytest.raises(ApplicationError) as err:
        build(acts, "no-such-contract")
    assert err.value.non_retryable and err.value.type == "InvalidCaseFile"
    with pytest.raises(ApplicationError) as err:
        build(acts, "no-such-contract", "lawyer")
    assert err.value.non_retryable


# -- delivery ----------------------------------------------------------------------------------


class Receiver:
    """A collection agency's endpoint: answers 503 `failures` times, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                status = 503 if len(receiver.requests) <= receiver.failures else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"busy" if status == 503 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cases"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_delivery_retried_until_acknowledged(
    db_url: str, receiver: Receiver, sessions: sessionmaker[Session]
) -> None:
    acts = CollectionActivities(make_settings(db_url, collection_url=receiver.url), sessions)
    case_id = build(acts, make_contract(sessions)).case_id
    env = ActivityEnvironment()

    for attempt in (1, 2):
        with pytest.raises(ApplicationError) as err:
            env.run(acts.deliver_case_file, case_id)
        assert not err.value.non_retryable  # Temporal retries it
        assert "503" in str(err.value)
        with sessions() as s:
            row = s.get(CollectionCase, case_id)
            assert row is not None
            assert row.delivered_at is None
            assert row.delivery_attempts == attempt
            assert row.last_error is not None and "503" in row.last_error

    before = datetime.now(UTC)
    assert env.run(acts.deliver_case_file, case_id) is True
    with sessions() as s:
        row = s.get(CollectionCase, case_id)
        assert row is not None
        assert row.delivered_at is not None and row.delivered_at >= before - timedelta(seconds=1)
        assert row.delivery_attempts == 3 and row.last_error is None
        file = row.file

    assert len(receiver.requests) == 3
    headers, body = receiver.requests[-1]
    assert headers["Idempotency-Key"] == f"case-{case_id}"
    assert verify(body, headers["Mahnwerk-Signature"], SECRET)
    assert json.loads(body) == file

    # acknowledged: a later call (a replayed activity) does not post again
    assert env.run(acts.deliver_case_file, case_id) is True
    assert len(receiver.requests) == 3


def test_no_collection_url_delivers_nothing(
    acts: CollectionActivities, sessions: sessionmaker[Session]
) -> None:
    case_id = build(acts, make_contract(sessions)).case_id
    assert ActivityEnvironment().run(acts.deliver_case_file, case_id) is False
    with sessions() as s:
        row = s.get(CollectionCase, case_id)
        assert row is not None
        assert (row.delivered_at, row.delivery_attempts, row.last_error) == (None, 0, None)
