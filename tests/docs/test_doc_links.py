"""Relative links in README.md and docs/*.md point at files that exist and at headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
#: Written by make targets (`make openapi`, `make bench`); a fresh clone may not have run them yet.
GENERATED = frozenset({REPO_ROOT / "docs" / "openapi.json", REPO_ROOT / "docs" / "benchmarks.md"})
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {github_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def links_of(path: Path) -> list[str]:
    return _LINK.findall(_FENCE.sub("", path.read_text()))


def test_github_anchor_matches_githubs_rules() -> None:
    assert github_anchor(" Scrape-target guard (SSRF)") == "scrape-target-guard-ssrf"
    assert github_anchor(" Analysis, SLOs and alerts") == "analysis-slos-and-alerts"
    assert github_anchor(" Scenario evaluation (`make eval`)") == "scenario-evaluation-make-eval"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_resolve(document: Path) -> None:
    broken = []
    for link in links_of(document):
        if re.match(r"^[a-z]+:", link):
            continue  # http(s), mailto: not checked offline
        target_text, _, anchor = link.partition("#")
        target = (document.parent / target_text).resolve() if target_text else document
        if not target.exists():
            if target not in GENERATED:
                broken.append(f"{link}: no such file")
            continue
        if anchor and target.suffix == ".md" and anchor not in anchors_of(target):
            broken.append(f"{link}: no heading #{anchor}")
    assert not broken, f"{document.name}: " + "; ".join(broken)
