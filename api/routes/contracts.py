"""/v1/contracts: start contracts, read them, and the support actions (Temporal Updates)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.claims import claim_as_of, claim_json, today
from api.deps import (
    AdminCaller,
    PlatformCaller,
    PlatformSupportCaller,
    ReaderCaller,
    StateDep,
    SupportCaller,
    TemporalDep,
)
from api.errors import ApiError, error_body, reject_nul_bytes
from api.responses import ActionPendingOut, ActionStatusOut, ContractOut, TimelineOut
from api.schemas import (
    ActionOut,
    AddressIn,
    ApproveHandoffIn,
    CancelIn,
    CaseStatusIn,
    ContractCreate,
    DeferralIn,
    PauseIn,
    PaymentMethodIn,
    ReasonIn,
    ResumeIn,
    SettlementIn,
    WaiverIn,
    checkout_problems,
)
from core.db import transaction
from core.models import (
    Consent,
    Contract,
    Installment,
    PaymentAttempt,
    SupportActionRequest,
    TimelineEvent,
)
from core.sellers import DEFAULT_SELLER_ID, SellerDirectory, SellerProfile
from core.settings import Settings
from core.temporal import workflow_ui_url
from domain.collection import limitation
from domain.interest import pinned_rates, with_rates
from domain.policy import Policy, PolicyError, load_policy, policy_to_dict
from domain.schedule import due_instant, installment_due_times
from workflows.base import FINAL
from workflows.contract import search_attributes
from workflows.types import (
    ActionResult,
    ContractInput,
    Customer,
    PaymentMethodRequest,
    Product,
    SettlementRequest,
    SupportAction,
    action_response,
    workflow_id_for,
)

router = APIRouter(
    prefix="/v1/contracts", tags=["contracts"], dependencies=[Depends(reject_nul_bytes)]
)


def _hash(body: ContractCreate, seller_id: str = DEFAULT_SELLER_ID) -> str:
    """The checkout's digest (a replay must match it). `consents` (issue 12) only when
    given: a replayed checkout of a body accepted before the field existed keeps its digest
    (and is not refused as a different body). The seller (issue 14) is the one the contract
    got (the body's, or the API key's own); the default seller's checkouts hash as before
    `seller_id` existed."""
    exclude = {"seller_id"} if body.consents else {"consents", "seller_id"}
    data = body.model_dump(mode="json", exclude=exclude)
    if seller_id != DEFAULT_SELLER_ID:
        data["seller_id"] = seller_id
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def checkout_seller(
    body: ContractCreate, caller_seller: str | None, sellers: SellerDirectory
) -> SellerProfile:
    """The seller a checkout names (`seller_id`), else the API key's own seller, else the
    default seller; a seller that does not exist, or that a seller-scoped key may not use,
    is a 422 naming `seller_id` (the same answer for both: ids do not leak)."""
    wanted = body.seller_id or caller_seller or DEFAULT_SELLER_ID
    found = None
    if caller_seller is None or caller_seller == wanted:
        found = sellers.get(wanted)
    if found is None:
        msg = f"unknown seller {wanted!r}"
        raise ApiError(
            422, "invalid_input", f"seller_id: {msg}", [{"field": "seller_id", "message": msg}]
        )
    if not found.allows_policy(body.policy):
        msg = f"seller {found.id} does not use policy {body.policy!r} (its policies: " + (
            ", ".join(found.policies) + ")"
        )
        raise ApiError(
            422, "invalid_input", f"policy: {msg}", [{"field": "policy", "message": msg}]
        )
    return found


def _terms(body: ContractCreate) -> tuple[int, str, str | None, int | None]:
    """amount, first due, interval, count for the body's kind."""
    if body.installments:
        i = body.installments
        return i.amount, i.first_due, i.interval, i.count
    if body.subscription:
        s = body.subscription
        return s.amount, s.start, s.interval, None
    assert body.one_off
    return body.one_off.amount, body.one_off.due or "", None, 1


_policies: dict[tuple[str, str], tuple[int, int, Policy]] = {}
_policies_lock = threading.Lock()


def cached_policy(name: str, policy_dir: Path) -> Policy:
    """`load_policy`, but a file is parsed once, not per checkout (YAML parsing was 11 % of
    the API's time in the checkout benchmark). The entry is keyed by the file's mtime and
    size, so an edited policy file is read again for the next contract (DESIGN.md 5: a
    changed policy applies to new contracts). Only names `load_policy` accepted are cached.
    The Policy is shared between requests: it is only read (copied into the workflow input
    and the ledger row)."""
    key = (name, str(policy_dir))
    try:
        st = (Path(policy_dir) / f"{name}.yaml").stat()
    except (OSError, ValueError):
        return load_policy(name, policy_dir)  # raises the PolicyError naming the file
    with _policies_lock:
        hit = _policies.get(key)
    if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    policy = load_policy(name, policy_dir)
    with _policies_lock:
        _policies[key] = (st.st_mtime_ns, st.st_size, policy)
    return policy


def build_input(
    body: ContractCreate,
    settings: Settings,
    now: datetime,
    seller: SellerProfile | None = None,
) -> ContractInput:
    try:
        policy = cached_policy(body.policy, settings.policy_dir)
    except PolicyError as exc:
        # Name the policy file, not the server's directory layout.
        msg = f"{Path(exc.file).name}: {exc.key}: {exc.reason}"
        raise ApiError(
            422, "invalid_input", f"policy: {msg}", [{"field": "policy", "message": msg}]
        ) from None
    problems = checkout_problems(
        body, demo_policy=policy.demo, max_backdate_days=settings.max_backdate_days, now=now
    )
    if problems:  # bounds that depend on the policy and the settings (api/schemas.py)
        msg = f"{problems[0]['field']}: {problems[0]['message']}"
        raise ApiError(422, "invalid_input", msg, problems)
    amount, first_due, interval, count = _terms(body)
    if not first_due:
        first_due = now.isoformat()
    c = body.customer
    return ContractInput(
        contract_id=body.contract_id,
        kind=body.kind,
        policy=policy,
        customer=Customer(
            id=c.id,
            name=c.name,
            email=c.email,
            locale=c.locale,
            type=c.type,
            address=c.address.model_dump(exclude_none=True) if c.address else {},
        ),
        product=Product(id=body.product.id, name=body.product.name),
        currency=body.currency,
        amount=amount,
        first_due=first_due,
        interval=interval,
        count=count,
        stripe_customer=body.payment.stripe_customer,
        payment_method=body.payment.payment_method,
        payment_intent=body.payment.payment_intent,
        minimum_term=body.subscription.minimum_term if body.subscription else None,
        sepa_prenotification_by=settings.sepa_prenotification,
        seller_state=seller.state if seller is not None else settings.seller_state,
        base_rates=pinned_rates(with_rates(settings.extra_base_rates)),
        seller_id=seller.id if seller is not None else DEFAULT_SELLER_ID,
        # Invoices (issue 15) in the seller's own series with its tax settings
        # (core.invoice_seller), unless the platform or the seller turned them off.
        invoice_timing=(
            settings.invoice_timing
            if settings.invoicing and (seller is None or seller.invoicing)
            else ""
        ),
    )


def _insert(
    s: Session, body: ContractCreate, inp: ContractInput, digest: str
) -> tuple[Contract, list[Installment], list[PaymentAttempt], list[Consent]]:
    contract = Contract(
        id=body.contract_id,
        seller_id=inp.seller_id or DEFAULT_SELLER_ID,
        kind=body.kind,
        policy_name=body.policy,
        policy=policy_to_dict(inp.policy),
        customer_id=body.customer.id,
        customer=body.customer.model_dump(mode="json"),
        product_id=body.product.id,
        product=body.product.model_dump(mode="json"),
        currency=body.currency,
        terms=body.terms.model_dump(mode="json"),
        payment=body.payment.model_dump(mode="json"),
        request=body.model_dump(mode="json"),
        request_hash=digest,
        workflow_id=workflow_id_for(body.contract_id),
        status="active",
        stage="none",
        access="none",
    )
    s.add(contract)
    s.flush()
    if inp.kind == "subscription":
        dues = installment_due_times(inp.first_due, inp.interval or "P1M", 1)
    elif inp.kind == "installments":
        dues = installment_due_times(inp.first_due, inp.interval or "P1M", inp.count or 1)
    else:
        dues = [due_instant(inp.first_due)]
    insts = [
        Installment(contract_id=inp.contract_id, seq=n, due_at=due, amount=inp.amount)
        for n, due in enumerate(dues, start=1)
    ]
    s.add_all(insts)
    attempts = []
    if inp.payment_intent:
        # The platform's own PaymentIntent: recorded so its webhooks find this contract.
        attempts.append(
            PaymentAttempt(
                contract_id=inp.contract_id,
                installment_seq=1,
                attempt=0,
                idempotency_key=f"{inp.contract_id}:checkout:{inp.payment_intent}",
                amount=inp.amount,
                currency=inp.currency,
                payment_intent=inp.payment_intent,
                status="processing",
            )
        )
    s.add_all(attempts)
    # the consents given at checkout (issue 12): evidence next to the terms
    consents = [
        Consent(
            contract_id=inp.contract_id,
            kind=c.kind,
            version=c.version,
            text_hash=c.text_hash.lower(),
            given_at=c.given_at.astimezone(UTC),  # UTC inside: the 201 answers as GET does
            ip=c.ip,
        )
        for c in body.consents
    ]
    s.add_all(consents)
    s.flush()  # fills the column defaults the answer shows (created_at, attempted_at, …)
    return contract, insts, attempts, consents


WORKFLOW_TASK_TIMEOUT = timedelta(seconds=60)


async def _start_workflow(client: Client, settings: Settings, inp: ContractInput) -> None:
    try:
        await client.start_workflow(
            "contract",
            inp,
            id=workflow_id_for(inp.contract_id),
            task_queue=settings.task_queue,
            # A replayed checkout must never start a second run (and debit again), even
            # after the first run has completed.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=search_attributes(
                inp.customer.id, "active", "none", 0, False, inp.seller_id or DEFAULT_SELLER_ID
            ),
            static_summary=f"{inp.kind} {inp.contract_id} — {inp.product.name}",
            # The ledger's writes are local activities inside the workflow task (PATCH_LEAN):
            # on a worker busy with a due wave they can take longer than the default 10 s,
            # and a timed-out task is replayed in full — more load on the busy worker. A
            # crashed worker's task is re-dispatched after this long (issue 17).
            task_timeout=WORKFLOW_TASK_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        pass


@router.post(
    "",
    status_code=201,
    summary="Start a contract",
    response_model=ContractOut,
    response_model_exclude_unset=True,
    responses={200: {"model": ContractOut, "description": "The same body again: the contract"}},
)
async def create_contract(
    body: ContractCreate,
    response: Response,
    caller: PlatformCaller,
    state: StateDep,
    client: TemporalDep,
) -> dict[str, Any]:
    """Start a contract at checkout. Replaying the same body returns 200; a different body
    with the same `contract_id` is a 409."""
    settings = state.settings
    seller = await run_in_threadpool(checkout_seller, body, caller.seller, state.sellers())
    digest = _hash(body, seller.id)
    inp = build_input(body, settings, datetime.now(UTC), seller)
    # The database work (synchronous driver) runs in the threadpool, never on the event
    # loop, in one session; the answer is built there too.
    created, out = await run_in_threadpool(
        _record_checkout, state.sessions, settings, body, inp, digest
    )
    try:
        await _start_workflow(client, settings, inp)
    except (RPCError, RuntimeError) as exc:
        if created:
            # Nothing half-done: without a workflow the contract must not exist either.
            await run_in_threadpool(_forget_checkout, state.sessions, body.contract_id)
        raise ApiError(
            503, "unavailable", f"could not start the contract workflow: {exc}"
        ) from None
    if not created:
        response.status_code = 200
    return out


def _conflict(contract_id: str) -> ApiError:
    return ApiError(409, "conflict", f"contract {contract_id} already exists with a different body")


def _record_checkout(
    sessions: sessionmaker[Session],
    settings: Settings,
    body: ContractCreate,
    inp: ContractInput,
    digest: str,
) -> tuple[bool, dict[str, Any]]:
    """Insert the contract, or find the one an earlier delivery of the same body inserted
    (409 for another body); (created, the contract as GET shows it)."""
    cid = body.contract_id
    with sessions() as s:
        try:
            with s.begin():
                # Insert first: a checkout is new nearly always, and its primary key finds
                # the rare repeat (a retried request, a concurrent one with the same id).
                contract, insts, attempts, consents = _insert(s, body, inp, digest)
                # Answer from the rows just written: no second read (consents in the order
                # given, as GET orders them by id).
                return True, _view(settings, contract, insts, attempts, consents)
        except IntegrityError:
            # An earlier or concurrent request with the same contract_id inserted it:
            # the same body is that contract (200), another body a conflict (409).
            existing = s.get(Contract, cid)
            if existing is None or existing.request_hash != digest:
                raise _conflict(cid) from None
        return False, _read_view(s, settings, cid)


def _forget_checkout(sessions: sessionmaker[Session], contract_id: str) -> None:
    with transaction(sessions) as s:
        s.execute(delete(Installment).where(Installment.contract_id == contract_id))
        s.execute(delete(PaymentAttempt).where(PaymentAttempt.contract_id == contract_id))
        s.execute(delete(Consent).where(Consent.contract_id == contract_id))
        s.execute(delete(Contract).where(Contract.id == contract_id))


def contract_out(sessions: Any, settings: Settings, contract_id: str) -> dict[str, Any]:
    with sessions() as s:
        return _read_view(s, settings, contract_id)


def _read_view(s: Session, settings: Settings, contract_id: str) -> dict[str, Any]:
    c = s.get(Contract, contract_id)
    if c is None:
        raise ApiError(404, "not_found", f"contract {contract_id} not found")
    insts = s.scalars(
        select(Installment).where(Installment.contract_id == contract_id).order_by(Installment.seq)
    )
    attempts = s.scalars(
        select(PaymentAttempt)
        .where(PaymentAttempt.contract_id == contract_id)
        .order_by(PaymentAttempt.installment_seq, PaymentAttempt.attempt, PaymentAttempt.id)
    )
    return _view(settings, c, list(insts), list(attempts), _consents(s, contract_id))


def _consents(s: Session, contract_id: str) -> list[Consent]:
    return list(
        s.scalars(select(Consent).where(Consent.contract_id == contract_id).order_by(Consent.id))
    )


def consent_json(c: Consent) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "version": c.version,
        "text_hash": c.text_hash,
        "given_at": c.given_at.isoformat(),
        "ip": c.ip,
    }


def _ended(inst: Installment) -> dict[str, Any] | None:
    """How the installment ended (issue 12): {"how", "reason", "at"} — handed off, written
    off, cancelled (with the reason), or paid; None while it runs."""
    if inst.ended:
        return dict(inst.ended)
    if inst.status == "paid":
        at = inst.paid_at.isoformat() if inst.paid_at else None
        return {"how": "paid", "reason": "paid", "at": at}
    return None


def _stall_detail(inst: Installment, attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Why a `stalled` installment waits: Stripe's last refusal (code, message), if any."""
    if inst.status != "stalled":
        return None
    errors = [a for a in attempts if a["status"] == "error"]
    if not errors:
        return {"code": None, "message": "Stripe could not be reached; retried with backoff"}
    last = errors[-1]
    return {"code": last["decline_code"], "message": last["error"]}


def _collection(c: Contract) -> dict[str, Any] | None:
    """The case at the collection partner (issue 12) with its limitation (domain.collection):
    None before any hand-off."""
    data = c.collection
    if not data or not data.get("case"):
        return None
    case = dict(data["case"])
    facts = (c.claim_facts or {}).get("installments") or []
    arose = [
        (int(f["seq"]), str(f["due"])) for f in facts if int(f["seq"]) in set(case["installments"])
    ]
    titles = [e["on"] for e in case.get("statuses") or [] if e.get("status") == "title"]
    lim = limitation(arose, max(titles) if titles else None)
    return {
        "case_no": case["case_no"],
        "route": case["route"],
        "handed_off_at": case["handed_off_at"],
        "state": case.get("closed") or "open",
        "closed_at": case.get("closed_at"),
        "installments": case["installments"],
        "files": case.get("files") or [],
        "statuses": case.get("statuses") or [],
        "payments_reported": case.get("payments_told", 0),
        "deliveries_waiting": [
            {
                "what": d["message"] or f"case file {d['file_no']}",
                "rounds_failed": d["tries"],
                "last_error": d["last_error"] or None,
                "next_try_at": d["next_try_at"],
            }
            for d in data.get("deliveries") or []
        ],
        "call_in": data.get("call_in"),
        "limitation": {
            "regular": [
                {"installment": x.installment, "arose": x.arose, "ends": x.ends, "basis": x.basis}
                for x in lim.regular
            ],
            "title": (
                {"since": lim.title.arose, "ends": lim.title.ends, "basis": lim.title.basis}
                if lim.title
                else None
            ),
            "next_end": lim.next_end,
        },
    }


def _view(
    settings: Settings,
    c: Contract,
    insts: Sequence[Installment],
    attempts: Sequence[PaymentAttempt],
    consents: Sequence[Consent] = (),
) -> dict[str, Any]:
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for a in attempts:
        by_seq.setdefault(a.installment_seq, []).append(
            {
                "attempt": a.attempt,
                "status": a.status,
                "amount": a.amount,
                "payment_intent": a.payment_intent,
                "decline_code": a.decline_code,
                "failure_class": a.failure_class,
                "attempted_at": a.attempted_at.isoformat(),
                # Stripe refused the request (our integration error): its message
                "error": a.message if a.status == "error" else None,
            }
        )
    principal = sum(i.amount - i.paid_amount for i in insts if i.status == "open")
    if c.claim_facts:
        # issue 11: the claim as of today, by domain.claim from the workflow's facts
        claim: dict[str, Any] = claim_json(claim_as_of(c.claim_facts, written=c.claim))
    else:  # a contract started before the claim model: what its ledger row knows
        claim = {
            "as_of": today(),
            "principal": principal,
            "fees": max(c.overdue_amount - principal, 0),
            "interest": 0,
            "costs": 0,
            "lump_sums": 0,
            "total": c.overdue_amount,
            "items": [],
        }
    return {
        "contract_id": c.id,
        "seller_id": c.seller_id,
        "kind": c.kind,
        "status": c.status,
        "policy": c.policy_name,
        "customer_id": c.customer_id,
        "product_id": c.product_id,
        "currency": c.currency,
        "access": c.access,
        "paused": c.paused,
        "paused_until": c.paused_until.isoformat() if c.paused_until else None,
        "contested": c.contested,
        "dunning": {
            "stage": c.stage,
            "case_no": c.case_no,
            "opened_at": c.case_opened_at.isoformat() if c.case_opened_at else None,
        },
        "claim": claim,
        "schedule": [
            {
                "seq": i.seq,
                "due_at": i.due_at.isoformat(),
                "amount": i.amount,
                "paid_amount": i.paid_amount,
                "status": i.status,
                "attempts": by_seq.get(i.seq, []),
                "stalled": _stall_detail(i, by_seq.get(i.seq, [])),
                "ended": _ended(i),
                "refunded_amount": i.refunded_amount or 0,
            }
            for i in insts
        ],
        "collection": _collection(c),
        "terms": c.terms,
        "consents": [consent_json(x) for x in consents],
        "workflow_id": c.workflow_id,
        "temporal_ui": workflow_ui_url(settings, c.workflow_id),
        "created_at": c.created_at.isoformat(),
    }


@router.get(
    "/{contract_id}",
    summary="Read a contract",
    response_model=ContractOut,
    response_model_exclude_unset=True,
)
async def get_contract(contract_id: str, caller: ReaderCaller, state: StateDep) -> dict[str, Any]:
    """Status, schedule with each installment's attempts, claim, stage, access, UI link."""
    return contract_out(state.sessions, state.settings, contract_id)


@router.get(
    "/{contract_id}/events",
    summary="The contract's timeline",
    response_model=TimelineOut,
    response_model_exclude_unset=True,
)
async def get_events(contract_id: str, caller: ReaderCaller, state: StateDep) -> dict[str, Any]:
    with state.sessions() as s:
        if s.get(Contract, contract_id) is None:
            raise ApiError(404, "not_found", f"contract {contract_id} not found")
        rows = list(
            s.scalars(
                select(TimelineEvent)
                .where(TimelineEvent.contract_id == contract_id)
                .order_by(TimelineEvent.occurred_at, TimelineEvent.id)
            )
        )
    return {
        "contract_id": contract_id,
        "data": [
            {
                "type": r.type,
                "occurred_at": r.occurred_at.isoformat(),
                "actor": r.actor,
                "data": r.data,
            }
            for r in rows
        ],
    }


# -- support actions: Temporal Updates, validated before anything is written -----------------
#
# Idempotency (SPEC.md §4, issue 13 item 3): `Idempotency-Key` is the Update's id. Temporal
# answers a repeated Update id with the first outcome, but only within one workflow run; the
# `support_actions` row (written by the API before the Update is sent, completed by the
# workflow's ledger write together with the action's facts) keeps the first answer beyond
# that — after continue-as-new, after the contract ended. A request waits at most
# MAHNWERK_ACTION_WAIT_SECONDS for the contract; then it answers 202 with a status URL.

_CONFLICT_TYPES = {"ContractNotActive", "SettlementExceedsClaim", "InvalidState"}
_KEY_CHARS = re.compile(r"[A-Za-z0-9._:~-]{1,255}")
_KEY_RULE = "1 to 255 characters of A-Z, a-z, 0-9 and . _ : ~ -"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes the action safe to retry: a request with a key already used for "
        "this contract answers with the first answer and changes nothing (a different "
        f"request with the same key: 422). {_KEY_RULE}, e.g. a UUID.",
    ),
]

_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "model": ActionPendingOut,
        "description": "The contract did not answer within MAHNWERK_ACTION_WAIT_SECONDS "
        "(e.g. a debit in flight while Stripe is slow): the action goes on; its answer is at "
        "`status_url` (`GET /v1/contracts/{id}/actions/{key}`), or retry with the same "
        "Idempotency-Key.",
    }
}


@dataclass
class _ActionRow:
    key: str
    fresh: bool  # inserted by this request
    state: str
    http_status: int | None
    response: dict[str, Any] | None
    workflow_id: str


def _digest(name: str, body: BaseModel | None) -> str:
    canonical = json.dumps(
        {"action": name, "body": body.model_dump(mode="json") if body is not None else {}},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _record_action(
    sessions: sessionmaker[Session],
    contract_id: str,
    key: str,
    name: str,
    digest: str,
    actor: str,
    allow: tuple[str, ...] = (),
) -> _ActionRow:
    """The action's row: the one a request with this key wrote before (same request, else
    422), or a new `pending` one (not for a contract that has ended: 409 as before — except
    the ended statuses in `allow`, where the workflow still listens and decides)."""
    for _ in range(2):
        with sessions() as s:
            c = s.get(Contract, contract_id)
            if c is None:
                raise ApiError(404, "not_found", f"contract {contract_id} not found")
            row = s.get(SupportActionRequest, (contract_id, key))
            if row is not None:
                if row.request_hash != digest:
                    raise ApiError(
                        422,
                        "idempotency_key_reused",
                        f"Idempotency-Key {key} was already used for another request "
                        f"({row.action} on contract {contract_id}): use a new key",
                        [{"field": "Idempotency-Key", "action": row.action}],
                    )
                return _ActionRow(
                    key, False, row.state, row.http_status, row.response, c.workflow_id
                )
            # A handed-off or written-off contract may still take payments and case actions
            # (issue 12): its workflow decides (one that has ended answers 409 below).
            if c.status in FINAL and c.status not in allow:
                raise ApiError(
                    409, "conflict", f"contract {contract_id} is {c.status}", {"status": c.status}
                )
            s.add(
                SupportActionRequest(
                    contract_id=contract_id,
                    idempotency_key=key,
                    action=name,
                    request_hash=digest,
                    actor=actor,
                    state="pending",
                )
            )
            try:
                s.commit()
            except IntegrityError:
                continue  # the same key at the same moment: compare with that request
            return _ActionRow(key, True, "pending", None, None, c.workflow_id)
    raise ApiError(409, "conflict", f"Idempotency-Key {key} is being used concurrently")


def _complete_action(
    sessions: sessionmaker[Session], contract_id: str, key: str, status: int, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Keep the answer unless one is kept already (the workflow writes it with the action's
    facts); returns the kept answer, so every request with this key gets the same."""
    with transaction(sessions) as s:
        row = s.get(SupportActionRequest, (contract_id, key))
        if row is None:
            return status, body
        if row.state != "done" or row.http_status is None or row.response is None:
            row.state, row.http_status, row.response = "done", status, body
            row.completed_at = datetime.now(UTC)
        return row.http_status, dict(row.response)


def _read_action(sessions: sessionmaker[Session], contract_id: str, key: str) -> dict[str, Any]:
    with sessions() as s:
        row = s.get(SupportActionRequest, (contract_id, key))
        if row is None:
            raise ApiError(404, "not_found", f"no action with key {key} on contract {contract_id}")
        c = s.get(Contract, contract_id)
        return {
            "contract_id": contract_id,
            "idempotency_key": key,
            "action": row.action,
            "state": row.state,
            "http_status": row.http_status,
            "response": row.response,
            "created_at": row.created_at.isoformat(),
            "completed_at": row.completed_at.isoformat() if row.completed_at else None,
            "workflow_id": c.workflow_id if c is not None else None,
        }


def _status_url(contract_id: str, key: str) -> str:
    return f"/v1/contracts/{contract_id}/actions/{key}"


def _refusal(exc: WorkflowUpdateFailedError) -> ApiError:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        http = 409 if cause.type in _CONFLICT_TYPES else 422
        code = "conflict" if http == 409 else "invalid_input"
        return ApiError(http, code, cause.message, {"type": cause.type})
    return ApiError(500, "internal_error", str(exc))


async def _await_update(
    client: Client, workflow_id: str, name: str | None, arg: Any, key: str, wait: float
) -> ActionResult | None:
    """Send the Update (`name`) or, `name` None, look for the outcome of one sent before;
    None if it is not known within `wait` seconds."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        async with asyncio.timeout(wait):
            if name is None:
                uh = handle.get_update_handle(key, result_type=ActionResult)
            else:
                uh = await handle.start_update(
                    name,
                    arg,
                    id=key,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                    result_type=ActionResult,
                )
            res: ActionResult = await uh.result()
            return res
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        return None


async def _update(
    state: StateDep,
    client: Client,
    contract_id: str,
    name: str,
    arg: Any,
    *,
    body: BaseModel | None,
    actor: str,
    key: str | None,
    allow: tuple[str, ...] = (),
) -> Response:
    if key is not None and not _KEY_CHARS.fullmatch(key):
        raise ApiError(
            422,
            "invalid_input",
            f"Idempotency-Key: must be {_KEY_RULE}",
            [{"field": "Idempotency-Key", "message": f"must be {_KEY_RULE}", "in": "header"}],
        )
    key = key or str(uuid.uuid4())  # without the header: a new action, as before
    sessions = state.sessions
    row = await run_in_threadpool(
        _record_action, sessions, contract_id, key, name, _digest(name, body), actor, allow
    )
    if row.state == "done" and row.http_status is not None and row.response is not None:
        return JSONResponse(row.response, status_code=row.http_status)

    async def answer(status: int, out: dict[str, Any]) -> Response:
        status, out = await run_in_threadpool(
            _complete_action, sessions, contract_id, key, status, out
        )
        return JSONResponse(out, status_code=status)

    # A repeated key whose first request is still pending sends the Update again with the
    # same id: Temporal attaches it to the first (same run), or the workflow recognises it
    # (ContractState.done_actions); either way it is applied once.
    try:
        res = await _await_update(
            client, row.workflow_id, name, arg, key, state.settings.action_wait_seconds
        )
    except WorkflowUpdateFailedError as exc:
        err = _refusal(exc)
        if err.status >= 500:
            raise err from None
        return await answer(err.status, error_body(err.code, err.message, err.details))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in str(exc).lower():
            msg = f"contract {contract_id} is no longer running"
            return await answer(409, error_body("conflict", msg, None))
        raise ApiError(503, "unavailable", f"Temporal: {exc}") from None
    if res is None:
        url = _status_url(contract_id, key)
        return JSONResponse(
            {
                "contract_id": contract_id,
                "action": name,
                "idempotency_key": key,
                "state": "pending",
                "status_url": url,
                "message": "the contract has not answered yet; the action goes on. Its "
                "answer will be at status_url; a retry with the same Idempotency-Key is safe.",
            },
            status_code=202,
            headers={"Location": url},
        )
    return await answer(200, action_response(contract_id, res))


@router.get(
    "/{contract_id}/actions/{key}",
    summary="The answer to a support action, by its Idempotency-Key",
    response_model=ActionStatusOut,
    responses={
        202: {"model": ActionStatusOut, "description": "Not answered yet: ask again later."}
    },
)
async def action_status(
    contract_id: str, key: str, caller: SupportCaller, state: StateDep, client: TemporalDep
) -> Response:
    """`state` `done` (200) with the answer the action's request got or would have got
    (`http_status`, `response`), or `pending` (202). Actions sent without an Idempotency-Key
    are found by the key in their 202 answer's `status_url`."""
    found = await run_in_threadpool(_read_action, state.sessions, contract_id, key)
    if found["state"] != "done" and found["workflow_id"]:
        try:
            res = await _await_update(client, found["workflow_id"], None, None, key, 1.0)
        except WorkflowUpdateFailedError as exc:
            err = _refusal(exc)
            if err.status < 500:
                await run_in_threadpool(
                    _complete_action,
                    state.sessions,
                    contract_id,
                    key,
                    err.status,
                    error_body(err.code, err.message, err.details),
                )
            res = None
        except RPCError:
            res = None  # not (yet) known to Temporal: the row tells what is known
        if res is not None:
            await run_in_threadpool(
                _complete_action,
                state.sessions,
                contract_id,
                key,
                200,
                action_response(contract_id, res),
            )
        found = await run_in_threadpool(_read_action, state.sessions, contract_id, key)
    found.pop("workflow_id")
    return JSONResponse(found, status_code=200 if found["state"] == "done" else 202)


@router.post(
    "/{contract_id}/settlements",
    summary="Record a payment received outside Stripe",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def settle(
    contract_id: str,
    body: SettlementIn,
    caller: SupportCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Allocated costs → interest → principal, oldest installment first (§§ 366, 367 BGB)."""
    req = SettlementRequest(
        amount=body.amount,
        method=body.method,
        reference=body.reference,
        received_at=body.received_at,
        actor=caller.name,
    )
    return await _update(
        state, client, contract_id, "settle", req, body=body, actor=caller.name, key=idempotency_key
    )


@router.post(
    "/{contract_id}/payment-method",
    summary="Replace the payment method and debit now",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def replace_payment_method(
    contract_id: str,
    body: PaymentMethodIn,
    caller: SupportCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    req = PaymentMethodRequest(payment_method=body.payment_method, actor=caller.name)
    return await _update(
        state,
        client,
        contract_id,
        "replace_payment_method",
        req,
        body=body,
        actor=caller.name,
        key=idempotency_key,
    )


@router.post(
    "/{contract_id}/pause",
    summary="Pause retries, notices, locks and hand-offs",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def pause(
    contract_id: str,
    body: PauseIn,
    caller: SupportCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Until `until` (it ends by itself) or until resumed; the dunning clock stands still."""
    req = SupportAction(actor=caller.name, reason=body.reason, until=body.until)
    return await _update(
        state, client, contract_id, "pause", req, body=body, actor=caller.name, key=idempotency_key
    )


@router.post(
    "/{contract_id}/resume",
    summary="End a pause now",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def resume(
    contract_id: str,
    body: ResumeIn,
    caller: SupportCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    req = SupportAction(actor=caller.name, reason=body.reason)
    return await _update(
        state, client, contract_id, "resume", req, body=body, actor=caller.name, key=idempotency_key
    )


@router.post(
    "/{contract_id}/deferral",
    summary="Defer the overdue amount (Stundung)",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def deferral(
    contract_id: str,
    body: DeferralIn,
    caller: SupportCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The overdue amount is due again on `until` (00:00 Europe/Berlin); no escalation before."""
    req = SupportAction(actor=caller.name, reason=body.reason, until=due_instant(body.until))
    return await _update(
        state, client, contract_id, "defer", req, body=body, actor=caller.name, key=idempotency_key
    )


@router.post(
    "/{contract_id}/waivers",
    summary="Waive dunning fees and/or interest",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def waivers(
    contract_id: str,
    body: WaiverIn,
    caller: SupportCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    req = SupportAction(
        actor=caller.name, reason=body.reason, fees=body.fees, interest=body.interest
    )
    return await _update(
        state, client, contract_id, "waive", req, body=body, actor=caller.name, key=idempotency_key
    )


@router.post(
    "/{contract_id}/contest",
    summary="The customer disputes the claim",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def contest(
    contract_id: str,
    body: ReasonIn,
    caller: SupportCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Automatic escalation stops before the hand-off; the route becomes manual."""
    req = SupportAction(actor=caller.name, reason=body.reason)
    return await _update(
        state,
        client,
        contract_id,
        "contest",
        req,
        body=body,
        actor=caller.name,
        key=idempotency_key,
    )


@router.post(
    "/{contract_id}/write-off",
    summary="Write the claim off",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def write_off(
    contract_id: str,
    body: ReasonIn,
    caller: AdminCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    req = SupportAction(actor=caller.name, reason=body.reason)
    return await _update(
        state,
        client,
        contract_id,
        "write_off",
        req,
        body=body,
        actor=caller.name,
        key=idempotency_key,
    )


@router.post(
    "/{contract_id}/retry-debit",
    summary="Retry a stalled debit now",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def retry_debit(
    contract_id: str,
    caller: AdminCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A debit Stripe refused as our integration error (installment `stalled`, event
    `integration.error`) is retried with backoff; once the cause is fixed, an admin retries
    it at once. 409 when nothing is stalled."""
    req = SupportAction(actor=caller.name, reason="retry stalled debit")
    return await _update(
        state,
        client,
        contract_id,
        "retry_debit",
        req,
        body=None,
        actor=caller.name,
        key=idempotency_key,
    )


@router.post(
    "/{contract_id}/approve-handoff",
    summary="Approve a hand-off waiting for an admin",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def approve_handoff(
    contract_id: str,
    body: ApproveHandoffIn,
    caller: AdminCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    req = SupportAction(actor=caller.name, reason="approved", route=body.route)
    return await _update(
        state,
        client,
        contract_id,
        "approve_handoff",
        req,
        body=body,
        actor=caller.name,
        key=idempotency_key,
    )


@router.post(
    "/{contract_id}/address",
    summary="Record the debtor's postal address",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def set_address(
    contract_id: str,
    body: AddressIn,
    caller: SupportCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A court hand-off needs the debtor's postal address (§ 690 (1) Nr. 1 ZPO): without it
    the contract waits in dunning stage `needs_address` (event `handoff.address_required`);
    recording it here hands the claim off at once. Also updates the address on the
    contract (and so in the case file)."""
    req = SupportAction(
        actor=caller.name,
        reason=body.reason,
        address=body.address.model_dump(exclude_none=True),
    )
    return await _update(
        state,
        client,
        contract_id,
        "set_address",
        req,
        body=body,
        actor=caller.name,
        key=idempotency_key,
    )


@router.post(
    "/{contract_id}/recall",
    summary="Recall the case from the collection partner",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
@router.post(
    "/{contract_id}/case/recall",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
    include_in_schema=False,  # the same action under the name of issue 12's brief
)
async def recall(
    contract_id: str,
    body: ReasonIn,
    caller: AdminCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The claim handed off comes back (its unpaid installments are `open` again, the
    contract `in_dunning`); the partner is told (`case.recall`, signed, to
    MAHNWERK_COLLECTION_URL). 409 when no case is at the partner."""
    req = SupportAction(actor=caller.name, reason=body.reason)
    return await _update(
        state, client, contract_id, "recall", req, body=body, actor=caller.name, key=idempotency_key
    )


@router.post(
    "/{contract_id}/case-status",
    summary="Record what the collection partner or the court reports",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
@router.post(
    "/{contract_id}/case/status",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
    include_in_schema=False,  # the same action under the name of issue 12's brief
)
async def case_status(
    contract_id: str,
    body: CaseStatusIn,
    caller: AdminCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """`objection` (Widerspruch: the claim becomes contested), `enforcement_order`
    (Vollstreckungsbescheid), `title` (final: the 30-year limitation, §§ 197 (1) Nr. 3, 201
    BGB, shown under `collection.limitation`), `uncollectible` (the claim is written off),
    each with the day it happened. 409 when no case is at the partner."""
    req = SupportAction(
        actor=caller.name,
        reason=body.reason,
        case_status=body.status,
        on=body.on,
        reference=body.reference,
    )
    return await _update(
        state,
        client,
        contract_id,
        "case_status",
        req,
        body=body,
        actor=caller.name,
        key=idempotency_key,
    )


@router.post(
    "/{contract_id}/cancel",
    summary="End a contract early (withdrawal, cancellation, goodwill, fraud)",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def cancel(
    contract_id: str,
    body: CancelIn,
    caller: PlatformSupportCaller,
    state: StateDep,
    client: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Every kind (docs/endings.md). `withdrawal`, `goodwill`, `fraud`: now — nothing unpaid is
    owed any more, dunning stops, a refund goes back through Stripe (a withdrawal: what the
    policy's `withdrawal.refund` says, unless `refund` names the amount); also for a
    completed contract. `cancellation_button`, `other`: at the end of the period paid for
    (default) or now; what is due stays owed; a subscription never before its minimum term
    ends. Platform and support (and admin); `Idempotency-Key` makes it safe to retry — one
    refund, however often it is sent."""
    req = SupportAction(
        actor=caller.name,
        reason=body.reason,
        at_period_end=True if body.at_period_end is None else body.at_period_end,
        refund=body.refund_value,
        note=body.note,
    )
    return await _update(
        state,
        client,
        contract_id,
        "cancel",
        req,
        body=body,
        actor=caller.name,
        key=idempotency_key,
        allow=("completed",),
    )
