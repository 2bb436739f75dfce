"""GET /v1/contracts/{id}/collection-case: the hand-off case file (SPEC.md §6), for admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from api.deps import AdminCaller, StateDep
from api.errors import ApiError, reject_nul_bytes
from api.responses import CollectionCaseOut
from core.models import CollectionCase, Contract

router = APIRouter(
    prefix="/v1/contracts", tags=["collection"], dependencies=[Depends(reject_nul_bytes)]
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
        row = s.scalar(
            select(CollectionCase)
            .where(CollectionCase.contract_id == contract_id)
            .order_by(CollectionCase.case_no.desc(), CollectionCase.id.desc())
            .limit(1)
        )
        if row is None:
            raise ApiError(404, "not_found", "no collection case for this contract")
        return {
            "id": row.id,
            "contract_id": row.contract_id,
            "case_no": row.case_no,
            "route": row.route,
            "created_at": row.created_at.isoformat(),
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
            "delivery_attempts": row.delivery_attempts,
            "last_error": row.last_error,
            "file": row.file,
        }
