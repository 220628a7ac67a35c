"""The scrape-target guard's rules, each on its own, with a resolver the tests control."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING

import pytest

from performance_agent.outbound.target_guard import (
    ResolutionError,
    TargetAllowlist,
    TargetRefusedError,
    check_resolved,
    check_static,
    check_url,
    parse_allowlist,
    parse_ipv4_number,
    system_resolver,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT = parse_allowlist(["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])


class FakeResolver:
    """Answers from a table and records every lookup, so tests see when DNS was (not) asked."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        if host not in self.table:
            raise ResolutionError(f"{host} does not resolve")
        return self.table[host]


fake_resolver = FakeResolver


def refused_reason(url: str, allowlist: TargetAllowlist = DEFAULT) -> str:
    with pytest.raises(TargetRefusedError) as caught:
        check_static(url, allowlist)
    return caught.value.reason


# --------------------------------------------------------------------------- allowlist parsing


def test_allowlist_keeps_networks_names_and_wildcards() -> None:
    allowlist = parse_allowlist([" 10.0.0.0/8 ", "10.1.2.3", "VLLM-0.Internal.", "*.svc.cluster.local", ""])
    assert allowlist.networks == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("10.1.2.3/32"))
    assert allowlist.host_names == frozenset({"vllm-0.internal"})
    assert allowlist.lists_host("a.b.svc.cluster.local")
    assert not allowlist.lists_host("svc.cluster.local")  # a wildcard covers subdomains only
    assert not allowlist.lists_host("evilsvc.cluster.local")


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("10.0.0.1/8", "not a valid CIDR"),
        ("300.1.1.1", "not a valid CIDR"),
        ("fe80::1/200", "not a valid CIDR"),
        ("not a host!", "neither a CIDR nor a host name"),
        ("*.", "neither a CIDR nor a host name"),
    ],
)
def test_allowlist_rejects_bad_entries_naming_the_setting(entry: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as caught:
        parse_allowlist([entry], "PERF_AGENT_WEBHOOK_ALLOWLIST")
    assert str(caught.value).startswith("PERF_AGENT_WEBHOOK_ALLOWLIST: ")


# --------------------------------------------------------------------------- IPv4 number spellings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("169.254.169.254", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0xA9FEA9FE", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("169.16689662", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
    ],
)
def test_ipv4_numbers_are_read_as_inet_aton_reads_them(text: str, expected: str) -> None:
    assert parse_ipv4_number(text) == ipaddress.IPv4Address(expected)


@pytest.mark.parametrize("text", ["256.1.1.1", "1.2.3.4.5", "08", "1..2", "4294967296", "1.2.3.256", "a.b", "+1", ""])
def test_non_addresses_are_host_names(text: str) -> None:
    assert parse_ipv4_number(text) is None


# --------------------------------------------------------------------------- static rules


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/metrics",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "127.0.0.1:8000/metrics",
    ],
)
def test_only_http_and_https_are_allowed(url: str) -> None:
    assert "use http or https" in refused_reason(url)


def test_credentials_in_the_url_are_refused() -> None:
    assert "credentials" in refused_reason("http://user:secret@127.0.0.1:8000/metrics")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.0.1:8000/",
        "http://2852039166/",
        "http://0xA9FEA9FE/",
        "http://0251.0376.0251.0376/",
        "http://169.254.43518/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[::169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://[fe80::1]/",
        "http://[febf::1]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
    ],
)
def test_link_local_and_metadata_addresses_are_refused_even_if_listed(url: str) -> None:
    everything = parse_allowlist(["0.0.0.0/0", "::/0", "169.254.0.0/16", "fe80::/10"])
    assert "link-local or cloud metadata" in refused_reason(url, everything)
    assert "link-local or cloud metadata" in refused_reason(url, DEFAULT)


@pytest.mark.parametrize(
    "url", ["http://metadata.google.internal/", "http://METADATA.google.internal./x", "http://instance-data/"]
)
def test_metadata_host_names_are_refused_even_if_listed(url: str) -> None:
    listed = parse_allowlist(["metadata.google.internal", "instance-data", "0.0.0.0/0"])
    assert "metadata host name" in refused_reason(url, listed)


@pytest.mark.parametrize("url", ["http://0.0.0.0:8000/", "http://[::]:8000/", "http://224.0.0.1/", "http://0/"])
def test_unspecified_and_multicast_are_never_targets(url: str) -> None:
    everything = parse_allowlist(["0.0.0.0/0", "::/0"])
    assert "unspecified, multicast or broadcast" in refused_reason(url, everything)


@pytest.mark.parametrize("url", ["http://8.8.8.8/metrics", "http://[2001:db8::1]/", "http://11.0.0.1/"])
def test_addresses_outside_the_allowlist_are_refused(url: str) -> None:
    assert "not inside PERF_AGENT_SCRAPE_ALLOWLIST" in refused_reason(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[fe80::1%25eth0]/", "zone ids"),
        ("http://exämple.com/", "ASCII"),
        ("http:///metrics", "no host"),
        ("http://bad_host!/", "not a valid host name"),
        ("http://127.0.0.1:99999/", "not a valid URL"),
    ],
)
def test_malformed_hosts_are_refused(url: str, reason: str) -> None:
    assert reason in refused_reason(url)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://127.0.0.1:9100/metrics", "http://127.0.0.1:9100/metrics"),
        ("HTTP://2130706433:9100/metrics?x=1", "http://127.0.0.1:9100/metrics?x=1"),
        ("http://0x7f.1/", "http://127.0.0.1:80/"),
        ("https://10.1.2.3", "https://10.1.2.3:443/"),
        ("http://[::1]:8000/m", "http://[::1]:8000/m"),
        ("http://[::ffff:127.0.0.1]:80/", "http://[::ffff:7f00:1]:80/"),
        ("http://vllm-0.internal:8000/metrics", "http://vllm-0.internal:8000/metrics"),
    ],
)
def test_allowed_urls_come_back_canonical(url: str, canonical: str) -> None:
    assert check_static(url, DEFAULT) == canonical


# --------------------------------------------------------------------------- resolution


def test_a_host_name_resolving_to_metadata_is_refused() -> None:
    resolver = fake_resolver({"innocent.example": ["169.254.169.254"]})
    with pytest.raises(TargetRefusedError) as caught:
        asyncio.run(check_url("http://innocent.example:8000/metrics", DEFAULT, resolver))
    assert caught.value.reason == (
        "innocent.example resolves to 169.254.169.254, a link-local or cloud metadata address "
        "(refused even if allowlisted)"
    )
    assert caught.value.address == "169.254.169.254"


def test_a_listed_host_name_resolving_to_link_local_is_still_refused() -> None:
    listed = parse_allowlist(["*.svc.local"])
    resolver = fake_resolver({"vllm.svc.local": ["fe80::7"]})
    with pytest.raises(TargetRefusedError, match="fe80::7, a link-local"):
        asyncio.run(check_url("http://vllm.svc.local/metrics", listed, resolver))


def test_every_resolved_address_must_be_allowed() -> None:
    resolver = fake_resolver({"split.example": ["10.0.0.5", "8.8.8.8"]})
    with pytest.raises(TargetRefusedError, match=r"resolves to 8\.8\.8\.8, not inside"):
        asyncio.run(check_url("http://split.example/metrics", DEFAULT, resolver))


def test_an_allowed_host_name_pins_its_first_address() -> None:
    resolver = fake_resolver({"vllm.example": ["10.0.0.5", "10.0.0.6", "10.0.0.5"]})
    target = asyncio.run(check_url("http://VLLM.example:8000/metrics", DEFAULT, resolver))
    assert (target.host, target.port, target.address, target.addresses) == (
        "vllm.example",
        8000,
        "10.0.0.5",
        ("10.0.0.5", "10.0.0.6"),
    )
    assert target.url == "http://vllm.example:8000/metrics"
    assert target.path == "/metrics"
    assert not target.host_is_address


def test_a_listed_host_name_may_resolve_outside_the_cidrs() -> None:
    listed = parse_allowlist(["127.0.0.0/8", "gpu-box.lab"])
    resolver = fake_resolver({"gpu-box.lab": ["203.0.113.9"]})
    assert asyncio.run(check_url("http://gpu-box.lab/metrics", listed, resolver)).address == "203.0.113.9"
    with pytest.raises(TargetRefusedError, match="not inside"):
        asyncio.run(check_url("http://other.lab/metrics", listed, fake_resolver({"other.lab": ["203.0.113.9"]})))


def test_an_ipv4_mapped_answer_is_judged_as_ipv4() -> None:
    resolver = fake_resolver({"mapped.example": ["::ffff:10.0.0.9"]})
    assert asyncio.run(check_url("http://mapped.example/", DEFAULT, resolver)).address == "::ffff:a00:9"
    outside = fake_resolver({"mapped.example": ["::ffff:8.8.8.8"]})
    with pytest.raises(TargetRefusedError, match="not inside"):
        asyncio.run(check_url("http://mapped.example/", DEFAULT, outside))


def test_literal_addresses_are_never_resolved() -> None:
    resolver = fake_resolver({})
    target = asyncio.run(check_url("http://127.0.0.1:9/metrics", DEFAULT, resolver))
    assert target.address == "127.0.0.1"
    assert target.host_is_address
    assert resolver.calls == []


def test_static_refusals_happen_before_any_lookup() -> None:
    resolver = fake_resolver({"metadata.google.internal": ["10.0.0.1"]})
    with pytest.raises(TargetRefusedError):
        asyncio.run(check_url("http://metadata.google.internal/", DEFAULT, resolver))
    assert resolver.calls == []


def test_unresolvable_names_and_empty_answers_are_resolution_errors() -> None:
    with pytest.raises(ResolutionError, match="does not resolve"):
        asyncio.run(check_url("http://nowhere.example/", DEFAULT, fake_resolver({})))
    with pytest.raises(ResolutionError, match="resolves to no address"):
        check_resolved("http://empty.example/", [], DEFAULT)


def test_a_resolver_answer_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(TargetRefusedError, match="not an address"):
        check_resolved("http://odd.example/", ["not-an-ip"], DEFAULT)


def test_the_system_resolver_resolves_localhost_and_reports_failures() -> None:
    addresses = asyncio.run(system_resolver("localhost", 80))
    assert addresses
    assert all(ipaddress.ip_address(address).is_loopback for address in addresses)
    with pytest.raises(ResolutionError):
        asyncio.run(system_resolver("no-such-host.invalid", 80))
