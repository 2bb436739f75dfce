"""Per-customer data keys for the payload codec, kept in the ledger database (issue 13).

Envelope encryption: each customer gets a random 256-bit data key the first time one of
their contract workflows' payloads is encoded; the key is stored wrapped (AES-256-GCM) with
the primary master key of `MAHNWERK_CODEC_KEY`, and the customer id is the wrapping's
associated data, so a wrapped key copied onto another customer's row does not unwrap.
Erasing the customer deletes the row (`shred`), which makes every Temporal payload encrypted
with it unreadable for good, wherever copies of the history are (crypto-shredding).

The codec (core/codec.py) calls `key_for_workflow` and `key` from a thread and caches what
they return; this module does blocking database I/O only.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.codec import KEY_SIZE, NONCE_SIZE, CodecError, KeyRing
from core.models import Contract, CustomerErasure, CustomerKey

_WRAP_CONTEXT = b"mahnwerk customer data key v1\0"


def _aad(customer_id: str) -> bytes:
    return _WRAP_CONTEXT + customer_id.encode()


class CustomerKeyStore:
    """The `customer_keys` table, wrapped and unwrapped with the master key ring.

    `sessions` is a session factory, or a callable returning one (to connect lazily: a
    client that never encodes a contract's payload never opens the database).
    """

    def __init__(
        self,
        ring: KeyRing,
        sessions: sessionmaker[Session] | Callable[[], sessionmaker[Session]],
    ) -> None:
        self._ring = ring
        self._ciphers = {kid: AESGCM(key) for kid, key in ring.keys}
        self._sessions = sessions

    def _factory(self) -> sessionmaker[Session]:
        if isinstance(self._sessions, sessionmaker):
            return self._sessions
        self._sessions = self._sessions()
        return self._sessions

    # -- wrapping -------------------------------------------------------------------------

    def _wrap(self, customer_id: str, key: bytes) -> tuple[str, bytes]:
        kid = self._ring.primary_id
        nonce = os.urandom(NONCE_SIZE)
        return kid, nonce + self._ciphers[kid].encrypt(nonce, key, _aad(customer_id))

    def _unwrap(self, row: CustomerKey) -> bytes:
        cipher = self._ciphers.get(row.wrap_key_id)
        if cipher is None:
            raise CodecError(
                f"customer data key {row.id!r} is wrapped with master key "
                f"{row.wrap_key_id!r}, which MAHNWERK_CODEC_KEY does not have "
                f"({', '.join(self._ring.ids)}); keep retired master keys in the ring"
            )
        blob = bytes(row.wrapped_key)
        try:
            key = cipher.decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], _aad(row.customer_id))
        except InvalidTag:
            raise CodecError(
                f"customer data key {row.id!r} failed authentication: altered, moved to "
                f"another customer, or wrapped with a different key under {row.wrap_key_id!r}"
            ) from None
        if len(key) != KEY_SIZE:
            raise CodecError(f"customer data key {row.id!r} is {len(key)} bytes, not 32")
        return key

    # -- the codec's two look-ups ------------------------------------------------------------

    def key_for_workflow(self, workflow_id: str) -> tuple[str, bytes] | None:
        """(key id, key) of the customer of the contract running as `workflow_id`, created
        on first use; None if no contract of this database has that workflow id."""
        factory = self._factory()
        with factory() as s, s.begin():
            customer_id = s.scalar(
                select(Contract.customer_id).where(Contract.workflow_id == workflow_id)
            )
            if customer_id is None:
                return None
            # FOR SHARE (PostgreSQL): an erasure deleting this row right now (its contracts
            # check did not see a contract started a moment ago) makes us wait for its
            # commit and then create a new key, instead of encrypting the new contract with
            # a key about to be shredded.
            row = s.scalar(
                select(CustomerKey)
                .where(CustomerKey.customer_id == customer_id)
                .with_for_update(read=True)
            )
            if row is not None:
                return row.id, self._unwrap(row)
            erasure = s.get(CustomerErasure, customer_id)
            if erasure is not None and workflow_id in erasure.result.get("workflow_ids", []):
                # An erased contract (a query on its closed workflow, say): no new key for a
                # customer who was erased; nothing personal is left to encrypt for it.
                return None
        key = secrets.token_bytes(KEY_SIZE)
        wrap_key_id, wrapped = self._wrap(customer_id, key)
        row = CustomerKey(
            id=secrets.token_hex(16),
            customer_id=customer_id,
            wrap_key_id=wrap_key_id,
            wrapped_key=wrapped,
        )
        try:
            with factory() as s, s.begin():
                s.add(row)
            return row.id, key
        except IntegrityError:
            # Another process (the API starting a second contract, a worker) created this
            # customer's key at the same moment: use theirs.
            with factory() as s:
                won = s.scalar(select(CustomerKey).where(CustomerKey.customer_id == customer_id))
                if won is None:
                    raise
                return won.id, self._unwrap(won)

    def key(self, key_id: str) -> bytes | None:
        """The data key with that id; None when it does not exist (shredded)."""
        with self._factory()() as s:
            row = s.get(CustomerKey, key_id)
            return None if row is None else self._unwrap(row)


def shred(s: Session, customer_id: str) -> list[str]:
    """Delete the customer's data key in the caller's transaction; the ids deleted."""
    ids = list(s.scalars(select(CustomerKey.id).where(CustomerKey.customer_id == customer_id)))
    if ids:
        s.execute(delete(CustomerKey).where(CustomerKey.customer_id == customer_id))
    return ids
