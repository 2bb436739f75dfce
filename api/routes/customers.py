"""POST /v1/customers/{id}/erase: erase a customer's personal data (Art. 17 GDPR), admins only.

The work is core/erasure.py's (one transaction); this route maps its outcomes to HTTP and
drops the shredded data keys from this process's codec caches. What is kept where and for
how long: docs/data-retention.md.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from api.deps import AdminCaller, StateDep
from api.errors import ApiError, reject_nul_bytes
from api.responses import ErasureOut
from core.codec import forget_shredded
from core.erasure import ErasureRefused, UnknownCustomer, erase_customer

log = logging.getLogger("mahnwerk.erasure")

router = APIRouter(
    prefix="/v1/customers", tags=["customers"], dependencies=[Depends(reject_nul_bytes)]
)


@router.post(
    "/{customer_id}/erase",
    summary="Erase a customer's personal data (GDPR)",
    response_model=ErasureOut,
    response_model_exclude_unset=True,
)
async def erase(customer_id: str, caller: AdminCaller, state: StateDep) -> dict[str, Any]:
    """Anonymise the customer's personal data in every ledger table (names, e-mail and
    postal addresses, the terms acceptance IP, Stripe customer and payment-method
    references), keeping ids, amounts, dates and statuses, and delete the customer's data
    key, which makes their Temporal histories unreadable (crypto-shredding).

    409 while a contract is not finished (`details.reason = "contracts_open"`; `handed_off`
    counts as open) or while the retention period runs (`"retention_period"`, with
    `details.retain_until`, set by `MAHNWERK_RETENTION_YEARS`). 404 for an unknown customer.
    Repeating the request answers 200 with the same result. A seller-scoped key may not:
    a customer's data spans every seller it bought from (issue 14)."""
    if caller.seller is not None:
        raise ApiError(
            403, "forbidden", "a seller-scoped API key cannot erase customers (all sellers')"
        )
    try:
        result = await run_in_threadpool(
            erase_customer,
            state.sessions,
            customer_id,
            actor=caller.name,
            retention_years=state.settings.retention_years,
        )
    except UnknownCustomer:
        raise ApiError(404, "not_found", f"customer {customer_id} not found") from None
    except ErasureRefused as exc:
        raise ApiError(409, "conflict", exc.message, exc.details) from None
    forget_shredded(result["shredded_keys"])
    log.info(
        "customer %s erased by %s (%d contracts)",
        customer_id,
        caller.name,
        len(result["contracts"]),
    )
    return result
