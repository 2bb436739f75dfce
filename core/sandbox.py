"""The workflow sandbox, with its snippets compiled once (issue 17).

Temporal's sandbox (`SandboxedWorkflowRunner`, DESIGN.md decision 10) enters a workflow's
sandbox by `exec`-ing a short source string: once per activation, and once per payload of
every activation and completion (the payload's serialization context). `exec` of a string
compiles it first, ~26 µs each on our machine, every time — in a 2,000-installment due wave
about 5 % of the worker's GIL time (bench/RESULTS.md) for a handful of distinct strings.

`compile_sandbox_snippets()` wraps the sandbox instance's `_run_code` so that it passes
`exec` the code object compiled once per distinct string instead of the string: the same
code runs in the same globals, under the same import restrictions. `_run_code` is private
to the SDK; if a release changes it, the wrapper is not installed (a warning says so) and
the sandbox runs as shipped — slower, never different. tests/test_sandbox.py pins it for
the SDK version we install.

`direct_serialization_context()` spares the sandbox entry per payload altogether. Before
encoding or decoding any payload of an activation or a completion, the SDK asks the
workflow instance for the payload's serialization context (the codec's key follows the
workflow id) and the external-store context; the sandbox forwards both by `exec`-ing a
snippet under its import restrictions — ~9 entries per activation (a replayed plan: 7
serialization and 2 store contexts), each patching the builtins and `sys.modules` in and
out. The two methods it reaches inside the sandbox are the SDK's own
(`_WorkflowInstanceImpl.get_serialization_context`, `…get_external_store_context`): they
read the instance's info and pending commands and build a context dataclass — no workflow
code, no import. The wrapper calls them on the sandbox's `InSandbox` object directly. A
replay of a recorded 54-event history: 62 → 50 ms. Installed only where the SDK's methods
are still the one-line forwards it expects, else left as shipped (a warning).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from types import CodeType
from typing import Any

log = logging.getLogger("mahnwerk.sandbox")

# The sandbox's snippets: a few fixed strings plus one import line per workflow class.
_SNIPPETS = 256


@functools.lru_cache(maxsize=_SNIPPETS)
def compiled(code: str) -> CodeType:
    """`code` compiled as `exec` compiles a string (filename "<string>")."""
    return compile(code, "<string>", "exec")


def _expected(run_code: Callable[..., Any]) -> bool:
    """The SDK's `_run_code(self, code, **extra_globals)`, which `exec`s `code`."""
    try:
        params = list(inspect.signature(run_code).parameters.values())
        source = inspect.getsource(run_code)
    except (TypeError, ValueError, OSError):
        return False
    return (
        [p.name for p in params[:2]] == ["self", "code"]
        and len(params) == 3
        and params[2].kind is inspect.Parameter.VAR_KEYWORD
        and "exec(code," in source
    )


def compile_sandbox_snippets() -> bool:
    """Install the wrapper (idempotent). True when the sandbox compiles its snippets once."""
    from temporalio.worker.workflow_sandbox import _runner

    instance = _runner._Instance
    current = instance._run_code
    if getattr(current, "__mahnwerk_compiled__", False):
        return True
    if not _expected(current):
        log.warning(
            "temporalio's sandbox changed (_Instance._run_code): its snippets are compiled "
            "on every call, as the SDK ships it (core/sandbox.py)"
        )
        return False
    original = current

    @functools.wraps(original)
    def run_code(self: Any, code: str | CodeType, **extra_globals: Any) -> None:
        runnable: Any = compiled(code) if isinstance(code, str) else code  # exec takes both
        return original(self, runnable, **extra_globals)

    run_code.__mahnwerk_compiled__ = True  # type: ignore[attr-defined]
    instance._run_code = run_code  # type: ignore[method-assign]
    return True


# The sandbox instance's methods that only forward to the SDK's own code inside it.
_FORWARDS = ("get_serialization_context", "get_external_store_context")


def _forwards(method: Callable[..., Any], name: str) -> bool:
    """The SDK's `_Instance.<name>(self, command_info)`: one snippet that calls the same
    method of `__temporal_in_sandbox` with the command info, nothing else."""
    try:
        params = list(inspect.signature(method).parameters)
        source = inspect.getsource(method)
    except (TypeError, ValueError, OSError):
        return False
    return (
        params == ["self", "command_info"]
        and f"__temporal_in_sandbox.{name}(__temporal_command_info)" in source
        and source.count("_run_code(") == 1
    )


def _direct(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(self: Any, command_info: Any) -> Any:
        in_sandbox = self.globals_and_locals.get("__temporal_in_sandbox")
        if in_sandbox is None:  # the instance was not created: as shipped
            return original(self, command_info)
        return getattr(in_sandbox, name)(command_info)

    call.__mahnwerk_direct__ = True  # type: ignore[attr-defined]
    return call


def direct_serialization_context() -> bool:
    """Install the direct calls (idempotent). True when a payload's serialization and
    external-store contexts are read without entering the sandbox."""
    from temporalio.worker.workflow_sandbox import _runner

    instance = _runner._Instance
    methods = {name: getattr(instance, name) for name in _FORWARDS}
    if all(getattr(m, "__mahnwerk_direct__", False) for m in methods.values()):
        return True
    if not all(_forwards(m, name) for name, m in methods.items()):
        log.warning(
            "temporalio's sandbox changed (_Instance.%s): every payload's context is read "
            "inside the sandbox, as the SDK ships it (core/sandbox.py)",
            " / ".join(_FORWARDS),
        )
        return False
    for name, method in methods.items():
        setattr(instance, name, _direct(name, method))
    return True
