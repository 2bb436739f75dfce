"""core/sandbox.py: the workflow sandbox's snippets compiled once, not on every entry."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import _runner

from core.sandbox import _expected, compile_sandbox_snippets, compiled
from workflows.contract import ContractWorkflow
from workflows.types import workflow_id_for

HISTORY = Path(__file__).resolve().parent / "histories" / "plan-paid.json"


def test_installed_for_the_sdk_we_ship() -> None:
    # Fails when a temporalio upgrade changes `_Instance._run_code`: look at core/sandbox.py.
    assert compile_sandbox_snippets()
    assert compile_sandbox_snippets()  # idempotent: wrapped once
    assert getattr(_runner._Instance._run_code, "__mahnwerk_compiled__", False)


def test_a_changed_sdk_is_left_as_shipped() -> None:
    def run_code(self: object, code: str) -> None:  # no **extra_globals
        exec(code, {})

    def other(self: object, code: str, **extra: object) -> None:  # does not exec `code`
        print(code, extra)

    assert not _expected(run_code)
    assert not _expected(other)


async def test_a_replay_through_the_sandbox_compiles_each_snippet_once() -> None:
    assert compile_sandbox_snippets()
    compiled.cache_clear()
    history = WorkflowHistory.from_json(workflow_id_for(HISTORY.stem), HISTORY.read_text())
    await Replayer(workflows=[ContractWorkflow]).replay_workflow(history)
    first = compiled.cache_info()
    assert 0 < first.currsize <= 10  # a few distinct snippets …
    assert first.hits > 10 * first.currsize  # … entered many times (activations, payloads)
    await Replayer(workflows=[ContractWorkflow]).replay_workflow(history)
    again = compiled.cache_info()
    assert again.misses == first.misses  # the second workflow compiles nothing new
