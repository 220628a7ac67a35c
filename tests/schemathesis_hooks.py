"""Loaded by schemathesis (see `hooks` in schemathesis.toml) before it generates anything.

CPython 3.11 before 3.11.9 can raise `SystemError: AST constructor recursion depth mismatch`
from `ast.parse` when it runs deep in a stack whose recursion limit was raised (python/cpython
gh-106905). Hypothesis calls `ast.parse` only to *describe* lambdas in strategy reprs, which it
builds eagerly while validating recursive strategies, so on this interpreter schemathesis'
example phase aborts with a runtime error that says nothing about our API. A failed description
is harmless: fall back to Hypothesis' own "unknown lambda" text.
"""

from __future__ import annotations

from typing import Any

from hypothesis.internal import lambda_sources

_describe: Any = lambda_sources._lambda_description


def _describe_or_unknown(f: Any, *args: Any, **kwargs: Any) -> str:
    try:
        return str(_describe(f, *args, **kwargs))
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _describe_or_unknown
