"""The Temporal UI's codec server (SPEC.md §7): `/codec/encode` and `/codec/decode`.

The UI (or `temporal workflow show --codec-endpoint …`) posts `{"payloads": [...]}` in the
protobuf JSON form and gets the same form back, decrypted (or encrypted) with the worker's key
ring. Admins only: the decoded payloads hold names and e-mail addresses.

The browser calls us from the UI's origin, so `/codec/*` — and only `/codec/*` — answers CORS
for that origin (`MAHNWERK_TEMPORAL_UI_URL`), credentials allowed. Without a codec key the
endpoints answer with the payloads unchanged, so the UI works the same in a dev setup.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from google.protobuf import json_format
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from api.deps import AdminCaller, StateDep
from api.errors import ApiError
from core.codec import CodecError, EncryptionCodec, parse_key_ring
from core.settings import Settings

log = logging.getLogger("mahnwerk.codec")

router = APIRouter(prefix="/codec", tags=["codec"])

PREFIX = "/codec/"
CORS_HEADERS = ["Authorization", "Content-Type", "X-Namespace"]

_EXAMPLE = {
    "payloads": [
        {
            "metadata": {
                "encoding": "YmluYXJ5L2VuY3J5cHRlZA==",
                "encryption-key-id": "azIwMjYxMTI3",
            },
            "data": "…base64…",
        }
    ]
}
_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"payloads": {"type": "array", "items": {"type": "object"}}},
                    "required": ["payloads"],
                },
                "example": _EXAMPLE,
            }
        },
    },
    "responses": {
        "200": {
            "description": "The payloads, converted, in the same protobuf JSON form.",
            "content": {"application/json": {"example": _EXAMPLE}},
        }
    },
}


@functools.lru_cache(maxsize=4)
def _codec(raw_ring: str) -> EncryptionCodec:
    return EncryptionCodec(parse_key_ring(raw_ring))


def _read(body: bytes) -> list[Payload]:
    try:
        msg = json_format.Parse(body or b"{}", Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError) as exc:  # ValueError: not UTF-8
        raise ApiError(
            422, "invalid_input", f"payloads: not a Temporal Payloads JSON object ({exc})"
        ) from None
    return list(msg.payloads)


def _answer(payloads: list[Payload]) -> Response:
    text = json_format.MessageToJson(Payloads(payloads=payloads), indent=None)
    return Response(content=text, media_type="application/json")


async def _convert(
    request: Request, state: StateDep, fn: Callable[[EncryptionCodec, Payload], Payload]
) -> Response:
    payloads = _read(await request.body())
    raw_ring = state.settings.codec_key
    if not raw_ring:  # no encryption configured: the UI shows payloads as they are
        return _answer(payloads)
    codec = _codec(raw_ring)
    try:
        return _answer([fn(codec, p) for p in payloads])
    except CodecError as exc:
        raise ApiError(422, "undecodable", str(exc)) from None


@router.post(
    "/decode",
    summary="Decrypt payloads for the Temporal UI (admin)",
    response_class=Response,
    openapi_extra=_OPENAPI,
)
async def decode(request: Request, caller: AdminCaller, state: StateDep) -> Response:
    response = await _convert(request, state, EncryptionCodec.decrypt)
    log.info(
        "codec decode by %s (namespace %s)", caller.name, request.headers.get("x-namespace", "-")
    )
    return response


@router.post(
    "/encode",
    summary="Encrypt payloads for the Temporal UI (admin)",
    response_class=Response,
    openapi_extra=_OPENAPI,
)
async def encode(request: Request, caller: AdminCaller, state: StateDep) -> Response:
    return await _convert(request, state, EncryptionCodec.encrypt)


# -- CORS, for /codec/* only -------------------------------------------------------------------


def ui_origins(settings: Settings) -> list[str]:
    """The Temporal UI's origin; on a loopback host also its twin (localhost ⇄ 127.0.0.1),
    because people open either and the browser sends what is in its address bar."""
    url = urlsplit(settings.temporal_ui_url)
    if not url.scheme or not url.hostname:
        return []
    port = f":{url.port}" if url.port else ""
    origins = [f"{url.scheme}://{url.hostname}{port}"]
    twin = {"localhost": "127.0.0.1", "127.0.0.1": "localhost"}.get(url.hostname)
    if twin:
        origins.append(f"{url.scheme}://{twin}{port}")
    return origins


class CodecCORS:
    """Starlette's CORSMiddleware, applied to `/codec/*` only: the UI's origin may call the
    codec endpoints from the browser, not the rest of the API."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=CORS_HEADERS,
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
