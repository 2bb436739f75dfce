"""The support console's routes over HTTP (issue 16 item 2), without a browser and without
Temporal: sign-in and its cookie, CSRF refusals, roles and seller scope as the API's, search
by e-mail, the contract page, the notice preview's CSP, the confirmation step and the API's
validation messages, the admin page's chart adding up to the receivables report. The
actions' effect on a running contract is tested in tests/browser/test_console.py."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api import console_auth
from api.main import create_app
from api.routes.codec import SESSION_COOKIE as CODEC_COOKIE
from core.db import transaction
from core.models import Contract, Installment, Notice, TimelineEvent
from core.settings import Settings
from tests.conftest import ADMIN
from workflows.types import workflow_id_for

SUPPORT_KEY = "support-key-123"
ADMIN_KEY = "admin-key-123"
SCOPED_KEY = "support-key-scoped-123"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def _contract(
    sessions: sessionmaker[Session],
    *,
    email: str,
    seller: str = "default",
    stage: str = "mahnung_1",
    overdue: int = 12_345,
    age_days: int = 40,
    approval: bool = False,
) -> str:
    cid = f"ord-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        s.add(
            Contract(
                id=cid,
                seller_id=seller,
                kind="installments",
                policy_name="default",
                policy={},
                customer_id=f"cus-{cid}",
                customer={"id": f"cus-{cid}", "name": "Erika Muster", "email": email},
                product_id="course-x",
                product={"id": "course-x", "name": "Kurs X"},
                currency="eur",
                terms={},
                payment={},
                request={},
                request_hash="h",
                workflow_id=workflow_id_for(cid),
                status="in_dunning",
                stage=stage,
                overdue_amount=overdue,
                case_no=1,
                case_opened_at=now - timedelta(days=age_days - 10),
            )
        )
        s.flush()
        s.add(
            Installment(
                contract_id=cid,
                seq=1,
                due_at=now - timedelta(days=age_days),
                amount=overdue,
                status="open",
            )
        )
        s.add(
            TimelineEvent(
                contract_id=cid,
                key=f"{cid}:started",
                type="contract.started",
                occurred_at=now - timedelta(days=age_days + 1),
                data={},
            )
        )
        if approval:
            s.add(
                TimelineEvent(
                    contract_id=cid,
                    key=f"approval:{cid}:1",
                    type="handoff.approval_required",
                    occurred_at=now,
                    data={"case": 1, "reason": "policy requires approval"},
                )
            )
        s.add(
            Notice(
                contract_id=cid,
                case_no=1,
                stage="mahnung_1",
                notice_number=f"M-{cid}",
                locale="de",
                recipient=email,
                subject="1. Mahnung",
                text="Bitte zahlen Sie.",
                html="<p>Bitte <strong>zahlen</strong> Sie.</p><script>alert(1)</script>",
                message_id=f"<{cid}@mahnwerk>",
            )
        )
    return cid


@pytest.fixture
def console_settings(settings: Settings) -> Settings:
    keys = settings.api_keys.get_secret_value() + f",support:berta:{SCOPED_KEY}:seller-b"
    return settings.model_copy(update={"api_keys": type(settings.api_keys)(keys)})


@pytest.fixture
async def http(
    console_settings: Settings, sessions: sessionmaker[Session]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(console_settings, sessions)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        yield client


async def sign_in(http: httpx.AsyncClient, key: str) -> str:
    """Sign in through the form; the CSRF token of the session's pages."""
    form = await http.get("/console/login")
    assert form.status_code == 200
    nonce = CSRF_FIELD.search(form.text)
    assert nonce is not None
    resp = await http.post("/console/login", data={"key": key, "csrf": nonce.group(1)})
    assert resp.status_code == 303, resp.text
    page = await http.get("/console/contracts")
    assert page.status_code == 200
    token = CSRF_FIELD.search(page.text)
    assert token is not None
    return token.group(1)


async def test_sign_in_sets_a_signed_session_cookie_not_the_key(http: httpx.AsyncClient) -> None:
    assert (await http.get("/console/contracts")).headers["location"] == "/console/login"
    form = await http.get("/console/login")
    nonce = CSRF_FIELD.search(form.text)
    assert nonce is not None
    resp = await http.post("/console/login", data={"key": SUPPORT_KEY, "csrf": nonce.group(1)})
    assert resp.status_code == 303 and resp.headers["location"] == "/console/contracts"
    cookies = [v for k, v in resp.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookies if c.startswith(f"{console_auth.COOKIE}="))
    attrs = session.lower()
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/console" in attrs
    assert "max-age=28800" in attrs and "secure" not in attrs  # plain http in this test
    assert SUPPORT_KEY not in session and "anna" not in session  # name is base64, key absent
    assert not any(c.startswith(f"{CODEC_COOKIE}=") for c in cookies)  # support: no codec
    page = await http.get("/console/contracts")
    assert page.status_code == 200 and "anna (support)" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


async def test_sign_in_over_https_sets_a_secure_cookie_and_admins_get_the_codec(
    console_settings: Settings, sessions: sessionmaker[Session]
) -> None:
    app = create_app(console_settings, sessions)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://console.example"
    ) as http:
        form = await http.get("/console/login")
        nonce = CSRF_FIELD.search(form.text)
        assert nonce is not None
        resp = await http.post("/console/login", data={"key": ADMIN_KEY, "csrf": nonce.group(1)})
        assert resp.status_code == 303
        cookies = [v.lower() for k, v in resp.headers.multi_items() if k == "set-cookie"]
        assert any(c.startswith(console_auth.COOKIE) and "; secure" in c for c in cookies)
        codec = next(c for c in cookies if c.startswith(CODEC_COOKIE))
        assert "path=/codec" in codec and "httponly" in codec and "; secure" in codec
        # the Temporal UI's codec requests are accepted with that cookie alone
        decoded = await http.post("/codec/decode", json={"payloads": []})
        assert decoded.status_code == 200, decoded.text


async def test_wrong_keys_and_the_platform_key_cannot_sign_in(http: httpx.AsyncClient) -> None:
    form = await http.get("/console/login")
    nonce = CSRF_FIELD.search(form.text)
    assert nonce is not None
    wrong = await http.post("/console/login", data={"key": "nope", "csrf": nonce.group(1)})
    assert wrong.status_code == 401 and "Unknown API key" in wrong.text
    nonce = CSRF_FIELD.search(wrong.text)
    assert nonce is not None
    platform = await http.post(
        "/console/login", data={"key": "platform-key-123", "csrf": nonce.group(1)}
    )
    assert platform.status_code == 403 and "may not use the console" in platform.text
    assert console_auth.COOKIE not in http.cookies


async def test_forms_without_their_csrf_token_are_refused(
    http: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    # the login form: its token must match the login cookie
    await http.get("/console/login")
    resp = await http.post("/console/login", data={"key": SUPPORT_KEY})
    assert resp.status_code == 403 and "CSRF" in resp.text
    resp = await http.post("/console/login", data={"key": SUPPORT_KEY, "csrf": "forged"})
    assert resp.status_code == 403
    csrf = await sign_in(http, SUPPORT_KEY)
    cid = _contract(sessions, email=f"{uuid.uuid4().hex[:8]}@example.org")
    form = {"reason": "Kundin im Krankenhaus", "step": "review"}
    for bad in ({}, {"csrf": ""}, {"csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}):
        resp = await http.post(f"/console/contracts/{cid}/actions/pause", data=form | bad)
        assert resp.status_code == 403 and "CSRF token is missing or wrong" in resp.text
    resp = await http.post(f"/console/contracts/{cid}/actions/pause", data=form | {"csrf": csrf})
    assert resp.status_code == 200 and "Confirm: Pause" in resp.text
    logout = await http.post("/console/logout", data={})
    assert logout.status_code == 403  # sign-out is a form too


async def test_sign_out_ends_the_session_and_a_tampered_cookie_is_no_session(
    http: httpx.AsyncClient, console_settings: Settings
) -> None:
    csrf = await sign_in(http, SUPPORT_KEY)
    resp = await http.post("/console/logout", data={"csrf": csrf})
    assert resp.status_code == 303 and resp.headers["location"].startswith("/console/login")
    assert (await http.get("/console/contracts")).status_code == 303
    key = next(k for k in console_settings.parsed_api_keys if k.name == "anna")
    token, _ = console_auth.issue(console_settings, key)
    http.cookies.set(console_auth.COOKIE, token[:-2] + "xx", path="/console")
    assert (await http.get("/console/contracts")).status_code == 303
    expired, _ = console_auth.issue(console_settings, key, now=time.time() - console_auth.TTL - 1)
    with pytest.raises(console_auth.SessionError, match="expired"):
        console_auth.verify(console_settings, expired)
    # a session dies with its key: another key for the same name does not verify it
    changed = console_settings.model_copy(
        update={"api_keys": type(console_settings.api_keys)("support:anna:a-new-key-456")}
    )
    with pytest.raises(console_auth.SessionError):
        console_auth.verify(changed, token)


async def test_search_by_email_status_and_stage_within_the_seller_scope(
    http: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    email = f"Kunde-{uuid.uuid4().hex[:8]}@Example.org"
    mine = _contract(sessions, email=email)
    other_seller = _contract(sessions, email=email, seller="seller-b")
    await sign_in(http, SUPPORT_KEY)
    page = await http.get("/console/contracts", params={"q": email.lower()})
    assert page.status_code == 200
    assert f'data-contract="{mine}"' in page.text and f'data-contract="{other_seller}"' in page.text
    page = await http.get("/console/contracts", params={"q": mine})
    assert f'data-contract="{mine}"' in page.text and other_seller not in page.text
    page = await http.get(
        "/console/contracts", params={"q": email, "status": "in_dunning", "stage": "reminder"}
    )
    assert mine not in page.text and "No contract matches" in page.text
    bad = await http.get("/console/contracts", params={"status": "nonsense", "stage": "A B"})
    assert (
        bad.status_code == 422 and "status: one of" in bad.text and "stage: must match" in bad.text
    )

    # a seller-scoped key: its seller's contracts only; another seller's is "not found"
    http.cookies.clear()
    await sign_in(http, SCOPED_KEY)
    page = await http.get("/console/contracts", params={"q": email})
    assert f'data-contract="{other_seller}"' in page.text and mine not in page.text
    assert (await http.get(f"/console/contracts/{mine}")).status_code == 404
    assert (await http.get(f"/console/contracts/{other_seller}")).status_code == 200


async def test_contract_page_and_the_notice_preview(
    http: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.org"
    cid = _contract(sessions, email=email)
    await sign_in(http, SUPPORT_KEY)
    page = await http.get(f"/console/contracts/{cid}")
    assert page.status_code == 200
    text = page.text
    assert email in text and "contract.started" in text and "1. Mahnung" in text
    assert f"/workflows/{workflow_id_for(cid)}" in text  # the Temporal UI link
    assert 'data-action="pause"' in text and 'data-action="settle"' in text
    assert 'data-action="write-off"' not in text  # admin only
    assert "<script>alert(1)</script>" not in text  # the notice is not inlined
    frame = re.search(r'<iframe class="notice" sandbox="" src="([^"]+)"', text)
    assert frame is not None
    notice = await http.get(frame.group(1))
    assert notice.status_code == 200 and "<strong>zahlen</strong>" in notice.text
    csp = notice.headers["content-security-policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp
    assert (await http.get(f"/console/contracts/{cid}/notices/999999999")).status_code == 404
    assert (await http.get("/console/contracts/no-such-contract")).status_code == 404


async def test_actions_confirm_first_and_show_the_apis_validation_messages(
    http: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    cid = _contract(sessions, email=f"{uuid.uuid4().hex[:8]}@example.org")
    csrf = await sign_in(http, SUPPORT_KEY)
    url = f"/console/contracts/{cid}/actions"
    # the API's messages: a reason is required; an amount must be positive
    resp = await http.post(f"{url}/pause", data={"csrf": csrf, "reason": ""})
    assert resp.status_code == 422
    assert "reason: String should have at least 1 character" in resp.text
    resp = await http.post(
        f"{url}/settle",
        data={"csrf": csrf, "amount": "0", "method": "bank_transfer", "reference": "x"},
    )
    assert resp.status_code == 422 and "amount: Input should be greater than 0" in resp.text
    resp = await http.post(
        f"{url}/settle",
        data={"csrf": csrf, "amount": "zehn", "method": "bank_transfer", "reference": "x"},
    )
    assert resp.status_code == 422 and "amount: enter an amount in euros" in resp.text
    resp = await http.post(
        f"{url}/defer", data={"csrf": csrf, "until": "2026-02-30", "reason": "r"}
    )
    assert resp.status_code == 422 and "until:" in resp.text
    resp = await http.post(
        f"{url}/cancel", data={"csrf": csrf, "reason": "fraud", "at_period_end": "yes"}
    )
    assert resp.status_code == 422 and "a cancellation for fraud takes effect now" in resp.text
    # valid: a confirmation page carrying the values, an idempotency key and the token
    resp = await http.post(
        f"{url}/settle",
        data={"csrf": csrf, "amount": "101,50", "method": "bank_transfer", "reference": "SEPA 1"},
    )
    assert resp.status_code == 200 and "Confirm: Record a payment" in resp.text
    assert (
        'name="amount" value="101,50"' in resp.text and 'name="step" value="confirm"' in resp.text
    )
    assert re.search(r'name="key" value="[0-9a-f-]{36}"', resp.text)
    # admin actions: 403 for support, as the API
    resp = await http.post(f"{url}/write-off", data={"csrf": csrf, "reason": "uneinbringlich"})
    assert resp.status_code == 403 and "needs admin" in resp.text
    resp = await http.post(f"{url}/approve-handoff", data={"csrf": csrf})
    assert resp.status_code == 403
    # a new payment link: confirm, then the link (no Temporal needed)
    resp = await http.post(f"{url}/payment-link", data={"csrf": csrf})
    assert resp.status_code == 200 and "Confirm: New payment link" in resp.text
    resp = await http.post(f"{url}/payment-link", data={"csrf": csrf, "step": "confirm"})
    link = re.search(r'value="([^"]+/pay/[^"]+)" aria-label="Payment link"', resp.text)
    assert link is not None
    pay = await http.get(link.group(1)[link.group(1).index("/pay/") :])
    assert pay.status_code == 200 and "Offener Betrag" in pay.text


async def test_admin_page_is_for_admins_and_adds_up_to_the_report(
    http: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    waiting = _contract(
        sessions, email=f"{uuid.uuid4().hex[:8]}@example.org", stage="collection", approval=True
    )
    _contract(sessions, email=f"{uuid.uuid4().hex[:8]}@example.org", age_days=5, overdue=500)
    await sign_in(http, SUPPORT_KEY)
    denied = await http.get("/console/admin")
    assert denied.status_code == 403 and "needs admin" in denied.text
    assert "/console/admin" not in (await http.get("/console/contracts")).text
    http.cookies.clear()
    await sign_in(http, ADMIN_KEY)
    page = await http.get("/console/admin")
    assert page.status_code == 200 and "<svg" in page.text
    report = (await http.get("/v1/reports/receivables", headers=ADMIN)).json()
    total = re.search(r'data-total="(\d+)"', page.text)
    assert total is not None and int(total.group(1)) == report["total"]["amount"]
    bars = [int(a) for a in re.findall(r'<rect [^>]*data-amount="(\d+)"', page.text)]
    assert sum(bars) == report["total"]["amount"]
    stage_age = re.findall(r'data-stage="([a-z0-9_]+)" data-age="([0-9+-]+)"', page.text)
    assert ("collection", "31-60") in stage_age and ("mahnung_1", "0-30") in stage_age
    assert f'<tr data-contract="{waiting}">' in page.text
    assert 'data-action="write-off"' in (await http.get(f"/console/contracts/{waiting}")).text


def test_console_actions_have_the_api_routes_roles() -> None:
    """Each action's roles are its API route's (tests/api/test_roles.py checks those against
    the running app): the console never lets a role do more, or less, than the API."""
    from fastapi.routing import APIRoute

    from api.console_actions import ACTIONS
    from api.routes import contracts
    from tests.api.test_roles import ROLES

    # the router's own routes (an app's included routers are opaque since FastAPI 0.137)
    by_endpoint = {r.endpoint: r for r in contracts.router.routes if isinstance(r, APIRoute)}
    checked = 0
    for action in ACTIONS.values():
        if action.route is None:  # the payment link: no API route, support's like a read
            assert set(action.roles) == {"support"}
            continue
        route = by_endpoint[action.route]
        (method,) = route.methods or set()
        assert set(action.roles) == ROLES[(method, route.path)], action.name
        checked += 1
    assert checked == len(ACTIONS) - 1
