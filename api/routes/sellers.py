"""/v1/sellers: the sellers (creditors) of a multi-seller platform (issue 14).

The platform and admins create and read them, admins change them (SPEC.md); the default
seller (the MAHNWERK_SELLER_* settings) is listed and read, never changed here. A
seller-scoped key (core.settings ApiKey.seller) sees only its own seller and creates none.
What each field means and what a seller configures at Stripe: docs/sellers.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.deps import AdminCaller, Caller, PlatformCaller, StateDep
from api.errors import ApiError
from api.schemas import error_responses
from api.seller_schemas import (
    SellerCreate,
    SellerOut,
    SellerPatch,
    SellersOut,
    seller_out,
    seller_problem_field,
)
from core.db import transaction
from core.invoice_seller import credit_note_prefix_problem, invoice_problems, invoice_seller_of
from core.models import Seller, utcnow
from core.seller import seller_legal_problems
from core.sellers import (
    DEFAULT_SELLER_ID,
    SELLER_FIELDS,
    SELLER_ID,
    SELLER_PREFIXES,
    SellerDirectory,
    SellerProfile,
    profile_with,
)
from core.settings import Settings
from domain.policy import PolicyError

router = APIRouter(prefix="/v1/sellers", tags=["sellers"])


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422, "invalid_input", f"{field}: {message}", [{"field": field, "message": message}]
    )


def _not_found(seller_id: str) -> ApiError:
    return ApiError(404, "not_found", f"seller {seller_id} not found")


def _check_id(seller_id: str) -> None:
    if "\x00" in seller_id or not re.fullmatch(SELLER_ID, seller_id):
        raise ApiError(
            422,
            "invalid_input",
            f"seller_id: must match {SELLER_ID}",
            [{"field": "seller_id", "message": f"must match {SELLER_ID}", "in": "path"}],
        )


def check_profile(profile: SellerProfile, settings: Settings) -> None:
    """What only the seller as a whole can tell: the business-letter details its legal form
    requires, one way to Stripe, policies that exist, a template directory that exists."""
    problems = seller_legal_problems(profile, name=seller_problem_field)
    if problems:
        field, _, message = problems[0].partition(": ")
        raise _invalid(field, message)
    if profile.stripe_account and profile.stripe_api_key_ref:
        raise _invalid(
            "stripe_api_key_ref",
            "either a connected account (stripe_account) or an own key, not both",
        )
    if bool(profile.stripe_api_key_ref) != bool(profile.stripe_webhook_secret_ref):
        missing = (
            "stripe_webhook_secret_ref" if profile.stripe_api_key_ref else "stripe_api_key_ref"
        )
        raise _invalid(
            missing,
            "an own Stripe key needs its webhook signing secret too (both env:NAME)",
        )
    check_invoicing(profile, settings)
    from api.routes.contracts import cached_policy

    for n, name in enumerate(profile.policies):
        try:
            cached_policy(name, settings.policy_dir)
        except PolicyError as exc:
            raise _invalid(f"policies[{n}]", f"no usable policy {name!r} ({exc.reason})") from None
    if profile.templates is not None:
        root = settings.seller_template_root
        if root is None:
            raise _invalid("templates", "MAHNWERK_SELLER_TEMPLATE_ROOT is not set")
        if not (Path(root) / profile.templates).is_dir():
            raise _invalid(
                "templates", f"no directory {profile.templates!r} in the seller template root"
            )


def check_invoicing(profile: SellerProfile, settings: Settings) -> None:
    """The seller's invoices can be complete (§ 14 Abs. 4 UStG) — the checks a production
    start makes of the settings' seller (core.settings.startup_problem) — and its two
    number series do not look alike."""
    invoicing = invoice_seller_of(profile, settings)
    problem = credit_note_prefix_problem(
        invoicing.credit_note_series, invoicing.invoice_prefix, invoicing.credit_note_prefix
    )
    if problem is not None:
        raise _invalid("credit_note_prefix", problem)
    problems = invoice_problems(invoicing, name=str)
    if problems:
        raise _invalid(*problems[0])


def _directory(state: StateDep) -> SellerDirectory:
    return state.sellers()


def _visible(caller: Caller, seller_id: str) -> bool:
    return caller.seller is None or caller.seller == seller_id


def _row_values(profile: SellerProfile) -> dict[str, Any]:
    values = {name: getattr(profile, name) for name in SELLER_FIELDS}
    values["policies"] = list(profile.policies)
    return {k: (v if v != "" or k in SELLER_PREFIXES else None) for k, v in values.items()}


def _create(sessions: sessionmaker[Session], profile: SellerProfile) -> tuple[bool, SellerProfile]:
    values = _row_values(profile)
    with sessions() as s:
        try:
            with s.begin():
                existing = s.get(Seller, profile.id)
                if existing is None:
                    row = Seller(id=profile.id, source="api", **values)
                    s.add(row)
                    s.flush()
                    return True, SellerProfile.from_row(row)
        except IntegrityError:
            existing = s.get(Seller, profile.id)
        if existing is None:  # pragma: no cover - the insert failed for another reason
            raise ApiError(409, "conflict", f"seller {profile.id} could not be created")
        current = SellerProfile.from_row(existing)
        if _row_values(current) != values:
            raise ApiError(
                409, "conflict", f"seller {profile.id} already exists with other details"
            )
        return False, current


@router.post(
    "",
    status_code=201,
    summary="Create a seller",
    responses=error_responses(401, 403, 409, 422),
)
async def create_seller(
    body: SellerCreate, response: Response, caller: PlatformCaller, state: StateDep
) -> SellerOut:
    """A new seller with its legal and bank details, sender, policies, templates and Stripe
    account. Sending the same body again answers 200; other details under an existing id
    are a 409 (change them with PATCH)."""
    if caller.seller is not None:
        raise ApiError(403, "forbidden", "a seller-scoped API key cannot create sellers")
    fields = body.model_dump(exclude={"id"})
    settings = state.settings
    profile = profile_with(
        # the settings' sender and number series unless the body names its own: pinned
        # with the seller, so changing the settings later never renames its series
        SellerProfile(
            id=body.id,
            source="api",
            mail_from=settings.mail_from,
            invoice_prefix=settings.invoice_prefix,
            credit_note_series=settings.credit_note_series,
            credit_note_prefix=settings.credit_note_prefix,
        ),
        {k: v for k, v in fields.items() if v is not None},
    )
    check_profile(profile, state.settings)
    created, saved = await run_in_threadpool(_create, state.sessions, profile)
    _directory(state).invalidate(body.id)
    if not created:
        response.status_code = 200
    return seller_out(saved)


@router.get("", summary="List the sellers", responses=error_responses(401, 403))
async def list_sellers(caller: PlatformCaller, state: StateDep) -> SellersOut:
    """Every seller, the default seller (from the settings) first; a seller-scoped key sees
    its own only."""
    sellers = await run_in_threadpool(_directory(state).all)
    return SellersOut(data=[seller_out(p) for p in sellers if _visible(caller, p.id)])


@router.get("/{seller_id}", summary="Read a seller", responses=error_responses(401, 403, 404))
async def get_seller(seller_id: str, caller: PlatformCaller, state: StateDep) -> SellerOut:
    _check_id(seller_id)
    if not _visible(caller, seller_id):
        raise _not_found(seller_id)
    directory = _directory(state)
    directory.invalidate(seller_id)
    found = await run_in_threadpool(directory.get, seller_id)
    if found is None:
        raise _not_found(seller_id)
    return seller_out(found)


def _patch(
    sessions: sessionmaker[Session], settings: Settings, seller_id: str, changes: dict[str, Any]
) -> SellerProfile:
    with transaction(sessions) as s:
        row = s.get(Seller, seller_id, with_for_update=True)
        if row is None:
            raise _not_found(seller_id)
        profile = profile_with(SellerProfile.from_row(row), changes)
        check_profile(profile, settings)
        for name, value in _row_values(profile).items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        s.flush()
        return SellerProfile.from_row(row)


@router.patch(
    "/{seller_id}",
    summary="Change a seller's details",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def patch_seller(
    seller_id: str, body: SellerPatch, caller: AdminCaller, state: StateDep
) -> SellerOut:
    """Admins only (SPEC.md: the platform may create sellers, not change them — a platform
    key must not be able to redirect a seller's bank transfers). The fields given replace
    the seller's (`null` clears an optional one); the seller as a whole must still be
    complete. Contracts already started keep the policy they pinned;
    notices, debits and case files use the new details from the next one on."""
    _check_id(seller_id)
    if not _visible(caller, seller_id):
        raise _not_found(seller_id)
    if seller_id == DEFAULT_SELLER_ID:
        raise ApiError(
            409,
            "conflict",
            "the default seller is configured by the MAHNWERK_SELLER_* settings, not here",
        )
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    updated = await run_in_threadpool(_patch, state.sessions, state.settings, seller_id, changes)
    _directory(state).invalidate(seller_id)
    return seller_out(updated)
