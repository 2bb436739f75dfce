"""The checkout parses a policy file once, and again only when the file changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from api.routes.contracts import cached_policy
from core.settings import PROJECT_ROOT
from domain.policy import PolicyError


def test_policy_parsed_once_and_again_after_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "default.yaml"
    shutil.copy(PROJECT_ROOT / "policies" / "default.yaml", path)
    first = cached_policy("default", tmp_path)
    assert cached_policy("default", tmp_path) is first  # no second parse
    path.write_text(path.read_text() + "\n# edited\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    edited = cached_policy("default", tmp_path)
    assert edited is not first and edited == first
    with pytest.raises(PolicyError):
        cached_policy("../default", tmp_path)  # invalid names are never cached nor read
    with pytest.raises(PolicyError):
        cached_policy("missing", tmp_path)
