"""A workflow task's payloads visited once, not three times (issue 17).

Before it hands a workflow activation to the workflow, and after it took the completion
back, the SDK walks the whole protobuf message for its payloads (the workflow's input,
activity results, signal arguments, the commands' arguments and results) and applies the
data converter to each: `temporalio.bridge.worker.decode_activation` and
`encode_completion`. In temporalio 1.35 (the version we ship) each walks the message **three
times**, once per step of the external-storage feature:

| walk | decode_activation | encode_completion |
|---|---|---|
| 1 | decode external-storage references | our codec's encode (encryption) |
| 2 | fetch externally stored payloads (several at once) | store large payloads externally |
| 3 | our codec's decode (decryption) | encode external-storage references |

Mahnwerk configures no external storage (`DataConverter.external_storage` is None), so four
of the six walks change nothing: they only check that no payload is an external-storage
reference (which a worker without external storage refuses), and the second walk of each
schedules an asyncio task per payload for it. In a due wave these walks were ~10 % of the
worker's GIL time (py-spy, bench/RESULTS.md), on the event loop that runs every workflow.

`one_pass_payload_visits()` replaces both functions with one walk that applies the three
steps to each payload sequence in order — the same functions on the same sequences, so the
same payloads result, and a reference payload is refused with the SDK's own error, raised by
the SDK's own methods. The checks of steps that cannot do anything without external storage
are the base class's (`DataConverter`), so the per-command converter is looked up once per
sequence, not three times (its store step also built a new converter per sequence).

Only while the data converter has no external storage: with one, the SDK's functions run as
shipped. Installed only where the SDK's functions are the three walks this module expects
(their source is checked); otherwise a warning, and the SDK runs as shipped — slower, never
different. tests/test_payload_visits.py pins it for the SDK version we install.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger("mahnwerk.payload_visits")

# The three walks of each function, in the order the SDK makes them.
_DECODE_STEPS = (
    "_decode_reference_payload_sequence",
    "_external_retrieve_payload_sequence",
    "_decode_payload_sequence",
)
_ENCODE_STEPS = (
    "_encode_payload_sequence",
    "_external_store_payload_sequence",
    "_encode_reference_payload_sequence",
)
_PARAMS = {
    "decode_activation": [
        "activation",
        "data_converter",
        "decode_headers",
        "storage_concurrency_limit",
    ],
    "encode_completion": [
        "completion",
        "data_converter",
        "encode_headers",
        "storage_concurrency_limit",
    ],
}


def _expected(function: Callable[..., Any], name: str, steps: Sequence[str]) -> bool:
    """The SDK's `name`: the parameters we pass on, and exactly the three walks of `steps`
    in that order, each a `CommandAwarePayloadVisitor` over the whole message."""
    try:
        params = list(inspect.signature(function).parameters)
        source = inspect.getsource(function)
    except (TypeError, ValueError, OSError):
        return False
    calls = [source.find(f"_Visitor(data_converter.{step})") for step in steps]
    return (
        params == _PARAMS[name]
        and all(at >= 0 for at in calls)
        and calls == sorted(calls)
        and source.count("_Visitor(") == len(steps)
        and source.count("CommandAwarePayloadVisitor(") == len(steps)
    )


async def _one_walk(
    original: Callable[..., Awaitable[Any]],
    steps: Callable[[Any], Callable[[Sequence[Any]], Awaitable[list[Any]]]],
    message: Any,
    data_converter: Any,
    headers: bool,
    storage_concurrency_limit: int,
) -> Any:
    """One walk over `message` applying `steps(data_converter)` to each payload sequence (the
    SDK's visitor, with the settings of its own walks); with external storage, `original`."""
    from temporalio.bridge.worker import _Visitor
    from temporalio.converter._extstore import StorageOperationMetrics
    from temporalio.worker._command_aware_visitor import CommandAwarePayloadVisitor

    if getattr(data_converter, "external_storage", None) is not None:
        return await original(message, data_converter, headers, storage_concurrency_limit)
    await CommandAwarePayloadVisitor(skip_search_attributes=True, skip_headers=not headers).visit(
        _Visitor(steps(data_converter)), message
    )
    return StorageOperationMetrics()  # nothing stored or fetched: no external storage


# The SDK calls both with keywords (`decode_headers=`, `encode_headers=`, …): the wrappers
# keep its parameter names.


def _one_pass_decode(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def decode_activation(
        activation: Any, data_converter: Any, decode_headers: bool, storage_concurrency_limit: int
    ) -> Any:
        return await _one_walk(
            original,
            _decode_steps,
            activation,
            data_converter,
            decode_headers,
            storage_concurrency_limit,
        )

    decode_activation.__mahnwerk_one_pass__ = True  # type: ignore[attr-defined]
    return decode_activation


def _one_pass_encode(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def encode_completion(
        completion: Any, data_converter: Any, encode_headers: bool, storage_concurrency_limit: int
    ) -> Any:
        return await _one_walk(
            original,
            _encode_steps,
            completion,
            data_converter,
            encode_headers,
            storage_concurrency_limit,
        )

    encode_completion.__mahnwerk_one_pass__ = True  # type: ignore[attr-defined]
    return encode_completion


def _decode_steps(dc: Any) -> Callable[[Sequence[Any]], Awaitable[list[Any]]]:
    from temporalio.converter import DataConverter

    async def decode(payloads: Sequence[Any]) -> list[Any]:
        # Without external storage the first two steps only refuse reference payloads: the
        # base class's methods do exactly that, without the per-command converter lookup.
        out = await DataConverter._decode_reference_payload_sequence(dc, payloads)
        out = await DataConverter._external_retrieve_payload_sequence(dc, out)
        return await dc._decode_payload_sequence(out)  # the codec, per command

    return decode


def _encode_steps(dc: Any) -> Callable[[Sequence[Any]], Awaitable[list[Any]]]:
    from temporalio.converter import DataConverter, _extstore

    async def encode(payloads: Sequence[Any]) -> list[Any]:
        out = await dc._encode_payload_sequence(payloads)  # the codec, per command
        out = await DataConverter._external_store_payload_sequence(dc, out)  # nothing to store
        if not _extstore._ENCODE_STORAGE_REFERENCES:  # the SDK's step returns them as they are
            return out
        return await dc._encode_reference_payload_sequence(out)

    return encode


def one_pass_payload_visits() -> bool:
    """Install the one-walk functions (idempotent). True when a workflow task's payloads are
    visited once per activation and once per completion."""
    from temporalio.bridge import worker as bridge

    current: dict[str, Callable[..., Any]] = {
        "decode_activation": bridge.decode_activation,
        "encode_completion": bridge.encode_completion,
    }
    if all(getattr(f, "__mahnwerk_one_pass__", False) for f in current.values()):
        return True
    if not (
        _expected(current["decode_activation"], "decode_activation", _DECODE_STEPS)
        and _expected(current["encode_completion"], "encode_completion", _ENCODE_STEPS)
    ):
        log.warning(
            "temporalio changed decode_activation / encode_completion: a workflow task's "
            "payloads are visited as the SDK ships it (core/payload_visits.py)"
        )
        return False
    bridge.decode_activation = _one_pass_decode(current["decode_activation"])  # type: ignore[assignment]
    bridge.encode_completion = _one_pass_encode(current["encode_completion"])  # type: ignore[assignment]
    return True
