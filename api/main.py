"""The FastAPI application: routers only; state is built once per process."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session, sessionmaker

from api import docs, errors, webhook_events
from api.deps import AppState
from api.middleware import RequestContext, RequestGuard
from api.routes import (
    access,
    codec,
    collection,
    console,
    contracts,
    customers,
    health,
    invoices,
    metrics,
    pay,
    reads,
    sellers,
    webhooks,
)
from api.schemas import error_responses
from core import metrics as core_metrics
from core.db import make_engine, make_session_factory
from core.settings import Settings, check_startup, get_settings

DESCRIPTION = """Dunning engine: contracts, debits, Mahnungen, access locks, hand-offs.

Authenticate with `Authorization: Bearer <key>` (**Authorize** above): `platform` keys start
and read contracts, `support` keys read and act on them, `admin` keys do everything. Errors
are `{"error": {"code", "message", "details", "request_id"}}`. The events Mahnwerk sends to
the platform are listed under **Webhooks**. Guides: `docs/api.md`, `docs/events.md`.
"""


def operation_id(route: APIRoute) -> str:
    """Stable operation ids for client generators: `<tag>_<function>`, without the tag's
    own word (`contracts_get`, `contracts_settle`, `access_get`, `reports_receivables`).
    They follow the route functions' names: renaming one renames its operation."""
    tag = str(route.tags[0]) if route.tags else ""
    name = route.name
    if tag:
        words = [w for w in name.split("_") if w not in (tag, tag.rstrip("s"))]
        name = f"{tag}_{'_'.join(words) or name}"
    return name


def create_app(
    settings: Settings | None = None, session_factory: sessionmaker[Session] | None = None
) -> FastAPI:
    if settings is None:
        # The process's own configuration (`mahnwerk api`, or uvicorn's --factory): refuse
        # missing secrets and dev defaults outside dev mode. Tests pass their settings.
        settings = get_settings()
        check_startup(settings, "api")
    sessions = session_factory or make_session_factory(make_engine(settings.database_url))
    app = FastAPI(
        title="Mahnwerk",
        version="0.1.0",
        description=DESCRIPTION,
        generate_unique_id_function=operation_id,
        # Served by api/docs.py from the project's own dependencies (no CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.mahnwerk = AppState(settings=settings, sessions=sessions)
    core_metrics.configure(settings)  # the `seller` label's bound
    errors.install(app)
    docs.install(app)
    webhook_events.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # Before the contracts router: GET /v1/contracts (listing) and …/notices live there.
    app.include_router(reads.router)
    app.include_router(collection.router, responses=error_responses(401, 403, 404))
    app.include_router(invoices.router, responses=error_responses(401, 403))
    app.include_router(contracts.router, responses=error_responses(401, 403, 404, 409, 422, 503))
    app.include_router(access.router, responses=error_responses(401, 403, 422))
    app.include_router(customers.router, responses=error_responses(401, 403, 404, 409))
    app.include_router(sellers.router)
    app.include_router(webhooks.router, responses=error_responses(400))
    app.include_router(collection.webhook_router, responses=error_responses(400, 404, 409, 422))
    app.include_router(codec.router, responses=error_responses(401, 403, 422))
    app.include_router(pay.router)  # the customer's page: HTML, outside the API document
    app.include_router(console.router)  # the support console: HTML, outside the API document
    # Innermost first: bodies are bounded and callers authenticated before anything reads
    # them; CORS headers also on those refusals; the request log outermost.
    app.add_middleware(RequestGuard)
    app.add_middleware(codec.CodecCORS, origins=codec.ui_origins(settings))
    app.add_middleware(RequestContext)  # outermost: ids and logs also for CORS answers
    return app
