"""`create_app`: the stand-in as an ASGI application (Starlette)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from .checkout import CHECKOUT_PAGE_ROUTES
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
        freezer = asyncio.create_task(_freeze_gc(engine)) if engine.config.freeze_gc else None
        try:
            yield
        finally:
            if freezer is not None:
                freezer.cancel()
            engine.scheduler.cancel_all()
            await engine.webhooks.stop()

    app = Starlette(
        routes=[
            *V1_ROUTES,
            *CONTROL_ROUTES,
            *CHECKOUT_PAGE_ROUTES,
            Route("/{path:path}", unknown_route, methods=_ALL_METHODS),
        ],
        lifespan=lifespan,
    )
    app.state.engine = engine
    return app


async def _freeze_gc(engine: Engine, every: float = 1.0, growth: int = 2000) -> None:
    """Freeze the heap whenever the store grew by `growth` objects (see StandinConfig)."""
    frozen_at = 0
    while True:
        await asyncio.sleep(every)
        size = engine.object_count() + len(engine.events)
        if size - frozen_at >= growth or size < frozen_at:
            gc.freeze()
            frozen_at = size
