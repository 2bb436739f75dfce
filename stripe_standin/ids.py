"""Object ids and fingerprints shaped like Stripe's (`pi_3P...`, 24 base-62 characters)."""

from __future__ import annotations

import hashlib
import random
import string

_ALPHABET = string.ascii_letters + string.digits
_rng = random.SystemRandom()
_fast = random.Random(_rng.getrandbits(64))


def new_id(prefix: str, length: int = 24) -> str:
    """A fresh id: prefix, "_", "1" (Stripe's current id generation) and random characters."""
    return f"{prefix}_1{''.join(_fast.choices(_ALPHABET, k=length - 1))}"


def secret_suffix(length: int = 25) -> str:
    return "".join(_fast.choices(_ALPHABET, k=length))


def fingerprint(*parts: str) -> str:
    """Stable per card number / IBAN, as Stripe's `fingerprint` is."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:16])
