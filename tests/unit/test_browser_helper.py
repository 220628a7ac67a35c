"""The headless-browser helper: skip rules, isolation flags, net-log reading, failure reporting.

These run without Chromium (a fake binary stands in where one is needed), so CI proves the
helper's own logic even on a machine that would skip the browser tests.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests import browser
from tests.browser import (
    REQUIRE_BROWSER_ENV,
    BrowserError,
    chromium_command,
    find_chromium,
    outside_requests,
    page_requests_from_net_log,
    render_page,
    require_chromium,
    take_screenshot,
    visible_text,
)

START_JOB = 7
OTHER_EVENT = 3


def fake_executable(directory: Path, script: str) -> Path:
    path = directory / "chromium"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def net_log_text(events: list[dict[str, object]]) -> str:
    constants = {"logEventTypes": {"URL_REQUEST_START_JOB": START_JOB, "REQUEST_ALIVE": OTHER_EVENT}}
    return json.dumps({"constants": constants, "events": events})


def start_job(url: str, initiator: str, request_type: str = "other") -> dict[str, object]:
    return {"type": START_JOB, "params": {"url": url, "initiator": initiator, "request_type": request_type}}


def test_missing_browser_skips_with_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", (str(tmp_path / "no-such-chromium"),))
    monkeypatch.delenv(REQUIRE_BROWSER_ENV, raising=False)
    assert find_chromium() is None
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        require_chromium()


@pytest.mark.parametrize("value", ["0", "", "yes"])
def test_require_browser_only_fails_on_exactly_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", (str(tmp_path / "no-such-chromium"),))
    monkeypatch.setenv(REQUIRE_BROWSER_ENV, value)
    with pytest.raises(pytest.skip.Exception):
        require_chromium()


def test_missing_browser_fails_when_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", (str(tmp_path / "no-such-chromium"),))
    monkeypatch.setenv(REQUIRE_BROWSER_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_BROWSER=1 but no Chromium found"):
        require_chromium()


def test_first_installed_candidate_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    binary = fake_executable(tmp_path, "exit 0")
    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", (str(tmp_path / "absent"), str(binary)))
    assert require_chromium() == binary


def test_isolation_flags_exclude_loopback_before_allowing_127_0_0_1(tmp_path: Path) -> None:
    command = chromium_command(Path("/usr/bin/chromium"), tmp_path / "profile", net_log=tmp_path / "log.json")
    assert command[0] == "/usr/bin/chromium"
    assert "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" in command
    assert "--proxy-server=http://127.0.0.1:9" in command
    assert "--proxy-bypass-list=<-loopback>;127.0.0.1" in command
    assert f"--user-data-dir={tmp_path / 'profile'}" in command
    assert f"--log-net-log={tmp_path / 'log.json'}" in command
    assert {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"} <= set(command)


def test_isolation_can_be_turned_off_for_the_control_experiment(tmp_path: Path) -> None:
    command = chromium_command(Path("/usr/bin/chromium"), tmp_path, block_outside_network=False)
    assert not [flag for flag in command if flag.startswith(("--proxy", "--host-resolver-rules"))]
    assert not [flag for flag in command if flag.startswith("--log-net-log")]


def test_net_log_keeps_page_requests_and_drops_browser_chatter() -> None:
    text = net_log_text(
        [
            start_job("http://update.googleapis.com/service/update2/json", "not an origin"),
            start_job("http://127.0.0.1:8000/schema/redoc", "not an origin", request_type="main frame"),
            {"type": OTHER_EVENT, "params": {"url": "http://127.0.0.1:8000/ignored"}},
            start_job("http://127.0.0.1:8000/schema/assets/redoc.standalone.js", "http://127.0.0.1:8000"),
            start_job("https://cdn.redoc.ly/redoc/logo-mini.svg", "http://127.0.0.1:8000"),
            {"type": START_JOB},
        ]
    )
    assert page_requests_from_net_log(text) == (
        "http://127.0.0.1:8000/schema/redoc",
        "http://127.0.0.1:8000/schema/assets/redoc.standalone.js",
        "https://cdn.redoc.ly/redoc/logo-mini.svg",
    )


def test_net_log_cut_off_mid_write_still_parses() -> None:
    complete = net_log_text([start_job("http://127.0.0.1:1/a", "http://127.0.0.1:1")])
    truncated = complete.removesuffix("]}") + ",\n"
    assert page_requests_from_net_log(truncated) == ("http://127.0.0.1:1/a",)


def test_net_log_without_constants_is_an_error() -> None:
    with pytest.raises(BrowserError, match="constants"):
        page_requests_from_net_log(json.dumps({"events": []}))


def test_outside_requests_flags_every_host_but_127_0_0_1() -> None:
    urls = [
        "http://127.0.0.1:8000/schema/redoc",
        "data:image/svg+xml,%3Csvg/%3E",
        "blob:http://127.0.0.1:8000/1f2e",
        "http://localhost:8000/x",
        "http://127.0.0.2:8000/x",
        "https://fonts.googleapis.com/css?family=Roboto",
        "http://127.0.0.1.nip.io/x",
    ]
    assert outside_requests(urls) == urls[3:]


def test_visible_text_ignores_scripts_styles_and_collapses_whitespace() -> None:
    dom = (
        "<html><head><style>.a { color: red }</style><script>const spec = {'summary': 'Hidden'}</script></head>"
        "<body><h1>Title</h1>\n\n  <p>List &amp; filter\n instances</p><noscript>enable js</noscript>"
        "<template><b>inert</b></template><p>after</p></body></html>"
    )
    assert visible_text(dom) == "Title List & filter instances after"


def test_browser_that_cannot_load_the_page_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    binary = fake_executable(tmp_path, 'echo "ERROR: Page load failed: net::ERR_CONNECTION_REFUSED" >&2; exit 0')
    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", (str(binary),))
    with pytest.raises(BrowserError, match="ERR_CONNECTION_REFUSED"):
        render_page("http://127.0.0.1:9/")


def test_browser_crash_raises_with_its_exit_status(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    binary = fake_executable(tmp_path, 'echo "Trace/breakpoint trap" >&2; exit 133')
    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", (str(binary),))
    with pytest.raises(BrowserError, match="exited with 133: Trace/breakpoint trap"):
        render_page("http://127.0.0.1:9/")


def test_missing_net_log_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    binary = fake_executable(tmp_path, "echo '<html></html>'")
    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", (str(binary),))
    with pytest.raises(BrowserError, match="net log"):
        render_page("http://127.0.0.1:9/")


def test_render_returns_dom_and_page_requests_from_the_browser(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log = net_log_text([start_job("http://127.0.0.1:9/", "not an origin", request_type="main frame")])
    (tmp_path / "log.json").write_text(log)
    # The fake copies the canned log to wherever --log-net-log points, then prints a DOM.
    script = (
        'for arg in "$@"; do case "$arg" in --log-net-log=*) cp '
        f'{tmp_path / "log.json"} "${{arg#--log-net-log=}}";; esac; done; echo "<p>rendered</p>"'
    )
    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", (str(fake_executable(tmp_path, script)),))
    page = render_page("http://127.0.0.1:9/")
    assert page.dom.strip() == "<p>rendered</p>"
    assert page.page_requests == ("http://127.0.0.1:9/",)


def test_screenshot_that_was_not_written_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM_CANDIDATES", (str(fake_executable(tmp_path, "exit 0")),))
    with pytest.raises(BrowserError, match="did not write a screenshot"):
        take_screenshot("http://127.0.0.1:9/", tmp_path / "shot.png")
