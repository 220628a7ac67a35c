"""The demo's only way into the agent: its public HTTP API through httpx, each request printed first.

Every call states the status it expects. Anything else (another status, no answer, a body that
is not JSON) raises `StepFailed` with the method, path and the agent's error envelope, so the
demo can never print success for a step whose answer was wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from performance_agent.demo.answers import StepFailed

if TYPE_CHECKING:
    from performance_agent.demo.console import Console

__all__ = ("APPROVER", "OPERATOR", "DemoClient", "describe_error")

OPERATOR = "operator"
APPROVER = "approver"


def describe_error(response: httpx.Response) -> str:
    """`code: message` from the error envelope, or the start of whatever else the body was."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or "(empty body)"
    if isinstance(body, dict) and "error" in body:
        details = "; ".join(
            f"{detail.get('field') or '-'}: {detail.get('message')}"
            for detail in body.get("details") or []
            if isinstance(detail, dict)
        )
        text = f"{body['error']}: {body.get('message', '')}"
        return f"{text} ({details})" if details else text
    return str(body)[:200]


class DemoClient:
    """`call()` prints the request, sends it with the role's API key and checks the status."""

    def __init__(
        self,
        base_url: str,
        console: Console,
        keys: dict[str, str],
        *,
        timeout_s: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._console = console
        self._keys = keys
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        expect: int = 200,
        role: str = OPERATOR,
        show: bool = True,
    ) -> Any:
        """Send one request; answer its decoded JSON body (None for an empty one) or raise `StepFailed`."""
        if show:
            self._console.request(method, path, body, role=None if role == OPERATOR else role)
        headers = {"X-API-Key": self._keys[role]} if role in self._keys else {}
        try:
            response = self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise StepFailed(f"{method} {path}: no answer from the agent ({type(error).__name__}: {error})") from None
        if response.status_code != expect:
            raise StepFailed(
                f"{method} {path} answered {response.status_code}, expected {expect}: {describe_error(response)}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise StepFailed(f"{method} {path} answered {response.status_code} with a body that is not JSON") from None
