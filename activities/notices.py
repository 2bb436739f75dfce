"""Send a dunning notice exactly once per (contract, dunning case, stage) — DESIGN.md dec. 4.

The notice is evidence (SPEC.md §6): what the customer was sent must be reproducible
byte for byte, and a worker dying at any point must neither lose the notice nor send a
second, different one. So the activity works in two short transactions around the send:

1. **Render and record.** If a ``notices`` row for (contract, case, stage) exists it is
   reused as stored — subject, text, HTML, notice number and Message-ID — so a retry sends
   exactly what was recorded even if templates or settings changed meanwhile. Otherwise the
   notice is rendered and inserted with status ``rendered``. Two attempts racing here both
   try the INSERT; the unique key lets one win and the other re-reads the winner's row.
2. **Claim, send, mark.** In one transaction the row is claimed with a conditional
   ``UPDATE … WHERE status = 'rendered'`` (which takes the row lock on PostgreSQL and the
   write lock on SQLite), the message is handed to SMTP, and the row is marked ``sent``
   together with a ``notice.sent`` timeline event, then committed. A concurrent attempt
   blocks on the lock and then sees ``sent``; a dead worker's lock dies with its
   connection, so the retry can proceed.

The remaining gap is unavoidable: SMTP has no idempotency. If the worker dies after the
server accepted the message but before the COMMIT (a window of one round trip to the
database), the row is still ``rendered`` and the retry sends again. It sends the identical
message with the *same Message-ID*, so receivers, archives and the SMTP catcher can
de-duplicate on it; and a retry that finds an old ``rendered`` row (or runs as attempt > 1)
logs a warning and flags the timeline event ``possible_duplicate``. We prefer this to the
alternative — marking ``sent`` before sending — which would silently lose a notice that
never left, and a lost Mahnung is a legal problem (the default and the fees rest on it),
while a duplicate with the same number is merely untidy.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formataddr, parseaddr
from typing import Any, cast

import jinja2
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.mailer import PermanentDeliveryError, sanitized, send_email
from activities.notice_render import (
    NoticeInputError,
    NoticeTemplateError,
    RenderedNotice,
    inline_images,
    render_notice,
)
from core import metrics
from core.db import transaction
from core.models import Notice, TimelineEvent
from core.sellers import SellerConfigError, SellerSettings
from core.settings import Settings
from workflows.types import NoticeInput, NoticeResult

log = logging.getLogger(__name__)

# A `rendered` row older than this was probably left by an attempt that died mid-send.
RESEND_SUSPECT_AFTER = timedelta(seconds=60)

_NUMBER_MAX = 64  # notices.notice_number is String(64)
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")

Mailer = Callable[..., None]


def notice_number_for(contract_id: str, case_no: int, stage: str) -> str:
    """``MW-{contract}-{case}-{stage}``: readable, deterministic, unique per notice.

    Deterministic so that every attempt (and a human reading a ticket) arrives at the same
    number. Contract ids may be 64 characters long; when the full form does not fit the
    column, the contract part is shortened and a hash of the full key keeps it unique.
    """
    stage_part = _SAFE.sub("_", stage)
    number = f"MW-{contract_id}-{case_no}-{stage_part}"
    if len(number) <= _NUMBER_MAX:
        return number
    digest = hashlib.sha256(f"{contract_id}|{case_no}|{stage}".encode()).hexdigest()[:10]
    tail = f"-{case_no}-{stage_part}"[:20]
    head = contract_id[: _NUMBER_MAX - len("MW-") - len(tail) - len(digest) - 1]
    return f"MW-{head}~{digest}{tail}"


def message_id_for(notice_number: str, subject: str, text: str, html: str, mail_from: str) -> str:
    """``<{notice_number}.{sha256 prefix}@{sender domain}>``, derived from the content.

    The hash covers what is sent, so the id changes only if the notice would (it never
    does once stored: the stored id is reused on every retry).
    """
    digest = hashlib.sha256("\x00".join((notice_number, subject, text, html)).encode())
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "mahnwerk.localhost"
    return f"<{notice_number}.{digest.hexdigest()[:16]}@{domain}>"


@dataclass(frozen=True)
class StoredNotice:
    """A detached copy of the ledger row, safe to use after its session closed."""

    id: int
    notice_number: str
    message_id: str
    recipient: str
    subject: str
    text: str
    html: str
    status: str
    created_at: datetime
    sent_at: datetime | None
    data: dict[str, Any] = field(default_factory=dict)  # the evidence record (GiroCode)

    @classmethod
    def of(cls, row: Notice) -> StoredNotice:
        return cls(
            id=row.id,
            notice_number=row.notice_number,
            message_id=row.message_id,
            recipient=row.recipient,
            subject=row.subject,
            text=row.text,
            html=row.html,
            status=row.status,
            created_at=row.created_at,
            sent_at=row.sent_at,
            data=dict(row.data or {}),
        )


def _attempt() -> int:
    try:
        return activity.info().attempt
    except RuntimeError:  # called outside an activity (scripts, direct unit use)
        return 1


class NoticeActivities:
    """Notices by e-mail. Built once per worker with its settings and DB session factory.

    `mailer` is the SMTP send function (``activities.mailer.send_email`` signature); it is
    injectable so tests can simulate a crash at the exact point between render and send.
    """

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        *,
        mailer: Mailer = send_email,
        resend_suspect_after: timedelta = RESEND_SUSPECT_AFTER,
    ) -> None:
        self.settings = settings
        self.sessions = session_factory
        self.mailer = mailer
        self.resend_suspect_after = resend_suspect_after
        # Each contract's notices carry its seller's details and sender (issue 14).
        self.sellers = SellerSettings(settings, session_factory)

    def _settings_for(self, contract_id: str) -> Settings:
        """The settings with the contract's seller's details (the default seller: as
        configured). A seller that vanished is an error Temporal retries."""
        try:
            return self.sellers.for_contract(contract_id)
        except SellerConfigError as exc:
            raise ApplicationError(f"contract {contract_id}: {exc}", type="SellerMissing") from exc

    def _seller_of(self, contract_id: str) -> str | None:
        """The contract's seller for the metrics' label; a lookup that fails after the
        message has left must not fail the activity (it would be retried for a label)."""
        try:
            return self.sellers.seller_of(contract_id)
        except Exception:  # noqa: BLE001 - metrics only
            log.warning("notice metrics: the seller of %s could not be read", contract_id)
            return "unknown"

    @activity.defn(name="send_notice")
    def send_notice(self, inp: NoticeInput) -> NoticeResult:
        """Render, record and send the notice for (contract, case, stage) exactly once.

        Returns ``already_sent=True`` when an earlier attempt or call already sent it.
        Raises ``ApplicationError(type="NoticeUndeliverable", non_retryable=True)`` when the
        recipient is permanently rejected (or missing), ``TemplateNotFound`` for an unknown
        template and ``InvalidInput`` for an unknown interest mode or customer type; any other
        error (SMTP down, DB busy) propagates and is retried. The stored row's ``data`` is the
        claim as rendered, including the statutory interest computation (``interest_detail``).
        """
        notice = self._record(inp)
        if notice.status == "sent":
            log.info(
                "notice already sent contract=%s notice=%s", inp.contract_id, notice.notice_number
            )
            return self._result(notice, already_sent=True)
        return self._send(inp, notice)

    # -- step 1: render and record ---------------------------------------------------------

    def _record(self, inp: NoticeInput) -> StoredNotice:
        existing = self._find(inp)
        if existing is not None:
            if inp.rerender and existing.status == "rendered":
                return self._rerender(inp, existing)
            return existing
        if not inp.customer.email or "@" not in inp.customer.email:
            raise ApplicationError(
                f"contract {inp.contract_id}: customer has no usable e-mail address",
                type="NoticeUndeliverable",
                non_retryable=True,
            )
        number = notice_number_for(inp.contract_id, inp.case_no, inp.stage)
        settings = self._settings_for(inp.contract_id)
        rendered = self._render(inp, number, settings)
        row = Notice(
            contract_id=inp.contract_id,
            case_no=inp.case_no,
            stage=inp.stage,
            notice_number=number,
            channel="email",
            locale=rendered.locale,
            recipient=inp.customer.email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=message_id_for(
                number, rendered.subject, rendered.text, rendered.html, settings.mail_from
            ),
            data=rendered.data,
            status="rendered",
            created_at=datetime.now(UTC),
        )
        try:
            with transaction(self.sessions) as s:
                s.add(row)
                s.flush()
                return StoredNotice.of(row)
        except IntegrityError as exc:
            # Another attempt inserted the same (contract, case, stage) first: use its row.
            winner = self._find(inp)
            if winner is None:  # not a race: e.g. the contract is missing from the ledger
                # The first line only: PostgreSQL's DETAIL quotes the failing row (the notice's
                # recipient and text).
                reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
                raise RuntimeError(f"notice {number} could not be recorded: {reason}") from None
            return winner

    def _rerender(self, inp: NoticeInput, existing: StoredNotice) -> StoredNotice:
        """A re-send of a notice the mail server never took (SMTP down for a day): the
        recorded text would print an old claim and a last day to pay that has passed, so it
        is rendered again from this input, under the same notice number. Only while the row
        is still `rendered` (never marked sent); a concurrent send that marked it wins."""
        if not inp.customer.email or "@" not in inp.customer.email:
            raise ApplicationError(
                f"contract {inp.contract_id}: customer has no usable e-mail address",
                type="NoticeUndeliverable",
                non_retryable=True,
            )
        settings = self._settings_for(inp.contract_id)
        rendered = self._render(inp, existing.notice_number, settings)
        message_id = message_id_for(
            existing.notice_number,
            rendered.subject,
            rendered.text,
            rendered.html,
            settings.mail_from,
        )
        with transaction(self.sessions) as s:
            row = s.get(Notice, existing.id, with_for_update=True)
            if row is None or row.status != "rendered" or row.message_id == message_id:
                return StoredNotice.of(row) if row is not None else existing
            row.locale = rendered.locale
            row.recipient = inp.customer.email
            row.subject = rendered.subject
            row.text = rendered.text
            row.html = rendered.html
            row.message_id = message_id
            row.data = rendered.data
            row.created_at = datetime.now(UTC)
            s.flush()
            return StoredNotice.of(row)

    def _invoices(self, contract_id: str) -> dict[int, tuple[str, str]]:
        """The contract's invoices by installment (issue 15): a notice names the invoice of
        every installment it claims."""
        from core.invoicing import invoice_numbers

        with self.sessions() as s:
            return invoice_numbers(s, contract_id)

    def _render(self, inp: NoticeInput, number: str, settings: Settings) -> RenderedNotice:
        """Render with `settings`: the contract's seller's (issue 14)."""
        try:
            rendered = render_notice(inp, number, settings, self._invoices(inp.contract_id))
        except (NoticeTemplateError, jinja2.TemplateNotFound) as exc:
            # Named as in workflows.retry_policies.NOTICE: retrying cannot create a file.
            raise ApplicationError(
                f"notice template missing: {exc}", type="TemplateNotFound", non_retryable=True
            ) from exc
        except NoticeInputError as exc:
            # The input is fixed in the workflow history: retrying cannot change it.
            raise ApplicationError(
                f"notice {number} cannot be rendered: {exc}",
                type="InvalidInput",
                non_retryable=True,
            ) from exc
        except jinja2.TemplateError as exc:
            # A broken override (syntax, unknown variable): retried, so fixing the file in
            # MAHNWERK_TEMPLATE_DIR lets the pending notice go out without a redeploy.
            raise ApplicationError(
                f"notice template {inp.template!r} is invalid: {exc}", type="TemplateInvalid"
            ) from exc
        return rendered

    def _find(self, inp: NoticeInput) -> StoredNotice | None:
        with transaction(self.sessions) as s:
            row = s.scalars(
                select(Notice).where(
                    Notice.contract_id == inp.contract_id,
                    Notice.case_no == inp.case_no,
                    Notice.stage == inp.stage,
                )
            ).one_or_none()
            return StoredNotice.of(row) if row is not None else None

    # -- step 2: claim, send, mark ---------------------------------------------------------

    def _send(self, inp: NoticeInput, notice: StoredNotice) -> NoticeResult:
        attempt = _attempt()
        age = datetime.now(UTC) - notice.created_at
        possible_duplicate = attempt > 1 or age > self.resend_suspect_after
        delivered = False
        # Before the claim: while this thread holds its connection and the row's lock, it
        # must not ask the pool for another one (the seller's details are read from the
        # ledger) — with every connection held by a sender in a wave of notices, each waited
        # for a second one until the pool's timeout (issue 17).
        settings = self._settings_for(inp.contract_id)
        try:
            with transaction(self.sessions) as s:
                # Claim: a no-op write that locks the row until COMMIT, so a concurrent attempt
                # waits here and then finds `sent` instead of sending a second copy.
                claimed = cast(
                    CursorResult[Any],
                    s.execute(
                        update(Notice)
                        .where(Notice.id == notice.id, Notice.status == "rendered")
                        .values(status="rendered")
                        .execution_options(synchronize_session=False)
                    ),
                ).rowcount
                if claimed != 1:
                    current = s.get(Notice, notice.id, populate_existing=True)
                    if current is not None and current.status == "sent":
                        return self._result(StoredNotice.of(current), already_sent=True)
                    status = current.status if current is not None else "deleted"
                    raise RuntimeError(f"notice {notice.notice_number} is {status}, not rendered")
                if possible_duplicate:
                    log.warning(
                        "re-sending notice %s (attempt %d, recorded %ds ago): an earlier attempt "
                        "may have sent it; receivers can de-duplicate on Message-ID %s",
                        notice.notice_number,
                        attempt,
                        int(age.total_seconds()),
                        notice.message_id,
                    )
                self._deliver(inp, notice, settings)
                sent_at = datetime.now(UTC)
                delivered = True
                self._mark_sent(s, inp, notice, sent_at, possible_duplicate)
        except Exception:
            if not delivered:
                raise
            # The message has left, but the COMMIT that records it failed (the database
            # connection dropped or failed over mid-transaction): record it on a fresh
            # connection, or the retry would send it a second time. Found by tests/chaos.
            log.warning("notice %s sent, recording it failed: retrying", notice.notice_number)
            sent_at = self._record_sent(inp, notice, sent_at, possible_duplicate)
        # metrics (issue 4 item 7), after the COMMIT; pre-notifications by template, not per debit
        metrics.notice_sent(
            inp.template if inp.debit is not None else inp.stage, self._seller_of(inp.contract_id)
        )
        # No recipient: the notice row (GET …/notices, support role) has it.
        log.info(
            "notice sent contract=%s notice=%s message-id=%s",
            inp.contract_id,
            notice.notice_number,
            notice.message_id,
        )
        return NoticeResult(
            notice_number=notice.notice_number,
            message_id=notice.message_id,
            sent_at=sent_at,
        )

    def _mark_sent(
        self,
        s: Session,
        inp: NoticeInput,
        notice: StoredNotice,
        sent_at: datetime,
        possible_duplicate: bool,
    ) -> None:
        # One UPDATE: the row (its text, HTML and evidence record) is not loaded to flip two
        # columns. Claimed above (or re-read by `_record_sent`): it exists.
        marked = cast(
            CursorResult[Any],
            s.execute(
                update(Notice)
                .where(Notice.id == notice.id)
                .values(status="sent", sent_at=sent_at)
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if marked != 1:
            raise RuntimeError(f"notice {notice.notice_number} vanished before it was marked sent")
        key = f"notice:{inp.contract_id}:{inp.case_no}:{inp.stage}"
        if s.scalars(select(TimelineEvent.id).where(TimelineEvent.key == key)).first() is None:
            data: dict[str, Any] = {
                "stage": inp.stage,
                "notice_number": notice.notice_number,
                "recipient": notice.recipient,
                "subject": notice.subject,
                "message_id": notice.message_id,
            }
            if possible_duplicate:
                data["possible_duplicate"] = True
            s.add(
                TimelineEvent(
                    contract_id=inp.contract_id,
                    key=key,
                    type="notice.sent",
                    occurred_at=sent_at,
                    data=data,
                )
            )

    def _record_sent(
        self, inp: NoticeInput, notice: StoredNotice, sent_at: datetime, possible_duplicate: bool
    ) -> datetime:
        """Mark a delivered notice sent in a new transaction, retried for a while; raises
        (and the activity retry re-sends, as documented above) only if that keeps failing."""
        for wait in (0.5, 1, 2, 4, 8, None):
            try:
                with transaction(self.sessions) as s:
                    row = s.get(Notice, notice.id, populate_existing=True)
                    if row is not None and row.status == "sent" and row.sent_at is not None:
                        return row.sent_at
                    self._mark_sent(s, inp, notice, sent_at, possible_duplicate)
                return sent_at
            except Exception:
                if wait is None:
                    raise
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _deliver(self, inp: NoticeInput, notice: StoredNotice, settings: Settings) -> None:
        headers: Mapping[str, str] = {
            "X-Mahnwerk-Notice": notice.notice_number,
            "X-Mahnwerk-Contract": inp.contract_id,
            "Reply-To": settings.seller_email,
        }
        # The GiroCode is rebuilt from the stored EPC payload: the same code on every retry.
        # Passed only when there is one, so mailers with the older signature keep working.
        images = inline_images(notice.data)
        extra: dict[str, Any] = {"inline_images": images} if images else {}
        try:
            self.mailer(
                settings.smtp_url,
                settings.mail_from,
                formataddr((inp.customer.name, notice.recipient)),
                notice.subject,
                notice.text,
                notice.html,
                notice.message_id,
                headers,
                **extra,
            )
        except Exception as exc:
            # No address in what is raised: the SDK logs activity failures in clear, and the
            # recipient is in the notice row already. `from None`: the original (smtplib's
            # SMTPRecipientsRefused names the recipient) must not ride along as __cause__.
            clean = exc if isinstance(exc, PermanentDeliveryError) else sanitized(exc)
            if isinstance(clean, PermanentDeliveryError):
                raise ApplicationError(
                    f"notice {notice.notice_number} undeliverable: {clean}",
                    {"code": clean.code, "reply": clean.message},
                    type="NoticeUndeliverable",
                    non_retryable=True,
                ) from None
            if clean is not None:
                raise clean from None
            raise

    @staticmethod
    def _result(notice: StoredNotice, *, already_sent: bool) -> NoticeResult:
        return NoticeResult(
            notice_number=notice.notice_number,
            message_id=notice.message_id,
            sent_at=notice.sent_at or notice.created_at,
            already_sent=already_sent,
        )
