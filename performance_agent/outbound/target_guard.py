"""Which outbound URLs the agent may call, decided once, on the address it will really connect to.

The agent fetches URLs that API callers supply (scrape endpoints, later actuator and alert
webhooks), so without a guard any operator key could make it read cloud metadata or internal
admin pages. The rules:

- only `http` and `https`, no credentials in the URL, ASCII host names only;
- every address the host resolves to must be inside the allowlist (CIDRs), unless the host
  name itself is listed (`vllm-0.internal`, or `*.svc.cluster.local` for every subdomain);
- link-local (169.254.0.0/16, fe80::/10), cloud metadata addresses (fd00:ec2::254,
  100.100.100.200) and metadata host names are refused even when listed, also when spelled as
  IPv4-mapped/compatible/NAT64/6to4 IPv6 or as a decimal, octal or hex IPv4 number
  (`2852039166`, `0251.0376.0251.0376`, `0xA9FEA9FE`, `169.254.43518`, as `inet_aton` reads them);
- unspecified, multicast and broadcast addresses are never targets.

`check_url` returns the checked address; the caller must connect to exactly that address (see
`metrics/scraper.py`), so a second DNS answer (rebinding) can never reach the socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

__all__ = (
    "ALWAYS_REFUSED_HOSTS",
    "ALWAYS_REFUSED_NETWORKS",
    "IPAddress",
    "ResolutionError",
    "ResolvedTarget",
    "Resolver",
    "TargetAllowlist",
    "TargetRefusedError",
    "check_resolved",
    "check_static",
    "check_url",
    "parse_allowlist",
    "parse_ipv4_number",
    "system_resolver",
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

ALWAYS_REFUSED_NETWORKS: Final[tuple[IPNetwork, ...]] = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local: AWS, GCP, Azure, OCI metadata at .169.254
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS instance metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)
ALWAYS_REFUSED_HOSTS: Final[frozenset[str]] = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_SCHEMES: Final = {"http": 80, "https": 443}
_HOST_NAME: Final = re.compile(r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR: Final = ipaddress.ip_network("2002::/16")
_IPV4_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")


class TargetRefusedError(Exception):
    """The URL may not be called; `reason` says which rule refused it (safe to show the caller)."""

    def __init__(self, reason: str, *, host: str | None = None, address: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.host = host
        self.address = address


class ResolutionError(Exception):
    """The host name does not resolve: the target is unreachable, not forbidden."""


@dataclass(frozen=True, slots=True)
class TargetAllowlist:
    """Parsed allowlist; `setting` names the variable it came from, for messages."""

    networks: tuple[IPNetwork, ...]
    host_names: frozenset[str]
    domain_suffixes: tuple[str, ...]
    setting: str = "PERF_AGENT_SCRAPE_ALLOWLIST"

    def lists_host(self, host: str) -> bool:
        return host in self.host_names or any(host.endswith(suffix) for suffix in self.domain_suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A URL that passed the guard, with the one address to connect to.

    `url` is canonical (`host` lower-case, IPv4 numbers in dotted form, explicit port) and is
    what the client must request; `address` is what the socket must connect to.
    """

    url: str
    scheme: str
    host: str
    port: int
    path: str
    address: str
    addresses: tuple[str, ...]
    host_is_address: bool


@dataclass(frozen=True, slots=True)
class _ParsedUrl:
    scheme: str
    host: str
    port: int
    path: str
    literal: IPAddress | None


def parse_allowlist(entries: Iterable[str], setting: str = "PERF_AGENT_SCRAPE_ALLOWLIST") -> TargetAllowlist:
    """CIDRs (`10.0.0.0/8`), single addresses, host names and `*.domain` wildcards; ValueError naming the entry."""
    networks: list[IPNetwork] = []
    names: set[str] = set()
    suffixes: list[str] = []
    for raw in entries:
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
            continue
        except ValueError as exc:
            if "/" in entry or ":" in entry or entry.replace(".", "").isdigit():
                raise ValueError(f"{setting}: {raw!r} is not a valid CIDR ({exc})") from None
        wildcard = entry.startswith("*.")
        name = entry[2:] if wildcard else entry
        if not _HOST_NAME.fullmatch(name):
            raise ValueError(f"{setting}: {raw!r} is neither a CIDR nor a host name")
        if wildcard:
            suffixes.append("." + name)
        else:
            names.add(name)
    return TargetAllowlist(
        networks=tuple(networks), host_names=frozenset(names), domain_suffixes=tuple(suffixes), setting=setting
    )


def parse_ipv4_number(text: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any form `inet_aton` (and so `getaddrinfo`) accepts, else None.

    1 to 4 parts; each decimal, octal (leading 0) or hex (0x); the last part fills the remaining
    bytes: `2852039166`, `169.254.43518`, `0251.0376.0251.0376` and `0xA9FEA9FE` are all
    169.254.169.254. Reading them ourselves means a resolver cannot disagree with the guard.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        if not part or not part.isascii() or not part.isalnum():
            return None
        try:
            if part[:2] in ("0x", "0X"):
                number = int(part[2:], 16) if part[2:] else 0
            elif len(part) > 1 and part.startswith("0"):
                number = int(part[1:], 8)
            else:
                number = int(part, 10)
        except ValueError:
            return None
        numbers.append(number)
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = last
    for position, number in enumerate(leading):
        value += number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 spelling can carry to the same host or network path."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # deprecated IPv4-compatible ::a.b.c.d
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.append(address.teredo[1])
    return found


def _always_refused(address: IPAddress) -> str | None:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        candidates.extend(_embedded_ipv4(address))
    for candidate in candidates:
        if any(candidate in network for network in ALWAYS_REFUSED_NETWORKS):
            return "a link-local or cloud metadata address (refused even if allowlisted)"
        if candidate.is_unspecified or candidate.is_multicast or candidate == _IPV4_BROADCAST:
            return "an unspecified, multicast or broadcast address"
    return None


def _refusal(address: IPAddress, allowlist: TargetAllowlist, host_listed: bool) -> str | None:
    reason = _always_refused(address)
    if reason is not None or host_listed:
        return reason
    effective: IPAddress = address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        effective = address.ipv4_mapped  # the same socket destination as the plain IPv4 address
    if allowlist.allows_address(effective):
        return None
    return f"not inside {allowlist.setting}"


def _parse(url: str) -> _ParsedUrl:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefusedError(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise TargetRefusedError(f"scheme {parts.scheme or '(none)'!r} is not allowed; use http or https")
    if parts.username is not None or parts.password is not None:
        raise TargetRefusedError("credentials in the URL are not allowed; send them as scrape headers")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefusedError("the URL has no host")
    if not host.isascii():
        raise TargetRefusedError("host names must be ASCII (use the punycode form)")
    if "%" in host:
        raise TargetRefusedError("IPv6 zone ids are not allowed")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    literal: IPAddress | None
    if ":" in host:
        try:
            literal = ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetRefusedError(f"{host!r} is not a valid IPv6 address") from None
    else:
        literal = parse_ipv4_number(host)
        if literal is None and not _HOST_NAME.fullmatch(host):
            raise TargetRefusedError(f"{host!r} is not a valid host name")
    if literal is not None:
        host = str(literal)
    return _ParsedUrl(scheme=scheme, host=host, port=port or _SCHEMES[scheme], path=path, literal=literal)


def _canonical_url(parsed: _ParsedUrl) -> str:
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host}:{parsed.port}{parsed.path}"


def check_static(url: str, allowlist: TargetAllowlist) -> str:
    """Every rule that needs no DNS; returns the canonical URL. Used when an endpoint is registered.

    Host names are resolved (and their addresses checked) only by `check_url`, at each call.
    """
    parsed = _parse(url)
    _check_static(parsed, allowlist)
    return _canonical_url(parsed)


def _check_static(parsed: _ParsedUrl, allowlist: TargetAllowlist) -> None:
    if parsed.literal is None:
        if parsed.host in ALWAYS_REFUSED_HOSTS:
            raise TargetRefusedError(f"{parsed.host} is a cloud metadata host name", host=parsed.host)
    else:
        reason = _refusal(parsed.literal, allowlist, host_listed=False)
        if reason is not None:
            raise TargetRefusedError(f"{parsed.host} is {reason}", host=parsed.host, address=parsed.host)


def check_resolved(url: str, addresses: Sequence[str], allowlist: TargetAllowlist) -> ResolvedTarget:
    """The pure decision once a host's addresses are known: all must be allowed, the first is used."""
    parsed = _parse(url)
    _check_static(parsed, allowlist)
    if parsed.literal is not None:
        addresses = [parsed.host]
    if not addresses:
        raise ResolutionError(f"{parsed.host} resolves to no address")
    host_listed = parsed.literal is None and allowlist.lists_host(parsed.host)
    checked: list[str] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise TargetRefusedError(f"{parsed.host} resolved to {text!r}, not an address", host=parsed.host) from None
        reason = _refusal(address, allowlist, host_listed)
        if reason is not None:
            raise TargetRefusedError(
                f"{parsed.host} resolves to {address}, {reason}", host=parsed.host, address=str(address)
            )
        if str(address) not in checked:
            checked.append(str(address))
    return ResolvedTarget(
        url=_canonical_url(parsed),
        scheme=parsed.scheme,
        host=parsed.host,
        port=parsed.port,
        path=parsed.path,
        address=checked[0],
        addresses=tuple(checked),
        host_is_address=parsed.literal is not None,
    )


async def system_resolver(host: str, port: int) -> list[str]:
    """Addresses from the operating system's resolver (getaddrinfo), in its preference order."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolutionError(f"{host} does not resolve: {exc}") from None
    return [str(info[4][0]) for info in infos]


async def check_url(url: str, allowlist: TargetAllowlist, resolver: Resolver = system_resolver) -> ResolvedTarget:
    """Check `url` and resolve its host once; connect only to the returned `address`.

    Raises `TargetRefusedError` (forbidden) or `ResolutionError` (the name does not resolve).
    """
    parsed = _parse(url)
    _check_static(parsed, allowlist)
    addresses: Sequence[str] = [parsed.host] if parsed.literal is not None else await resolver(parsed.host, parsed.port)
    return check_resolved(url, addresses, allowlist)
