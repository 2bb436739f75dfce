"""/v1/access: may this customer use this product right now?"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import PlatformCaller, StateDep
from api.errors import reject_nul_bytes
from api.schemas import AccessOut
from core.models import AccessState, Contract

router = APIRouter(prefix="/v1/access", tags=["access"], dependencies=[Depends(reject_nul_bytes)])


@router.get("/{customer_id}/{product_id}", summary="Access state of a customer for a product")
async def get_access(
    customer_id: str, product_id: str, caller: PlatformCaller, state: StateDep
) -> AccessOut:
    with state.sessions() as s:
        row = s.get(AccessState, (customer_id, product_id))
        if row is not None and caller.seller is not None:
            # a seller-scoped key (issue 14) knows its seller's contracts only
            contract = s.get(Contract, row.contract_id)
            if contract is None or contract.seller_id != caller.seller:
                row = None
    if row is None:
        return AccessOut(
            access="none", contract_id=None, customer_id=customer_id, product_id=product_id
        )
    return AccessOut(
        access=row.access,  # type: ignore[arg-type]
        contract_id=row.contract_id,
        customer_id=customer_id,
        product_id=product_id,
    )
