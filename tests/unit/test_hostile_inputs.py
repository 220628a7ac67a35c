"""Careless or hostile values that used to reach the HTTP client or the store as they were."""

from __future__ import annotations

import pytest

from performance_agent.metrics.collection import resolve_headers
from performance_agent.metrics.schemas import HeaderFromEnv
from performance_agent.metrics.scraper import ScrapeFailure


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
