"""`send_notice` against a real SMTP server (the catcher) and a real database.

SQLite always; PostgreSQL too when DATABASE_URL is set (in a throw-away schema).
What a user checks: the e-mail in the catcher (once, with the right content and
Message-ID) and the notice and timeline rows in the ledger.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import smtplib
import socket
import threading
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.mailer import send_email
from activities.notices import NoticeActivities, notice_number_for
from core.db import make_engine, make_session_factory, transaction
from core.models import Base, Contract, Notice, TimelineEvent
from core.settings import Settings
from core.smtp_catcher import Catcher, body_text, run_smtp_catcher
from workflows.types import ClaimLine, Customer, NoticeInput, NoticeResult, Product

CONTRACT = "ord-2026-0001"
CUSTOMER_EMAIL = "erika@example.org"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("DATABASE_URL") else [])


# -- fixtures ------------------------------------------------------------------------------


def _insert_contract(factory: sessionmaker[Session], contract_id: str = CONTRACT) -> None:
    customer = {
        "id": "cus-42",
        "name": "Erika Mustermann",
        "email": CUSTOMER_EMAIL,
        "locale": "de",
        "type": "consumer",
        "address": {"line1": "Musterstr. 1", "postal_code": "10115", "city": "Berlin"},
    }
    with transaction(factory) as s:
        s.add(
            Contract(
                id=contract_id,
                kind="installments",
                policy_name="default",
                policy={"name": "default"},
                customer_id="cus-42",
                customer=customer,
                product_id="course-x",
                product={"id": "course-x", "name": "Kurs X"},
                currency="eur",
                terms={
                    "version": "agb-2026-10",
                    "accepted_at": "2026-11-27T10:00:00+01:00",
                    "ip": "203.0.113.7",
                    "text_sha256": "0" * 64,
                },
                payment={"stripe_customer": "cus_test", "payment_method": "pm_card_visa"},
                request={"contract_id": contract_id},
                request_hash="0" * 64,
                workflow_id=f"contract-{contract_id}",
                status="in_dunning",
            )
        )


@pytest.fixture(params=BACKENDS)
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine: Engine
    schema: str | None = None
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
        Base.metadata.create_all(engine)
    else:
        url = Settings(database_url=os.environ["DATABASE_URL"]).database_url
        base = make_engine(url, pool_size=4)
        schema = f"test_notices_{uuid.uuid4().hex[:12]}"
        with base.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = base.execution_options(schema_translate_map={None: schema})
        with engine.begin() as conn:
            Base.metadata.create_all(conn)
    factory = make_session_factory(engine)
    _insert_contract(factory)
    try:
        yield factory
    finally:
        if schema is not None:
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[Catcher]:
    with run_smtp_catcher(maildir=tmp_path / "mail", reject=["gone@example.org"]) as c:
        yield c


def make_settings(smtp_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_url": smtp_url,
        "mail_from": "Lernwerk Billing <billing@lernwerk.example>",
        "seller_name": "Lernwerk GmbH",
        "seller_address": "Hauptstraße 5, 80331 München",
        "seller_email": "buchhaltung@lernwerk.example",
        "payment_link_url": "https://pay.lernwerk.example/{contract_id}",
        "template_dir": None,
    }
    values.update(overrides)
    return Settings(**values)


def make_input(
    stage: str = "mahnung_1", *, case_no: int = 1, email: str = CUSTOMER_EMAIL
) -> NoticeInput:
    lines = [ClaimLine("installment 3 of 6", 3, datetime(2026, 11, 30, 23, tzinfo=UTC), 123456)]
    fees = 0 if stage == "reminder" else 250
    return NoticeInput(
        contract_id=CONTRACT,
        case_no=case_no,
        stage=stage,
        template=stage,
        customer=Customer(id="cus-42", name="Erika Mustermann", email=email, locale="de"),
        product=Product(id="course-x", name="Kurs X"),
        currency="eur",
        lines=lines,
        fees=fees,
        total=123456 + fees,
        deadline=datetime(2026, 12, 20, 12, tzinfo=UTC),
        created_at=datetime(2026, 12, 15, 9, tzinfo=UTC),
    )


def run(acts: NoticeActivities, inp: NoticeInput, *, attempt: int = 1) -> NoticeResult:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return env.run(acts.send_notice, inp)


def stored_notices(factory: sessionmaker[Session]) -> list[Notice]:
    with factory() as s:
        return list(s.scalars(select(Notice).order_by(Notice.id)))


def timeline(factory: sessionmaker[Session]) -> list[TimelineEvent]:
    with factory() as s:
        return list(s.scalars(select(TimelineEvent).order_by(TimelineEvent.id)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the happy path ------------------------------------------------------------------------


def test_notice_arrives_once_with_the_stored_content(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    result = run(acts, make_input())

    assert result.already_sent is False
    assert result.notice_number == notice_number_for(CONTRACT, 1, "mahnung_1")
    mails = catcher.store.find(to=CUSTOMER_EMAIL)
    assert len(mails) == 1
    mail = mails[0]
    assert mail["Subject"] == "1. Mahnung zu Ihrem Vertrag ord-2026-0001 – Kurs X"
    assert mail["Message-ID"] == result.message_id
    assert result.message_id.endswith("@lernwerk.example>")
    assert mail["X-Mahnwerk-Notice"] == result.notice_number
    assert mail["X-Mahnwerk-Contract"] == CONTRACT
    assert mail["From"] == "Lernwerk Billing <billing@lernwerk.example>"
    assert mail["To"] == f"Erika Mustermann <{CUSTOMER_EMAIL}>"
    assert mail["Date"]
    assert mail.get_content_type() == "multipart/alternative"
    body = body_text(mail)
    assert "Rate 3 von 6 — fällig am 01.12.2026 — 1.234,56\u00a0€" in body
    assert "Mahngebühren — 2,50\u00a0€" in body
    assert "Gesamtbetrag — 1.237,06\u00a0€" in body
    assert "bis spätestens 20. Dezember 2026" in body  # the deadline, in running text
    assert "https://pay.lernwerk.example/ord-2026-0001" in body
    assert result.notice_number in body
    assert "Lernwerk GmbH" in body_text(mail, "html")

    [notice] = stored_notices(sessions)
    assert notice.status == "sent"
    assert notice.sent_at is not None and notice.sent_at == result.sent_at
    assert notice.recipient == CUSTOMER_EMAIL
    assert notice.message_id == result.message_id
    # Evidence: what is stored is exactly what went out.
    assert notice.subject == mail["Subject"]
    assert notice.text == body
    assert notice.html == body_text(mail, "html")
    assert notice.data["total"] == 123706

    [event] = timeline(sessions)
    assert event.key == f"notice:{CONTRACT}:1:mahnung_1"
    assert event.type == "notice.sent"
    assert event.contract_id == CONTRACT
    assert event.data == {
        "stage": "mahnung_1",
        "notice_number": result.notice_number,
        "recipient": CUSTOMER_EMAIL,
        "subject": notice.subject,
        "message_id": result.message_id,
    }


def test_calling_twice_sends_once(catcher: Catcher, sessions: sessionmaker[Session]) -> None:
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    first = run(acts, make_input())
    second = run(acts, make_input())

    assert first.already_sent is False
    assert second.already_sent is True
    assert (second.notice_number, second.message_id) == (first.notice_number, first.message_id)
    assert second.sent_at == first.sent_at
    assert len(catcher.store.messages()) == 1
    assert len(stored_notices(sessions)) == 1
    assert len(timeline(sessions)) == 1


def test_each_stage_and_each_case_is_its_own_notice(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    numbers = {
        run(acts, make_input("reminder")).notice_number,
        run(acts, make_input("mahnung_1")).notice_number,
        run(acts, make_input("mahnung_1", case_no=2)).notice_number,
    }
    assert len(numbers) == 3
    subjects = [m["Subject"] for m in catcher.store.messages()]
    assert [s.split(" zu ")[0] for s in subjects] == [
        "Zahlungserinnerung",
        "1. Mahnung",
        "1. Mahnung",
    ]
    assert len({m["Message-ID"] for m in catcher.store.messages()}) == 3


# -- crashes and retries -------------------------------------------------------------------


def test_crash_between_render_and_send_then_retry_sends_exactly_once(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    calls = 0

    def dies_first(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError("worker lost its connection before sending")
        send_email(*args, **kwargs)

    acts = NoticeActivities(make_settings(catcher.url), sessions, mailer=dies_first)
    with pytest.raises(ConnectionResetError):
        run(acts, make_input())
    [notice] = stored_notices(sessions)
    assert notice.status == "rendered"
    assert catcher.store.messages() == []
    assert timeline(sessions) == []

    result = run(acts, make_input(), attempt=2)

    assert result.already_sent is False
    [mail] = catcher.store.messages()
    assert mail["Message-ID"] == notice.message_id == result.message_id
    assert body_text(mail) == notice.text
    [notice] = stored_notices(sessions)
    assert notice.status == "sent"
    [event] = timeline(sessions)
    assert event.data["possible_duplicate"] is True  # attempt 2 could not rule it out


def test_retry_resends_what_was_stored_even_if_templates_changed(
    catcher: Catcher, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    def smtp_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("smtp down")

    run_with = NoticeActivities(make_settings(catcher.url), sessions, mailer=smtp_down)
    with pytest.raises(ConnectionRefusedError):
        run(run_with, make_input())
    [stored] = stored_notices(sessions)

    # Meanwhile someone deploys new templates and renames the seller.
    (tmp_path / "tpl" / "de").mkdir(parents=True)
    for part in ("subject.txt", "txt", "html"):
        (tmp_path / "tpl" / "de" / f"mahnung_1.{part}").write_text("NEU", encoding="utf-8")
    changed = make_settings(catcher.url, seller_name="Anders AG", template_dir=tmp_path / "tpl")
    run(NoticeActivities(changed, sessions), make_input(), attempt=2)

    [mail] = catcher.store.messages()
    assert mail["Subject"] == stored.subject
    assert body_text(mail) == stored.text
    assert body_text(mail, "html") == stored.html
    assert "NEU" not in body_text(mail)


def test_crash_after_smtp_accepted_resends_with_the_same_message_id(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    """The documented gap: SMTP has no idempotency, so a worker that dies after the server
    accepted the mail but before the ledger says `sent` causes a second copy — identical,
    with the same Message-ID, so receivers de-duplicate it."""
    calls = 0

    def sends_then_dies(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        send_email(*args, **kwargs)
        if calls == 1:
            raise SystemExit("worker killed right after the server said 250")

    acts = NoticeActivities(make_settings(catcher.url), sessions, mailer=sends_then_dies)
    with pytest.raises(SystemExit):
        run(acts, make_input())
    assert stored_notices(sessions)[0].status == "rendered"  # the mark was rolled back

    run(acts, make_input(), attempt=2)
    run(acts, make_input(), attempt=3)  # and any later retry is a no-op

    mails = catcher.store.messages()
    assert len(mails) == 2
    assert mails[0]["Message-ID"] == mails[1]["Message-ID"]
    assert body_text(mails[0]) == body_text(mails[1])
    assert len({m["Message-ID"] for m in mails}) == 1  # what a receiver keeps
    assert stored_notices(sessions)[0].status == "sent"
    assert len(timeline(sessions)) == 1


def test_concurrent_attempts_send_once(catcher: Catcher, sessions: sessionmaker[Session]) -> None:
    """A retry started while a slow first attempt is still sending (start-to-close timeout)
    waits for it and then finds the notice sent."""
    started = threading.Barrier(2)

    def slow_send(*args: Any, **kwargs: Any) -> None:
        threading.Event().wait(0.3)
        send_email(*args, **kwargs)

    acts = NoticeActivities(make_settings(catcher.url), sessions, mailer=slow_send)
    results: list[NoticeResult] = []
    errors: list[BaseException] = []

    def attempt(n: int) -> None:
        started.wait()
        try:
            results.append(run(acts, make_input(), attempt=n))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    assert sorted(r.already_sent for r in results) == [False, True]
    assert len({r.message_id for r in results}) == 1
    assert len(catcher.store.messages()) == 1
    assert len(stored_notices(sessions)) == 1


# -- failures ------------------------------------------------------------------------------


def test_smtp_unreachable_raises_a_retryable_error(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    port = free_port()
    acts = NoticeActivities(make_settings(f"smtp://127.0.0.1:{port}"), sessions)
    with pytest.raises(OSError) as excinfo:
        run(acts, make_input())
    assert not isinstance(excinfo.value, ApplicationError)
    assert stored_notices(sessions)[0].status == "rendered"

    # The server comes back: the retry delivers the stored notice.
    with run_smtp_catcher(port=port, maildir=tmp_path / "later") as catcher:
        result = run(acts, make_input(), attempt=2)
        [mail] = catcher.store.messages()
    assert mail["Message-ID"] == result.message_id


def test_permanently_rejected_recipient_is_not_retried(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    with pytest.raises(ApplicationError) as excinfo:
        run(acts, make_input(email="gone@example.org"))
    assert excinfo.value.type == "NoticeUndeliverable"
    assert excinfo.value.non_retryable is True
    assert "550" in str(excinfo.value)
    assert catcher.store.messages() == []
    assert stored_notices(sessions)[0].status == "rendered"
    assert timeline(sessions) == []


def test_temporary_rejection_is_retryable(sessions: sessionmaker[Session]) -> None:
    def greylisted(*args: Any, **kwargs: Any) -> None:
        raise smtplib.SMTPRecipientsRefused({CUSTOMER_EMAIL: (451, b"4.7.1 greylisted")})

    acts = NoticeActivities(make_settings("smtp://127.0.0.1:1"), sessions, mailer=greylisted)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        run(acts, make_input())


def test_missing_email_address_is_undeliverable(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    with pytest.raises(ApplicationError) as excinfo:
        run(acts, make_input(email=""))
    assert excinfo.value.type == "NoticeUndeliverable" and excinfo.value.non_retryable
    assert stored_notices(sessions) == []


def test_unknown_template_is_not_retried(catcher: Catcher, sessions: sessionmaker[Session]) -> None:
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    inp = dataclasses.replace(make_input(), template="mahnung_9")
    with pytest.raises(ApplicationError) as excinfo:
        run(acts, inp)
    assert excinfo.value.type == "TemplateNotFound" and excinfo.value.non_retryable
    assert stored_notices(sessions) == [] and catcher.store.messages() == []


def test_unknown_interest_mode_is_not_retried(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    inp = dataclasses.replace(make_input(), interest_mode="sometimes")
    with pytest.raises(ApplicationError) as excinfo:
        run(acts, inp)
    assert excinfo.value.type == "InvalidInput" and excinfo.value.non_retryable
    assert stored_notices(sessions) == [] and catcher.store.messages() == []


# -- statutory default interest in the notice as sent ---------------------------------------


def interest_input(stage: str, customer_type: str, **changes: Any) -> NoticeInput:
    """One installment of 100,00 € due 15.06.2025 (Berlin), notice dated 20.07.2025."""
    inp = make_input(stage)
    fees = inp.fees
    return dataclasses.replace(
        inp,
        customer=dataclasses.replace(inp.customer, type=customer_type),
        lines=[ClaimLine("installment 1 of 3", 1, datetime(2025, 6, 14, 22, tzinfo=UTC), 10000)],
        total=10000 + fees,
        deadline=datetime(2025, 7, 30, 10, tzinfo=UTC),
        created_at=datetime(2025, 7, 20, 8, tzinfo=UTC),
        **changes,
    )


@pytest.mark.parametrize(
    ("customer_type", "interest", "rates"),
    [
        # 10000 ct × (7,27 % × 15 + 6,27 % × 20) / 365 = 234450/365 = 64,23 ct → 64 ct
        ("consumer", "0,64\u00a0€", ("7,27 %", "6,27 %")),
        # 10000 ct × (11,27 % × 15 + 10,27 % × 20) / 365 = 374450/365 = 102,59 ct → 103 ct
        ("business", "1,03\u00a0€", ("11,27 %", "10,27 %")),
    ],
)
def test_mahnung_with_interest_is_sent_and_stored_as_evidence(
    catcher: Catcher,
    sessions: sessionmaker[Session],
    customer_type: str,
    interest: str,
    rates: tuple[str, str],
) -> None:
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    run(acts, interest_input("mahnung_1", customer_type))

    [mail] = catcher.store.find(to=CUSTOMER_EMAIL)
    body = body_text(mail)
    assert f"Verzugszinsen auf Rate 1 von 3 vom 16.06.2025 bis 20.07.2025 — {interest}" in body
    assert f"16.06.2025 bis 30.06.2025, 15 Tage: {rates[0]}" in body
    assert f"01.07.2025 bis 20.07.2025, 20 Tage: {rates[1]}" in body
    minor = 64 if customer_type == "consumer" else 103
    total = f"{(10250 + minor) // 100},{(10250 + minor) % 100:02d}\u00a0€"
    assert f"Gesamtbetrag — {total}" in body
    assert interest in body_text(mail, "html")

    [notice] = stored_notices(sessions)
    assert notice.text == body
    assert notice.data["interest_shown"] is True
    assert notice.data["interest"] == minor
    assert notice.data["total"] == 10250 + minor
    detail = notice.data["interest_detail"]
    assert detail["status"] == "computed" and detail["customer_type"] == customer_type
    assert detail["as_of"] == "2025-07-20"
    [item] = detail["items"]
    assert (item["from"], item["to"], item["days"], item["amount"]) == (
        "2025-06-16",
        "2025-07-20",
        35,
        minor,
    )
    assert [p["base_rate_bp"] for p in item["periods"]] == [227, 127]


def test_reminder_and_waived_interest_are_stored_without_interest(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    run(acts, interest_input("reminder", "consumer"))
    run(acts, interest_input("mahnung_1", "consumer", interest_mode="waived"))

    reminder, mahnung = stored_notices(sessions)
    assert "Verzugszinsen" not in reminder.text
    assert reminder.data["interest_shown"] is False and reminder.data["total"] == 10000
    assert reminder.data["interest_detail"]["total"] == 64  # computed, not claimed
    assert "Verzugszinsen" not in mahnung.text
    assert "Gesamtbetrag — 102,50\u00a0€" in mahnung.text
    assert mahnung.data["interest_detail"]["status"] == "waived"
    assert mahnung.data["total"] == 10250


def test_broken_override_is_retryable_and_a_fix_lets_the_notice_go_out(
    catcher: Catcher, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    tpl = tmp_path / "tpl" / "de"
    tpl.mkdir(parents=True)
    (tpl / "mahnung_1.subject.txt").write_text("Mahnung {{ no_such_variable }}", encoding="utf-8")
    acts = NoticeActivities(make_settings(catcher.url, template_dir=tmp_path / "tpl"), sessions)
    with pytest.raises(ApplicationError) as excinfo:
        run(acts, make_input())
    assert excinfo.value.type == "TemplateInvalid" and not excinfo.value.non_retryable
    assert "no_such_variable" in str(excinfo.value)

    (tpl / "mahnung_1.subject.txt").write_text("Mahnung {{ notice_number }}", encoding="utf-8")
    result = run(acts, make_input(), attempt=2)
    assert [m["Subject"] for m in catcher.store.messages()] == [f"Mahnung {result.notice_number}"]


def test_old_rendered_row_is_flagged_as_a_possible_duplicate(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    def smtp_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("smtp down")

    with pytest.raises(ConnectionRefusedError):
        run(NoticeActivities(make_settings(catcher.url), sessions, mailer=smtp_down), make_input())
    with transaction(sessions) as s:
        notice = s.scalars(select(Notice)).one()
        notice.created_at = datetime.now(UTC) - timedelta(minutes=10)

    # Attempt 1 of a *new* activity (e.g. the workflow re-ran the step) on an old row.
    run(NoticeActivities(make_settings(catcher.url), sessions), make_input(), attempt=1)
    [event] = timeline(sessions)
    assert event.data["possible_duplicate"] is True
    assert len(catcher.store.messages()) == 1


# -- identifiers ---------------------------------------------------------------------------


def test_notice_numbers_fit_the_column_and_stay_unique() -> None:
    long_id = "x" * 64
    a = notice_number_for(long_id, 1, "mahnung_1")
    b = notice_number_for(long_id, 1, "mahnung_2")
    c = notice_number_for(long_id[:-1] + "y", 1, "mahnung_1")
    assert max(len(a), len(b), len(c)) <= 64
    assert len({a, b, c}) == 3
    assert notice_number_for(CONTRACT, 2, "reminder") == "MW-ord-2026-0001-2-reminder"


def test_subject_with_an_amount_keeps_its_spaces_through_encoding() -> None:
    # Python's header folder used to fold at the space in "99,00 €" between two RFC 2047
    # encoded words, and decoders drop such whitespace: the customer read "99,00€".
    from email import message_from_bytes
    from email import policy as email_policy

    from activities.mailer import build_message

    subject = "Ankündigung Ihrer SEPA-Lastschrift über 99,00 € am 27.11.2026 – Kurs X"
    msg = build_message(
        mail_from="a@example.org",
        to="b@example.org",
        subject=subject,
        text="t",
        html="<p>h</p>",
        message_id="<x@example.org>",
    )
    raw = msg.as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert str(message_from_bytes(raw, policy=email_policy.default)["Subject"]) == subject


# -- personal data stays out of logs and exception messages (issue 13 item 7) ------------------

CUSTOMER_NAME = "Erika Mustermann"


# The test's SMTP server (aiosmtpd, the catcher) stands in for the outside world: what it
# logs about the mail it receives is not Mahnwerk's log.
_MAIL_SERVER_LOGGERS = ("mail.log", "mahnwerk.smtp_catcher")


def _our_logs(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        if record.name.startswith(_MAIL_SERVER_LOGGERS):
            continue
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(lines)


def _no_personal_data(text: str) -> None:
    assert CUSTOMER_EMAIL not in text
    assert "erika@" not in text.lower()
    assert CUSTOMER_NAME not in text


@workflow.defn(name="notice_privacy_probe", sandboxed=False)
class _NoticeProbe:
    """Runs `send_notice` as the contract workflow does, so the SDK's own failure logging
    (it logs every failed activity attempt with the exception) is part of what is checked."""

    @workflow.run
    async def run(self, inp: NoticeInput) -> str:
        try:
            result = await workflow.execute_activity(
                "send_notice",
                inp,
                result_type=NoticeResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=50), maximum_attempts=2
                ),
            )
            return f"sent {result.notice_number}"
        except ActivityError as err:
            cause = err.cause
            details = getattr(cause, "details", ())
            return f"failed: {cause} details={details!r}"


async def _run_through_temporal(acts: NoticeActivities, inp: NoticeInput) -> str:
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from tests.conftest import binary

    queue = f"privacy-{uuid.uuid4().hex[:8]}"
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    ) as env:
        with ThreadPoolExecutor(4) as pool:
            async with Worker(
                env.client,
                task_queue=queue,
                workflows=[_NoticeProbe],
                activities=[acts.send_notice],
                activity_executor=pool,
            ):
                result: str = await env.client.execute_workflow(
                    "notice_privacy_probe", inp, id=f"probe-{uuid.uuid4().hex}", task_queue=queue
                )
    return result


def _key_value_log() -> tuple[logging.Handler, io.StringIO]:
    """Our production formatter on the root logger, next to pytest's caplog."""
    from core.logging import ContextFilter, KeyValueFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(lambda record: not record.name.startswith(_MAIL_SERVER_LOGGERS))
    logging.getLogger().addHandler(handler)
    return handler, stream


async def test_a_sent_notice_logs_no_recipient(
    catcher: Catcher, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    handler, stream = _key_value_log()
    try:
        acts = NoticeActivities(make_settings(catcher.url), sessions)
        result = await _run_through_temporal(acts, make_input())
    finally:
        logging.getLogger().removeHandler(handler)
    assert result.startswith("sent ")
    assert catcher.store.find(to=CUSTOMER_EMAIL)  # it did go to her
    assert "notice sent contract=ord-2026-0001" in caplog.text
    _no_personal_data(_our_logs(caplog))
    _no_personal_data(stream.getvalue())


async def test_a_permanently_refused_send_names_no_recipient(
    catcher: Catcher, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """The catcher answers `550 … <gone@example.org>` (the address in the reply, as real
    servers do): neither the failure nor any log line repeats it."""
    caplog.set_level(logging.DEBUG)
    acts = NoticeActivities(make_settings(catcher.url), sessions)
    with pytest.raises(ApplicationError) as excinfo:
        run(acts, make_input(email="gone@example.org"))
    # What the SDK logs and stores: message, type, details, and any chained exception.
    text = "".join(traceback.format_exception_only(excinfo.value)) + repr(excinfo.value.details)
    assert "550" in text and "gone@" not in text and CUSTOMER_NAME not in text
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__

    # Through Temporal: the SDK logs the failed attempt with its exception.
    notice_rows_before = len(stored_notices(sessions))
    result = await _run_through_temporal(
        acts, dataclasses.replace(make_input(email="gone@example.org"), stage="mahnung_2")
    )
    assert result.startswith("failed: ") and "550" in result, result
    assert len(stored_notices(sessions)) == notice_rows_before + 1
    assert "gone@" not in result and "gone@" not in _our_logs(caplog)
    assert "Completing activity as failed" in caplog.text  # the SDK's line was captured


async def test_a_temporarily_refused_send_names_no_recipient(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    def greylisted(*args: Any, **kwargs: Any) -> None:
        # smtplib's exception for a refused recipient: its message is the address → reply map
        raise smtplib.SMTPRecipientsRefused(
            {CUSTOMER_EMAIL: (451, f"4.7.1 <{CUSTOMER_EMAIL}>: greylisted".encode())}
        )

    caplog.set_level(logging.DEBUG)
    handler, stream = _key_value_log()
    acts = NoticeActivities(make_settings("smtp://127.0.0.1:1"), sessions, mailer=greylisted)
    try:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:  # still retried
            run(acts, make_input())
        text = "".join(traceback.format_exception_only(excinfo.value))
        assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__
        assert "451" in text and "greylisted" in text
        _no_personal_data(text)
        result = await _run_through_temporal(acts, make_input())
    finally:
        logging.getLogger().removeHandler(handler)
    assert result.startswith("failed: ") and "451" in result, result
    _no_personal_data(result)
    assert caplog.text.count("Completing activity as failed") >= 1
    _no_personal_data(_our_logs(caplog))
    _no_personal_data(stream.getvalue())


def test_log_lines_are_redacted_as_a_net() -> None:
    """Whatever a library logs (a database error quoting a row, an SMTP reply), our
    formatter masks e-mail addresses and IBANs; our own Message-IDs stay readable."""
    from core.logging import redact_personal

    handler, stream = _key_value_log()
    try:
        logging.getLogger("some.library").error(
            "insert failed: (erika.m+kurs@example.org, DE89 3704 0044 0532 0130 00) "
            "message <MAHN-2026-000001-1.0123456789abcdef@lernwerk.example>"
        )
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue()
    assert "example.org" not in line and "DE89" not in line and "0532" not in line
    assert "<e-mail>" in line and "<IBAN>" in line
    assert "MAHN-2026-000001-1.0123456789abcdef@lernwerk.example" in line
    assert redact_personal("IBAN DE89370400440532013000.") == "IBAN <IBAN>."


def test_sending_needs_one_database_connection_at_a_time(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    """A send holds its notice row (the claim) until it is recorded as sent; nothing in
    between may ask the pool for a second connection. In a wave of notices every connection
    was held by a sender waiting for another one, and the worker stood still until the
    pool's timeout (issue 17). With a pool of one connection the send must go through."""
    from sqlalchemy import create_engine

    bind = sessions.kw["bind"]
    url = bind.url.render_as_string(hide_password=False)
    extra: dict[str, Any] = (
        {"connect_args": {"check_same_thread": False}} if url.startswith("sqlite") else {}
    )
    single = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=2, **extra)
    one = make_session_factory(single.execution_options(**bind.get_execution_options()))
    try:
        result = run(NoticeActivities(make_settings(catcher.url), one), make_input())
    finally:
        single.dispose()
    assert result.already_sent is False
    assert len(catcher.store.messages()) == 1


def test_the_contracts_seller_is_read_once_per_worker(
    catcher: Catcher, sessions: sessionmaker[Session]
) -> None:
    """A contract's seller never changes after checkout: the notices of one contract read it
    once (it was read three times per notice — the seller's details before rendering, before
    the claim, and the metrics' label — in a due wave ~6 of an installment's ~28
    transactions)."""
    from sqlalchemy import event

    engine = Engine  # every engine: the PostgreSQL variant's is an OptionEngine of a schema
    lookups: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if re.match(r"SELECT \S*contracts\.seller_id\s+FROM", statement):
            lookups.append(statement)

    acts = NoticeActivities(make_settings(catcher.url), sessions)
    event.listen(engine, "before_cursor_execute", count)
    try:
        run(acts, make_input(stage="reminder"))
        run(acts, make_input(stage="mahnung_1"))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(catcher.store.messages()) == 2
    assert len(lookups) == 1, lookups
    assert acts.sellers.seller_of("no-such-contract") is None  # a missing contract: not kept
    assert "no-such-contract" not in acts.sellers._sellers
