"""The project's documentation is its own (issue 16 item 4): README and docs/ link only to
files inside the project, every relative link resolves, and every guide is reachable from
the README."""

from __future__ import annotations

import re
from pathlib import Path

from core.settings import PROJECT_ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _docs() -> list[Path]:
    return [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def test_links_stay_inside_the_project_and_resolve() -> None:
    for doc in _docs():
        text = doc.read_text()
        assert "shared/" not in text, f"{doc.name} points outside the project"
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor on the same page
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            assert path.is_relative_to(PROJECT_ROOT), (doc.name, target)
            assert path.exists(), (doc.name, target)


def test_every_guide_is_linked_from_the_readme() -> None:
    readme = PROJECT_ROOT / "README.md"
    linked = {
        (readme.parent / t.split("#", 1)[0]).resolve() for t in LINK.findall(readme.read_text())
    }
    guides = {p.resolve() for p in (PROJECT_ROOT / "docs").glob("*.md")}
    assert guides - linked == set(), sorted(p.name for p in guides - linked)
