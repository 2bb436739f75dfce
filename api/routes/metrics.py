"""`GET /metrics` (SPEC.md §4, no auth): Prometheus metrics of the API process — the
business counters and the ledger gauges (open claim amount, undelivered events).

The Temporal SDK metrics and the counters of the activities are served by each worker on
MAHNWERK_WORKER_METRICS_PORT (see core/metrics.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import StateDep
from core import metrics
from domain.interest import with_rates

router = APIRouter(tags=["health"])

_TEXT_EXAMPLE = (
    "# HELP mahnwerk_open_claim_amount Overdue amount of contracts in dunning, in minor units.\n"
    "# TYPE mahnwerk_open_claim_amount gauge\n"
    'mahnwerk_open_claim_amount{currency="eur"} 29700.0\n'
)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format (OpenMetrics if the scraper asks for it).",
            "content": {"text/plain": {"schema": {"type": "string"}, "example": _TEXT_EXAMPLE}},
        }
    },
)
def prometheus_metrics(request: Request, state: StateDep) -> Response:
    # A plain `def`: the ledger query runs in the threadpool, not on the event loop.
    body, content_type = metrics.exposition(
        state.sessions,
        request.headers.get("accept"),
        with_rates(state.settings.extra_base_rates),
    )
    return Response(content=body, media_type=content_type)
