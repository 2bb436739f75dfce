"""Issue 14: each seller's Stripe client and rate limit (activities/payments.StripeAccounts)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from activities.payments import StripeAccounts, TokenBucket, make_stripe_client
from core.db import transaction
from core.models import Seller
from core.sellers import SellerConfigError, SellerDirectory
from core.settings import Settings


def _seller(sessions: sessionmaker[Session], **fields: Any) -> str:
    sid = f"s-{uuid.uuid4().hex[:8]}"
    with transaction(sessions) as s:
        s.add(Seller(id=sid, source="api", name="S", **fields))
    return sid


def test_one_client_and_one_bucket_per_account(
    settings: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = settings.stripe_api_key.get_secret_value()
    platform = make_stripe_client(key, settings.stripe_api_base)
    limiter = TokenBucket(7.0)
    accounts = StripeAccounts(
        SellerDirectory(settings, sessions), settings.stripe_api_base, platform, limiter
    )
    a1 = _seller(sessions, stripe_account="acct_1A")
    a2 = _seller(sessions, stripe_account="acct_1A")  # two sellers, one connected account
    b = _seller(sessions, stripe_account="acct_1B")
    monkeypatch.setenv("OWN_KEY_FOR_TEST", "sk_live_own_seller_key")
    own = _seller(sessions, stripe_api_key_ref="env:OWN_KEY_FOR_TEST")
    on_platform = _seller(sessions)
    missing = _seller(sessions, stripe_api_key_ref="env:NOT_SET_ANYWHERE_123")

    # the platform's sellers share the platform's client and the worker's bucket
    assert accounts.for_seller("") == (platform, limiter)
    assert accounts.for_seller("default") == (platform, limiter)
    assert accounts.for_seller(on_platform) == (platform, limiter)
    # a connected account: the platform's key, with Stripe-Account; its own bucket
    client_a, bucket_a = accounts.for_seller(a1)
    assert client_a is not platform and bucket_a is not limiter
    assert client_a._requestor._options.stripe_account == "acct_1A"  # type: ignore[attr-defined]
    assert client_a._requestor._options.api_key == key  # type: ignore[attr-defined]
    assert accounts.for_seller(a2) == (client_a, bucket_a)  # same account: shared limit
    client_b, bucket_b = accounts.for_seller(b)
    assert client_b is not client_a and bucket_b is not bucket_a
    # an own key: that key, no header, its mode's limit (live: 100/s)
    client_o, bucket_o = accounts.for_seller(own)
    assert client_o._requestor._options.api_key == "sk_live_own_seller_key"  # type: ignore[attr-defined]
    assert client_o._requestor._options.stripe_account is None  # type: ignore[attr-defined]
    assert bucket_o.rate == 100.0 and bucket_a.rate == 25.0
    with pytest.raises(SellerConfigError, match="NOT_SET_ANYWHERE_123"):
        accounts.for_seller(missing)
    with pytest.raises(SellerConfigError, match="does not exist"):
        accounts.for_seller("no-such-seller")
