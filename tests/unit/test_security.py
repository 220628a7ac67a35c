from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from performance_agent.security import ApiKeyRing, Principal, Role, parse_api_keys
from tests.conftest import make_settings

if TYPE_CHECKING:
    from pathlib import Path


def test_parse_valid_entries() -> None:
    parsed = parse_api_keys(["ci:operator:0123456789abcdef", " ana:admin:fedcba9876543210:with:colons "], "X")
    assert parsed == [("ci", Role.operator, "0123456789abcdef"), ("ana", Role.admin, "fedcba9876543210:with:colons")]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("justakey0123456789", "X: entry 1 must look like name:role:key"),
        (":admin:0123456789abcdef", "X: entry 1 must look like name:role:key"),
        ("ci:root:0123456789abcdef", "X: entry 1 (ci) has role 'root'; allowed: viewer, operator, approver, admin"),
        ("ci:admin:short", "X: entry 1 (ci) has a key shorter than 16 characters"),
    ],
)
def test_parse_rejects_bad_entries_naming_them(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        parse_api_keys([entry], "X")


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        parse_api_keys(["a:admin:0123456789abcdef", "a:viewer:0123456789abcdeX"], "X")


def test_identify_matches_only_the_exact_key() -> None:
    ring = ApiKeyRing([("ci", Role.operator, "0123456789abcdef"), ("ana", Role.admin, "fedcba9876543210")])
    assert ring.enabled
    assert ring.identify("0123456789abcdef") == Principal("ci", Role.operator)
    assert ring.identify("fedcba9876543210") == Principal("ana", Role.admin)
    assert ring.identify("0123456789abcdeF") is None
    assert ring.identify("") is None


def test_keys_are_not_kept_in_clear() -> None:
    ring = ApiKeyRing([("ci", Role.operator, "0123456789abcdef")])
    assert "0123456789abcdef" not in repr(vars(ring))


def test_keys_file_adds_entries_and_skips_comments(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nfile-user:approver:abcdefabcdefabcdef\n\n")
    ring = ApiKeyRing.from_settings(
        make_settings(api_keys=["env-user:viewer:0123456789abcdef"], api_keys_file=str(keys))
    )
    assert ring.identify("abcdefabcdefabcdef") == Principal("file-user", Role.approver)
    assert ring.identify("0123456789abcdef") == Principal("env-user", Role.viewer)


def test_unreadable_keys_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"PERF_AGENT_API_KEYS_FILE: .*missing cannot be read"):
        ApiKeyRing.from_settings(make_settings(api_keys_file=str(tmp_path / "missing")))


def test_same_name_in_env_and_file_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("dup:approver:abcdefabcdefabcdef\n")
    with pytest.raises(ValueError, match="name the same key twice"):
        ApiKeyRing.from_settings(make_settings(api_keys=["dup:viewer:0123456789abcdef"], api_keys_file=str(keys)))


def test_roles_are_ordered() -> None:
    assert Role.viewer < Role.operator < Role.approver < Role.admin
