"""`/console`: the support console (issue 16 item 2; docs/console.md).

Server-rendered (Jinja2, `templates/console/`), plain HTML forms, no JavaScript. Support
agents and admins sign in with their API key (api/console_auth.py: a signed session cookie,
never the key; CSRF tokens on every form). What the console shows and does goes through the
API's own code: the contract view, timeline and notices of the read routes, the support
actions by calling the route functions of api/routes/contracts.py with the signed-in key's
caller (same validation, same Temporal Updates, same idempotency rows, same messages), the
receivables of api/routes/reads.py. Roles and seller scope are the API's: a support key gets
403 on admin pages and admin actions, a seller-scoped key sees its seller's contracts only
(another seller's contract is "not found").
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, or_, select

from activities.notice_render import format_money, payment_link
from api import console_auth as auth
from api.console_actions import ACTIONS, Action, FormError, validation_messages
from api.deps import AppState, Caller, StateDep, check_scope
from api.errors import ApiError
from api.routes import codec
from api.routes.contracts import contract_out, get_events
from api.routes.reads import STAGE_PATTERN, open_claims
from core.models import Contract, Notice, SupportActionRequest, TimelineEvent
from core.sellers import SELLER_ID
from core.settings import PROJECT_ROOT, ApiKey
from domain.collection import AGE_BUCKETS
from domain.schedule import BERLIN

log = logging.getLogger("mahnwerk.console")

router = APIRouter(prefix="/console", include_in_schema=False)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(PROJECT_ROOT / "templates" / "console")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["money"] = lambda minor, currency="eur": format_money(int(minor or 0), currency, "de")
_env.filters["when"] = lambda iso: _berlin(iso)
_env.filters["compact"] = lambda data: json.dumps(data, ensure_ascii=False, sort_keys=True)


def _berlin(iso: str | None) -> str:
    """An RFC 3339 time as Europe/Berlin wall time (`2026-12-03 10:15`), as agents think."""
    if not iso:
        return ""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M")


STATUSES = ("active", "in_dunning", "completed", "cancelled", "handed_off", "written_off", "failed")
# An erased customer's e-mail placeholder (core/erasure.py): not a search term.
ERASED_EMAIL = "erased@erased.invalid"
PAGE_SIZE = 50

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# A notice as the customer saw it, inside the contract page's sandboxed iframe: no script, no
# requests (inline styles and data: images only), no same-origin access to the console.
NOTICE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


@dataclass
class Session:
    caller: Caller
    key: ApiKey
    token: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.caller.role == "admin"


def _headers(csp: str = CSP) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": csp,
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
    }


def _render(
    template: str, status: int = 200, session: Session | None = None, **context: Any
) -> HTMLResponse:
    html = _env.get_template(template).render(session=session, **context)
    return HTMLResponse(html, status_code=status, headers=_headers())


def _error(status: int, message: str, session: Session | None = None) -> HTMLResponse:
    titles = {403: "Forbidden", 404: "Not found", 409: "Conflict", 503: "Unavailable"}
    return _render(
        "error.html",
        status,
        session,
        code=status,
        title=titles.get(status, "Error"),
        message=message,
    )


def _session(request: Request, state: AppState) -> Session | None:
    token = request.cookies.get(auth.COOKIE)
    if not token:
        return None
    try:
        caller, key = auth.verify(state.settings, token)
    except auth.SessionError:
        return None
    request.state.caller = caller  # the request log names the agent
    return Session(caller, key, token, auth.csrf_token(state.settings, key, token))


def _to_login(message: str | None = None) -> RedirectResponse:
    url = "/console/login" + (f"?{urlencode({'m': message})}" if message else "")
    return RedirectResponse(url, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form (the RequestGuard bounded the body); last value of each name."""
    raw = await request.body()
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}
    return {k: v[-1] for k, v in parsed.items()}


def _csrf_refused(session: Session | None) -> HTMLResponse:
    return _error(
        403,
        "This form was refused: its CSRF token is missing or wrong (a form from another site, "
        "or from an earlier session). Nothing was done. Reload the page and try again.",
        session,
    )


# -- sign in / out -------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def home(request: Request, state: StateDep) -> Response:
    if _session(request, state) is None:
        return _to_login()
    return RedirectResponse("/console/contracts", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, state: StateDep) -> Response:
    session = _session(request, state)
    if session is not None:
        return RedirectResponse("/console/contracts", status_code=303)
    return _login_page(request, message=request.query_params.get("m"))


def _login_page(request: Request, status: int = 200, message: str | None = None) -> Response:
    nonce = uuid.uuid4().hex
    response = _render("login.html", status, None, csrf=nonce, message=message)
    response.set_cookie(
        auth.LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path=auth.PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    form = await _form(request)
    expected = request.cookies.get(auth.LOGIN_COOKIE) or ""
    if not expected or not auth.csrf_ok(expected, form.get("csrf")):
        return _csrf_refused(None)
    submitted = form.get("key", "").strip()
    if not submitted:
        return _login_page(request, 422, "key: enter your support or admin API key")
    key = auth.find_key(state.settings, submitted)
    if key is None:
        log.warning("console sign-in refused: unknown key")
        return _login_page(request, 401, "Unknown API key.")
    if key.role not in auth.ROLES:
        log.warning("console sign-in refused: key %s has role %s", key.name, key.role)
        return _login_page(
            request, 403, f"Role {key.role!r} may not use the console (needs support/admin)."
        )
    token, _ = auth.issue(state.settings, key)
    response = RedirectResponse("/console/contracts", status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(
        auth.COOKIE,
        token,
        max_age=auth.TTL,
        path=auth.PATH,
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    response.delete_cookie(auth.LOGIN_COOKIE, path=auth.PATH)
    if key.role == "admin":
        # Signed in to the codec as well: the Temporal UI shows decrypted payloads (no
        # "Codec Server could not connect" for a new admin; api/routes/codec.py).
        codec_token, _ = codec.issue_session(state.settings, key)
        response.set_cookie(
            codec.SESSION_COOKIE,
            codec_token,
            max_age=codec.SESSION_TTL,
            path="/codec",
            httponly=True,
            samesite="strict",
            secure=secure,
        )
    log.info("console sign-in by %s (%s)", key.name, key.role)
    return response


@router.post("/logout")
async def logout(request: Request, state: StateDep) -> Response:
    session = _session(request, state)
    form = await _form(request)
    if session is not None and not auth.csrf_ok(session.csrf, form.get("csrf")):
        return _csrf_refused(session)
    response = _to_login("Signed out.")
    response.delete_cookie(auth.COOKIE, path=auth.PATH, httponly=True, samesite="strict")
    return response


# -- search --------------------------------------------------------------------------------------


def _search(state: AppState, caller: Caller, params: dict[str, str]) -> list[dict[str, Any]]:
    q = select(Contract)
    if caller.seller is not None:
        q = q.where(Contract.seller_id == caller.seller)
    text = params.get("q", "")
    if text:
        if "@" in text:
            # The e-mail is in the contract's customer JSON; an erased customer's is a
            # placeholder (core/erasure.py) and is not searched for.
            q = q.where(func.lower(Contract.customer["email"].as_string()) == text.lower())
        else:
            q = q.where(or_(Contract.id == text, Contract.customer_id == text))
    if params.get("status"):
        q = q.where(Contract.status == params["status"])
    if params.get("stage"):
        q = q.where(Contract.stage == params["stage"])
    if params.get("seller"):
        q = q.where(Contract.seller_id == params["seller"])
    q = q.order_by(Contract.created_at.desc(), Contract.id.desc()).limit(PAGE_SIZE)
    with state.sessions() as s:
        return [
            {
                "id": c.id,
                "customer_id": c.customer_id,
                "email": (c.customer or {}).get("email", ""),
                "name": (c.customer or {}).get("name", ""),
                "status": c.status,
                "stage": c.stage,
                "seller_id": c.seller_id,
                "overdue_amount": c.overdue_amount,
                "currency": c.currency,
                "paused": c.paused,
                "created_at": c.created_at.isoformat(),
            }
            for c in s.scalars(q)
        ]


def _search_params(request: Request) -> tuple[dict[str, str], list[str]]:
    params = {
        k: request.query_params.get(k, "").strip() for k in ("q", "status", "stage", "seller")
    }
    problems = []
    if len(params["q"]) > 320 or "\x00" in params["q"]:
        problems.append("q: at most 320 characters, no NUL")
    elif params["q"].lower() == ERASED_EMAIL:
        problems.append(f"q: {ERASED_EMAIL} is the placeholder of erased customers")
    if params["status"] and params["status"] not in STATUSES:
        problems.append(f"status: one of {', '.join(STATUSES)}")
    if params["stage"] and not re.fullmatch(STAGE_PATTERN, params["stage"]):
        problems.append(f"stage: must match {STAGE_PATTERN}")
    if params["seller"] and not re.fullmatch(SELLER_ID, params["seller"]):
        problems.append(f"seller: must match {SELLER_ID}")
    return params, problems


@router.get("/contracts", response_class=HTMLResponse)
async def contracts_page(request: Request, state: StateDep) -> Response:
    session = _session(request, state)
    if session is None:
        return _to_login()
    params, problems = _search_params(request)
    rows = [] if problems else await run_in_threadpool(_search, state, session.caller, params)
    return _render(
        "contracts.html",
        422 if problems else 200,
        session,
        params=params,
        problems=problems,
        rows=rows,
        statuses=STATUSES,
        page_size=PAGE_SIZE,
    )


# -- a contract ----------------------------------------------------------------------------------


def _contract_extra(state: AppState, contract_id: str, done: str | None) -> dict[str, Any]:
    """What the API's contract view does not carry: the customer's contact, the notices with
    their ids (for the preview), and the outcome of an action just confirmed."""
    with state.sessions() as s:
        c = s.get(Contract, contract_id)
        if c is None:
            raise ApiError(404, "not_found", f"contract {contract_id} not found")
        notices = list(
            s.scalars(
                select(Notice)
                .where(Notice.contract_id == contract_id)
                .order_by(Notice.created_at, Notice.id)
            )
        )
        outcome = None
        if done:
            row = s.get(SupportActionRequest, (contract_id, done))
            if row is not None:
                outcome = {
                    "action": row.action,
                    "state": row.state,
                    "status": row.http_status,
                    "response": row.response or {},
                }
        return {
            "customer": dict(c.customer or {}),
            "product": dict(c.product or {}),
            "notices": [
                {
                    "id": n.id,
                    "stage": n.stage,
                    "subject": n.subject,
                    "number": n.notice_number,
                    "recipient": n.recipient,
                    "status": n.status,
                    "sent_at": n.sent_at.isoformat() if n.sent_at else None,
                    "created_at": n.created_at.isoformat(),
                    "text": n.text,
                }
                for n in notices
            ],
            "outcome": outcome,
        }


async def _contract_page(
    request: Request,
    state: AppState,
    session: Session,
    contract_id: str,
    status: int = 200,
    **context: Any,
) -> Response:
    try:
        check_scope(state, session.caller, contract_id)
        view = await run_in_threadpool(contract_out, state.sessions, state.settings, contract_id)
        timeline = await get_events(contract_id, session.caller, state)
        extra = await run_in_threadpool(
            _contract_extra, state, contract_id, request.query_params.get("done")
        )
    except ApiError as exc:
        return _error(exc.status, exc.message, session)
    actions = [a for a in ACTIONS.values() if a.allowed(session.caller.role)]
    context.setdefault("form_errors", {})
    context.setdefault("form_values", {})
    return _render(
        "contract.html",
        status,
        session,
        c=view,
        events=list(reversed(timeline["data"])),
        actions=actions,
        codec_login="/codec/login",
        **extra,
        **context,
    )


@router.get("/contracts/{contract_id}", response_class=HTMLResponse)
async def contract_page(contract_id: str, request: Request, state: StateDep) -> Response:
    session = _session(request, state)
    if session is None:
        return _to_login()
    return await _contract_page(request, state, session, contract_id)


@router.get("/contracts/{contract_id}/notices/{notice_id}", response_class=HTMLResponse)
async def notice_preview(
    contract_id: str, notice_id: int, request: Request, state: StateDep
) -> Response:
    """The notice's HTML exactly as sent, for the contract page's sandboxed iframe."""
    session = _session(request, state)
    if session is None:
        return _to_login()
    try:
        check_scope(state, session.caller, contract_id)
    except ApiError as exc:
        return _error(exc.status, exc.message, session)

    def load() -> str | None:
        with state.sessions() as s:
            n = s.get(Notice, notice_id)
            return n.html if n is not None and n.contract_id == contract_id else None

    html = await run_in_threadpool(load)
    if html is None:
        return _error(404, f"notice {notice_id} of contract {contract_id} not found", session)
    return HTMLResponse(html, headers=_headers(NOTICE_CSP) | {"X-Frame-Options": "SAMEORIGIN"})


# -- actions: review, confirm, apply --------------------------------------------------------------


def _summary(action: Action, form: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for f in action.fields:
        value = form.get(f.name, "")
        if f.kind == "checkbox":
            value = "yes" if value == "on" else "no"
        elif f.kind == "select":
            value = dict(f.options).get(value, value)
        out.append((f.label, value or "—"))
    return out


@router.post("/contracts/{contract_id}/actions/{name}", response_class=HTMLResponse)
async def action(contract_id: str, name: str, request: Request, state: StateDep) -> Response:
    session = _session(request, state)
    form = await _form(request)
    if session is None:
        return _to_login("Please sign in.")
    if not auth.csrf_ok(session.csrf, form.get("csrf")):
        return _csrf_refused(session)
    act = ACTIONS.get(name)
    if act is None:
        return _error(404, f"no action {name!r}", session)
    if not act.allowed(session.caller.role):
        return _error(
            403,
            f"role {session.caller.role!r} may not do this (needs "
            f"{'/'.join(sorted(set(act.roles) | {'admin'}))})",
            session,
        )
    try:
        check_scope(state, session.caller, contract_id)
    except ApiError as exc:
        return _error(exc.status, exc.message, session)
    fields = {f.name: form.get(f.name, "") for f in act.fields}
    try:
        body = act.body(fields)
    except FormError as exc:
        return await _invalid(request, state, session, contract_id, act, fields, [str(exc)])
    except ValidationError as exc:
        return await _invalid(
            request, state, session, contract_id, act, fields, validation_messages(exc)
        )
    if form.get("step") != "confirm":
        return _render(
            "confirm.html",
            200,
            session,
            contract_id=contract_id,
            action=act,
            summary=_summary(act, fields),
            fields=fields,
            key=str(uuid.uuid4()),  # the Idempotency-Key: a repeated confirm applies once
        )
    if act.route is None:  # the new payment link: nothing changes on the contract
        link = payment_link(state.settings, contract_id)
        log.info("console: %s issued a payment link for %s", session.caller.name, contract_id)
        return _render("link.html", 200, session, contract_id=contract_id, link=link)
    key = form.get("key") or str(uuid.uuid4())
    try:
        client = await state.temporal()
        response = await act.route(
            contract_id=contract_id,
            body=body,
            caller=session.caller,
            state=state,
            client=client,
            idempotency_key=key,
        )
    except ApiError as exc:
        # Refused before the action was recorded (unknown or ended contract, a reused key,
        # Temporal unreachable): the API's message, on the confirmation page again.
        return _render(
            "confirm.html",
            exc.status,
            session,
            contract_id=contract_id,
            action=act,
            summary=_summary(act, fields),
            fields=fields,
            key=str(uuid.uuid4()),
            refused=exc.message,
        )
    log.info(
        "console: %s %s on %s → %s",
        session.caller.name,
        act.name,
        contract_id,
        response.status_code,
    )
    # The answer is kept with the action's row: the contract page shows it (POST → GET).
    url = f"/console/contracts/{quote(contract_id)}?{urlencode({'done': key})}#outcome"
    return RedirectResponse(url, status_code=303)


async def _invalid(
    request: Request,
    state: AppState,
    session: Session,
    contract_id: str,
    act: Action,
    fields: dict[str, str],
    messages: list[str],
) -> Response:
    """The contract page again, the action's form filled in, with the API's 422 messages."""
    return await _contract_page(
        request,
        state,
        session,
        contract_id,
        422,
        form_errors={act.name: messages},
        form_values={act.name: fields},
    )


# -- admin ---------------------------------------------------------------------------------------


def _waiting_for_approval(state: AppState, caller: Caller) -> list[dict[str, Any]]:
    """Contracts whose hand-off waits for an admin: the dunning case's
    `handoff.approval_required` fact, and the contract still in that case (not handed off,
    paid, written off; not waiting for an address instead)."""
    q = (
        select(Contract, TimelineEvent)
        .join(TimelineEvent, TimelineEvent.contract_id == Contract.id)
        .where(
            TimelineEvent.type == "handoff.approval_required",
            Contract.status == "in_dunning",
            Contract.stage.not_in(("none", "needs_address")),
        )
        .order_by(TimelineEvent.occurred_at)
    )
    if caller.seller is not None:
        q = q.where(Contract.seller_id == caller.seller)
    out: dict[str, dict[str, Any]] = {}
    with state.sessions() as s:
        for c, ev in s.execute(q):
            if (ev.data or {}).get("case") != c.case_no:
                continue
            out[c.id] = {
                "id": c.id,
                "since": ev.occurred_at.isoformat(),
                "reason": (ev.data or {}).get("reason", ""),
                "stage": c.stage,
                "overdue_amount": c.overdue_amount,
                "currency": c.currency,
                "seller_id": c.seller_id,
                "contested": c.contested,
            }
    return list(out.values())


@dataclass
class Chart:
    stages: list[str]
    ages: list[str]
    cells: dict[tuple[str, str], tuple[int, int]]  # (stage, age) → (count, amount)
    totals: dict[str, int]  # per stage
    total: int
    count: int
    max_total: int


def chart_data(claims: list[tuple[str, str, int]]) -> Chart:
    """The receivables as stage x age (amount, count): the report's numbers cross-tabulated."""
    ages = [name for name, _ in AGE_BUCKETS]
    cells: dict[tuple[str, str], tuple[int, int]] = {}
    for stage, age, amount in claims:
        count, total = cells.get((stage, age), (0, 0))
        cells[(stage, age)] = (count + 1, total + amount)
    stages = sorted({stage for stage, _, _ in claims})
    totals = {st: sum(cells.get((st, a), (0, 0))[1] for a in ages) for st in stages}
    return Chart(
        stages=stages,
        ages=ages,
        cells=cells,
        totals=totals,
        total=sum(totals.values()),
        count=len(claims),
        max_total=max(totals.values(), default=0),
    )


@router.get("/admin", response_class=HTMLResponse)
async def admin_page(request: Request, state: StateDep) -> Response:
    session = _session(request, state)
    if session is None:
        return _to_login()
    if not session.admin:
        return _error(403, f"role {session.caller.role!r} may not do this (needs admin)", session)
    as_of = datetime.now(UTC)
    claims, refunded = await run_in_threadpool(open_claims, state, session.caller.seller, as_of)
    waiting = await run_in_threadpool(_waiting_for_approval, state, session.caller)
    return _render(
        "admin.html",
        200,
        session,
        chart=chart_data(claims),
        refunded=refunded,
        as_of=as_of.isoformat(),
        waiting=waiting,
        temporal_ui=state.settings.temporal_ui_url,
    )
