"""The package layering in `pyproject.toml` ([tool.importlinter]) holds: no package import cycles, seams kept.

Why a test and not only `lint-imports`: the unit suite is what everyone runs, so a change that
makes, say, `outbound/` import the registry fails where it is made. docs/architecture.md draws
the same layering.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)  # the configuration and the package are found from the repository root
    exit_code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert exit_code == 0, report
    assert "0 broken" in report
