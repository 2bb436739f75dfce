"""The workflow code passes through the sandbox (worker.PASSTHROUGH: the `workflows`
package, like `domain/`), so the sandbox does not check it at run time: a
non-deterministic call there would only show up as a replay failure in production. Read it
for the calls the sandbox would have refused."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT

PASSED_THROUGH = sorted(
    str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "workflows").glob("*.py")
) + sorted(str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "domain").glob("*.py"))
# module → names that read the clock, randomness, the environment or do I/O
FORBIDDEN = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "monotonic", "sleep", "perf_counter"},
    "random": {"random", "randint", "choice", "shuffle", "uniform"},
    "uuid": {"uuid1", "uuid4"},
    "os": {"environ", "getenv", "urandom"},
    "asyncio": {"sleep"},
}
FORBIDDEN_IMPORTS = {"random", "os", "socket", "requests", "httpx", "stripe", "sqlalchemy"}


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.attr in FORBIDDEN.get(node.value.id, ()):
                found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "open":
                found.append(f"{path.name}:{node.lineno}: open()")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.split(".")[0] in FORBIDDEN_IMPORTS:
                    found.append(f"{path.name}:{node.lineno}: import {name}")
    return found


@pytest.mark.parametrize("rel", PASSED_THROUGH)
def test_passed_through_workflow_code_is_deterministic(rel: str) -> None:
    assert _offences(PROJECT_ROOT / rel) == []


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import random\nfrom datetime import datetime\n"
        "def f():\n    return datetime.now(), random.random(), open('x')\n"
    )
    assert sorted(_offences(bad)) == [
        "bad.py:1: import random",
        "bad.py:4: datetime.now",
        "bad.py:4: open()",
        "bad.py:4: random.random",
    ]
