"""Headless Chromium for tests, cut off from every host but 127.0.0.1.

The docs UIs must render in air-gapped clusters, and only a real browser proves that: it runs
the JavaScript and would try every font, logo or CDN script a bundle asks for. Outside network
is blocked twice (DNS mapped to nothing, and every non-loopback request sent to a closed proxy),
and the browser's own net log tells which URLs the page asked for, so a test can assert that no
request left the machine, not just that the page happened to render.

If Chromium is missing the calling test is skipped, unless ``REQUIRE_BROWSER=1`` (set by CI),
where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

__all__ = (
    "ALLOWED_HOST",
    "CHROMIUM_CANDIDATES",
    "REQUIRE_BROWSER_ENV",
    "BrowserError",
    "RenderedPage",
    "chromium_command",
    "find_chromium",
    "outside_requests",
    "page_requests_from_net_log",
    "render_page",
    "require_chromium",
    "take_screenshot",
    "visible_text",
)

REQUIRE_BROWSER_ENV = "REQUIRE_BROWSER"
CHROMIUM_CANDIDATES: tuple[str, ...] = ("/usr/bin/chromium", "chromium", "chromium-browser")
ALLOWED_HOST = "127.0.0.1"

# A port nothing listens on: the discard service is never enabled on our machines.
_CLOSED_PROXY = "http://127.0.0.1:9"

_DEFAULT_TIMEOUT_S = 120.0
_DEFAULT_VIRTUAL_TIME_MS = 20_000

_BASE_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--mute-audio",
)

# "<-loopback>" must come first: it removes Chromium's implicit proxy bypass for all of 127/8 and
# localhost, then 127.0.0.1 alone is let through. In the other order 127.0.0.1 is proxied too.
_ISOLATION_FLAGS: tuple[str, ...] = (
    f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {ALLOWED_HOST}",
    f"--proxy-server={_CLOSED_PROXY}",
    f"--proxy-bypass-list=<-loopback>;{ALLOWED_HOST}",
)


class BrowserError(RuntimeError):
    """Chromium ran but could not load or render the page."""


@dataclass(frozen=True, slots=True)
class RenderedPage:
    """What the browser ended with, and every URL the page itself asked for (not the browser's own chatter)."""

    dom: str
    page_requests: tuple[str, ...]


class _TextCollector(HTMLParser):
    _HIDDEN_ELEMENTS = frozenset({"script", "style", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN_ELEMENTS:
            self._hidden_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN_ELEMENTS and self._hidden_depth:
            self._hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.chunks.append(data)


def visible_text(dom: str) -> str:
    """The page's text without script and style bodies, whitespace collapsed.

    The docs pages embed the whole schema in an inline script, so a summary found in the raw DOM
    proves nothing; it has to appear in text the UI rendered.
    """
    collector = _TextCollector()
    collector.feed(dom)
    collector.close()
    return re.sub(r"\s+", " ", " ".join(collector.chunks)).strip()


def find_chromium() -> Path | None:
    """The first Chromium found, Debian's path first because that is what CI installs."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found is not None:
            return Path(found)
    return None


def require_chromium() -> Path:
    """Chromium's path, or skip the test (fail it when ``REQUIRE_BROWSER=1``) if it is not installed."""
    binary = find_chromium()
    if binary is not None:
        return binary
    searched = ", ".join(CHROMIUM_CANDIDATES)
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(f"{REQUIRE_BROWSER_ENV}=1 but no Chromium found (looked for {searched}); apt-get install chromium")
    pytest.skip(f"headless Chromium not installed (looked for {searched}); apt-get install chromium to run this test")


def chromium_command(
    binary: Path,
    user_data_dir: Path,
    *,
    block_outside_network: bool = True,
    net_log: Path | None = None,
) -> list[str]:
    """The argv shared by every mode; a fresh profile each time so no cache or cookie leaks between tests."""
    command = [str(binary), *_BASE_FLAGS, f"--user-data-dir={user_data_dir}"]
    if block_outside_network:
        command.extend(_ISOLATION_FLAGS)
    if net_log is not None:
        command.append(f"--log-net-log={net_log}")
    return command


def _load_net_log(text: str) -> dict[str, Any]:
    """Parse a net log; Chromium leaves the closing brackets off when it is stopped abruptly."""
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        loaded = json.loads(text.rstrip().rstrip(",") + "]}")
    if not isinstance(loaded, dict) or "constants" not in loaded:
        raise BrowserError("Chromium wrote a net log without its constants table")
    return loaded


def page_requests_from_net_log(text: str) -> tuple[str, ...]:
    """URLs the page (main frame, its scripts, styles, images, workers, fetches) started, in order.

    Chromium also talks to update and account services on its own; those requests have no
    initiating origin and are not main-frame loads, so they are left out. Blocked requests are
    included: the job starts before the lookup or the proxy fails.
    """
    log = _load_net_log(text)
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls: list[str] = []
    for event in log.get("events", []):
        if event.get("type") != start_job:
            continue
        params = event.get("params", {})
        from_page = params.get("initiator", "not an origin") != "not an origin"
        if from_page or params.get("request_type") == "main frame":
            urls.append(params["url"])
    return tuple(urls)


def outside_requests(urls: tuple[str, ...] | list[str], allowed_host: str = ALLOWED_HOST) -> list[str]:
    """The URLs that would have left the machine (inline ``data:`` and ``blob:`` URLs never do)."""
    outside = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in {"data", "blob", "about"}:
            continue
        if parts.hostname != allowed_host:
            outside.append(url)
    return outside


def _run(command: list[str], timeout_s: float) -> str:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    failure = next((line for line in completed.stderr.splitlines() if "Page load failed" in line), None)
    if completed.returncode != 0 or failure is not None:
        detail = failure or completed.stderr[-2000:]
        raise BrowserError(f"chromium exited with {completed.returncode}: {detail}")
    return completed.stdout


def render_page(
    url: str,
    *,
    virtual_time_ms: int = _DEFAULT_VIRTUAL_TIME_MS,
    block_outside_network: bool = True,
    timeout_s: float = _DEFAULT_TIMEOUT_S,
) -> RenderedPage:
    """Load ``url``, let its scripts run for ``virtual_time_ms`` of virtual time, return the final DOM.

    Virtual time fast-forwards timers and stops early once the page is idle, so a generous budget
    costs nothing when the page renders quickly.
    """
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="perf-agent-chromium-") as scratch:
        scratch_dir = Path(scratch)
        net_log = scratch_dir / "net-log.json"
        command = chromium_command(
            binary,
            scratch_dir / "profile",
            block_outside_network=block_outside_network,
            net_log=net_log,
        )
        command.extend([f"--virtual-time-budget={virtual_time_ms}", "--dump-dom", url])
        dom = _run(command, timeout_s)
        if not net_log.exists():
            raise BrowserError("chromium did not write its net log")
        requests = page_requests_from_net_log(net_log.read_text(encoding="utf-8"))
    return RenderedPage(dom=dom, page_requests=requests)


def take_screenshot(
    url: str,
    destination: Path,
    *,
    window_size: tuple[int, int] = (1280, 900),
    virtual_time_ms: int = _DEFAULT_VIRTUAL_TIME_MS,
    block_outside_network: bool = True,
    timeout_s: float = _DEFAULT_TIMEOUT_S,
) -> Path:
    """Save a PNG of ``url`` as rendered offline; for eyeballing a UI change, not for pixel asserts."""
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="perf-agent-chromium-") as scratch:
        command = chromium_command(binary, Path(scratch) / "profile", block_outside_network=block_outside_network)
        width, height = window_size
        command.extend(
            [
                f"--window-size={width},{height}",
                f"--virtual-time-budget={virtual_time_ms}",
                "--hide-scrollbars",
                f"--screenshot={destination}",
                url,
            ]
        )
        _run(command, timeout_s)
    if not destination.is_file() or destination.stat().st_size == 0:
        raise BrowserError(f"chromium did not write a screenshot to {destination}")
    return destination
