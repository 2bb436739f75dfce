"""History size (issue 6, benchmark 4) on the time-skipping test server.

    python -m bench.history

The real worker (`build_worker`), the API in-process (ASGI), the Stripe stand-in and an
SMTP catcher in-process, an SQLite ledger in a temp dir — the tests' setup. Three contracts:

* a 6-installment card plan, all paid: total events of its history / 6 (target ≤ 25);
* a lost card (hard decline) through the default ladder to the hand-off: events per case;
* a monthly subscription over 10 years: the continue-as-new chain walked run by run, the
  longest run's events (bounded by continue-as-new).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from bench.common import (
    BIN,
    PLATFORM,
    add_record_option,
    append_results,
    console,
    loadavg,
    markdown_table,
    run_benchmark,
    table,
)

LOST = "pm_card_visa_chargeDeclinedLostCard"


def event_name(e: Any) -> str:
    return EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")


async def runs_of(client: Client, wid: str) -> list[list[Any]]:
    """Every run of a workflow id, oldest first (walking continued_execution_run_id back)."""
    runs: list[list[Any]] = []
    run_id: str | None = None
    while True:
        hist = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
        runs.append(list(hist.events))
        started = hist.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
        if not run_id:
            break
    runs.reverse()
    return runs


def history_bytes(events: list[Any]) -> int:
    return sum(e.ByteSize() for e in events)


def largest_payload(events: list[Any]) -> tuple[int, str]:
    best = (0, "")
    for e in events:
        size = e.ByteSize()
        if size > best[0]:
            best = (size, event_name(e))
    return best


async def main_async(args: argparse.Namespace) -> None:
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.testing import WorkflowEnvironment

    from api.main import create_app
    from core.db import make_engine, make_session_factory
    from core.migrate import upgrade
    from core.settings import load_settings
    from core.smtp_catcher import run_smtp_catcher
    from domain.schedule import berlin_date
    from stripe_standin.testing import run_standin
    from tests.conftest import contract_body
    from worker import build_worker
    from workflows.types import workflow_id_for

    load_before = loadavg()
    tmp = Path(tempfile.mkdtemp(prefix="mahnwerk-bench-history-"))
    db_url = f"sqlite:///{tmp / 'mahnwerk.db'}"
    upgrade(db_url)
    sessions = make_session_factory(make_engine(db_url))
    results: dict[str, Any] = {}
    t_start = time.monotonic()
    with run_standin(webhook_secret="whsec_bench") as standin, run_smtp_catcher() as smtp:
        settings = load_settings(
            database_url=db_url,
            stripe_api_base=standin.url,
            stripe_api_key="sk_test_bench",
            stripe_webhook_secret="whsec_bench",
            smtp_url=f"smtp://{smtp.host}:{smtp.port}",
            task_queue=f"history-{uuid.uuid4().hex[:6]}",
            api_keys="platform:bench:bench-platform-key-123",
            worker_metrics_port=0,
        )
        for attempt in range(3):  # the SDK gives the binary 5 s to start: busy machines
            try:
                env = await WorkflowEnvironment.start_time_skipping(
                    test_server_existing_path=str(BIN / "temporal-test-server")
                )
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        async with env:
            await env.client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace="default",
                    search_attributes={
                        "MahnwerkStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                        "DunningStage": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                        "CustomerId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                        "OverdueAmount": IndexedValueType.INDEXED_VALUE_TYPE_INT,
                        "AccessLocked": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
                        "SellerId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                    },
                )
            )
            parts = build_worker(env.client, settings, session_factory=sessions)
            app = create_app(settings, sessions)
            app.state.mahnwerk._client = env.client
            transport = httpx.ASGITransport(app=app)
            async with (
                parts.worker,
                httpx.AsyncClient(transport=transport, base_url="http://api") as http,
            ):

                async def start(**kw: Any) -> tuple[str, WorkflowHandle[Any, Any]]:
                    kw.setdefault("first_due", berlin_date(await env.get_current_time()))
                    body = contract_body(**kw)
                    resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
                    if resp.status_code != 201:
                        raise RuntimeError(f"{resp.status_code}: {resp.text}")
                    cid = body["contract_id"]
                    return cid, env.client.get_workflow_handle(workflow_id_for(cid))

                async def finish(handle: WorkflowHandle[Any, Any]) -> Any:
                    async with env.time_skipping_unlocked():  # type: ignore[attr-defined]
                        return await handle.result()

                # 1. six installments, all paid
                console.print("6-installment card plan …")
                cid, handle = await start(count=6)
                view = await finish(handle)
                runs = await runs_of(env.client, handle.id)
                debits = [d for d in standin.ledger() if d["metadata"].get("contract_id") == cid]
                results["plan"] = (view, runs, len(debits))

                # 2. a lost card through the default ladder to the hand-off
                console.print("lost card through the default ladder …")
                cid, handle = await start(count=1, payment_method=LOST)
                # Since issue 12 a handed-off contract goes on (payments after the hand-off):
                # the case is measured 60 days on, when the hand-off is done.
                await env.sleep(timedelta(days=60))
                view = await handle.query("view")
                results["case"] = (view, await runs_of(env.client, handle.id), 0)
                await handle.terminate("benchmark done")

                # 3. a monthly subscription over ten years
                console.print("monthly subscription over 10 years (takes a while) …")
                cid, handle = await start(kind="subscription", amount=2900)
                await env.sleep(timedelta(days=args.years * 365 + args.years // 4 - 20))
                debits = [d for d in standin.ledger() if d["metadata"].get("contract_id") == cid]
                results["sub"] = (None, await runs_of(env.client, handle.id), len(debits))
                await handle.terminate("benchmark done")
            parts.executor.shutdown(wait=False)
    wall = time.monotonic() - t_start
    sessions.kw["bind"].dispose()
    shutil.rmtree(tmp, ignore_errors=True)

    plan_view, plan_runs, plan_debits = results["plan"]
    plan_events = sum(len(r) for r in plan_runs)
    case_view, case_runs, _ = results["case"]
    case_events = sum(len(r) for r in case_runs)
    _, sub_runs, sub_debits = results["sub"]
    longest = max(len(r) for r in sub_runs)
    per_inst = plan_events / 6
    cols = ["history", "value", "target"]
    rows = [
        [
            "events per paid installment (6-installment plan)",
            f"{per_inst:.1f} ({plan_events} events / 6; {plan_debits} debits; "
            f"status {plan_view['status'] if isinstance(plan_view, dict) else plan_view.status})",
            "≤ 25 " + ("met" if per_inst <= 25 else "MISSED"),
        ],
        [
            "events per dunning case (lost card → hand-off)",
            f"{case_events} (status "
            f"{case_view['status'] if isinstance(case_view, dict) else case_view.status})",
            "",
        ],
        [
            f"subscription, {args.years} years monthly: longest run",
            f"{longest} events ({len(sub_runs)} runs, {sum(len(r) for r in sub_runs)} events "
            f"in all, {sub_debits} debits)",
            "bounded by continue-as-new",
        ],
        [
            "history bytes: plan / case / longest subscription run",
            f"{history_bytes(plan_runs[0]) / 1024:.0f} KiB / "
            f"{history_bytes(case_runs[0]) / 1024:.0f} KiB / "
            f"{max(history_bytes(r) for r in sub_runs) / 1024:.0f} KiB",
            "",
        ],
        [
            "largest event (plan)",
            "{} bytes ({})".format(*largest_payload(plan_runs[0])),
            "",
        ],
    ]
    console.print(table("History size", cols, rows))
    counts = Counter(event_name(e) for e in plan_runs[0])
    breakdown = [[k, str(v), f"{v / 6:.1f}"] for k, v in counts.most_common()]
    console.print(table("6-installment plan: events by type", ["event", "count", "/ 6"], breakdown))
    case_counts = Counter(event_name(e) for e in case_runs[0])
    case_rows = [[k, str(v)] for k, v in case_counts.most_common()]
    console.print(table("Dunning case: events by type", ["event", "count"], case_rows))
    sub_rows = [
        [str(i + 1), str(len(r)), f"{history_bytes(r) / 1024:.0f}"] for i, r in enumerate(sub_runs)
    ]
    console.print(table("Subscription runs", ["run", "events", "KiB"], sub_rows))
    load_after = loadavg()
    console.print(f"{wall:.0f} s; load average before {load_before}, after {load_after}")
    if args.no_record:
        return
    append_results(
        "History size (time-skipping test server)",
        [
            ("", markdown_table(cols, rows)),
            (
                "6-installment plan: events by type",
                markdown_table(["event", "count", "/ 6"], breakdown),
            ),
            ("Dunning case: events by type", markdown_table(["event", "count"], case_rows)),
            ("Subscription runs", markdown_table(["run", "events", "KiB"], sub_rows)),
        ],
        [f"Took {wall:.0f} s; load average before {load_before}, after {load_after}."],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--years", type=int, default=10, help="subscription length")
    add_record_option(parser)
    run_benchmark(parser, main_async)


if __name__ == "__main__":
    main()
