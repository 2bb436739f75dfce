"""Payload encryption (SPEC.md §7): what Temporal stores is ciphertext, names and e-mail
addresses included; the worker, the API and admins (through `/codec/decode`) see plaintext.

AES-256-GCM with a random 12-byte nonce per payload, after Temporal's samples-python
`encryption/codec.py`. The key ring comes from `MAHNWERK_CODEC_KEY`, a comma-separated list of
`id:base64key` entries: the first key encrypts, every key decrypts. To rotate, put a new key
in front (`new:…,old:…`) and keep the old one as long as histories encrypted with it may be
read (replayed, queried, shown in the UI).

Payloads that are not encrypted pass through decode unchanged, so histories recorded before
encryption was switched on still replay.

**Per-customer data keys (envelope encryption, issue 13).** A payload of a contract workflow
is encrypted with its customer's own random 256-bit data key, not with the master key: the
SDK tells the codec which workflow a payload belongs to (`with_context`, a
`WorkflowSerializationContext` or `ActivitySerializationContext` carrying the workflow id,
`contract-{contract_id}`), and a key store (core/customer_keys.py) maps that workflow to its
customer's key, creating it on first use and keeping it wrapped with the master key ring in
the database. The payload's metadata names the key (`customer:<key id>`), so decoding needs
no context. Erasing a customer (Art. 17 GDPR, `POST /v1/customers/{id}/erase`) deletes the
key: every history payload encrypted with it becomes unreadable (crypto-shredding), while
other customers' histories read as before. Without a workflow id, or for a workflow that is
not a contract of this database, the master key encrypts, as before.

Keys are cached in memory (bounded LRU with a time-to-live): the worker encodes and decodes
many payloads per second, and a cached key costs no database round trip; a miss is looked up
in a thread, never on the event loop. The time-to-live bounds how long another process may
still hold a shredded key in memory (10 minutes by default).

`python -m core.codec` prints a new key ring entry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext

ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
NONCE_SIZE = 12
KEY_SIZE = 32  # AES-256
# Key ids of per-customer data keys in payload metadata: `customer:<id>`. A master key id
# cannot contain ':' (see _KEY_ID), so the two never collide.
CUSTOMER_KEY_PREFIX = "customer:"
# Workflow ids of contracts (workflows/types.py workflow_id_for): only these are looked up.
CONTRACT_WORKFLOW_PREFIX = "contract-"
KEY_CACHE_SIZE = 10_000  # cached keys and workflow → key entries, each
KEY_CACHE_TTL = 600.0  # seconds a process may keep using a cached key (see the docstring)
NO_CONTRACT_TTL = 30.0  # seconds "not a contract of this database" is remembered

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class CodecError(ValueError):
    """A payload that cannot be decrypted: unknown key id, tampered with, or malformed."""


class ShreddedKeyError(CodecError):
    """The payload was encrypted with a customer data key that no longer exists: the
    customer was erased (crypto-shredding), so the payload is unreadable by design."""


class KeyStore(Protocol):
    """Where the per-customer data keys live (core/customer_keys.py: the database).

    Both methods block (database I/O); the codec calls them in a thread."""

    def key_for_workflow(self, workflow_id: str) -> tuple[str, bytes] | None:
        """(key id, key) of the customer whose contract runs as `workflow_id`, created on
        first use; None when no contract of this database has that workflow id."""
        ...

    def key(self, key_id: str) -> bytes | None:
        """The data key with that id (without the `customer:` prefix); None if it does not
        exist (shredded)."""
        ...


V = TypeVar("V")


class _TTLCache(Generic[V]):
    """A bounded LRU map whose entries expire; thread-safe (the codec's clones share one,
    and the API decodes in request handlers while its client encodes)."""

    def __init__(self, max_entries: int, ttl: float) -> None:
        self._max = max_entries
        self._ttl = ttl
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, V | None]:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return False, None
            if hit[0] <= now:
                del self._entries[key]
                return False, None
            self._entries.move_to_end(key)
            return True, hit[1]

    def put(self, key: str, value: V, ttl: float | None = None) -> None:
        expires = time.monotonic() + (self._ttl if ttl is None else ttl)
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def drop_values(self, predicate: Callable[[V], bool]) -> int:
        """Remove every entry whose value matches; how many were removed."""
        with self._lock:
            doomed = [k for k, (_, v) in self._entries.items() if predicate(v)]
            for k in doomed:
                del self._entries[k]
            return len(doomed)

    def pop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


@dataclass(frozen=True, repr=False)
class KeyRing:
    """Keys by id, in `MAHNWERK_CODEC_KEY` order; the first one encrypts."""

    keys: tuple[tuple[str, bytes], ...]

    @property
    def primary_id(self) -> str:
        return self.keys[0][0]

    @property
    def ids(self) -> list[str]:
        return [kid for kid, _ in self.keys]

    def __repr__(self) -> str:  # never print key material
        return f"KeyRing(ids={self.ids!r})"


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional."""
    text = text.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    return base64.b64decode(text, validate=True)


def parse_key_ring(raw: str) -> KeyRing:
    """Parse `id:base64key,…`; a ValueError names the entry (by id) and what is wrong."""
    keys: list[tuple[str, bytes]] = []
    for n, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not encoded.strip():
            raise ValueError(f"entry {n} is not id:base64key")
        if not _KEY_ID.match(key_id):
            raise ValueError(f"entry {n}: key id must be letters, digits, '_' or '-'")
        if any(key_id == kid for kid, _ in keys):
            raise ValueError(f"key id {key_id!r} appears twice")
        try:
            key = _b64decode(encoded)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not valid base64") from None
        if len(key) != KEY_SIZE:
            raise ValueError(
                f"key {key_id!r} is {len(key)} bytes after base64 decoding; AES-256 needs 32"
            )
        keys.append((key_id, key))
    if not keys:
        raise ValueError("no keys (expected id:base64key[,id:base64key…])")
    return KeyRing(tuple(keys))


def generate_key(key_id: str | None = None) -> str:
    """A new key ring entry `id:base64key` (the id defaults to today's date, `k20261127`)."""
    key_id = key_id or time.strftime("k%Y%m%d")
    if not _KEY_ID.match(key_id):
        raise ValueError("key id must be letters, digits, '_' or '-'")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode()}"


@dataclass(frozen=True)
class _Sealer:
    """The key a payload is encrypted with: its id (as in the metadata) and cipher."""

    key_id: str
    cipher: AESGCM


class _Shared:
    """What a codec and all its contextual copies share: the key store and the caches.

    The caches hold the customers' raw keys (32 bytes), not their ciphers: an `AESGCM`
    object takes ~1.3 KiB of a process's memory and costs ~2 µs to make, so a cipher is made
    for each batch of payloads instead of kept — a cache of 10,000 keys and 10,000 workflows
    then takes ~3–4 MiB, as 1,600 of each did with ciphers (issue 17)."""

    def __init__(self, store: KeyStore | None, cache_size: int, ttl: float) -> None:
        self.store = store
        self.cache_size = cache_size
        # workflow id -> its customer's (key id, key), or None (not a contract: the master key)
        self.workflows: _TTLCache[tuple[str, bytes] | None] = _TTLCache(cache_size, ttl)
        # customer key id (metadata form, `customer:…`) -> key
        self.keys: _TTLCache[bytes] = _TTLCache(cache_size, ttl)
        _LIVE.add(self)

    def forget(self, key_ids: Sequence[str]) -> None:
        doomed = {
            k if k.startswith(CUSTOMER_KEY_PREFIX) else CUSTOMER_KEY_PREFIX + k for k in key_ids
        }
        for kid in doomed:
            self.keys.pop(kid)
        self.workflows.drop_values(lambda s: s is not None and s[0] in doomed)


# Every codec's caches in this process, so an erasure drops the shredded keys from all of
# them at once (the API's client, the codec endpoint's codec, a worker in the same process).
_LIVE: weakref.WeakSet[_Shared] = weakref.WeakSet()


def forget_shredded(key_ids: Sequence[str]) -> None:
    """Drop shredded customer keys (`customer:<id>` or bare ids) from every codec of this
    process at once; other processes drop them within KEY_CACHE_TTL."""
    for shared in list(_LIVE):
        shared.forget(key_ids)


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM over the whole serialized payload (data and metadata).

    With a key store, payloads of a contract workflow are encrypted with the customer's data
    key (see the module docstring); the SDK hands each copy its context (`with_context`).
    """

    def __init__(
        self,
        ring: KeyRing,
        store: KeyStore | None = None,
        *,
        cache_size: int = KEY_CACHE_SIZE,
        cache_ttl: float = KEY_CACHE_TTL,
        _shared: _Shared | None = None,
        _workflow_id: str | None = None,
    ) -> None:
        self._ring = ring
        self._ciphers = {kid: AESGCM(key) for kid, key in ring.keys}
        self._primary = ring.primary_id
        self._master = _Sealer(self._primary, self._ciphers[self._primary])
        self._shared = _shared or _Shared(store, cache_size, cache_ttl)
        self._workflow_id = _workflow_id

    @property
    def key_ids(self) -> list[str]:
        return self._ring.ids

    @property
    def cache_size(self) -> int:
        """How many customer keys (and as many workflow → key entries) stay in memory."""
        return self._shared.cache_size

    @property
    def workflow_id(self) -> str | None:
        """The workflow whose payloads this copy encodes (None: the master key encrypts)."""
        return self._workflow_id

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        # Called by the SDK for every workflow activation and activity call: cheap, the copy
        # shares the ciphers, the key store and the caches with this codec.
        workflow_id = getattr(context, "workflow_id", None)
        if workflow_id == self._workflow_id:
            return self
        clone = object.__new__(EncryptionCodec)
        clone.__dict__.update(self.__dict__)
        clone._workflow_id = workflow_id
        return clone

    # -- encode ---------------------------------------------------------------------------

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        sealer = await self._sealer() if payloads else self._master
        return [self._seal(p, sealer) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """Encrypt with the master key (no context, no key store needed)."""
        return self._seal(payload, self._master)

    async def _sealer(self) -> _Sealer:
        wid = self._workflow_id
        store = self._shared.store
        if store is None or not wid or not wid.startswith(CONTRACT_WORKFLOW_PREFIX):
            return self._master
        cache = self._shared.workflows
        found, entry = cache.get(wid)
        if not found:
            # Database I/O: in a thread, so the worker's event loop never waits on it.
            looked_up = await asyncio.to_thread(store.key_for_workflow, wid)
            if looked_up is None:
                entry = None
                cache.put(wid, None, ttl=NO_CONTRACT_TTL)
            else:
                entry = (CUSTOMER_KEY_PREFIX + looked_up[0], looked_up[1])
                cache.put(wid, entry)
                self._shared.keys.put(*entry)
        if entry is None:
            return self._master
        return _Sealer(entry[0], AESGCM(entry[1]))

    @staticmethod
    def _seal(payload: Payload, sealer: _Sealer) -> Payload:
        if payload.metadata.get("encoding") == ENCODING:
            return payload  # already ciphertext: encrypting twice would not decode once
        key_id = sealer.key_id.encode()
        nonce = os.urandom(NONCE_SIZE)
        # The key id is authenticated too: relabelling a payload makes it undecryptable.
        sealed = sealer.cipher.encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_META: key_id},
            data=nonce + sealed,
        )

    # -- decode ---------------------------------------------------------------------------

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            key_id = self._key_id(p)
            if key_id is not None and key_id.startswith(CUSTOMER_KEY_PREFIX):
                cipher = await self._load_customer_cipher(key_id)
                out.append(self._open(p, key_id, cipher))
            else:
                out.append(self.decrypt(p))
        return out

    def decrypt(self, payload: Payload) -> Payload:
        """Decrypt a payload of the master key ring, or of a customer key in the cache."""
        key_id = self._key_id(payload)
        if key_id is None:
            return payload  # recorded before encryption (or never encrypted): as it is
        if key_id.startswith(CUSTOMER_KEY_PREFIX):
            found, cached = self._shared.keys.get(key_id)
            if not found or cached is None:
                raise CodecError(f"payload key {key_id!r} is not loaded: decode it with decode()")
            return self._open(payload, key_id, AESGCM(cached))
        master = self._ciphers.get(key_id)
        if master is None:
            raise CodecError(
                f"payload encrypted with unknown key id {key_id!r} (MAHNWERK_CODEC_KEY has "
                f"{', '.join(self._ring.ids)}); add that key to MAHNWERK_CODEC_KEY"
            )
        return self._open(payload, key_id, master)

    @staticmethod
    def _key_id(payload: Payload) -> str | None:
        """The key id of an encrypted payload; None for one that is not encrypted."""
        if payload.metadata.get("encoding") != ENCODING:
            return None
        raw_id = payload.metadata.get(KEY_ID_META)
        if not raw_id:
            raise CodecError(f"encrypted payload has no {KEY_ID_META!r} metadata")
        return raw_id.decode("utf-8", "replace")

    async def _load_customer_cipher(self, key_id: str) -> AESGCM:
        found, cached = self._shared.keys.get(key_id)
        if found and cached is not None:
            return AESGCM(cached)
        store = self._shared.store
        if store is None:
            raise CodecError(
                f"payload encrypted with customer data key {key_id!r}, and this codec has no "
                "key store (the database of MAHNWERK_DATABASE_URL / DATABASE_URL)"
            )
        key = await asyncio.to_thread(store.key, key_id[len(CUSTOMER_KEY_PREFIX) :])
        if key is None:
            raise ShreddedKeyError(
                f"payload encrypted with customer data key {key_id!r}, which no longer exists: "
                "the customer was erased (crypto-shredding), so this payload is unreadable by "
                "design — or it comes from another Mahnwerk database"
            )
        self._shared.keys.put(key_id, key)
        return AESGCM(key)

    @staticmethod
    def _open(payload: Payload, key_id: str, cipher: AESGCM) -> Payload:
        if len(payload.data) < NONCE_SIZE + 16:
            raise CodecError(f"encrypted payload (key id {key_id!r}) is truncated")
        nonce, sealed = payload.data[:NONCE_SIZE], payload.data[NONCE_SIZE:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise CodecError(
                f"payload (key id {key_id!r}) failed authentication: altered, or encrypted "
                "with a different key under that id"
            ) from None
        out = Payload()
        out.ParseFromString(plain)
        return out

    # -- erasure ----------------------------------------------------------------------------

    def forget_keys(self, key_ids: Sequence[str]) -> None:
        """Drop shredded customer keys from this codec's cache (see `forget_shredded`)."""
        self._shared.forget(key_ids)


if __name__ == "__main__":
    print(generate_key())
