"""core/payload_visits.py: a workflow task's payloads visited once, with the same result as
the SDK's three walks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.bridge import worker as bridge
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.converter._extstore import _REFERENCE_ENCODING, _REFERENCE_MARKER_KEY
from temporalio.worker import Replayer
from temporalio.worker._command_aware_visitor import CommandAwarePayloadVisitor

from core.payload_visits import (
    _DECODE_STEPS,
    _ENCODE_STEPS,
    _expected,
    _one_pass_decode,
    _one_pass_encode,
    one_pass_payload_visits,
)
from core.sandbox import compile_sandbox_snippets, direct_serialization_context
from workflows.contract import ContractWorkflow
from workflows.types import workflow_id_for

HISTORY = Path(__file__).resolve().parent / "histories" / "plan-paid.json"


class Rot(PayloadCodec):
    """A deterministic codec that shows what it did: it reverses the data and stamps the
    metadata, and refuses to decode what it did not encode."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            q = Payload()
            q.CopyFrom(p)
            q.data = p.data[::-1]
            q.metadata["rot"] = b"1"
            out.append(q)
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("rot") != b"1":
                raise ValueError(f"not encoded by Rot: {p.data!r}")
            q = Payload()
            q.CopyFrom(p)
            q.data = p.data[::-1]
            del q.metadata["rot"]
            out.append(q)
        return out


def _payload(text: str, encoded: bool) -> Payload:
    p = Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())
    if encoded:
        p.data = p.data[::-1]
        p.metadata["rot"] = b"1"
    return p


def _activation(encoded: bool) -> WorkflowActivation:
    """An activation with payloads in several places: the workflow's input and a header, an
    activity's result, a signal's arguments, a query's arguments."""
    act = WorkflowActivation(run_id="run-1")
    init = act.jobs.add().initialize_workflow
    init.workflow_type = "contract"
    init.workflow_id = "contract-c1"
    init.arguments.extend([_payload("input", encoded), _payload("second", encoded)])
    init.headers["h"].CopyFrom(_payload("header", encoded))
    act.jobs.add().resolve_activity.result.completed.result.CopyFrom(_payload("charged", encoded))
    act.jobs.add().signal_workflow.input.extend([_payload("paused", encoded)])
    act.jobs.add().query_workflow.arguments.extend([_payload("state", encoded)])
    return act


def _completion() -> WorkflowActivationCompletion:
    comp = WorkflowActivationCompletion(run_id="run-1")
    cmds = comp.successful.commands
    sched = cmds.add().schedule_activity
    sched.seq = 1
    sched.activity_type = "charge"
    sched.arguments.extend([_payload("debit", False), _payload("again", False)])
    sched.headers["h"].CopyFrom(_payload("header", False))
    cmds.add().respond_to_query.succeeded.response.CopyFrom(_payload("answer", False))
    cmds.add().complete_workflow_execution.result.CopyFrom(_payload("done", False))
    return comp


def _converter() -> DataConverter:
    return dataclasses.replace(DataConverter.default, payload_codec=Rot())


def test_installed_for_the_sdk_we_ship() -> None:
    # Fails when a temporalio upgrade changes the two functions: look at core/payload_visits.py.
    assert one_pass_payload_visits()
    assert one_pass_payload_visits()  # idempotent: wrapped once
    assert getattr(bridge.decode_activation, "__mahnwerk_one_pass__", False)
    assert getattr(bridge.encode_completion, "__mahnwerk_one_pass__", False)


def test_a_changed_sdk_is_left_as_shipped() -> None:
    async def two_walks(
        activation: Any, data_converter: Any, decode_headers: bool, storage_concurrency_limit: int
    ) -> None:
        await CommandAwarePayloadVisitor().visit(
            bridge._Visitor(data_converter._decode_reference_payload_sequence), activation
        )
        await CommandAwarePayloadVisitor().visit(
            bridge._Visitor(data_converter._decode_payload_sequence), activation
        )

    async def other_params(activation: Any, data_converter: Any) -> None:
        return None

    assert _expected(bridge.decode_activation.__wrapped__, "decode_activation", _DECODE_STEPS)  # type: ignore[attr-defined]
    assert _expected(bridge.encode_completion.__wrapped__, "encode_completion", _ENCODE_STEPS)  # type: ignore[attr-defined]
    assert not _expected(two_walks, "decode_activation", _DECODE_STEPS)
    assert not _expected(other_params, "decode_activation", _DECODE_STEPS)
    # the steps in another order are another function
    assert not _expected(
        bridge.encode_completion.__wrapped__,  # type: ignore[attr-defined]
        "encode_completion",
        tuple(reversed(_ENCODE_STEPS)),
    )


async def test_one_walk_gives_what_the_three_walks_give() -> None:
    assert one_pass_payload_visits()
    sdk_decode = bridge.decode_activation.__wrapped__  # type: ignore[attr-defined]
    sdk_encode = bridge.encode_completion.__wrapped__  # type: ignore[attr-defined]
    walks: list[object] = []
    visit = CommandAwarePayloadVisitor.visit

    async def counted(self: Any, fs: Any, root: Any) -> None:
        walks.append(root)
        await visit(self, fs, root)

    for headers in (True, False):
        ours, theirs = _activation(encoded=True), _activation(encoded=True)
        CommandAwarePayloadVisitor.visit = counted  # type: ignore[method-assign]
        try:
            await bridge.decode_activation(ours, _converter(), headers, 4)
            assert len(walks) == 1
            await sdk_decode(theirs, _converter(), headers, 4)
            assert len(walks) == 4  # the SDK's own: three
        finally:
            CommandAwarePayloadVisitor.visit = visit  # type: ignore[method-assign]
            walks.clear()
        assert ours == theirs
        assert ours.jobs[0].initialize_workflow.arguments[0].data == b'"input"'  # decoded
        assert (ours.jobs[0].initialize_workflow.headers["h"].data == b'"header"') is headers

        ours_c, theirs_c = _completion(), _completion()
        await bridge.encode_completion(ours_c, _converter(), headers, 4)
        await sdk_encode(theirs_c, _converter(), headers, 4)
        assert ours_c == theirs_c
        sched = ours_c.successful.commands[0].schedule_activity
        assert [p.metadata["rot"] for p in sched.arguments] == [b"1", b"1"]  # encoded
        assert ("rot" in sched.headers["h"].metadata) is headers


async def test_an_external_storage_reference_is_refused_as_the_sdk_refuses_it() -> None:
    assert one_pass_payload_visits()
    sdk_decode = bridge.decode_activation.__wrapped__  # type: ignore[attr-defined]
    for mark in ("marker", "reference"):
        errors = []
        for decode in (bridge.decode_activation, sdk_decode):
            act = _activation(encoded=True)
            bad = act.jobs[1].resolve_activity.result.completed.result
            if mark == "marker":
                bad.metadata[_REFERENCE_MARKER_KEY] = b"true"
            else:
                bad.CopyFrom(Payload(metadata={"encoding": _REFERENCE_ENCODING}, data=b"{}"))
            with pytest.raises(RuntimeError, match="external storage is not configured") as exc:
                await decode(act, _converter(), True, 4)
            errors.append(str(exc.value))
        assert errors[0] == errors[1]


async def test_with_external_storage_the_sdk_walks_as_shipped() -> None:
    calls: list[str] = []

    async def sdk(*args: Any) -> str:
        calls.append("sdk")
        return "the SDK's metrics"

    stored = _converter()
    object.__setattr__(stored, "external_storage", object())  # any storage: not ours to walk
    decode, encode = _one_pass_decode(sdk), _one_pass_encode(sdk)
    assert await decode(_activation(encoded=True), stored, True, 4) == "the SDK's metrics"
    assert await encode(_completion(), stored, True, 4) == "the SDK's metrics"
    assert calls == ["sdk", "sdk"]
    # without: our walk, not the SDK's
    assert await decode(_activation(encoded=True), _converter(), True, 4) != "the SDK's metrics"
    assert calls == ["sdk", "sdk"]


async def test_a_recorded_history_replays_with_one_walk_per_task() -> None:
    # As a worker runs (build_worker installs all three): the workflow's payloads reach it
    # and its commands match the history, one walk per activation and per completion.
    assert compile_sandbox_snippets() and direct_serialization_context()
    assert one_pass_payload_visits()
    history = WorkflowHistory.from_json(workflow_id_for(HISTORY.stem), HISTORY.read_text())
    walks: list[str] = []
    visit = CommandAwarePayloadVisitor.visit

    async def counted(self: Any, fs: Any, root: Any) -> None:
        walks.append(type(root).__name__)
        await visit(self, fs, root)

    CommandAwarePayloadVisitor.visit = counted  # type: ignore[method-assign]
    try:
        await Replayer(workflows=[ContractWorkflow]).replay_workflow(history)
    finally:
        CommandAwarePayloadVisitor.visit = visit  # type: ignore[method-assign]
    activations = walks.count("WorkflowActivation")
    assert activations >= 3
    assert walks.count("WorkflowActivationCompletion") == activations
