"""Careless or hostile values that used to reach the HTTP client or the store as they were."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from performance_agent.fleet.schemas import HeaderFromEnv
from performance_agent.metrics.collection import resolve_headers
from performance_agent.metrics.scraper import ScrapeFailure, fetch_page
from performance_agent.operator_files import OperatorFileError, read_operator_file
from performance_agent.outbound.pinned import PinnedClients, TlsOptions
from tests.unit.test_target_guard_connection import NAME, pinned


@pytest.mark.parametrize("secret", ["caf\u00e9", "token\U0001f600", "a\x7fb"])
def test_a_non_ascii_secret_in_the_environment_is_a_configuration_error_not_a_crash(secret: str) -> None:
    with pytest.raises(ScrapeFailure) as caught:
        resolve_headers({"Authorization": HeaderFromEnv(env="TOKEN")}, {"TOKEN": secret}, frozenset({"TOKEN"}))
    assert caught.value.reason == "scrape_config_invalid"
    assert "visible ASCII" in caught.value.message


def test_a_non_ascii_literal_stored_before_the_rule_is_a_configuration_error() -> None:
    with pytest.raises(ScrapeFailure) as caught:
        resolve_headers({"X-Team": "\u00e9quipe"}, {}, frozenset())
    assert caught.value.reason == "scrape_config_invalid"


def test_visible_ascii_and_tabs_pass() -> None:
    assert resolve_headers({"X-A": "Bearer a\tb~"}, {}, frozenset()) == {"X-A": "Bearer a\tb~"}


def test_a_stored_fifo_ca_bundle_fails_the_scrape_without_blocking(tmp_path: Path) -> None:
    """A registration stored before the check: the scrape's TLS setup refuses it, it never opens the FIFO blocking."""
    fifo = tmp_path / "bundle.fifo"
    os.mkfifo(fifo)

    # Port 9 (discard) is never dialled: the TLS setup fails before any connection.
    target = pinned(f"https://{NAME}:9/metrics")

    async def build() -> None:
        await fetch_page(
            PinnedClients(), target, headers={}, timeout_s=5.0, max_bytes=1024, tls=TlsOptions(ca_bundle=str(fifo))
        )

    with pytest.raises(ScrapeFailure) as caught:
        asyncio.run(asyncio.wait_for(build(), 5.0))
    assert caught.value.reason == "scrape_config_invalid"
    assert "a pipe (FIFO)" in caught.value.message


def test_operator_files_are_read_whole_when_regular(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_bytes(b"a:viewer:0123456789abcdef\n")
    link = tmp_path / "link"
    link.symlink_to(keys)
    assert read_operator_file(str(link)) == b"a:viewer:0123456789abcdef\n"
    with pytest.raises(OperatorFileError, match="26 bytes, more than the 4 allowed"):
        read_operator_file(str(keys), max_bytes=4)
