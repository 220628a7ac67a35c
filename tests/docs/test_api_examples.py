"""docs/api.md is executed: its setup starts simulated servers and the agent, then every example runs in order.

The agent is `python -m performance_agent serve` under uvicorn on 127.0.0.1 with a temporary
SQLite file; the scrape targets are simulated vLLM, TGI and SGLang servers. An example fails when
its status, error code, promised text or documented JSON keys differ from the real answer; the
guide fails when an endpoint of the app has no example or an error code of the code base is
missing from its table.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from performance_agent.app import create_app
from performance_agent.errors import ERROR_CODE_BY_STATUS
from performance_agent.metrics.scraper import FailureReason
from tests.conftest import make_settings
from tests.docs.tour_parse import Tour, TourSyntaxError, parse_tour
from tests.docs.tour_run import Outcome, TourRunner, uncovered_routes
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.e2e

API_DOC = REPO_ROOT / "docs" / "api.md"
_ERROR_LITERAL = re.compile(r"""\berror\s*=\s*"([a-z_]+)\"""")


@dataclass(frozen=True, slots=True)
class TourResult:
    outcomes: list[Outcome]
    calls: list[tuple[str, str]]
    log_tail: str


def app_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves; OPTIONS is Litestar's automatic CORS answer."""
    app = create_app(make_settings())
    return sorted(
        {
            (method, route.path)
            for route in app.routes
            for handler in getattr(route, "route_handlers", [])
            for method in handler.http_methods
            if method != "OPTIONS"
        }
    )


@pytest.fixture(scope="module")
def tour() -> Tour:
    return parse_tour(API_DOC.read_text())


@pytest.fixture(scope="module")
def tour_result(tour: Tour, tmp_path_factory: pytest.TempPathFactory) -> TourResult:
    runner = TourRunner(tour, tmp_path_factory.mktemp("api-tour"))
    outcomes: list[Outcome] = []
    try:
        runner.start()
        for example in tour.examples:
            try:
                outcomes.append(runner.run(example))
            except (TourSyntaxError, httpx.HTTPError, ValueError) as error:
                outcomes.append(Outcome(example, 0, "", [f"could not run: {error!r}"]))
    finally:
        runner.stop()
    return TourResult(outcomes, list(runner.calls), runner.log_tail())


def test_every_example_answers_as_documented(tour_result: TourResult) -> None:
    failures = [
        f"docs/api.md line {outcome.example.line}: {'; '.join(outcome.problems)}\n"
        f"    {outcome.example.command[:160]}\n    answer: {outcome.body[:400]}"
        for outcome in tour_result.outcomes
        if outcome.problems
    ]
    assert not failures, "\n".join(failures) + "\n--- agent log ---\n" + tour_result.log_tail


def test_the_guide_ran_every_example(tour: Tour, tour_result: TourResult) -> None:
    assert len(tour.examples) >= 80
    assert [outcome.example.line for outcome in tour_result.outcomes] == [example.line for example in tour.examples]


def test_every_endpoint_has_an_example(tour_result: TourResult) -> None:
    routes = app_routes()
    assert ("POST", "/api/v1/workflows/{workflow_id:str}/retry-rollback") in routes
    assert not uncovered_routes(routes, tour_result.calls), "endpoints without an example in docs/api.md"


def test_api_errors_in_the_guide_name_their_code(tour: Tour) -> None:
    """A reader must be able to branch on `error`, so every failing /api/v1 example shows which one."""
    unnamed = [
        example.line
        for example in tour.examples
        if example.expect >= 400 and "/api/v1/" in example.curl and example.error is None
    ]
    assert not unnamed


def test_every_error_code_of_the_code_base_is_in_the_table() -> None:
    sources = (REPO_ROOT / "performance_agent").rglob("*.py")
    codes = {code for path in sources for code in _ERROR_LITERAL.findall(path.read_text())}
    codes |= set(ERROR_CODE_BY_STATUS.values()) | set(typing.get_args(FailureReason))
    assert {"rate_limited", "workflow_conflict", "upstream_timeout", "internal_error"} <= codes
    text = API_DOC.read_text()
    section = text[text.index("### Error codes") : text.index("### Rate limits")]
    missing = sorted(code for code in codes if f"`{code}`" not in section)
    assert not missing, f"error codes missing from the table in docs/api.md: {missing}"


def test_the_readme_quick_start_works(tmp_path: Path) -> None:
    """The thirty-second example of README.md, run the same way as the guide."""
    readme = parse_tour((REPO_ROOT / "README.md").read_text())
    assert readme.setup[0].kind == "serve"
    runner = TourRunner(readme, tmp_path)
    try:
        runner.start()
        outcomes = [runner.run(example) for example in readme.examples]
    finally:
        runner.stop()
    assert len(outcomes) == 3
    failures = [f"README.md line {o.example.line}: {o.problems}: {o.body[:300]}" for o in outcomes if o.problems]
    assert not failures, "\n".join(failures) + "\n" + runner.log_tail()
