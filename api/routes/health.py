"""Liveness and readiness."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.deps import StateDep
from api.responses import HealthOut, ReadyOut
from domain.interest import base_rate_coverage, with_rates
from domain.schedule import berlin_date

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness", response_model=HealthOut)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database and Temporal reachable",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "The database or Temporal unreachable"}},
)
async def readyz(state: StateDep) -> Any:
    checks: dict[str, str] = {}
    try:
        with state.sessions() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        client = await state.temporal()
        await client.workflow_service.get_system_info(GetSystemInfoRequest())
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
    # A warning, not a reason to be unready: without today's § 247 BGB base rate interest is
    # claimed up to the last day with a rate and the rest named as missing (issue 11).
    coverage = base_rate_coverage(
        with_rates(state.settings.extra_base_rates), berlin_date(datetime.now(UTC))
    )
    if not coverage.covered or coverage.missing:
        body["warnings"] = {
            "base_rates": (
                f"no § 247 BGB base rate for {', '.join(coverage.missing)}: interest after "
                f"{coverage.covered_until or 'the table'} is not computed; add it with "
                "MAHNWERK_BASE_RATES (see `mahnwerk base-rates`)"
            )
        }
    return JSONResponse(body, status_code=200 if ok else 503)
