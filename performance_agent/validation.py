"""Strict JSON bodies: a string where a number belongs is a 422, never silently coerced.

Litestar converts bodies in msgspec's lax mode (`"5"` → 5). Our request class decodes the body
once, strictly, straight into the handler's declared `JSONBody[T]` type; Litestar's own lax
conversion then passes the already-typed value through unchanged. On failure every top-level
field is checked on its own so the client gets one detail per bad field, not just the first.
"""

from __future__ import annotations

import json
import re
import typing
import weakref
from typing import Any

import msgspec
from litestar import Request
from litestar.params import BodyKwarg

from performance_agent.errors import BadRequestError, ErrorDetail, RequestValidationError, UnsupportedMediaTypeError

__all__ = ("StrictRequest", "check_json_shape", "validation_details")

#: One strict decoder per route handler, built on first use. Weak keys: handlers of an app that is
#: gone must not pin memory, nor (as `id()` keys would) hand their decoder to a new handler.
_decoders: weakref.WeakKeyDictionary[Any, msgspec.json.Decoder[Any] | None] = weakref.WeakKeyDictionary()
_PATH_RE = re.compile(r" - at `(\$[^`]*)`$")


def _body_type(request: Request[Any, Any, Any]) -> Any | None:
    parameter = request.route_handler.parsed_fn_signature.parameters.get("data")
    if parameter is None:
        return None
    annotation = parameter.annotation
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        if any(isinstance(extra, BodyKwarg) for extra in extras):
            return base
    return annotation


def _decoder_for(request: Request[Any, Any, Any]) -> msgspec.json.Decoder[Any] | None:
    key = request.route_handler
    if key not in _decoders:
        body_type = _body_type(request)
        _decoders[key] = None if body_type is None else msgspec.json.Decoder(body_type, strict=True)
    return _decoders[key]


def _dotted(path: str, prefix: str) -> str:
    """`$.instance_ids[0]` → `body.instance_ids.0` (array indices as numbers)."""
    tail = path.removeprefix("$").replace("[", ".").replace("]", "")
    return prefix + tail if tail.startswith(".") or not tail else f"{prefix}.{tail}"


def _detail(error: msgspec.ValidationError, prefix: str) -> ErrorDetail:
    text = str(error)
    match = _PATH_RE.search(text)
    field = _dotted(match.group(1), prefix) if match else prefix
    message = text[: match.start()] if match else text
    kind = (
        "missing"
        if message.startswith("Object missing required field")
        else ("unknown_field" if message.startswith("Object contains unknown field") else "invalid")
    )
    if kind == "missing":
        name = message.split("`")[1]
        field = f"{field}.{name}"
        message = "field required"
    elif kind == "unknown_field":
        name = message.split("`")[1]
        field = f"{field}.{name}"
        message = "unknown field"
    return ErrorDetail(field=field, message=message, type=kind)


def validation_details(raw: bytes, body_type: Any, prefix: str = "body") -> list[ErrorDetail]:
    """Every invalid top-level field of `raw` against `body_type`, each with a dotted path."""
    try:
        builtins = msgspec.json.decode(raw)
    except msgspec.DecodeError:  # pragma: no cover - callers decode once before and report invalid JSON
        return []
    fields = (
        msgspec.structs.fields(body_type)
        if isinstance(body_type, type) and issubclass(body_type, msgspec.Struct)
        else None
    )
    if fields is None or not isinstance(builtins, dict):
        try:
            msgspec.convert(builtins, body_type, strict=True)
        except msgspec.ValidationError as error:
            return [_detail(error, prefix)]
        return []  # pragma: no cover - only reached when the first decode succeeded
    details: list[ErrorDetail] = []
    hints = typing.get_type_hints(body_type, include_extras=True)
    by_wire = {f.encode_name: f for f in fields}
    forbid = body_type.__struct_config__.forbid_unknown_fields
    for key in builtins:
        if key not in by_wire and forbid:
            details.append(ErrorDetail(field=f"{prefix}.{key}", message="unknown field", type="unknown_field"))
    for wire_name, info in by_wire.items():
        if wire_name not in builtins:
            if info.required:
                details.append(ErrorDetail(field=f"{prefix}.{wire_name}", message="field required", type="missing"))
            continue
        try:
            msgspec.convert(builtins[wire_name], hints[info.name], strict=True)
        except msgspec.ValidationError as error:
            details.append(_detail(error, f"{prefix}.{wire_name}"))
    if not details:
        # Every field is fine alone: the failure is a rule across fields (raised by __post_init__).
        try:
            msgspec.convert(builtins, body_type, strict=True)
        except msgspec.ValidationError as error:
            details.append(_detail(error, prefix))
    return details


class _DuplicateKeyError(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKeyError(key)
        found[key] = value
    return found


def check_json_shape(raw: bytes) -> None:
    """400 for JSON that msgspec would accept silently or not at all: duplicate keys, absurd nesting.

    Why: msgspec keeps the last of two equal keys (`{"a": 1, "a": 2}` is a = 2), so a proxy or
    signature check that reads the first one sees another request than the agent does; and a
    body nested 1,200 levels deep exhausted the recursion limit (a 500). The standard library's
    parser reports every key pair and stops deep nesting with `RecursionError`.
    """
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKeyError as duplicate:
        raise BadRequestError(f"The request body repeats the key {duplicate.args[0]!r}; send each key once.") from None
    except RecursionError:
        raise BadRequestError("The request body is nested too deeply to be a request of this API.") from None
    except ValueError:
        return  # not JSON at all: msgspec reports it, with its own position and wording


def _is_json_media(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class StrictRequest(Request[Any, Any, Any]):
    """Request whose `json()` is a strict, typed, single-pass decode of the handler's body type."""

    async def json(self) -> Any:
        decoder = _decoder_for(self)
        if decoder is None:
            return await super().json()
        raw = await self.body()
        if raw.strip():
            if not _is_json_media(self.headers.get("content-type")):
                raise UnsupportedMediaTypeError(
                    "Send the body as JSON with `Content-Type: application/json`.",
                    context={"content_type": self.headers.get("content-type")},
                )
            check_json_shape(raw)
        try:
            return decoder.decode(raw)
        except msgspec.ValidationError as error:
            try:
                details = validation_details(raw, decoder.type) or [_detail(error, "body")]
            except RecursionError:
                raise BadRequestError("The request body is nested too deeply to be a request of this API.") from None
            summary = "; ".join(f"{d.field}: {d.message}" for d in details)
            raise RequestValidationError(f"The request body is not valid: {summary}", details) from None
        except msgspec.DecodeError as error:
            raise BadRequestError(f"The request body is not valid JSON: {error}") from None
        except RecursionError:
            raise BadRequestError("The request body is nested too deeply to be a request of this API.") from None
