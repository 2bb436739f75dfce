"""Issue 14: contracts of several sellers on one deployment, driven from the outside (the
HTTP API, the real worker, the Stripe stand-in with connected accounts)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.common import SearchAttributeKey

from core.models import OutboxEvent
from tests.api.test_sellers import seller_body
from tests.conftest import ADMIN, PLATFORM, contract_body
from tests.stack import Stack
from workflows.types import ContractView, workflow_id_for

SELLER_ID_ATTR = SearchAttributeKey.for_keyword("SellerId")


def outbox(sessions: sessionmaker[Session], cid: str) -> list[dict[str, Any]]:
    with sessions() as s:
        rows = s.scalars(
            select(OutboxEvent).where(OutboxEvent.contract_id == cid).order_by(OutboxEvent.id)
        )
        return [r.payload for r in rows]


async def start(stack: Stack, seller_id: str | None, **kw: Any) -> str:
    kw.setdefault("first_due", await stack.today())
    body = contract_body(**kw)
    if seller_id is not None:
        body["seller_id"] = seller_id
    resp = await stack.http.post("/v1/contracts", json=body, headers=PLATFORM)
    assert resp.status_code == 201, resp.text
    assert resp.json()["seller_id"] == (seller_id or "default")
    return str(body["contract_id"])


async def test_a_checkout_names_its_seller(stack: Stack, sessions: sessionmaker[Session]) -> None:
    seller = seller_body(stripe_account=None)  # on the platform's own Stripe account
    resp = await stack.http.post("/v1/sellers", json=seller, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    theirs = await start(stack, seller["id"], kind="one_off", amount=4900)
    ours = await start(stack, None, kind="one_off", amount=5900)
    for cid, seller_id in ((theirs, seller["id"]), (ours, "default")):
        handle = stack.temporal.get_workflow_handle(workflow_id_for(cid), result_type=ContractView)
        assert (await stack.result(handle)).status == "completed"
        assert (await stack.contract(cid))["seller_id"] == seller_id
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(SELLER_ID_ATTR) == seller_id
        events = outbox(sessions, cid)
        assert events and {e["seller_id"] for e in events} == {seller_id}, events
        assert len(stack.debits(cid)) == 1


async def test_a_contract_started_before_sellers_gets_the_default_seller_attribute(
    stack: Stack, sessions: sessionmaker[Session]
) -> None:
    """A running contract of before issue 14 has no seller in its input and no SellerId:
    the workflow sets SellerId = "default" once (behind PATCH_SELLER_ID)."""
    import dataclasses
    from datetime import UTC, datetime

    from api.routes.contracts import _hash, _record_checkout, build_input
    from api.schemas import ContractCreate
    from workflows.contract import search_attributes

    body = ContractCreate.model_validate(
        contract_body(kind="one_off", amount=3900, first_due=await stack.today())
    )
    inp = dataclasses.replace(build_input(body, stack.settings, datetime.now(UTC)), seller_id="")
    _record_checkout(sessions, stack.settings, body, inp, _hash(body))
    await stack.temporal.start_workflow(
        "contract",
        inp,
        id=workflow_id_for(body.contract_id),
        task_queue=stack.settings.task_queue,
        search_attributes=search_attributes(body.customer.id, "active", "none", 0, False),
    )
    # (a handle of its own: start_workflow's unlocks the test server's time skipping itself)
    handle = stack.temporal.get_workflow_handle(
        workflow_id_for(body.contract_id), result_type=ContractView
    )
    assert (await handle.describe()).typed_search_attributes.get(SELLER_ID_ATTR) is None
    assert (await stack.result(handle)).status == "completed"
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(SELLER_ID_ATTR) == "default"
    assert {e["seller_id"] for e in outbox(sessions, body.contract_id)} == {"default"}
