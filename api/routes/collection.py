"""The collection partner's side: `GET /v1/contracts/{id}/collection-case` (the hand-off case
file, SPEC.md §6, for admins) and `POST /v1/webhooks/collection` (the partner reports a
payment it received, signed like what we send it: `Mahnwerk-Signature` with
MAHNWERK_EVENTS_SECRET over the raw body; issue 12)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError
from sqlalchemy import select

from activities.events import verify
from api.deps import AdminCaller, StateDep, TemporalDep
from api.errors import ApiError, reject_nul_bytes
from api.responses import CollectionCaseOut
from api.routes.contracts import _ACTION_RESPONSES, _update
from api.schemas import ActionOut, PartnerPaymentIn
from core.models import CollectionCase, Contract
from workflows.types import SettlementRequest

router = APIRouter(
    prefix="/v1/contracts", tags=["collection"], dependencies=[Depends(reject_nul_bytes)]
)
webhook_router = APIRouter(prefix="/v1/webhooks", tags=["collection"])

# The actor of what the partner reports (timeline, support_actions).
PARTNER = "collection-partner"
SIGNATURE_TOLERANCE = 300  # seconds, as for the events we send


@webhook_router.post(
    "/collection",
    summary="The collection partner reports a payment (signature-verified)",
    response_model=ActionOut,
    responses=_ACTION_RESPONSES,
)
async def collection_webhook(request: Request, state: StateDep, client: TemporalDep) -> Response:
    """`{"type": "case.payment", "contract_id", "payment_id", "amount", "received_at"?,
    "reference"?}` signed with `Mahnwerk-Signature: t=…,v1=…` (HMAC-SHA256 of "t.body" with
    MAHNWERK_EVENTS_SECRET, the secret our case files to the partner are signed with). The
    payment is recorded and allocated like a settlement (§ 367 BGB) once per `payment_id`
    (a repeated report answers as the first did). Bad signature: 400, nothing changes;
    a contract never handed off: 409."""
    body = await request.body()
    header = request.headers.get("mahnwerk-signature") or ""
    secret = state.settings.events_secret.get_secret_value()
    if not verify(body, header, secret, tolerance=SIGNATURE_TOLERANCE):
        raise ApiError(400, "bad_signature", "Mahnwerk-Signature verification failed")
    try:
        data = json.loads(body)
        report = PartnerPaymentIn.model_validate(data)
    except (ValueError, UnicodeDecodeError) as exc:
        errors = exc.errors() if isinstance(exc, ValidationError) else []
        field = ".".join(str(p) for p in errors[0]["loc"]) if errors else "body"
        message = errors[0]["msg"] if errors else "not JSON"
        raise ApiError(
            422, "invalid_input", f"{field}: {message}", [{"field": field, "message": message}]
        ) from None
    req = SettlementRequest(
        amount=report.amount,
        method="collection_partner",
        reference=report.reference,
        received_at=report.received_at,
        actor=PARTNER,
    )
    return await _update(
        state,
        client,
        report.contract_id,
        "partner_payment",
        req,
        body=report,
        actor=PARTNER,
        key=f"partner:{report.payment_id}",
    )


@router.get(
    "/{contract_id}/collection-case",
    summary="The hand-off case file",
    response_model=CollectionCaseOut,
    response_model_exclude_unset=True,
)
async def get_collection_case(
    contract_id: str, caller: AdminCaller, state: StateDep
) -> dict[str, Any]:
    """The latest case file built for the contract, as stored (and delivered), with its
    delivery state. 404 before the hand-off."""
    with state.sessions() as s:
        if s.get(Contract, contract_id) is None:
            raise ApiError(404, "not_found", f"contract {contract_id} not found")
        rows = list(
            s.scalars(
                select(CollectionCase)
                .where(CollectionCase.contract_id == contract_id)
                .order_by(
                    CollectionCase.case_no.desc(),
                    CollectionCase.file_no.desc(),
                    CollectionCase.id.desc(),
                )
            )
        )
        if not rows:
            raise ApiError(404, "not_found", "no collection case for this contract")
        row = rows[0]
        return {
            "id": row.id,
            "contract_id": row.contract_id,
            "case_no": row.case_no,
            "file_no": row.file_no,
            # every file of the latest case: the hand-off's (0) and its follow-ups
            "files": [
                {
                    "id": r.id,
                    "file_no": r.file_no,
                    "created_at": r.created_at.isoformat(),
                    "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None,
                    "delivery_attempts": r.delivery_attempts,
                    "last_error": r.last_error,
                    "installments": [i["seq"] for i in r.file.get("installments", [])],
                    "joined_installments": (r.file.get("follow_up") or {}).get(
                        "joined_installments", []
                    ),
                }
                for r in sorted(rows, key=lambda r: (r.file_no, r.id))
                if r.case_no == row.case_no
            ],
            "route": row.route,
            "created_at": row.created_at.isoformat(),
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
            "delivery_attempts": row.delivery_attempts,
            "last_error": row.last_error,
            "file": row.file,
        }
