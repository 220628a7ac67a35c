"""API keys with ordered roles, and the check (`authorize`) every API route applies through `access_check`.

Keys are kept only as SHA-256 digests and compared with `hmac.compare_digest` against every
configured digest, so neither the stored form nor the comparison time reveals a key.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from performance_agent.errors import ForbiddenError, UnauthorizedError
from performance_agent.operator_files import OperatorFileError, read_operator_file

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from litestar import Request
    from litestar.types import Scope


__all__ = (
    "MIN_KEY_LENGTH",
    "ApiKeyRing",
    "KeyRingDependency",
    "KeySettings",
    "Principal",
    "Role",
    "access_check",
    "authorize",
    "parse_api_keys",
    "principal_of",
)

MIN_KEY_LENGTH = 16


class KeySettings(Protocol):
    """Where keys are configured (`Settings` has both); a protocol, so security imports no settings."""

    @property
    def api_keys(self) -> list[str]: ...
    @property
    def api_keys_file(self) -> str | None: ...


_PRINCIPAL_KEY = "performance_agent.principal"


class Role(enum.IntEnum):
    """Each role may do everything the roles below it may."""

    viewer = 1
    operator = 2
    approver = 3
    admin = 4


class Principal(msgspec.Struct, frozen=True):
    name: str
    role: Role


class _StoredKey(msgspec.Struct, frozen=True):
    digest: bytes
    principal: Principal


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_api_keys(entries: list[str], source: str) -> list[tuple[str, Role, str]]:
    """Parse `name:role:key` entries; raise ValueError with one line naming the bad entry."""
    parsed: list[tuple[str, Role, str]] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        parts = entry.strip().split(":", 2)
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"{source}: entry {position} must look like name:role:key")
        name, role_text, key = parts
        if role_text not in Role.__members__:
            raise ValueError(
                f"{source}: entry {position} ({name}) has role {role_text!r}; allowed: " + ", ".join(Role.__members__)
            )
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"{source}: entry {position} ({name}) has a key shorter than {MIN_KEY_LENGTH} characters")
        if name in seen:
            raise ValueError(f"{source}: key name {name!r} appears twice")
        seen.add(name)
        parsed.append((name, Role[role_text], key))
    return parsed


class ApiKeyRing:
    """The configured keys, hashed; empty means the API runs open (development only)."""

    def __init__(self, entries: list[tuple[str, Role, str]]) -> None:
        self._keys = [_StoredKey(_digest(key), Principal(name, role)) for name, role, key in entries]

    @classmethod
    def from_settings(cls, settings: KeySettings) -> ApiKeyRing:
        entries = parse_api_keys(settings.api_keys, "PERF_AGENT_API_KEYS")
        if settings.api_keys_file:
            path = Path(settings.api_keys_file)
            try:
                lines = read_operator_file(str(path)).decode().splitlines()
            except (OperatorFileError, UnicodeDecodeError) as exc:
                raise ValueError(f"PERF_AGENT_API_KEYS_FILE: {exc}") from None
            file_entries = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
            entries += parse_api_keys(file_entries, f"PERF_AGENT_API_KEYS_FILE ({path})")
            names = [name for name, _, _ in entries]
            if len(names) != len(set(names)):
                raise ValueError("PERF_AGENT_API_KEYS and PERF_AGENT_API_KEYS_FILE name the same key twice")
        return cls(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def identify(self, supplied: str) -> Principal | None:
        digest = _digest(supplied)
        found: Principal | None = None
        for stored in self._keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, stored.digest):
                found = stored.principal
        return found


def _supplied_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def principal_of(scope: Scope, ring: ApiKeyRing) -> Principal | None:
    """The caller behind this request, cached in the scope: the rate limit and `authorize` share it."""
    state: dict[str, Any] = scope.setdefault("state", {})
    if _PRINCIPAL_KEY not in state:
        supplied = _supplied_key(scope)
        state[_PRINCIPAL_KEY] = ring.identify(supplied) if supplied and ring.enabled else None
    cached: Principal | None = state[_PRINCIPAL_KEY]
    return cached


def authorize(scope: Scope, opt: Mapping[str, Any], ring: ApiKeyRing) -> Principal | None:
    """Enforce the handler's `opt["role"]` (default viewer); `opt["public"]` handlers need no key.

    Applied to every API route by the `access_check` hook.
    """
    if not ring.enabled or opt.get("public"):
        return None
    principal = principal_of(scope, ring)
    if principal is None:
        supplied = _supplied_key(scope)
        raise UnauthorizedError(
            "Missing API key: send it as X-API-Key or Authorization: Bearer."
            if supplied is None
            else "The API key is not valid.",
            headers={"WWW-Authenticate": 'Bearer realm="performance-agent"'},
        )
    needed: Role = opt.get("role", Role.viewer)
    if principal.role < needed:
        raise ForbiddenError(
            f"This action needs the {needed.name} role; key {principal.name!r} has {principal.role.name}.",
            context={"required_role": needed.name, "role": principal.role.name},
        )
    return principal


def access_check(ring: ApiKeyRing) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A `before_request` hook applying `authorize` to the matched handler's `opt`.

    A hook rather than a guard (guards get a copy of the route handler on every call, which costs
    more than the whole health endpoint) and rather than a middleware (a route middleware brings
    its own exception-handling layer). It runs before the body is read, so a caller without a
    valid key never gets it parsed. A coroutine function, because Litestar runs a plain function
    hook in a worker thread.
    """

    async def check(request: Request[Any, Any, Any]) -> None:
        authorize(request.scope, request.route_handler.opt, ring)

    return check


#: How handlers that name the acting principal receive the app's key ring.
KeyRingDependency = NamedDependency[SkipValidation[ApiKeyRing]]
