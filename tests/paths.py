"""The one place tests find files: everything they read lives inside this repository.

`REPO_ROOT` is the checkout this file sits in (tests/ is one level below it), so a fresh clone
anywhere runs the suite with nothing beside it; `tests/unit/test_repository_standalone.py`
fails when any tracked file reaches outside.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ("FIXTURES", "METRIC_PAGES", "REPO_ROOT")

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
#: Real `/metrics` pages of vLLM, TGI and SGLang, copied verbatim; provenance in SOURCES.md there.
METRIC_PAGES = FIXTURES / "metrics"
