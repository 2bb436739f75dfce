"""`create_app`: the stand-in as an ASGI application (Starlette)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from .config import StandinConfig
from .control import CONTROL_ROUTES
from .engine import Engine
from .http import unknown_route
from .routes import V1_ROUTES

_ALL_METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]


def create_app(settings: StandinConfig | None = None) -> Starlette:
    engine = Engine(settings or StandinConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.webhooks.start()
        try:
            yield
        finally:
            engine.scheduler.cancel_all()
            await engine.webhooks.stop()

    app = Starlette(
        routes=[
            *V1_ROUTES,
            *CONTROL_ROUTES,
            Route("/{path:path}", unknown_route, methods=_ALL_METHODS),
        ],
        lifespan=lifespan,
    )
    app.state.engine = engine
    return app
