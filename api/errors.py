"""One error format everywhere (SPEC.md §4): {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.logging import request_id_var


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error object; `request_id` is the id of the request being answered (api.middleware
    sets it; also the `X-Request-Id` header), so a caller can quote it to the operator. An
    idempotent replay of a support action repeats its first answer, with that request's id."""
    error: dict[str, Any] = {"code": code, "message": message, "details": details}
    request_id = request_id_var.get()
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    503: "unavailable",
}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _invalid_param(where: str, name: str, message: str) -> ApiError:
    return ApiError(
        422,
        "invalid_input",
        f"{name}: {message}",
        [{"field": name, "message": message, "in": where}],
    )


def reject_nul_bytes(request: Request) -> None:
    """Router dependency: a NUL character in a path or query parameter is invalid input, and
    so is an id outside its character set.

    PostgreSQL cannot store or even compare text containing NUL (psycopg raises DataError),
    so without this check `GET /v1/contracts/a%00b` and friends answered 500. Ids in paths
    have the character sets of the checkout (SPEC §2: contract ids `[A-Za-z0-9_.-]{1,64}`;
    the platform's customer and product ids): anything else names nothing that can exist."""
    from api.schemas import EXTERNAL_ID, ID

    patterns = {"contract_id": ID, "customer_id": EXTERNAL_ID, "product_id": EXTERNAL_ID}
    params = [("path", k, v) for k, v in request.path_params.items()]
    params += [("query", k, v) for k, v in request.query_params.multi_items()]
    for where, name, value in params:
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            raise _invalid_param(where, name, "must not contain NUL (\\x00) characters")
        pattern = patterns.get(name)
        if where == "path" and pattern is not None and not re.fullmatch(pattern, value):
            raise _invalid_param(where, name, f"must match {pattern}")


def reject_unknown_query(request: Request) -> None:
    """Router dependency: a query parameter the route does not take is invalid input (422
    naming it), as an unknown body field is (`extra="forbid"`). A typo such as
    `?seler_id=` would otherwise widen a report silently to every seller."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known: set[str] = set()
    stack = [dependant]
    while stack:
        dep = stack.pop()
        known.update(p.alias for p in dep.query_params)
        stack.extend(dep.dependencies)
    for name in request.query_params:
        if name not in known:
            raise _invalid_param("query", name, "unknown query parameter")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        msg = f"{first['field']}: {first['message']}"
        return JSONResponse(error_body("invalid_input", msg, errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("internal_error", "internal error; nothing was changed"), status_code=500
        )
