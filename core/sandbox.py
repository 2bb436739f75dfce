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
