"""Personal data encrypted in Temporal (SPEC.md §7): the codec itself, the settings and dev
stack that configure it, and the whole path — a real contract run through the API and the
worker, whose history on the server holds no plaintext while `/codec/decode` shows it to an
admin (and only to an admin, and only to the Temporal UI's origin)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.converter import (
    ActivitySerializationContext,
    DefaultFailureConverterWithEncodedAttributes,
    WorkflowSerializationContext,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.routes.codec import SESSION_COOKIE, SESSION_TTL, issue_session
from core.codec import (
    ENCODING,
    KEY_CACHE_SIZE,
    KEY_ID_META,
    CodecError,
    EncryptionCodec,
    generate_key,
    parse_key_ring,
)
from core.customer_keys import CustomerKeyStore
from core.devstack import (
    child_env,
    codec_login_hint,
    load_or_create_dev_codec_key,
    plan_stack,
    temporal_argv,
)
from core.models import Contract, CustomerKey
from core.settings import ApiKey, ConfigError, Settings, load_settings, parse_api_keys
from core.temporal import data_converter
from domain.schedule import berlin_date
from tests.conftest import ADMIN, PLATFORM, api_client, contract_body, start_test_server
from tests.workflows.ladder import after, rungs
from worker import build_worker
from workflows.types import Customer, workflow_id_for

OLD = "k2025:" + base64.b64encode(b"o" * 32).decode()
NEW = "k2026:" + base64.b64encode(b"n" * 32).decode()
UI = "http://localhost:8233"


def _ring(raw: str) -> EncryptionCodec:
    return EncryptionCodec(parse_key_ring(raw))


def _plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# -- the codec ---------------------------------------------------------------------------------


async def test_round_trip_encrypts_with_the_first_key_and_a_fresh_nonce() -> None:
    codec = _ring(f"{NEW},{OLD}")
    original = _plain("erika@example.org")
    first, second = await codec.encode([original, original])
    assert first.metadata["encoding"] == ENCODING
    assert first.metadata[KEY_ID_META] == b"k2026"
    assert b"erika" not in first.SerializeToString()
    assert first.data != second.data  # random nonce per payload
    assert await codec.decode([first, second]) == [original, original]


async def test_round_trip_through_the_data_converter(settings: Settings) -> None:
    conv = data_converter(settings.model_copy(update={"codec_key": SecretStr(NEW)}))
    customer = Customer(id="cus-1", name="Erika Mustermann", email="erika@example.org")
    (encoded,) = await conv.encode([customer])
    assert encoded.metadata["encoding"] == ENCODING
    assert b"Erika" not in encoded.data and b"erika@" not in encoded.data
    assert await conv.decode([encoded], [Customer]) == [customer]
    # failure messages (which may name a recipient) go into an encrypted payload too
    assert conv.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
    plain = data_converter(settings)  # no key: Temporal's default converter
    assert plain.payload_codec is None


async def test_key_rotation_old_payloads_still_decrypt() -> None:
    old_ring = _ring(OLD)
    rotated = _ring(f"{NEW},{OLD}")
    (before,) = await old_ring.encode([_plain("alt")])
    (after,) = await rotated.encode([_plain("neu")])
    assert after.metadata[KEY_ID_META] == b"k2026"
    assert await rotated.decode([before, after]) == [_plain("alt"), _plain("neu")]


async def test_unknown_key_id_is_a_clear_error_naming_it() -> None:
    (sealed,) = await _ring(OLD).encode([_plain("x")])
    with pytest.raises(CodecError, match="unknown key id 'k2025'.*MAHNWERK_CODEC_KEY"):
        await _ring(NEW).decode([sealed])


async def test_tampered_ciphertext_or_relabelled_key_id_fails() -> None:
    codec = _ring(f"{NEW},{OLD}")
    (sealed,) = await codec.encode([_plain("erika@example.org")])
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([flipped])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID_META] = b"k2025"  # the key id is authenticated data
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([relabelled])
    truncated = Payload(metadata=dict(sealed.metadata), data=sealed.data[:10])
    with pytest.raises(CodecError, match="truncated"):
        await codec.decode([truncated])


async def test_unencrypted_payloads_pass_decode_unchanged() -> None:
    codec = _ring(NEW)
    old = [_plain("recorded before encryption"), Payload(metadata={"encoding": b"binary/null"})]
    assert await codec.decode(old) == old
    (sealed,) = await codec.encode([_plain("x")])
    assert await codec.encode([sealed]) == [sealed]  # never encrypted twice


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "no keys"),
        ("justakey", "entry 1 is not id:base64key"),
        ("k1:", "entry 1 is not id:base64key"),
        ("k 1:" + base64.b64encode(b"x" * 32).decode(), "entry 1: key id must be"),
        ("k1:not*base64", "key 'k1' is not valid base64"),
        ("k1:" + base64.b64encode(b"x" * 16).decode(), "key 'k1' is 16 bytes"),
        (f"{NEW},{NEW}", "key id 'k2026' appears twice"),
    ],
)
def test_parse_key_ring_names_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_key_ring(raw)
    assert "bm5u" not in str(info.value) and "eHh4" not in str(info.value)  # no key material


def test_parse_key_ring_accepts_generated_and_urlsafe_keys() -> None:
    entry = generate_key("k1")
    urlsafe = base64.urlsafe_b64encode(bytes([0xFB]) * 32).decode().rstrip("=")
    assert "-" in urlsafe or "_" in urlsafe
    ring = parse_key_ring(f"{entry}, k0:{urlsafe}")
    assert ring.ids == ["k1", "k0"] and ring.primary_id == "k1"
    assert "k1" in repr(ring) and entry.split(":")[1] not in repr(ring)
    assert generate_key() != generate_key()


def test_bad_codec_key_stops_start_up_with_one_line_naming_the_variable() -> None:
    secret = base64.b64encode(b"s" * 20).decode()
    with pytest.raises(ConfigError) as info:
        load_settings(codec_key=f"k1:{secret}")
    line = str(info.value.code)
    assert line.startswith("configuration error: MAHNWERK_CODEC_KEY: ")
    assert "20 bytes" in line and secret not in line and "\n" not in line
    assert load_settings(codec_key=NEW).codec_key_ring == NEW


# -- `mahnwerk dev` ----------------------------------------------------------------------------


def test_dev_stack_generates_a_stable_private_codec_key_and_passes_it_on(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "var" / "dev-codec-key"
    key = load_or_create_dev_codec_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert parse_key_ring(key).primary_id.startswith("dev-")
    assert load_or_create_dev_codec_key(path) == key  # stable across restarts
    plan = plan_stack(settings, environ={})
    assert child_env(plan, settings, None, {}, codec_key=key)["MAHNWERK_CODEC_KEY"] == key
    mine = {"MAHNWERK_CODEC_KEY": NEW}
    assert child_env(plan, settings, None, mine, codec_key=key)["MAHNWERK_CODEC_KEY"] == NEW
    argv = temporal_argv(Path("temporal"), plan)
    # The browser calls the codec on the UI's host name: same site, so the session cookie
    # (SameSite=Strict) of /codec/login goes along.
    endpoint = argv[argv.index("--ui-codec-endpoint") + 1]
    assert endpoint == f"http://localhost:{plan.api_port}/codec"
    assert urlsplit(endpoint).hostname == urlsplit(plan.ui_url).hostname == "localhost"
    hint = codec_login_hint(plan)
    assert f"log in once at http://localhost:{plan.api_port}/codec/login" in hint
    assert "Include cross-origin credentials" in hint
    path.write_text("k1:tooshort\n")
    with pytest.raises(ConfigError, match="dev-codec-key: key 'k1' is 6 bytes"):
        load_or_create_dev_codec_key(path)


# -- the endpoints: auth, CORS, identity without a key -----------------------------------------


@pytest.fixture
async def codec_http(
    settings: Settings, sessions: sessionmaker[Session]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a key ring; /codec/* needs no Temporal connection."""
    app = create_app(settings.model_copy(update={"codec_key": SecretStr(f"{NEW},{OLD}")}), sessions)
    async with api_client(app) as http:
        yield http


def _body(payloads: list[Payload]) -> dict[str, Any]:
    return json.loads(json_format.MessageToJson(Payloads(payloads=payloads)))


def _payloads(resp: httpx.Response) -> list[Payload]:
    assert resp.status_code == 200, resp.text
    return list(json_format.Parse(resp.text, Payloads()).payloads)


async def test_encode_then_decode_over_http(codec_http: httpx.AsyncClient) -> None:
    original = [_plain("erika@example.org"), _plain("Erika Mustermann")]
    sealed = _payloads(await codec_http.post("/codec/encode", json=_body(original), headers=ADMIN))
    assert [p.metadata[KEY_ID_META] for p in sealed] == [b"k2026", b"k2026"]
    (old,) = await _ring(OLD).encode([_plain("alt")])
    resp = await codec_http.post(
        "/codec/decode", json=_body([*sealed, old]), headers={**ADMIN, "X-Namespace": "default"}
    )
    assert _payloads(resp) == [*original, _plain("alt")]


async def test_codec_endpoints_are_for_admins_only(codec_http: httpx.AsyncClient) -> None:
    body = _body([_plain("x")])
    for path in ("/codec/decode", "/codec/encode"):
        resp = await codec_http.post(path, json=body)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
        resp = await codec_http.post(path, json=body, headers=PLATFORM)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"


async def test_bad_bodies_and_undecodable_payloads_are_422(codec_http: httpx.AsyncClient) -> None:
    for junk in (b"not json", b'{"payloads": 5}', b"\xff\xfe"):
        resp = await codec_http.post("/codec/decode", content=junk, headers=ADMIN)
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_input"
    (foreign,) = await _ring("k1999:" + base64.b64encode(b"f" * 32).decode()).encode([_plain("x")])
    resp = await codec_http.post("/codec/decode", json=_body([foreign]), headers=ADMIN)
    assert resp.status_code == 422
    assert "unknown key id 'k1999'" in resp.json()["error"]["message"]


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }


async def test_cors_answers_the_ui_origin_only_and_only_on_codec(
    codec_http: httpx.AsyncClient,
) -> None:
    for origin in (UI, "http://127.0.0.1:8233"):  # either loopback name in the address bar
        resp = await codec_http.options("/codec/decode", headers=_preflight(origin))
        assert resp.status_code == 200, resp.text
        assert resp.headers["access-control-allow-origin"] == origin
        assert resp.headers["access-control-allow-credentials"] == "true"
        allowed = resp.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "x-namespace"} <= set(allowed.split(", "))
    evil = await codec_http.options("/codec/decode", headers=_preflight("http://evil.example"))
    assert "access-control-allow-origin" not in evil.headers
    # the answer itself carries the header, errors included (else the UI cannot read them)
    resp = await codec_http.post("/codec/decode", json=_body([]), headers={**ADMIN, "Origin": UI})
    assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == UI
    resp = await codec_http.post("/codec/decode", json=_body([]), headers={"Origin": UI})
    assert resp.status_code == 401 and resp.headers["access-control-allow-origin"] == UI
    # the rest of the API is not opened to the UI's origin
    resp = await codec_http.options("/v1/contracts", headers=_preflight(UI))
    assert "access-control-allow-origin" not in resp.headers


async def test_without_a_codec_key_the_endpoints_return_payloads_unchanged(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    assert settings.codec_key is None
    payloads = [_plain("erika@example.org")]
    async with api_client(create_app(settings, sessions)) as http:
        for path in ("/codec/decode", "/codec/encode"):
            assert _payloads(await http.post(path, json=_body(payloads), headers=ADMIN)) == payloads
        assert (await http.post("/codec/decode", json=_body(payloads))).status_code == 401


# -- logging in from the Temporal UI: a session cookie instead of the API key ------------------

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
FORM = {**HTML, "Content-Type": "application/x-www-form-urlencoded"}


def _set_cookie(resp: httpx.Response) -> tuple[str, dict[str, str]]:
    """The session cookie's value and attributes (lower-case names) from Set-Cookie."""
    (header,) = [h for h in resp.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)]
    first, *attrs = (part.strip() for part in header.split(";"))
    value = first.split("=", 1)[1]
    parsed = {}
    for attr in attrs:
        name, _, val = attr.partition("=")
        parsed[name.lower()] = val
    return value, parsed


def _cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


async def test_login_page_is_a_form_for_the_key(codec_http: httpx.AsyncClient) -> None:
    resp = await codec_http.get("/codec/login", headers=HTML)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="login">' in resp.text
    assert 'type="password"' in resp.text and 'name="key"' in resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    assert "set-cookie" not in resp.headers


async def test_login_with_the_admin_key_sets_an_opaque_strict_http_only_cookie(
    codec_http: httpx.AsyncClient,
) -> None:
    resp = await codec_http.post("/codec/login", content="key=admin-key-123", headers=FORM)
    assert resp.status_code == 200, resp.text
    assert "Logged in — reload the Temporal UI." in resp.text
    assert "Include cross-origin credentials" in resp.text
    token, attrs = _set_cookie(resp)
    assert "admin-key-123" not in token and token.startswith("v1.")
    assert attrs["path"] == "/codec"
    assert "httponly" in attrs
    assert attrs["samesite"].lower() == "strict"
    assert int(attrs["max-age"]) == SESSION_TTL == 12 * 3600
    assert "secure" not in attrs  # plain http on localhost; set behind https
    # the cookie decrypts, as the Temporal UI sends it: no Authorization, from the UI origin
    original = [_plain("erika@example.org")]
    sealed = _payloads(await codec_http.post("/codec/encode", json=_body(original), headers=ADMIN))
    resp = await codec_http.post(
        "/codec/decode",
        json=_body(sealed),
        headers={**_cookie(token), "Origin": UI, "X-Namespace": "default"},
    )
    assert _payloads(resp) == original
    assert resp.headers["access-control-allow-origin"] == UI
    assert resp.headers["access-control-allow-credentials"] == "true"
    # and encodes
    resp = await codec_http.post("/codec/encode", json=_body(original), headers=_cookie(token))
    assert _payloads(resp)[0].metadata["encoding"] == ENCODING
    # the page now says who is logged in and offers a logout
    page = await codec_http.get("/codec/login", headers={**HTML, **_cookie(token)})
    assert "Logged in as <strong>root</strong>" in page.text and 'action="logout"' in page.text


async def test_login_answers_json_to_scripts_and_with_the_https_flag_behind_tls(
    codec_http: httpx.AsyncClient,
) -> None:
    resp = await codec_http.post("/codec/login", json={"key": "admin-key-123"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "logged_in" and body["name"] == "root"
    assert body["codec_endpoint"] == "http://api/codec"
    resp = await codec_http.post(
        "https://api/codec/login", content="key=admin-key-123", headers=FORM
    )
    assert "secure" in _set_cookie(resp)[1]


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [
        ("wrong-key-123", 401, "unauthorized"),
        ("platform-key-123", 403, "forbidden"),
        ("support-key-123", 403, "forbidden"),
        ("", 422, "invalid_input"),
    ],
)
async def test_login_refuses_other_keys_without_a_cookie(
    codec_http: httpx.AsyncClient, key: str, status: int, code: str
) -> None:
    resp = await codec_http.post("/codec/login", content=f"key={key}", headers=FORM)
    assert resp.status_code == status and "set-cookie" not in resp.headers
    assert '<p class="err">' in resp.text and 'name="key"' in resp.text  # the form again
    resp = await codec_http.post("/codec/login", json={"key": key})
    assert resp.status_code == status and "set-cookie" not in resp.headers
    assert resp.json()["error"]["code"] == code


async def test_tampered_forged_or_expired_cookies_are_401(
    codec_http: httpx.AsyncClient, settings: Settings
) -> None:
    resp = await codec_http.post("/codec/login", json={"key": "admin-key-123"})
    token, _ = _set_cookie(resp)
    body = _body([_plain("x")])
    assert (await codec_http.post("/codec/decode", json=body, headers=_cookie(token))).is_success

    version, name, expires, nonce, mac = token.split(".")
    later = str(int(expires) + 10 * SESSION_TTL)  # extend the lifetime
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    same = settings.model_copy(
        update={"codec_key": SecretStr(f"{NEW},{OLD}")}
    )  # codec_http's settings
    keys = {k.role: k for k in parse_api_keys(settings.api_keys.get_secret_value())}
    admin, platform = keys["admin"], keys["platform"]
    posing = ApiKey("admin", platform.name, platform.key)  # a platform key posing as admin
    expired, _ = issue_session(same, admin, now=time.time() - SESSION_TTL - 1)
    bad = {
        "extended": ".".join([version, name, later, nonce, mac]),
        "flipped mac": ".".join([version, name, expires, nonce, flipped]),
        "non-admin key": issue_session(same, posing)[0],
        "other key ring": issue_session(settings, admin)[0],
        "garbage": "v1.%%%.x.y.z",
        "the API key itself": "admin-key-123",
        "expired": expired,
    }
    for what, value in bad.items():
        for path in ("/codec/decode", "/codec/encode"):
            resp = await codec_http.post(path, json=body, headers={**_cookie(value), "Origin": UI})
            assert resp.status_code == 401, (what, path, resp.text)
            assert resp.json()["error"]["code"] == "unauthorized"
            assert resp.headers["access-control-allow-origin"] == UI  # the UI can read why
    resp = await codec_http.post("/codec/decode", json=body, headers=_cookie(expired))
    assert "expired" in resp.json()["error"]["message"]
    # a bearer key still decides when the cookie is bad (CLI with a stale browser cookie)
    resp = await codec_http.post("/codec/decode", json=body, headers={**_cookie(expired), **ADMIN})
    assert resp.status_code == 200
    resp = await codec_http.post(
        "/codec/decode", json=body, headers={**_cookie(expired), **PLATFORM}
    )
    assert resp.status_code == 403


async def test_a_session_ends_when_its_admin_key_is_removed(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    ring = f"{NEW},{OLD}"
    before = create_app(settings.model_copy(update={"codec_key": SecretStr(ring)}), sessions)
    rotated = settings.model_copy(
        update={
            "codec_key": SecretStr(ring),
            "api_keys": SecretStr("admin:root:a-new-admin-key-456"),
        }
    )
    body = _body([_plain("x")])
    async with api_client(before) as http:
        token, _ = _set_cookie(await http.post("/codec/login", json={"key": "admin-key-123"}))
        resp = await http.post("/codec/decode", json=body, headers=_cookie(token))
        assert resp.status_code == 200
    # another API process with the same settings accepts it (no per-process state) …
    async with api_client(create_app(before.state.mahnwerk.settings, sessions)) as http:
        assert (await http.post("/codec/decode", json=body, headers=_cookie(token))).is_success
    # … and once the admin key is changed, its sessions are gone
    async with api_client(create_app(rotated, sessions)) as http:
        resp = await http.post("/codec/decode", json=body, headers=_cookie(token))
        assert resp.status_code == 401


async def test_logout_deletes_the_cookie(codec_http: httpx.AsyncClient) -> None:
    resp = await codec_http.post("/codec/logout", headers=HTML)
    assert resp.status_code == 200 and "Logged out" in resp.text
    value, attrs = _set_cookie(resp)
    assert value in ("", '""') and attrs["path"] == "/codec" and int(attrs["max-age"]) <= 0
    assert (await codec_http.post("/codec/logout")).json() == {"status": "logged_out"}


async def test_cors_preflight_for_the_cookie_request_of_the_ui(
    codec_http: httpx.AsyncClient,
) -> None:
    # What the UI sends with "Include cross-origin credentials": fetch(…, {credentials:
    # "include"}) with JSON and X-Namespace, no Authorization: a preflight first.
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    resp = await codec_http.options("/codec/decode", headers=preflight)
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-origin"] == UI  # never "*" with credentials
    assert resp.headers["access-control-allow-credentials"] == "true"
    assert "POST" in resp.headers["access-control-allow-methods"]
    assert "set-cookie" not in resp.headers
    other = {**preflight, "Origin": "http://localhost:9999"}  # same site, other origin
    assert (
        "access-control-allow-origin"
        not in (await codec_http.options("/codec/decode", headers=other)).headers
    )


# -- the whole path: API → workflow → worker on a Temporal server ------------------------------


@pytest.fixture(scope="module")
async def codec_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of its own: this module skips days of time."""
    async with await start_test_server() as env:
        yield env


@dataclass
class EncryptedStack:
    env: WorkflowEnvironment
    client: Client  # with the codec, as the API and worker have it
    http: httpx.AsyncClient
    started: list[str]


@pytest.fixture
async def enc_stack(
    codec_env: WorkflowEnvironment, settings: Settings, sessions: sessionmaker[Session]
) -> AsyncIterator[EncryptedStack]:
    settings = settings.model_copy(update={"codec_key": SecretStr(f"{NEW},{OLD}")})
    config = codec_env.client.config()
    config["data_converter"] = data_converter(settings)
    client = Client(**config)
    parts = build_worker(client, settings, session_factory=sessions)
    app = create_app(settings, sessions)
    app.state.mahnwerk._client = client
    async with parts.worker, api_client(app) as http:
        stack = EncryptedStack(codec_env, client, http, [])
        yield stack
        # A workflow task nobody polls would stall time skipping on this server, and so does
        # terminating while a task or an activity runs: wait until the workflow is idle.
        for cid in stack.started:
            handle = client.get_workflow_handle(workflow_id_for(cid))
            with contextlib.suppress(RPCError):
                for _ in range(100):
                    raw = (await handle.describe()).raw_description
                    if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
                        break
                    await asyncio.sleep(0.05)
                await handle.terminate("test over")
    parts.executor.shutdown(wait=False)


def _all_payloads(msg: Message, skip: frozenset[str]) -> Iterator[tuple[str, Payload]]:
    """Every Payload inside a proto message (repeated fields and maps included)."""
    for field, value in msg.ListFields():
        if field.name in skip:
            continue
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            values = list(value.values())
        elif field.is_repeated:
            values = list(value)
        else:
            values = [value]
        for item in values:
            if not isinstance(item, Message):
                continue
            if isinstance(item, Payload):
                yield field.name, item
            else:
                yield from _all_payloads(item, skip)


async def test_history_on_the_server_holds_no_plaintext_and_decode_shows_it(
    enc_stack: EncryptedStack, smtp: Any
) -> None:
    env = enc_stack.env
    tag = uuid.uuid4().hex[:8]
    email = f"geheim-{tag}@example.org"
    name = f"Erika Verschlusssache-{tag}"
    body = contract_body(
        count=3,
        email=email,
        first_due=berlin_date(await env.get_current_time()),
        payment_method="pm_card_visa_chargeDeclinedLostCard",  # hard decline: a notice follows
    )
    body["customer"]["name"] = name
    resp = await enc_stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    cid = body["contract_id"]
    enc_stack.started.append(cid)

    # The debit fails at once, the reminder goes out at D+3: the worker decrypted the input
    # (the notice reached the customer's address) and every activity input/result, timer
    # summary and failure of the run is in the history by now.
    # the reminder: D+3, or later when a weekend or holiday moves it (tests/workflows/ladder)
    reminder = rungs(date.fromisoformat(body["installments"]["first_due"]))["reminder"]
    now = await env.get_current_time()
    await env.sleep(after(reminder) - now)
    for _ in range(100):
        if any(email in str(m["To"]) for m in smtp.store.messages()):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("no reminder reached the customer: the worker could not use its payloads")
    contract = (await enc_stack.http.get(f"/v1/contracts/{cid}", headers=PLATFORM)).json()
    assert contract["dunning"]["stage"] == "reminder", contract

    # What the server stores, read without the codec.
    raw = await env.client.get_workflow_handle(workflow_id_for(cid)).fetch_history()
    stored = b"".join(e.SerializeToString() for e in raw.events) + raw.to_json().encode()
    for secret in (email, name, "Verschlusssache", "geheim-"):
        assert secret.encode() not in stored, f"{secret!r} is stored in plaintext"
    kinds = {e.WhichOneof("attributes") for e in raw.events}
    assert "activity_task_completed_event_attributes" in kinds
    assert "timer_started_event_attributes" in kinds
    skip = frozenset({"search_attributes"})  # indexed by the server: ids only (SPEC §7)
    # Patch markers (workflow.patched) are written by the SDK's core, past the codec: their
    # details hold the patch id and nothing else — checked here, then left out below.
    patches = [
        e.marker_recorded_event_attributes
        for e in raw.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert patches, "the contract workflow records its patch markers"
    for marker in patches:
        assert list(marker.details) == ["patch-data"]
        (data,) = marker.details["patch-data"].payloads
        assert json.loads(data.data) == {"id": json.loads(data.data)["id"], "deprecated": False}
        patch_id = json.loads(data.data)["id"]
        assert patch_id in (
            "sepa-pre-notification",
            "wake-on-signal-during-pass",
            "prompt-support-actions",
            "claim-exact",
            "contract-endings",
            "invoices",
            "after-handoff",
            "collection-delivery-waits",
            "lean-history",
        ), patch_id
    # Local activities (PATCH_LEAN, issue 17): the SDK's core writes the marker's `data`
    # (sequence, attempt, activity type, times) past the codec — checked to hold nothing
    # else, then left out below; the result is the activity's, through the codec.
    local = [
        e.marker_recorded_event_attributes
        for e in raw.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert local, "the ledger's writes run as local activities"
    for marker in local:
        (data,) = marker.details["data"].payloads
        assert set(json.loads(data.data)) <= {
            "seq",
            "attempt",
            "activity_id",
            "activity_type",
            "complete_time",
            "backoff",
            "original_schedule_time",
            "activation_index",
        }
    payloads = [
        p
        for e in raw.events
        if not (
            e.HasField("marker_recorded_event_attributes")
            and e.marker_recorded_event_attributes.marker_name == "core_patch"
        )
        for p in _all_payloads(e, skip)
        if not (
            e.HasField("marker_recorded_event_attributes")
            and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
            and p[1] in e.marker_recorded_event_attributes.details["data"].payloads
        )
    ]
    assert len(payloads) > 5
    key_ids = set()
    for where, payload in payloads:
        assert payload.metadata["encoding"] == ENCODING, where
        key_ids.add((where, payload.metadata[KEY_ID_META]))
    # Every payload of the contract — input, activity inputs and results, summaries,
    # failures — is encrypted with the customer's own data key (erasure shreds it).
    (customer_key,) = {kid for _, kid in key_ids}
    assert customer_key.startswith(b"customer:") and len(customer_key) > len(b"customer:")

    # An admin reads the workflow input through /codec/decode, as the Temporal UI does.
    started = raw.events[0].workflow_execution_started_event_attributes
    request = json.loads(json_format.MessageToJson(started.input))
    assert email not in json.dumps(request)
    resp = await enc_stack.http.post(
        "/codec/decode", json=request, headers={**ADMIN, "X-Namespace": "default", "Origin": UI}
    )
    (decoded,) = _payloads(resp)
    assert resp.headers["access-control-allow-origin"] == UI
    assert decoded.metadata["encoding"] == b"json/plain"
    data = json.loads(decoded.data)
    assert data["customer"]["email"] == email and data["customer"]["name"] == name
    # and nobody else does
    assert (await enc_stack.http.post("/codec/decode", json=request)).status_code == 401
    resp = await enc_stack.http.post("/codec/decode", json=request, headers=PLATFORM)
    assert resp.status_code == 403


# -- per-customer data keys (issue 13: erasure shreds them) -----------------------------------


class CountingStore:
    """The real key store, counting its database look-ups."""

    def __init__(self, inner: CustomerKeyStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def key_for_workflow(self, workflow_id: str) -> tuple[str, bytes] | None:
        self.calls.append(workflow_id)
        return self.inner.key_for_workflow(workflow_id)

    def key(self, key_id: str) -> bytes | None:
        self.calls.append(key_id)
        return self.inner.key(key_id)


def _ledger_contract(sessions: sessionmaker[Session], customer_id: str) -> str:
    """A contract row as the API writes it at checkout; its workflow id."""
    body = contract_body()
    body["customer"]["id"] = customer_id
    cid = body["contract_id"]
    with sessions() as s, s.begin():
        s.add(
            Contract(
                id=cid,
                kind="installments",
                policy_name="default",
                policy={},
                customer_id=customer_id,
                customer=body["customer"],
                product_id="course-x",
                product=body["product"],
                currency="eur",
                terms=body["terms"],
                payment=body["payment"],
                request=body,
                request_hash="0" * 64,
                workflow_id=workflow_id_for(cid),
            )
        )
    return workflow_id_for(cid)


def _wf(workflow_id: str) -> WorkflowSerializationContext:
    return WorkflowSerializationContext(namespace="default", workflow_id=workflow_id)


async def test_the_key_cache_holds_the_most_recently_used_keys_up_to_its_size(
    sessions: sessionmaker[Session],
) -> None:
    """A worker sizes the cache from its workflow cache (worker.codec_key_cache_size): keys
    beyond it are looked up again, never wrong."""
    ring = parse_key_ring(f"{NEW},{OLD}")
    store = CountingStore(CustomerKeyStore(ring, sessions))
    codec = EncryptionCodec(ring, store, cache_size=2)
    assert codec.cache_size == 2 and codec.with_context(_wf("contract-x")).cache_size == 2
    first, second, third = (
        _ledger_contract(sessions, f"cus-{uuid.uuid4().hex[:8]}") for _ in range(3)
    )
    sealed = {}
    for wid in (first, second, third):
        (sealed[wid],) = await codec.with_context(_wf(wid)).encode([_plain(wid)])
    assert store.calls == [first, second, third]
    for wid in (second, third):  # the two most recent: no database round trip
        await codec.with_context(_wf(wid)).encode([_plain("again")])
    assert store.calls == [first, second, third]
    # the first was evicted: looked up again, same key as before
    (again,) = await codec.with_context(_wf(first)).encode([_plain("again")])
    assert store.calls == [first, second, third, first]
    assert again.metadata[KEY_ID_META] == sealed[first].metadata[KEY_ID_META]
    # decoding a payload of an evicted key loads it by its id
    fresh = EncryptionCodec(ring, store, cache_size=1)
    assert await fresh.decode([sealed[second], sealed[third]]) == [_plain(second), _plain(third)]
    assert await fresh.decode([sealed[second]]) == [_plain(second)]
    assert store.calls[4:] == [
        sealed[w].metadata[KEY_ID_META].decode().removeprefix("customer:")
        for w in (second, third, second)
    ]


def test_a_worker_sizes_its_key_cache_from_its_workflow_cache(settings: Settings) -> None:
    from worker import MIN_CODEC_KEY_CACHE, codec_key_cache_size

    assert MIN_CODEC_KEY_CACHE == KEY_CACHE_SIZE  # the default workflow cache's wave fits
    assert (
        codec_key_cache_size(settings.model_copy(update={"worker_max_cached_workflows": 800}))
        == KEY_CACHE_SIZE
    )
    assert (
        codec_key_cache_size(settings.model_copy(update={"worker_max_cached_workflows": 8000}))
        == 16000
    )
    keyed = settings.model_copy(update={"codec_key": SecretStr(NEW)})
    assert data_converter(keyed, key_cache_size=1234).payload_codec.cache_size == 1234  # type: ignore[union-attr]
    assert data_converter(keyed).payload_codec.cache_size == KEY_CACHE_SIZE  # type: ignore[union-attr]


async def test_contract_payloads_use_their_customers_key_cached_after_the_first_look_up(
    sessions: sessionmaker[Session],
) -> None:
    ring = parse_key_ring(f"{NEW},{OLD}")
    store = CountingStore(CustomerKeyStore(ring, sessions))
    codec = EncryptionCodec(ring, store)
    customer = f"cus-{uuid.uuid4().hex[:8]}"
    first, second = _ledger_contract(sessions, customer), _ledger_contract(sessions, customer)
    stranger = _ledger_contract(sessions, f"cus-{uuid.uuid4().hex[:8]}")

    (a,) = await codec.with_context(_wf(first)).encode([_plain("erika@example.org")])
    key_id = a.metadata[KEY_ID_META]
    assert key_id.startswith(b"customer:") and b"erika" not in a.SerializeToString()
    # the activity context of the same workflow, and the customer's other contract: same key
    activity_ctx = ActivitySerializationContext(
        namespace="default",
        activity_id="1",
        activity_type="sync_ledger",
        activity_task_queue="q",
        workflow_id=first,
        workflow_type="contract",
        is_local=False,
    )
    (b,) = await codec.with_context(activity_ctx).encode([_plain("x")])
    (c,) = await codec.with_context(_wf(second)).encode([_plain("y")])
    assert b.metadata[KEY_ID_META] == c.metadata[KEY_ID_META] == key_id
    (d,) = await codec.with_context(_wf(stranger)).encode([_plain("z")])
    assert d.metadata[KEY_ID_META].startswith(b"customer:") and d.metadata[KEY_ID_META] != key_id
    # once looked up, a workflow's payloads cost no database round trip
    calls = len(store.calls)
    for _ in range(50):
        await codec.with_context(_wf(first)).encode([_plain("again")])
        assert await codec.decode([a]) == [_plain("erika@example.org")]
    assert len(store.calls) == calls

    # Without a workflow, or for one that is not a contract: the master key, as before.
    (plain_ctx,) = await codec.encode([_plain("no context")])
    assert plain_ctx.metadata[KEY_ID_META] == b"k2026"
    (other,) = await codec.with_context(_wf("reports-nightly")).encode([_plain("x")])
    assert other.metadata[KEY_ID_META] == b"k2026"
    assert len(store.calls) == calls  # not a contract id: not even looked up
    (unknown,) = await codec.with_context(_wf("contract-not-in-the-ledger")).encode([_plain("x")])
    assert unknown.metadata[KEY_ID_META] == b"k2026"

    # A fresh process (empty cache) decodes by the key id alone; payloads of the master key
    # ring, written before per-customer keys, still decode.
    fresh = EncryptionCodec(ring, CustomerKeyStore(ring, sessions))
    (old,) = await _ring(OLD).encode([_plain("alt")])
    assert await fresh.decode([a, d, old, plain_ctx]) == [
        _plain("erika@example.org"),
        _plain("z"),
        _plain("alt"),
        _plain("no context"),
    ]
    # The database holds the key only wrapped with the master key, bound to its customer.
    with sessions() as s:
        row = s.scalars(select(CustomerKey).where(CustomerKey.customer_id == customer)).one()
        assert row.wrap_key_id == "k2026" and len(row.wrapped_key) == 12 + 32 + 16
        row.customer_id = "cus-someone-else"  # a wrapped key moved to another customer…
        with pytest.raises(CodecError, match="failed authentication"):
            CustomerKeyStore(ring, sessions)._unwrap(row)  # …does not unwrap
        s.rollback()
    # Without the master key that wrapped it, the store says which key is missing.
    with pytest.raises(CodecError, match="wrapped with master key 'k2026'"):
        await EncryptionCodec(
            parse_key_ring(OLD), CustomerKeyStore(parse_key_ring(OLD), sessions)
        ).decode([a])


async def test_the_caches_keep_keys_not_ciphers(sessions: sessionmaker[Session]) -> None:
    """A cached key is its 32 bytes (a cipher object takes ~1.3 KiB): the worker's cache of
    10,000 keys stays a few MiB (worker.codec_key_cache_size). Payloads still round-trip."""
    ring = parse_key_ring(NEW)
    codec = EncryptionCodec(ring, CustomerKeyStore(ring, sessions), cache_size=10)
    wid = _ledger_contract(sessions, f"cus-{uuid.uuid4().hex[:8]}")
    (sealed,) = await codec.with_context(_wf(wid)).encode([_plain(wid)])
    found, entry = codec._shared.workflows.get(wid)
    assert found and entry is not None
    key_id, key = entry
    assert isinstance(key, bytes) and len(key) == 32
    assert sealed.metadata[KEY_ID_META].decode() == key_id
    assert codec._shared.keys.get(key_id) == (True, key)
    assert await codec.decode([sealed]) == [_plain(wid)]
    assert await EncryptionCodec(ring, CustomerKeyStore(ring, sessions)).decode([sealed]) == [
        _plain(wid)
    ]
