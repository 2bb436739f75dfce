"""The one Temporal client factory (DESIGN.md decision 11): every process connects here."""

from __future__ import annotations

import dataclasses

import temporalio.converter
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime

from core.codec import EncryptionCodec, parse_key_ring
from core.customer_keys import CustomerKeyStore
from core.db import make_engine, make_session_factory
from core.settings import Settings


def data_converter(
    settings: Settings, sessions: sessionmaker[Session] | None = None
) -> DataConverter:
    """The converter of every client: payloads encrypted when MAHNWERK_CODEC_KEY is set.

    Contract workflows' payloads are encrypted with their customer's data key, kept in the
    ledger database (`sessions`, or a small pool of its own opened on first use), so that
    erasing the customer shreds them (core/codec.py, core/customer_keys.py).

    Failure messages and stack traces are moved into an (encrypted) payload as well: an
    error such as "notice 3 undeliverable: erika@example.org: 550 …" must not sit in the
    history as plaintext. They read normally through any client with the codec, and in the
    Temporal UI through `/codec/decode`.
    """
    default = temporalio.converter.default()
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
        payload_codec=EncryptionCodec(ring, store),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect_client(
    settings: Settings,
    *,
    target: str | None = None,
    runtime: Runtime | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> Client:
    """Connect with the project's data converter (payload encryption, SPEC.md §7).

    `runtime`: the worker's, from `core.metrics.worker_runtime` (Prometheus metrics); None
    is the SDK's default runtime. `sessions`: the ledger database, for the customer data
    keys (None: the codec opens its own small pool when it first needs one).
    """
    return await Client.connect(
        target or settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings, sessions),
        runtime=runtime,
    )


def workflow_ui_url(settings: Settings, workflow_id: str) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"
