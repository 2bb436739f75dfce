"""Reads from the ledger: the contract listing, notices and the receivables report.

Answered from the database only (DESIGN.md decision 1): a listing of 200 contracts or a report
over all open claims is a few SQL queries, never one Temporal call per contract.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, or_, select

from api.claims import claim_as_of
from api.deps import AdminCaller, AppState, StateDep, SupportCaller
from api.errors import ApiError, reject_nul_bytes, reject_unknown_query
from api.responses import Access, ContractKind, NoticeStatus, Stage, stage_field
from api.schemas import error_responses
from core.models import Contract, Installment, Notice
from core.sellers import DEFAULT_SELLER_ID, SELLER_ID
from core.temporal import workflow_ui_url
from domain.claim import oldest_open_due
from domain.collection import AGE_BUCKETS, age_bucket, age_days
from domain.schedule import berlin_date

router = APIRouter(responses=error_responses(401, 403), dependencies=[Depends(reject_nul_bytes)])
# After the caller's key and role (dependencies are solved in the order of the parameters):
# an unknown query parameter is a 422 naming it.
KnownQuery = Annotated[None, Depends(reject_unknown_query)]

Status = Literal[
    "active", "in_dunning", "completed", "cancelled", "handed_off", "written_off", "failed"
]
# Stage names as policies may name them (domain.policy), plus "none" and "retrying".
STAGE_PATTERN = r"^[a-z0-9_]{1,32}$"
# A claim is open unless the contract ended without one: paid in full, cancelled, written off,
# or a prepayment that never succeeded (nothing was delivered, nothing is owed). Handed-off
# claims are still open: the collector or the court is working on them.
# Since issue 11 a completed contract may still owe what stayed open after its principal was
# paid (interest, fees: a final notice claimed it): it counts while its claim is open.
CLOSED = ("cancelled", "written_off", "failed")


# -- response models ------------------------------------------------------------------------


class ContractSummary(BaseModel):
    contract_id: str
    kind: ContractKind
    status: Status
    stage: Stage = stage_field()
    access: Access
    overdue_amount: int = Field(
        description="minor units: the claim (principal, interest, fees, costs, lump sums) as "
        "of the workflow's last write, less principal whose debit is in flight"
    )
    currency: str
    customer_id: str
    product_id: str
    seller_id: str = Field(description="the contract's seller (creditor), docs/sellers.md")
    created_at: str
    temporal_ui: str


class ContractPage(BaseModel):
    data: list[ContractSummary]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class NoticeOut(BaseModel):
    case_no: int
    stage: str
    channel: str
    locale: str
    recipient: str
    subject: str
    text: str
    html: str
    notice_number: str
    message_id: str
    status: NoticeStatus = Field(description="rendered (not sent yet) | sent")
    sent_at: str | None
    created_at: str


class NoticesOut(BaseModel):
    contract_id: str
    data: list[NoticeOut]


class Bucket(BaseModel):
    count: int = 0
    amount: int = Field(default=0, description="minor units")


class SellerReceivables(BaseModel):
    """One seller's part of the receivables report (issue 14 part 5)."""

    by_stage: dict[str, Bucket]
    by_age: dict[str, Bucket]
    total: Bucket
    refunded: Bucket


class ReceivablesOut(BaseModel):
    as_of: str
    currency: Literal["eur"]
    seller_id: str | None = Field(
        default=None,
        description="the seller the report counts (`?seller_id=`, or a seller-scoped key's "
        "own); null: every seller",
    )
    by_stage: dict[str, Bucket]
    by_age: dict[str, Bucket] = Field(
        description="days since the oldest open installment fell due (Europe/Berlin days)"
    )
    total: Bucket
    refunded: Bucket = Field(
        default_factory=Bucket,
        description="refunds given (by Mahnwerk or at Stripe), apart from the open claims: "
        "contracts with a refund and the amount refunded; never part of `total`",
    )
    by_seller: dict[str, SellerReceivables] | None = Field(
        default=None,
        description="the same per seller (contracts from before sellers: `default`); only "
        "for a key that spans every seller and names none",
    )


# -- cursor ---------------------------------------------------------------------------------


def encode_cursor(created_at: datetime, contract_id: str) -> str:
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), contract_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, contract_id = json.loads(raw)
        at = datetime.fromisoformat(created)
        # NUL: PostgreSQL cannot compare text holding it (500 for a forged cursor).
        if at.tzinfo is None or not isinstance(contract_id, str) or "\x00" in contract_id:
            raise ValueError("incomplete")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        message = "not a cursor of this listing (use next_cursor as returned)"
        raise ApiError(
            422, "invalid_input", f"cursor: {message}", [{"field": "cursor", "message": message}]
        ) from None
    return at, contract_id


# -- routes ---------------------------------------------------------------------------------


def _seller_conditions(scope: str | None, wanted: str | None) -> list[ColumnElement[bool]]:
    """One seller's rows: the key's own seller (issue 14), narrowed by `seller_id` (which a
    seller-scoped key can only name as its own: anything else lists nothing)."""
    conds: list[ColumnElement[bool]] = []
    if scope is not None:
        conds.append(Contract.seller_id == scope)
    if wanted is not None:
        conds.append(Contract.seller_id == wanted)
    return conds


@router.get(
    "/v1/contracts",
    summary="List and filter contracts",
    tags=["contracts"],
    responses=error_responses(422),
)
async def list_contracts(
    caller: SupportCaller,
    _known: KnownQuery,
    state: StateDep,
    status: Annotated[Status | None, Query(description="contract status")] = None,
    stage: Annotated[
        str | None,
        Query(pattern=STAGE_PATTERN, description="dunning stage, e.g. `mahnung_1`"),
    ] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    seller_id: Annotated[
        str | None, Query(pattern=SELLER_ID, description="one seller's contracts")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page")
    ] = None,
) -> ContractPage:
    """Newest first. Filters combine (AND); follow `next_cursor` until it is null. A
    seller-scoped key lists its seller's contracts only."""
    q = select(
        Contract.id,
        Contract.kind,
        Contract.status,
        Contract.stage,
        Contract.access,
        Contract.overdue_amount,
        Contract.currency,
        Contract.customer_id,
        Contract.product_id,
        Contract.created_at,
        Contract.workflow_id,
        Contract.seller_id,
    )
    for cond in _seller_conditions(caller.seller, seller_id):
        q = q.where(cond)
    if status is not None:
        q = q.where(Contract.status == status)
    if stage is not None:
        q = q.where(Contract.stage == stage)
    if customer_id is not None:
        q = q.where(Contract.customer_id == customer_id)
    if cursor is not None:
        at, after_id = decode_cursor(cursor)
        q = q.where(
            or_(
                Contract.created_at < at,
                and_(Contract.created_at == at, Contract.id < after_id),
            )
        )
    q = q.order_by(Contract.created_at.desc(), Contract.id.desc()).limit(limit + 1)
    with state.sessions() as s:
        rows = list(s.execute(q))
    more = len(rows) > limit
    rows = rows[:limit]
    settings = state.settings
    data = [
        ContractSummary(
            contract_id=r.id,
            kind=r.kind,
            status=r.status,
            stage=r.stage,
            access=r.access,
            overdue_amount=r.overdue_amount,
            currency=r.currency,
            customer_id=r.customer_id,
            product_id=r.product_id,
            seller_id=r.seller_id,
            created_at=r.created_at.isoformat(),
            temporal_ui=workflow_ui_url(settings, r.workflow_id),
        )
        for r in rows
    ]
    last = rows[-1] if rows else None
    next_cursor = encode_cursor(last.created_at, last.id) if more and last is not None else None
    return ContractPage(data=data, next_cursor=next_cursor)


@router.get(
    "/v1/contracts/{contract_id}/notices",
    summary="Every notice of a contract, as rendered and sent",
    tags=["contracts"],
    responses=error_responses(404, 422),
)
async def list_notices(
    contract_id: str, caller: SupportCaller, _known: KnownQuery, state: StateDep
) -> NoticesOut:
    """Reminders and Mahnungen with subject, text and HTML exactly as sent, oldest first."""
    with state.sessions() as s:
        if s.get(Contract, contract_id) is None:
            raise ApiError(404, "not_found", f"contract {contract_id} not found")
        rows = list(
            s.scalars(
                select(Notice)
                .where(Notice.contract_id == contract_id)
                .order_by(Notice.created_at, Notice.id)
            )
        )
    return NoticesOut(
        contract_id=contract_id,
        data=[
            NoticeOut(
                case_no=n.case_no,
                stage=n.stage,
                channel=n.channel,
                locale=n.locale,
                recipient=n.recipient,
                subject=n.subject,
                text=n.text,
                html=n.html,
                notice_number=n.notice_number,
                message_id=n.message_id,
                status=n.status,  # type: ignore[arg-type]
                sent_at=n.sent_at.isoformat() if n.sent_at else None,
                created_at=n.created_at.isoformat(),
            )
            for n in rows
        ],
    )


class _Tally:
    """The buckets of one report (all sellers, or one)."""

    def __init__(self) -> None:
        self.by_stage: dict[str, Bucket] = {}
        self.by_age = {name: Bucket() for name, _ in AGE_BUCKETS}
        self.total = Bucket()
        self.refunded = Bucket()

    def add(self, stage: str, age: str, amount: int) -> None:
        for bucket in (self.by_stage.setdefault(stage, Bucket()), self.by_age[age], self.total):
            bucket.count += 1
            bucket.amount += amount

    def refund(self, amount: int) -> None:
        self.refunded.count += 1
        self.refunded.amount += amount

    def out(self) -> SellerReceivables:
        return SellerReceivables(
            by_stage=dict(sorted(self.by_stage.items())),
            by_age=self.by_age,
            total=self.total,
            refunded=self.refunded,
        )


@router.get(
    "/v1/reports/receivables",
    summary="Open claims by dunning stage and by age, with totals, per seller",
    tags=["reports"],
    responses=error_responses(404, 422),
)
async def receivables(
    caller: AdminCaller,
    _known: KnownQuery,
    state: StateDep,
    seller_id: Annotated[
        str | None,
        Query(
            pattern=SELLER_ID,
            description="one seller's receivables (404 if there is no such seller, or it is "
            "not the seller-scoped key's own)",
        ),
    ] = None,
) -> ReceivablesOut:
    """Every contract with an open claim (overdue amount > 0, not cancelled, written off or
    failed), counted once; amounts in minor units. The amount is the claim as of today
    (domain.claim: principal, interest, fees, costs, lump sums) less principal whose debit is
    in flight; the age is counted in Europe/Berlin days from the due date of the oldest
    installment with anything open (domain.collection.age_bucket). `refunded`: the refunds
    given (issue 12), apart from the claims. Contracts started before
    the claim model count their last overdue amount, aged from the oldest open installment
    (from the opening of the dunning case when only fees are left).

    Per seller (issue 14 part 5): `?seller_id=` counts one seller's contracts; a
    seller-scoped key counts its own seller's only (another seller's id is a 404, as an
    unknown one is); a key spanning every seller that names none gets `by_seller` too."""
    if seller_id is not None:
        if caller.seller is not None and seller_id != caller.seller:
            raise ApiError(404, "not_found", f"seller {seller_id} not found")
        directory = state.sellers()
        directory.invalidate(seller_id)
        if await run_in_threadpool(directory.get, seller_id) is None:
            raise ApiError(404, "not_found", f"seller {seller_id} not found")
    scope = seller_id or caller.seller
    as_of = datetime.now(UTC)
    claims, refunded_rows = claim_rows(state, scope, as_of)
    everyone = _Tally()
    sellers: dict[str, _Tally] = {}

    def tally(seller: str | None) -> _Tally:
        return sellers.setdefault(seller or DEFAULT_SELLER_ID, _Tally())

    for seller, _, amount in refunded_rows:
        everyone.refund(int(amount or 0))
        tally(seller).refund(int(amount or 0))
    for seller, stage, age, amount in claims:
        everyone.add(stage, age, amount)
        tally(seller).add(stage, age, amount)
    whole = everyone.out()
    return ReceivablesOut(
        as_of=as_of.isoformat(),
        currency="eur",
        seller_id=scope,
        by_stage=whole.by_stage,
        by_age=whole.by_age,
        total=whole.total,
        refunded=whole.refunded,
        by_seller=({sid: t.out() for sid, t in sorted(sellers.items())} if scope is None else None),
    )


def claim_rows(
    state: AppState, scope: str | None, as_of: datetime
) -> tuple[list[tuple[str | None, str, str, int]], list[tuple[str | None, str, int]]]:
    """Every open claim as (seller, stage, age bucket, amount as of `as_of`), and the refunds
    given as (seller, contract, amount): what the receivables report adds up (and the
    console's stage x age chart, issue 16). `scope`: one seller's contracts only."""
    oldest = (
        select(
            Installment.contract_id.label("contract_id"),
            func.min(Installment.due_at).label("due_at"),
        )
        .where(Installment.status == "open")
        .group_by(Installment.contract_id)
        .subquery()
    )
    q = (
        select(
            Contract.seller_id,
            Contract.stage,
            Contract.overdue_amount,
            oldest.c.due_at,
            Contract.case_opened_at,
            Contract.created_at,
            Contract.claim_facts,
            Contract.claim,
        )
        .outerjoin(oldest, oldest.c.contract_id == Contract.id)
        .where(
            Contract.overdue_amount > 0,
            Contract.status.not_in(CLOSED),
            Contract.currency == "eur",
        )
    )
    refunds_q = (
        select(
            Contract.seller_id,
            Installment.contract_id,
            func.sum(Installment.refunded_amount),
        )
        .join(Contract, Contract.id == Installment.contract_id)
        .where(Installment.refunded_amount > 0, Contract.currency == "eur")
        .group_by(Contract.seller_id, Installment.contract_id)
    )
    for cond in _seller_conditions(scope, None):
        q = q.where(cond)
        refunds_q = refunds_q.where(cond)
    with state.sessions() as s:
        rows = list(s.execute(q))
        refunded_rows = list(s.execute(refunds_q))
    today = berlin_date(as_of)
    today = berlin_date(as_of)
    claims: list[tuple[str | None, str, str, int]] = []
    for seller, stage, amount, due_at, case_opened_at, created_at, facts, written in rows:
        if facts:
            claim = claim_as_of(facts, today, written)
            amount = claim.total
            if amount <= 0:
                continue
            # only fees or interest left: aged from the opening of the case
            oldest_due = oldest_open_due(claim) or berlin_date(case_opened_at or created_at)
        else:
            since: datetime = due_at or case_opened_at or created_at
            oldest_due = berlin_date(since)
        claims.append((seller, stage, age_bucket(age_days(oldest_due, today)), amount))
    return claims, [(seller, cid, int(amount or 0)) for seller, cid, amount in refunded_rows]


def open_claims(
    state: AppState, seller: str | None, as_of: datetime
) -> tuple[list[tuple[str, str, int]], Bucket]:
    """(stage, age bucket, amount) of every open claim and the refunds given (the console)."""
    claims, refunds = claim_rows(state, seller, as_of)
    refunded = Bucket(count=len(refunds), amount=sum(amount for _, _, amount in refunds))
    return [(stage, age, amount) for _, stage, age, amount in claims], refunded
