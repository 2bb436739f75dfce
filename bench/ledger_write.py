"""The ledger write alone (issue 17): `LedgerActivities.sync_ledger` against a real database.

    python -m bench.ledger_write --n 2000
    python -m bench.ledger_write --n 500 --database-url sqlite:////tmp/ledger-bench.db

The inputs are the real ones: every `sync_ledger` call of the recorded histories in
`tests/histories/` (the workflow's own writes through a contract's life — started, paid,
declined, dunned, paused, handed off, ended), decoded as the worker decodes them. Each
round takes one history, gives it a fresh contract id (in the contract row and in every fact
and attempt key, so every write records its facts anew), inserts the contract row as the API
would and replays the history's writes in order, each twice: the first write, and the same
write again as a retried activity (which records nothing).

Printed per set (the paid installment's writes of `plan-paid`, which is what a due-date wave
does, and all histories together): calls, CPU (this process, where the worker's GIL time is)
and wall time per call, p50/p99 wall, and the facts the writes recorded (none when retried).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    DEFAULT_DB,
    add_record_option,
    append_results,
    console,
    loadavg,
    markdown_table,
    percentile,
    reset_database,
    run_benchmark,
    table,
)

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "histories"


@dataclass
class Recorded:
    name: str
    contract_id: str
    customer_id: str
    product_id: str
    inputs: list[str]  # the sync_ledger inputs as JSON text, in order


def load_histories(folder: Path) -> list[Recorded]:
    """Every history's sync_ledger inputs (JSON payloads, as the tests record them)."""
    out: list[Recorded] = []
    for path in sorted(folder.glob("*.json")):
        events = json.loads(path.read_text())["events"]
        inputs: list[str] = []
        for event in events:
            attrs = event.get("activityTaskScheduledEventAttributes")
            if not attrs or attrs["activityType"]["name"] != "sync_ledger":
                continue
            payload = attrs["input"]["payloads"][0]
            encoding = base64.b64decode(payload["metadata"]["encoding"]).decode()
            if encoding != "json/plain":
                raise SystemExit(f"{path.name}: a sync_ledger input encoded {encoding}")
            inputs.append(base64.b64decode(payload["data"]).decode())
        if not inputs:
            continue  # a history whose ledger writes are local activities (markers)
        first = json.loads(inputs[0])
        out.append(
            Recorded(
                name=path.stem,
                contract_id=first["contract_id"],
                customer_id=first.get("customer_id") or "cus-bench",
                product_id=first.get("product_id") or "course-bench",
                inputs=inputs,
            )
        )
    return out


@dataclass
class Timing:
    wall: list[float]
    cpu: float = 0.0
    facts: int = 0  # recorded by these writes (a retried write records none)

    def row(self, name: str) -> list[str]:
        n = len(self.wall)
        if not n:
            return [name, "0", "0", "–", "–", "–", "–"]
        return [
            name,
            str(n),
            str(self.facts),
            f"{self.cpu / n * 1000:.2f}",
            f"{sum(self.wall) / n * 1000:.2f}",
            f"{percentile(self.wall, 50) * 1000:.2f}",
            f"{percentile(self.wall, 99) * 1000:.2f}",
        ]


def run(db_url: str, n: int, only: str | None) -> dict[str, Timing]:
    from temporalio.api.common.v1 import Payload

    from activities.ledger import LedgerActivities
    from core.converter import PayloadConverter
    from core.db import make_engine, make_session_factory
    from tests.conftest import insert_ledger_contract  # the row checkout writes
    from workflows.types import LedgerSync

    histories = load_histories(HISTORIES)
    if only:
        histories = [h for h in histories if h.name == only]
        if not histories:
            raise SystemExit(f"no history named {only!r} in {HISTORIES}")
    reset_database(db_url)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    ledger = LedgerActivities(sessions)
    converter = PayloadConverter()  # the worker's: Temporal's default, cached type hints

    def decode(text: str) -> LedgerSync:
        payload = Payload(metadata={"encoding": b"json/plain"}, data=text.encode())
        value: LedgerSync = converter.from_payload(payload, LedgerSync)
        return value

    timings = {key: Timing([]) for key in ("first", "retry", "first paid", "retry paid")}
    for i in range(n):
        h = histories[i % len(histories)]
        cid = f"lw-{uuid.uuid4().hex[:12]}"
        customer = f"cus-{cid}"  # one customer per round (the access row is theirs alone)
        insert_ledger_contract(sessions, cid, product_id=h.product_id, status="active")
        paid = h.name == "plan-paid"
        for text in h.inputs:
            inp = decode(text.replace(h.contract_id, cid).replace(h.customer_id, customer))
            for kind in ("first", "retry"):
                c0, w0 = time.process_time(), time.perf_counter()
                facts = ledger.sync_ledger(inp)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                for key in (kind, f"{kind} paid") if paid else (kind,):
                    timings[key].wall.append(wall)
                    timings[key].cpu += cpu
                    timings[key].facts += facts
    engine.dispose()
    return timings


COLUMNS = ["writes", "calls", "facts", "CPU ms/call", "wall ms/call", "p50 ms", "p99 ms"]


async def main_async(args: argparse.Namespace) -> None:
    load_before = loadavg()
    console.print(f"load average before: {load_before}")
    timings = run(args.database_url, args.n, args.history)
    labels = {
        "first paid": "plan-paid, first write",
        "retry paid": "plan-paid, retried",
        "first": "all histories, first write",
        "retry": "all histories, retried",
    }
    rows = [timings[key].row(label) for key, label in labels.items()]
    console.print(table(f"sync_ledger, {args.n} rounds", COLUMNS, rows))
    load_after = loadavg()
    console.print(f"load average after: {load_after}")
    if not args.no_record:
        append_results(
            f"Ledger write ({args.n} rounds, {args.database_url.split(':', 1)[0]})",
            [("", markdown_table(COLUMNS, rows))],
            [f"load average before {load_before}, after {load_after}"],
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_write", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="rounds (one history each)")
    parser.add_argument("--history", help="only this history (a file name without .json)")
    parser.add_argument("--database-url", default=DEFAULT_DB)
    add_record_option(parser)
    run_benchmark(parser, main_async)


if __name__ == "__main__":
    main()
