"""Payload encryption (SPEC.md §7): what Temporal stores is ciphertext, names and e-mail
addresses included; the worker, the API and admins (through `/codec/decode`) see plaintext.

AES-256-GCM with a random 12-byte nonce per payload, after Temporal's samples-python
`encryption/codec.py`. The key ring comes from `MAHNWERK_CODEC_KEY`, a comma-separated list of
`id:base64key` entries: the first key encrypts, every key decrypts. To rotate, put a new key
in front (`new:…,old:…`) and keep the old one as long as histories encrypted with it may be
read (replayed, queried, shown in the UI).

Payloads that are not encrypted pass through decode unchanged, so histories recorded before
encryption was switched on still replay.

`python -m core.codec` prints a new key ring entry.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
NONCE_SIZE = 12
KEY_SIZE = 32  # AES-256

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class CodecError(ValueError):
    """A payload that cannot be decrypted: unknown key id, tampered with, or malformed."""


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


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over the whole serialized payload (data and metadata)."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._ciphers = {kid: AESGCM(key) for kid, key in ring.keys}
        self._primary = ring.primary_id

    @property
    def key_ids(self) -> list[str]:
        return self._ring.ids

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") == ENCODING:
            return payload  # already ciphertext: encrypting twice would not decode once
        key_id = self._primary.encode()
        nonce = os.urandom(NONCE_SIZE)
        # The key id is authenticated too: relabelling a payload makes it undecryptable.
        sealed = self._ciphers[self._primary].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_META: key_id},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # recorded before encryption (or never encrypted): as it is
        raw_id = payload.metadata.get(KEY_ID_META)
        if not raw_id:
            raise CodecError(f"encrypted payload has no {KEY_ID_META!r} metadata")
        key_id = raw_id.decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"payload encrypted with unknown key id {key_id!r} (MAHNWERK_CODEC_KEY has "
                f"{', '.join(self._ring.ids)}); add that key to MAHNWERK_CODEC_KEY"
            )
        if len(payload.data) < NONCE_SIZE + 16:
            raise CodecError(f"encrypted payload (key id {key_id!r}) is truncated")
        nonce, sealed = payload.data[:NONCE_SIZE], payload.data[NONCE_SIZE:]
        try:
            plain = cipher.decrypt(nonce, sealed, raw_id)
        except InvalidTag:
            raise CodecError(
                f"payload (key id {key_id!r}) failed authentication: altered, or encrypted "
                "with a different key under that id"
            ) from None
        out = Payload()
        out.ParseFromString(plain)
        return out


if __name__ == "__main__":
    print(generate_key())
