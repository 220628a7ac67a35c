"""Every operation is documented as a product would document it, and its examples are true.

Examples are decoded strictly into the operation's own request and response types, so an
example that drifts from the code fails here rather than misleading a reader of ReDoc.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import BodyKwarg

from performance_agent.app import create_app
from performance_agent.errors import ErrorEnvelope
from tests.conftest import make_settings

#: Routes outside the API contract: the docs UIs and the agent's own Prometheus page.
UNDOCUMENTED_PREFIXES = ("/schema", "/metrics")


def _handlers() -> list[tuple[str, HTTPRouteHandler]]:
    app = create_app(make_settings())
    found = []
    for route in app.routes:
        if route.path.startswith(UNDOCUMENTED_PREFIXES):
            continue
        for handler in getattr(route, "route_handlers", []):
            if isinstance(handler, HTTPRouteHandler) and handler.include_in_schema:
                found.append((route.path, handler))
    # route handlers of one path come from a set: sorted, so every pytest-xdist worker collects one order
    return sorted(found, key=lambda item: (item[0], sorted(item[1].http_methods)))


HANDLERS = _handlers()
IDS = [f"{sorted(h.http_methods)[0]} {path}" for path, h in HANDLERS]


def _body(handler: HTTPRouteHandler) -> tuple[Any, BodyKwarg] | None:
    parameter = handler.parsed_fn_signature.parameters.get("data")
    if parameter is None:
        return None
    marker = parameter.kwarg_definition
    assert isinstance(marker, BodyKwarg), "body must be declared explicitly (JSONBody or example_body)"
    return parameter.annotation, marker


@pytest.mark.parametrize(("path", "handler"), HANDLERS, ids=IDS)
def test_operation_has_id_summary_and_description(path: str, handler: HTTPRouteHandler) -> None:
    assert handler.operation_id, path
    assert handler.summary, path
    assert handler.fn.__doc__, f"{path}: the docstring becomes the operation description"


@pytest.mark.parametrize(("path", "handler"), HANDLERS, ids=IDS)
def test_request_examples_decode_into_the_body_type(path: str, handler: HTTPRouteHandler) -> None:
    body = _body(handler)
    if body is None:
        return
    body_type, marker = body
    assert marker.examples, f"{path}: request body has no example"
    for example in marker.examples:
        msgspec.convert(example.value, body_type, strict=True)


@pytest.mark.parametrize(("path", "handler"), HANDLERS, ids=IDS)
def test_responses_have_examples_and_errors_use_the_envelope(path: str, handler: HTTPRouteHandler) -> None:
    documented: Mapping[int, ResponseSpec] = handler.responses or {}
    success = [status for status in documented if status < 300]
    assert success or handler.status_code == 204, f"{path}: success answer not documented"
    for status, spec in documented.items():
        if status >= 400 and not (spec.data_container is not ErrorEnvelope and path.startswith("/api/v1/health")):
            assert spec.data_container is ErrorEnvelope, f"{path} {status} must document the error envelope"
        assert spec.examples, f"{path} {status} has no example"
        for example in spec.examples:
            msgspec.convert(example.value, spec.data_container, strict=True)


def test_schema_builds_and_every_path_is_versioned() -> None:
    app: Litestar = create_app(make_settings())
    schema = app.openapi_schema.to_schema()
    paths = set(schema["paths"])
    assert paths
    assert all(p.startswith("/api/v1/") for p in paths), paths


def test_operations_with_constrained_input_document_422() -> None:
    """A bounded path/query parameter or a body can be rejected, so 422 must be a documented answer."""
    schema = create_app(make_settings()).openapi_schema.to_schema()
    missing = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            constrained = "requestBody" in operation or any(
                parameter.get("in") in {"path", "query"} and _is_bounded(parameter.get("schema", {}))
                for parameter in operation.get("parameters", [])
            )
            if constrained and "422" not in operation["responses"]:
                missing.append(f"{method.upper()} {path}")
    assert not missing, missing


def _is_bounded(parameter_schema: Mapping[str, Any]) -> bool:
    bounds = {"maxLength", "minLength", "maximum", "minimum", "pattern", "enum", "exclusiveMinimum", "exclusiveMaximum"}
    nested = parameter_schema.get("oneOf", []) + parameter_schema.get("anyOf", [])
    return bool(bounds & set(parameter_schema)) or any(_is_bounded(option) for option in nested)
