"""The ledger: what happened to every contract, queryable without asking Temporal.

The workflow is the source of truth for a contract's progress (DESIGN.md decision 1);
activities write every attempt, notice, lock and action here idempotently, guarded by the
unique keys below, so a retried activity never writes twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out — also on SQLite, which stores naive."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Seller(Base):
    """A seller (creditor) of the platform (issue 14, migration 0009; core/sellers.py).

    The row ``default`` (``source = settings``) stands for the deployment's own seller: its
    details are the MAHNWERK_SELLER_* settings and its columns stay empty. Secrets are never
    stored: ``stripe_api_key_ref`` and ``stripe_webhook_secret_ref`` name the environment
    variables that hold them (``env:NAME``)."""

    __tablename__ = "sellers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), default="api")  # api | settings
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    legal_form: Mapped[str | None] = mapped_column(String(64), nullable=True)
    address: Mapped[str | None] = mapped_column(Text, nullable=True)
    seat: Mapped[str | None] = mapped_column(String(200), nullable=True)
    register_court: Mapped[str | None] = mapped_column(String(200), nullable=True)
    register_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    managing_directors: Mapped[str | None] = mapped_column(Text, nullable=True)
    supervisory_board_chair: Mapped[str | None] = mapped_column(String(200), nullable=True)
    vat_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    iban: Mapped[str | None] = mapped_column(String(34), nullable=True)
    bic: Mapped[str | None] = mapped_column(String(11), nullable=True)
    account_holder: Mapped[str | None] = mapped_column(String(70), nullable=True)
    creditor_id: Mapped[str | None] = mapped_column(String(35), nullable=True)
    mail_from: Mapped[str | None] = mapped_column(String(320), nullable=True)
    reply_to: Mapped[str | None] = mapped_column(String(320), nullable=True)
    locale: Mapped[str | None] = mapped_column(String(8), nullable=True)
    state: Mapped[str | None] = mapped_column(String(2), nullable=True)
    policies: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    templates: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stripe_account: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    stripe_api_key_ref: Mapped[str | None] = mapped_column(String(132), nullable=True)
    stripe_webhook_secret_ref: Mapped[str | None] = mapped_column(String(132), nullable=True)
    collection_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Its tax settings, for its invoices (issue 15; migration 0010; core/invoice_seller.py).
    tax_number: Mapped[str | None] = mapped_column(String(20), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(40), nullable=True)
    small_business: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), nullable=False
    )
    education_exempt: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), nullable=False
    )
    oss: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), nullable=False
    )
    invoicing: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true(), nullable=False
    )
    invoice_prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)
    credit_note_series: Mapped[str | None] = mapped_column(String(8), nullable=True)
    credit_note_prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Contract(Base):
    __tablename__ = "contracts"
    # The listing (GET /v1/contracts) pages newest first by (created_at, id), optionally
    # within one status (migration 0003), or within one seller (migration 0009).
    __table_args__ = (
        Index("ix_contracts_created", "created_at", "id"),
        Index("ix_contracts_status_created", "status", "created_at", "id"),
        Index("ix_contracts_seller_created", "seller_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The creditor (issue 14): every contract has one; migration 0009 gave the existing ones
    # to the default seller. No foreign key (SQLite cannot add one to an existing table
    # without copying it); sellers are never deleted and the checkout checks the id.
    seller_id: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    kind: Mapped[str] = mapped_column(String(16))
    policy_name: Mapped[str] = mapped_column(String(64))
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)  # pinned at start
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    customer: Mapped[dict[str, Any]] = mapped_column(JSON)
    product_id: Mapped[str] = mapped_column(String(128))
    product: Mapped[dict[str, Any]] = mapped_column(JSON)
    currency: Mapped[str] = mapped_column(String(3))
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)  # acceptance evidence
    payment: Mapped[dict[str, Any]] = mapped_column(JSON)  # stripe customer / method
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the body as accepted
    request_hash: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    stage: Mapped[str] = mapped_column(String(32), default="none", index=True)
    access: Mapped[str] = mapped_column(String(8), default="none")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_until: Mapped[datetime | None] = mapped_column(nullable=True)
    contested: Mapped[bool] = mapped_column(Boolean, default=False)
    overdue_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    fees: Mapped[int] = mapped_column(BigInteger, default=0)
    case_no: Mapped[int] = mapped_column(Integer, default=0)  # dunning cases opened so far
    case_opened_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The claim (issue 11, migration 0006): its facts as the workflow last wrote them
    # (domain.claim.ClaimFacts), so the API and the receivables report compute it as of
    # today with domain.claim.compute_claim, and the claim as of that write. NULL for
    # contracts started before the claim model.
    claim_facts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    claim: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The case at the collection partner (issue 12), as the workflow last wrote it: route,
    # installments, files, statuses reported, deliveries waiting, the § 498 call-in.
    collection: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Installment(Base):
    __tablename__ = "installments"
    __table_args__ = (UniqueConstraint("contract_id", "seq", name="uq_installment_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 1-based
    due_at: Mapped[datetime] = mapped_column()
    amount: Mapped[int] = mapped_column(BigInteger)
    paid_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # scheduled | processing | paid | open (failed, part of the claim) | waived
    # | stalled (due, but Stripe refused our request or was unreachable: not the customer's)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    paid_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # How it ended when not simply paid (issue 12): {"how", "reason", "at"} — handed_off,
    # written_off, cancelled, or paid after a hand-off. None while it runs (or paid).
    ended: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # What was refunded of it (issue 12: by Mahnwerk or at Stripe; `refunded` when all of it)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Consent(Base):
    """A consent the customer gave at checkout, kept as evidence next to the terms (issue 12;
    migration 0007): for digital content the express consent to begin before the withdrawal
    period ends and the acknowledgement that the right to withdraw then lapses (§ 356 (5)
    BGB, § 356 (6) since June 2026), the § 312f BGB confirmation that recorded them, or a
    service's early start (§ 357a (2) BGB). `text_hash`: SHA-256 of the text the customer
    saw, `version` its version; `ip` is personal data (erased with the customer)."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("contract_id", "kind", name="uq_consent_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    text_hash: Mapped[str] = mapped_column(String(64))
    given_at: Mapped[datetime] = mapped_column()
    ip: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentAttempt(Base):
    __tablename__ = "payment_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    installment_seq: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    # {contract}:{installment}:{attempt} — sent to Stripe, never reused (DESIGN.md decision 3)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str | None] = mapped_column(String(128), nullable=True)
    payment_intent: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    # submitting (written before the Stripe request, see activities/payments.py _claim_key)
    # | succeeded | processing | declined | error
    status: Mapped[str] = mapped_column(String(16))
    decline_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_class: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Notice(Base):
    __tablename__ = "notices"
    # One notice per contract, dunning case and stage (DESIGN.md decision 4).
    __table_args__ = (UniqueConstraint("contract_id", "case_no", "stage", name="uq_notice_stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    case_no: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(32))
    notice_number: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16), default="email")
    locale: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # claim as rendered
    status: Mapped[str] = mapped_column(String(16), default="rendered")  # rendered | sent
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AccessState(Base):
    __tablename__ = "access"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"))
    access: Mapped[str] = mapped_column(String(8))  # granted | locked | none
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TimelineEvent(Base):
    __tablename__ = "timeline_events"
    __table_args__ = (Index("ix_timeline_contract_time", "contract_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"))
    # Derived from business ids so a retried activity cannot record the same fact twice.
    key: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column()
    actor: Mapped[str | None] = mapped_column(String(128), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OutboxEvent(Base):
    """Events to the platform (SPEC.md §5), written in the same transaction as the fact.

    A dispatcher delivers them in order per contract until acknowledged (at least once).
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_pending", "delivered_at", "id"),
        # the dispatcher's "due now" scan (migration 0003)
        Index("ix_outbox_due", "delivered_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    contract_id: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The dispatcher holding the row while it delivers it (issue 13 item 5): with several
    # workers, a row is claimed before it is posted, so two dispatchers whose polls overlap
    # never post the same event; a claim that runs out (its dispatcher died) is free again.
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)


class Lease(Base):
    """A named lease one process holds until `expires_at` (renewed while it works).

    SQLite has no `SELECT … FOR UPDATE SKIP LOCKED`: there exactly one event dispatcher
    (the lease's holder) delivers at a time; another takes over once the lease ran out."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SupportActionRequest(Base):
    """A support or admin action (`POST /v1/contracts/{id}/<action>`) and its first answer,
    by `Idempotency-Key` (issue 13 item 3; SPEC.md §4 Idempotency).

    Temporal de-duplicates an Update by its id only within one workflow run; this row keeps
    the first answer beyond that (after continue-as-new or the end of the workflow), and
    lets a caller that got `202` read the outcome later. ``state`` is ``pending`` (sent,
    answer not yet known) or ``done`` (``http_status`` and ``response`` are the answer)."""

    __tablename__ = "support_actions"

    contract_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    action: Mapped[str] = mapped_column(String(32))  # the Update's name
    request_hash: Mapped[str] = mapped_column(String(64))  # action + body, canonical JSON
    actor: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class RateSlot(Base):
    """The next free instant of a rate shared by every worker process (issue 17): one row
    per Stripe account (activities/ratelimit.py)."""

    __tablename__ = "rate_slots"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookEvent(Base):
    """Stripe event ids already processed: each is handled once (Stripe may redeliver)."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class CollectionCase(Base):
    """The hand-off case file of one dunning case (SPEC.md §6), as built and as delivered.

    One row per (contract, dunning case, file): a retried activity re-reads it instead of
    building a second one. ``file_no`` 0 is the file of the hand-off; 1, 2, … are follow-up
    files sent when later installments join the case (issue 12). ``file`` is the evidence,
    frozen when built; the delivery columns track the POST to ``MAHNWERK_COLLECTION_URL``
    (retried until acknowledged). ``route`` is ``court`` or ``inkasso`` (checked by the
    activity that writes it).
    """

    __tablename__ = "collection_cases"
    __table_args__ = (
        UniqueConstraint("contract_id", "case_no", "file_no", name="uq_collection_case"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"))
    case_no: Mapped[int] = mapped_column(Integer)
    file_no: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    route: Mapped[str] = mapped_column(String(16))
    file: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class CollectionMessage(Base):
    """A message to the collection partner besides case files (issue 12): ``case.payment``
    (a payment the seller or the customer reported after the hand-off) and ``case.recall``.

    Stored once by ``key`` (derived from the payment or the action), then POSTed to
    ``MAHNWERK_COLLECTION_URL``, signed, with ``Idempotency-Key: {key}``, until acknowledged:
    the partner hears of each payment exactly once (it de-duplicates a repeated POST by the
    key). The delivery columns work as in ``collection_cases``.
    """

    __tablename__ = "collection_messages"
    __table_args__ = (UniqueConstraint("key", name="uq_collection_message_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class CustomerKey(Base):
    """A customer's data key for Temporal payloads (core/customer_keys.py).

    ``wrapped_key`` is the random 256-bit key encrypted (AES-256-GCM, nonce first) with the
    master key ``wrap_key_id`` of ``MAHNWERK_CODEC_KEY``: the database alone reads no
    history. ``id`` is random (never reused, unlike an integer id on SQLite), and payloads
    name it in their metadata (``customer:<id>``). Erasing the customer deletes the row:
    every payload encrypted with it becomes unreadable (crypto-shredding).
    """

    __tablename__ = "customer_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), unique=True)
    wrap_key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomerErasure(Base):
    """That a customer's personal data was erased (Art. 17 GDPR), when, by whom, and what
    the erasure answered — kept so a repeated request answers the same (core/erasure.py).
    Holds ids only: the customer id, contract ids, shredded key ids, counts."""

    __tablename__ = "customer_erasures"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column()
    erased_by: Mapped[str] = mapped_column(String(128))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class InvoiceCounter(Base):
    """The next number of one gapless series of one seller (issue 15; core/invoicing.py).

    A number is taken in the transaction that stores the invoice: the row is locked
    (`SELECT … FOR UPDATE` on PostgreSQL; SQLite serialises writers), incremented and the
    invoice inserted; a failed insert rolls the increment back with it, so a number is
    never skipped, and never given twice."""

    __tablename__ = "invoice_counters"

    seller_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    series: Mapped[str] = mapped_column(String(32), primary_key=True)  # invoice | credit_note
    last_value: Mapped[int] = mapped_column(BigInteger, default=0)


class Invoice(Base):
    """An issued invoice or credit note (issue 15): immutable once written.

    ``document`` is the whole invoice as issued (domain.invoice.build_document): the PDF and
    the EN 16931 XML are rendered from it; ``sha256`` is the hash of its canonical JSON
    (domain.invoice.document_hash), checked whenever it is read. ``key`` makes issuing
    idempotent: ``invoice:{contract}:{seq}`` (one invoice per installment, period or
    purchase) and ``credit:{contract}:{seq}:{ref}`` (one credit note per refund)."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("seller_key", "number", name="uq_invoice_number"),
        UniqueConstraint("seller_key", "series", "sequence", name="uq_invoice_sequence"),
        Index("ix_invoices_contract", "contract_id", "seq"),
        Index("ix_invoices_seller_issued", "seller_key", "issue_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    seller_key: Mapped[str] = mapped_column(String(64))
    series: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int] = mapped_column(BigInteger)  # the counter's value
    number: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # invoice | credit_note
    contract_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)  # the installment / period (1 for a purchase)
    refers_to: Mapped[str | None] = mapped_column(String(64), nullable=True)  # credit notes
    issue_date: Mapped[str] = mapped_column(String(10))  # ISO date (Europe/Berlin)
    currency: Mapped[str] = mapped_column(String(3))
    net: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    gross: Mapped[int] = mapped_column(BigInteger)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
