"""Adapters by engine name: adding an engine means adding its module and one line here.

Kept apart from `base.py` because the adapters import `base`; the registry imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.engines.sglang import SglangAdapter
from performance_agent.engines.tgi import TgiAdapter
from performance_agent.engines.vllm import VllmAdapter

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.engines.base import AdaptedPage, EngineAdapter
    from performance_agent.readings.page import MetricsPage

__all__ = ("ADAPTERS", "FAMILY_FILTERS", "SUPPORTED_ENGINES", "UnknownEngineError", "adapt_page", "get_adapter")

ADAPTERS: dict[str, EngineAdapter] = {
    adapter.engine: adapter for adapter in (VllmAdapter(), TgiAdapter(), SglangAdapter())
}
SUPPORTED_ENGINES = tuple(sorted(ADAPTERS))


class UnknownEngineError(LookupError):
    """An engine name no adapter serves (callers validate input; this guards programming errors)."""

    def __init__(self, engine: str) -> None:
        super().__init__(f"no adapter for engine {engine!r}; supported: {', '.join(SUPPORTED_ENGINES)}")
        self.engine = engine


def get_adapter(engine: str) -> EngineAdapter:
    try:
        return ADAPTERS[engine]
    except KeyError:
        raise UnknownEngineError(engine) from None


def adapt_page(engine: str, page: MetricsPage) -> AdaptedPage:
    """The page in engine-neutral terms, read with the named engine's adapter."""
    return get_adapter(engine).adapt(page)


def _family_filter(prefixes: tuple[str, ...]) -> Callable[[str], bool]:
    def keep(family: str) -> bool:
        return family.startswith(prefixes)

    return keep


#: Per engine, which families its adapter reads: `parse_page(text, keep=FAMILY_FILTERS[engine])`.
FAMILY_FILTERS: dict[str, Callable[[str], bool]] = {
    engine: _family_filter(adapter.reads) for engine, adapter in ADAPTERS.items()
}
