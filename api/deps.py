"""Dependencies: settings, DB sessions, the one Temporal client, API-key auth (roles)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import stripe
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.payments import make_stripe_client
from api.errors import ApiError
from api.middleware import bearer_matches
from core.sellers import SellerDirectory
from core.settings import Settings
from core.temporal import connect_client


@dataclass
class AppState:
    settings: Settings
    sessions: sessionmaker[Session]
    _client: Client | None = None
    _lock: asyncio.Lock | None = None
    _stripe: dict[tuple[str | None, str | None], stripe.StripeClient] | None = None
    _sellers: SellerDirectory | None = None

    def sellers(self) -> SellerDirectory:
        """The sellers (issue 14); cached briefly, invalidated by this process's changes."""
        if self._sellers is None:
            self._sellers = SellerDirectory(self.settings, self.sessions, ttl=5.0)
        return self._sellers

    def stripe(
        self, *, api_key: str | None = None, account: str | None = None
    ) -> stripe.StripeClient:
        """Stripe, for the rare webhook that needs a fact the event does not carry: on the
        account the event came from (a seller's own key, or a connected `account`)."""
        if self._stripe is None:
            self._stripe = {}
        client = self._stripe.get((api_key, account))
        if client is None:
            # No SDK retries, as in the worker: a failed call answers 503 and Stripe redelivers.
            client = make_stripe_client(
                api_key or self.settings.stripe_api_key.get_secret_value(),
                self.settings.stripe_api_base,
                account,
            )
            self._stripe[(api_key, account)] = client
        return client

    async def temporal(self) -> Client:
        """Connect once, lazily: /healthz answers even while Temporal is still starting."""
        if self._client is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await connect_client(self.settings, sessions=self.sessions)
                    except Exception as exc:
                        raise ApiError(503, "unavailable", f"Temporal unreachable: {exc}") from exc
        return self._client


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.mahnwerk
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_temporal(state: StateDep) -> Client:
    return await state.temporal()


TemporalDep = Annotated[Client, Depends(get_temporal)]


# The OpenAPI security scheme (an "Authorize" button in /docs, `security` on every operation
# that needs a key). Documentation only: `auto_error=False` never refuses, the check below
# (and api.middleware.RequestGuard before it) decides, with the SPEC.md §4 errors.
BEARER = HTTPBearer(
    scheme_name="apiKey",
    bearerFormat="API key",
    description="`Authorization: Bearer <key>`, a key of MAHNWERK_API_KEYS (`role:name:key`); "
    "the role (`platform`, `support`, `admin`) decides what the key may do (docs/api-guide.md).",
    auto_error=False,
)
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


@dataclass
class Caller:
    role: str
    name: str
    # The seller the key is scoped to (issue 14): it sees and acts on that seller's
    # contracts only. None: every seller.
    seller: str | None = None

    def sees(self, seller_id: str | None) -> bool:
        return self.seller is None or self.seller == (seller_id or "default")


def contract_seller(state: AppState, contract_id: str) -> str | None:
    """The seller of a contract; None if there is no such contract."""
    from core.models import Contract

    with state.sessions() as s:
        row = s.get(Contract, contract_id)
        return row.seller_id if row is not None else None


def check_scope(state: AppState, caller: Caller, contract_id: str) -> None:
    """A seller-scoped key (issue 14) reaches its seller's contracts only: another seller's
    contract is 404, worded as for a contract that does not exist, so ids do not leak."""
    if caller.seller is None:
        return
    if contract_seller(state, contract_id) != caller.seller:
        raise ApiError(404, "not_found", f"contract {contract_id} not found")


def require(*roles: str) -> Callable[..., Caller]:
    """Bearer key with one of `roles` (admin may do everything): 401 / 403 otherwise.

    A route with `{contract_id}` in its path is checked against a seller-scoped key's
    seller here, before the body is read or the contract is touched (404 for another
    seller's contract): every such route gets the check with its role."""
    allowed = set(roles) | {"admin"}

    def dep(request: Request, state: StateDep, _doc: BearerDoc = None) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorized", "missing bearer API key")
        key = bearer_matches(header, state.settings.parsed_api_keys)
        if key is None:
            raise ApiError(401, "unauthorized", "unknown API key")
        if key.role not in allowed:
            raise ApiError(
                403,
                "forbidden",
                f"role {key.role!r} may not do this (needs {'/'.join(sorted(allowed))})",
            )
        caller = Caller(key.role, key.name, key.seller)
        request.state.caller = caller
        contract_id = request.path_params.get("contract_id")
        if isinstance(contract_id, str) and caller.seller is not None:
            check_scope(state, caller, contract_id)
        return caller

    return dep


PlatformCaller = Annotated[Caller, Depends(require("platform"))]
ReaderCaller = Annotated[Caller, Depends(require("platform", "support"))]
SupportCaller = Annotated[Caller, Depends(require("support"))]
# Actions both the platform and support may take (cancel, issue 12)
PlatformSupportCaller = Annotated[Caller, Depends(require("platform", "support"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]
