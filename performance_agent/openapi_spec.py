"""Helpers that give every operation its examples and documented answers.

Litestar documents its own default error shape and no examples; these helpers put our envelope
on every documented error status and attach request/response examples. The examples are not
decoration: `tests/api/test_openapi_contract.py` decodes each one strictly into the operation's
own types, so an example that drifts from the code fails the build.
"""

from __future__ import annotations

from typing import Any

from litestar.enums import RequestEncodingType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, BodyKwarg

from performance_agent.errors import error_responses

__all__ = ("example_body", "responses")


def example_body(summary: str, value: Any, *more: tuple[str, Any]) -> BodyKwarg:
    """A JSON body marker carrying examples: `data: Annotated[T, example_body("...", {...})]`."""
    examples = [Example(summary=summary, value=value), *(Example(summary=s, value=v) for s, v in more)]
    marker: BodyKwarg = Body(media_type=RequestEncodingType.JSON, examples=examples)
    return marker


def responses(status: int, model: Any, example: Any, description: str, *errors: int) -> dict[int, ResponseSpec]:
    """The success answer with an example, plus the envelope on each error status (401/403/429/500 always)."""
    documented = error_responses(*errors)
    documented[status] = ResponseSpec(
        data_container=model,
        description=description,
        generate_examples=False,
        examples=[Example(summary=description, value=example)],
    )
    return documented
