"""core/sandbox.py: the workflow sandbox's snippets compiled once, not on every entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import _runner

from core.sandbox import (
    _FORWARDS,
    _expected,
    _forwards,
    compile_sandbox_snippets,
    compiled,
    direct_serialization_context,
)
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
    # as a worker runs (build_worker installs both), whichever test ran first here
    assert compile_sandbox_snippets() and direct_serialization_context()
    compiled.cache_clear()
    history = WorkflowHistory.from_json(workflow_id_for(HISTORY.stem), HISTORY.read_text())
    await Replayer(workflows=[ContractWorkflow]).replay_workflow(history)
    first = compiled.cache_info()
    assert 0 < first.currsize <= 10  # a few distinct snippets …
    assert first.hits >= 10  # … entered many times: once per activation
    await Replayer(workflows=[ContractWorkflow]).replay_workflow(history)
    again = compiled.cache_info()
    assert again.misses == first.misses  # the second workflow compiles nothing new


def test_payload_contexts_are_read_without_entering_the_sandbox() -> None:
    # Fails when a temporalio upgrade changes the forwards: look at core/sandbox.py.
    assert direct_serialization_context()
    assert direct_serialization_context()  # idempotent
    for name in _FORWARDS:
        assert getattr(getattr(_runner._Instance, name), "__mahnwerk_direct__", False)


def test_a_changed_forward_is_left_as_shipped() -> None:
    def other_args(self: object, command_info: object, extra: object) -> None:
        return None

    def does_more(self: object, command_info: object) -> None:
        self._run_code("with __temporal_importer.applied():\n  import os\n")  # type: ignore[attr-defined]
        self._run_code(  # type: ignore[attr-defined]
            "__temporal_in_sandbox.get_serialization_context(__temporal_command_info)"
        )

    assert not _forwards(other_args, "get_serialization_context")
    assert not _forwards(does_more, "get_serialization_context")


async def test_a_replay_reads_each_payload_context_outside_the_sandbox() -> None:
    # Same contexts as the SDK's (the codec's key follows them): the recorded history
    # replays, and no payload's context is read through a sandbox snippet.
    assert compile_sandbox_snippets() and direct_serialization_context()
    compiled.cache_clear()
    history = WorkflowHistory.from_json(workflow_id_for(HISTORY.stem), HISTORY.read_text())
    seen: list[object] = []
    entered: list[str] = []
    original = _runner._Instance.get_serialization_context
    run_code = _runner._Instance._run_code

    def spy(self: Any, command_info: Any) -> Any:
        context = original(self, command_info)
        seen.append(context)
        return context

    def spy_run(self: Any, code: str, **extra: Any) -> None:
        entered.append(code)
        run_code(self, code, **extra)

    _runner._Instance.get_serialization_context = spy  # type: ignore[method-assign,assignment]
    _runner._Instance._run_code = spy_run  # type: ignore[method-assign]
    try:
        await Replayer(workflows=[ContractWorkflow]).replay_workflow(history)
    finally:
        _runner._Instance.get_serialization_context = original  # type: ignore[method-assign]
        _runner._Instance._run_code = run_code  # type: ignore[method-assign]
    assert len(seen) > 20  # every payload of every activation and completion
    assert all(getattr(c, "workflow_id", None) == history.workflow_id for c in seen)
    assert any("activate" in code for code in entered)  # the workflow itself: in the sandbox
    assert not [code for code in entered if "context" in code]  # its payloads' contexts: not
