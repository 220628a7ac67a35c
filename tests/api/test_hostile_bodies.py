"""Bodies a careless client or an attacker sends: deep nesting, duplicate keys, huge numbers, no JSON type."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ClientFactory, assert_envelope

INSTANCES = "/api/v1/instances"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def api(client_factory: ClientFactory) -> TestClient[Litestar]:
    return client_factory(scrape_background=False)


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
def test_deeply_nested_json_is_a_400_not_a_500(api: TestClient[Litestar], opening: bytes) -> None:
    closing = b"]" if opening == b"[" else b"}"
    body = opening * 1200 + b"1" + closing * 1200
    envelope = assert_envelope(api.post(INSTANCES, content=body, headers=JSON), 400, "invalid_json")
    assert "nested too deeply" in envelope["message"]
    assert api.get(INSTANCES).json() == []


def test_duplicate_keys_are_a_400_naming_the_key(api: TestClient[Litestar]) -> None:
    body = b'{"instance_id": "a", "instance_id": "b", "engine": "vllm", "endpoint": "http://127.0.0.1:9"}'
    envelope = assert_envelope(api.post(INSTANCES, content=body, headers=JSON), 400, "invalid_json")
    assert "'instance_id'" in envelope["message"]
    assert api.get(INSTANCES).json() == []


def test_a_number_out_of_range_is_a_422_with_details(api: TestClient[Litestar]) -> None:
    body = b'{"instance_id": "a", "endpoint": "http://127.0.0.1:9", "timeout_s": 1e400}'
    envelope = assert_envelope(api.post("/api/v1/collect/vllm", content=body, headers=JSON), 422, "validation_error")
    assert envelope["details"], envelope
    assert envelope["details"][0]["field"] == "body.timeout_s"
    assert "out of range" in envelope["details"][0]["message"]


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_without_the_json_content_type_is_a_415(api: TestClient[Litestar], content_type: str | None) -> None:
    body = b'{"instance_id": "a", "engine": "vllm", "endpoint": "http://127.0.0.1:9"}'
    headers = {} if content_type is None else {"Content-Type": content_type}
    envelope = assert_envelope(api.post(INSTANCES, content=body, headers=headers), 415, "unsupported_media_type")
    assert envelope["context"] == {"content_type": content_type}
    assert api.get(INSTANCES).json() == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"]
)
def test_json_media_types_are_accepted(api: TestClient[Litestar], content_type: str) -> None:
    body = b'{"instance_id": "a", "engine": "vllm", "endpoint": "http://127.0.0.1:9"}'
    assert api.post(INSTANCES, content=body, headers={"Content-Type": content_type}).status_code == 201
