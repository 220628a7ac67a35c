"""The Prometheus fixtures skip with the packages to install, and fail instead under REQUIRE_PROMETHEUS=1."""

from __future__ import annotations

import shutil

import pytest

from tests.prometheus_support import REQUIRE_PROMETHEUS_ENV, require_binary


def test_a_missing_binary_skips_naming_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv(REQUIRE_PROMETHEUS_ENV, raising=False)

    with pytest.raises(pytest.skip.Exception, match="apt-get install -y prometheus prometheus-alertmanager"):
        require_binary("promtool")


def test_a_missing_binary_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv(REQUIRE_PROMETHEUS_ENV, "1")

    with pytest.raises(
        pytest.fail.Exception, match="REQUIRE_PROMETHEUS=1 but prometheus-alertmanager is not installed"
    ):
        require_binary("prometheus-alertmanager")


def test_an_installed_binary_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")

    assert require_binary("prometheus") == "/usr/bin/prometheus"
