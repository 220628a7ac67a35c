"""Reading a fetched page (parse, detect the engine, adapt) without holding the event loop.

Why a process and not a thread: parsing is pure Python, so a thread holds the GIL as much as
the event loop would (measured on the issue's page of ~1M metric names: readiness p99 9.1 s).
Pages up to `inline_max_bytes` are small enough to read on the loop (a typical vLLM page of
10-50 KB takes about a millisecond, less than the hop to another process). Larger pages go to a
one-process pool started with the agent, within a time budget; a worker over budget is killed
and replaced, so a page built to be slow cannot hold the next scrape either. The worker sends
back only the adapted figures, encoded as MessagePack (bounded by the page caps).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from performance_agent.engines.base import AdaptedPage, detect_engine
from performance_agent.engines.registry import FAMILY_FILTERS, adapt_page
from performance_agent.metrics.exposition import ExpositionError, ParserCache, parse_page
from performance_agent.metrics.page_limits import PageLimitError, PageLimits

__all__ = ("DEFAULT_INLINE_MAX_BYTES", "PageReading", "ScrapedPageReader", "read_page")

#: Pages up to this size are read on the event loop (about 10 ms of parsing at most).
DEFAULT_INLINE_MAX_BYTES = 256 * 1024

Outcome = Literal["ok", "invalid", "empty", "too_slow"]


class PageReading(msgspec.Struct, frozen=True):
    """What a page turned out to be: the adapted figures when it is a page of the expected engine.

    `outcome` is `invalid` (not exposition text, or over a cap: `message` says which), `empty`
    (no sample at all), `too_slow` (over the time budget) or `ok`, with `detected` the engine the
    page looks like (the caller compares it with the registered one) and `adapted` set when they
    match.
    """

    outcome: Outcome
    message: str = ""
    detected: str | None = None
    adapted: AdaptedPage | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PageReading)


def read_page(
    text: str, *, openmetrics: bool | None, engine: str, limits: PageLimits, cache: ParserCache | None = None
) -> PageReading:
    """Parse within the caps, detect the engine and adapt: the whole CPU-bound part of a scrape.

    `cache`: what the caller's earlier parses learnt (see `ParserCache`); the worker process has none.
    """
    try:
        # Only the families the engine's adapter reads are parsed in full (a third of a vLLM page).
        page = parse_page(text, openmetrics=openmetrics, keep=FAMILY_FILTERS[engine], limits=limits, cache=cache)
    except ExpositionError as invalid:
        return PageReading("invalid", f"the page is not valid exposition text: {invalid}")
    except PageLimitError as over:
        return PageReading("invalid", str(over))
    if not page.series and not page.families:
        return PageReading("empty", "the page holds no samples")
    detected = detect_engine(page)
    if detected != engine:
        return PageReading("ok", detected=detected)
    return PageReading("ok", detected=detected, adapted=adapt_page(engine, page))


def _read_page_encoded(body: bytes, openmetrics: bool | None, engine: str, limits: PageLimits) -> bytes:
    """`read_page` in the worker process, from the page's bytes (decoded there, not in the agent);
    MessagePack back, cheaper to move than pickled objects."""
    return _encoder.encode(read_page(body.decode("utf-8"), openmetrics=openmetrics, engine=engine, limits=limits))


def _warm_up() -> None:
    """Imports the parser and adapters in the worker before the first large page needs them."""


#: How often the worker checks that the agent that started it is still alive.
PARENT_CHECK_INTERVAL_S = 0.5


def _exit_with_parent(parent_pid: int) -> None:
    """Runs first in the worker: a thread ends the worker once the agent is gone.

    A `kill -9` of the agent runs no shutdown code, and the worker would not notice on its own:
    its task queue holds both ends of the pipe, so no end-of-file ever comes. Orphaned, it would
    keep the agent's stdout open (a supervisor waiting for it hangs) and keep its memory.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_INTERVAL_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@dataclass(slots=True)
class ScrapedPageReader:
    """Reads pages inline or in the worker process; `start` with the agent, `close` at shutdown.

    Without `start` (unit tests, tools) every page is read inline.
    """

    limits: PageLimits = field(default_factory=PageLimits)
    inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES
    budget_s: float = 10.0
    _pool: ProcessPoolExecutor | None = None
    _started: bool = False

    def start(self) -> None:
        self._started = True
        self._pool = self._new_pool()

    @staticmethod
    def _new_pool() -> ProcessPoolExecutor:
        # spawn: the agent runs threads (SQLite, the resolver), which a forked child must not inherit.
        pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        pool.submit(_warm_up)
        return pool

    async def read(
        self, body: bytes, *, openmetrics: bool | None, engine: str, cache: ParserCache | None = None
    ) -> PageReading:
        """`body`: the page's UTF-8 bytes (the scraper checked them); `cache` serves pages read inline.

        A page read in the worker process starts from an empty cache, as a fresh process would:
        caches are per collection service, and no state is shared with the worker.
        """
        if not self._started or len(body) <= self.inline_max_bytes:
            return read_page(
                body.decode("utf-8"), openmetrics=openmetrics, engine=engine, limits=self.limits, cache=cache
            )
        if self._pool is None:
            self._pool = self._new_pool()
        pool = self._pool
        try:
            future = pool.submit(_read_page_encoded, body, openmetrics, engine, self.limits)
            encoded = await asyncio.wait_for(asyncio.wrap_future(future), self.budget_s)
        except TimeoutError:
            self._replace(pool)
            return PageReading(
                "too_slow", f"reading the page took longer than PERF_AGENT_SCRAPE_PARSE_BUDGET_S ({self.budget_s:g} s)"
            )
        except BrokenProcessPool:
            self._replace(pool)
            return PageReading("too_slow", "the page reader process died while reading the page")
        return _decoder.decode(encoded)

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        """Kill the worker (busy with a page over budget) and start a fresh one for the next page."""
        if self._pool is pool:
            self._pool = self._new_pool()
        _kill(pool)

    def close(self) -> None:
        self._started = False
        pool, self._pool = self._pool, None
        if pool is not None:
            _kill(pool)


def _kill(pool: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor offers no public way to stop a running task before Python 3.14's
    # `kill_workers()`; killing its processes is what that method does.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(ProcessLookupError, AttributeError):
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=1.0)
