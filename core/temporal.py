"""The one Temporal client factory (DESIGN.md decision 11): every process connects here."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import temporalio.converter
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime

from core.codec import KEY_CACHE_SIZE, EncryptionCodec, parse_key_ring
from core.converter import PayloadConverter
from core.customer_keys import CustomerKeyStore
from core.db import make_engine, make_session_factory
from core.settings import Settings


def data_converter(
    settings: Settings,
    sessions: sessionmaker[Session] | None = None,
    *,
    key_cache_size: int = KEY_CACHE_SIZE,
) -> DataConverter:
    """The converter of every client: Temporal's default payload converter with dataclass type
    hints cached (core/converter.py); payloads encrypted when MAHNWERK_CODEC_KEY is set.

    Contract workflows' payloads are encrypted with their customer's data key, kept in the
    ledger database (`sessions`, or a small pool of its own opened on first use), so that
    erasing the customer shreds them (core/codec.py, core/customer_keys.py). The codec keeps
    up to `key_cache_size` of those keys (and as many workflow → key entries) in memory.

    Failure messages and stack traces are moved into an (encrypted) payload as well: an
    error such as "notice 3 undeliverable: erika@example.org: 550 …" must not sit in the
    history as plaintext. They read normally through any client with the codec, and in the
    Temporal UI through `/codec/decode`.
    """
    # Temporal's default converter, decoding dataclasses with cached type hints
    # (core/converter.py): the payloads it writes are the default converter's.
    default = dataclasses.replace(
        temporalio.converter.default(), payload_converter_class=PayloadConverter
    )
    raw = settings.codec_key_ring
    if not raw:
        return default
    ring = parse_key_ring(raw)
    url = settings.database_url
    store = CustomerKeyStore(
        ring, sessions or (lambda: make_session_factory(make_engine(url, pool_size=2)))
    )
    return dataclasses.replace(
        default,
        payload_codec=EncryptionCodec(ring, store, cache_size=key_cache_size),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def connection_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """TLS, API key and gRPC metadata for `Client.connect`, from Temporal's own environment
    configuration (temporalio.envconfig, the same variables as the `temporal` CLI):

    - `TEMPORAL_API_KEY` (Temporal Cloud; switches TLS on),
    - `TEMPORAL_TLS=true`, `TEMPORAL_TLS_CLIENT_CERT_PATH` / `TEMPORAL_TLS_CLIENT_KEY_PATH`
      (mTLS; `…_DATA` for the PEM itself), `TEMPORAL_TLS_SERVER_CA_CERT_PATH`,
      `TEMPORAL_TLS_SERVER_NAME`,
    - `TEMPORAL_GRPC_META_<NAME>`,
    - a TOML profile only when `TEMPORAL_CONFIG_FILE` or `TEMPORAL_PROFILE` names one (a
      developer's ~/.config/temporalio profile must not redirect the dev stack).

    A ValueError names the variables (`mahnwerk api`/`worker` check this at start-up).
    Address and namespace stay TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE of the settings. Empty
    variables count as unset (compose passes every variable, most of them empty).
    """
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if v}
    env = {k: v for k, v in env.items() if k.startswith("TEMPORAL_")}
    use_file = "TEMPORAL_CONFIG_FILE" in env or "TEMPORAL_PROFILE" in env
    try:
        profile = ClientConfigProfile.load(
            profile=env.get("TEMPORAL_PROFILE"),
            disable_file=not use_file,
            override_env_vars=env,
        )
        config = profile.to_client_connect_config()
    except Exception as exc:  # a missing certificate file, a bad TOML profile
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"TEMPORAL_TLS_* / TEMPORAL_API_KEY / TEMPORAL_PROFILE: {first}") from None
    options: dict[str, Any] = {}
    for key in ("api_key", "tls", "rpc_metadata"):
        if key in config:
            options[key] = config[key]  # type: ignore[literal-required]
    return options


async def connect_client(
    settings: Settings,
    *,
    target: str | None = None,
    runtime: Runtime | None = None,
    sessions: sessionmaker[Session] | None = None,
    key_cache_size: int = KEY_CACHE_SIZE,
) -> Client:
    """Connect with the project's data converter (payload encryption, SPEC.md §7), and TLS /
    API key when the environment asks for them (`connection_options`).

    `runtime`: the worker's, from `core.metrics.worker_runtime` (Prometheus metrics); None
    is the SDK's default runtime. `sessions`: the ledger database, for the customer data
    keys (None: the codec opens its own small pool when it first needs one).
    `key_cache_size`: how many customer keys the codec keeps in memory (the worker sizes it
    from its workflow cache, `worker.codec_key_cache_size`).
    """
    return await Client.connect(
        target or settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings, sessions, key_cache_size=key_cache_size),
        runtime=runtime,
        **connection_options(),
    )


def workflow_ui_url(settings: Settings, workflow_id: str) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"
