"""Readings from a Prometheus-compatible HTTP API, in the shape a scrape produces (pure).

Why this works: Prometheus stores the engines' samples under their exposition names (`_bucket`,
`_sum`, `_count`, `_total` included), and an instant query of a bare selector at time T returns
each series' latest sample at or before T (within the lookback delta), i.e. the cumulative
values a direct scrape would have read
(https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries). One query selects
every family the engine's adapter reads, by a `__name__` regex of the adapter's prefixes, so all
readings come from one evaluation time. The answer becomes a `MetricsPage`, and everything after
it (adapter, snapshot, windows, SLOs, gates) does not know where the page came from.

The query also selects the target's `up` series, which carries exactly the labels Prometheus
attached to the target (`job`, `instance`, and whatever relabelling added: `namespace`, `pod`...;
https://prometheus.io/docs/concepts/jobs_instances/#automatically-generated-labels-and-time-series).
Those labels are dropped from every other series, so the adapter sees the label sets the engine
wrote (even when the matchers name an engine label); two `up` series mean the matchers select
two targets, which is refused. Without an `up` series (federated or remote-written data), `job`,
`instance` and the matchers' labels are dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import msgspec

from performance_agent.fleet.selectors import render_selector
from performance_agent.readings.page import MetricsPage, Sample

if TYPE_CHECKING:
    from performance_agent.fleet.selectors import LabelMatcher

__all__ = (
    "PROMETHEUS_TARGET_LABELS",
    "MoreThanOneServerError",
    "PrometheusAnswerError",
    "PrometheusQueryError",
    "PrometheusReading",
    "name_regex",
    "page_from_vector",
    "parse_query_answer",
    "parse_series_answer",
    "prometheus_headers",
    "readings_query",
)

#: Labels Prometheus attaches to every scraped series (https://prometheus.io/docs/concepts/jobs_instances/).
PROMETHEUS_TARGET_LABELS = frozenset({"job", "instance"})
#: The series Prometheus writes per target with the target's labels only.
TARGET_HEALTH_METRIC = "up"
#: The label (and value) the readings query gives the timestamp of the target's last scrape. A
#: label, not a metric name: `or` matches label sets without the name, and would drop the series
#: as a duplicate of `up`.
SCRAPED_AT_LABEL = ("perf_agent_reading", "scraped_at")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


class PrometheusAnswerError(ValueError):
    """The answer is not the JSON the Prometheus HTTP API documents."""


class MoreThanOneServerError(ValueError):
    """The matchers select the series of more than one server."""


class PrometheusQueryError(Exception):
    """Prometheus answered `status: error`; `error_type` is its `errorType` (`timeout`, `bad_data`...)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class _VectorSample(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, str]


class _VectorData(msgspec.Struct):
    resultType: str
    result: list[_VectorSample]


class _QueryAnswer(msgspec.Struct):
    status: str
    data: _VectorData | None = None
    errorType: str = ""
    error: str = ""


class _SeriesAnswer(msgspec.Struct):
    status: str
    data: list[dict[str, str]] | None = None
    errorType: str = ""
    error: str = ""


_AnswerT = TypeVar("_AnswerT", _QueryAnswer, _SeriesAnswer)
_query_decoder = msgspec.json.Decoder(_QueryAnswer)
_series_decoder = msgspec.json.Decoder(_SeriesAnswer)


def _escape_re2(text: str) -> str:
    return "".join("\\" + character if character in _RE2_SPECIAL else character for character in text)


def name_regex(prefixes: tuple[str, ...]) -> str:
    """A `__name__` regex (RE2, anchored by PromQL) matching every name that starts with one of `prefixes`."""
    return "(?:" + "|".join(_escape_re2(prefix) for prefix in sorted(prefixes)) + ").*"


def readings_query(prefixes: tuple[str, ...], matchers: tuple[LabelMatcher, ...]) -> str:
    """The one instant query that reads, for one server, the target's `up`, every family the adapter reads,
    and when the target was last scraped.

    Why the scrape time: the readings are that scrape's values, so a window between two readings
    is the time between the two scrapes, exactly as between two direct scrapes. Timing windows
    by the agent's query times instead would be off by up to a scrape interval at each end.
    """
    selector = render_selector(matchers, name_regex=f"{TARGET_HEALTH_METRIC}|{name_regex(prefixes)}")
    health = render_selector(matchers, name_regex=TARGET_HEALTH_METRIC)
    label, value = SCRAPED_AT_LABEL
    scraped_at = f'label_replace(timestamp({health}), "{label}", "{value}", "", ".*")'
    return f"{selector} or {scraped_at}"


def _decoded_data(decoder: msgspec.json.Decoder[_AnswerT], body: bytes) -> _AnswerT:
    """The answer, checked for `status: success` and data (the envelope every API answer shares)."""
    try:
        answer = decoder.decode(body)
    except msgspec.DecodeError as invalid:
        raise PrometheusAnswerError(f"not a Prometheus API answer: {invalid}") from None
    if answer.status != "success":
        raise PrometheusQueryError(answer.errorType or "unknown", answer.error or "no error text")
    if answer.data is None:
        raise PrometheusAnswerError("a successful answer without data")
    return answer


def parse_query_answer(body: bytes) -> list[tuple[dict[str, str], float]]:
    """An instant-vector answer as (labels with `__name__`, value); values "NaN", "+Inf", "-Inf" included."""
    data = _decoded_data(_query_decoder, body).data
    assert data is not None  # checked by _decoded_data
    if data.resultType != "vector":
        raise PrometheusAnswerError(f"expected a vector result, got {data.resultType!r}")
    readings: list[tuple[dict[str, str], float]] = []
    for sample in data.result:
        try:
            value = float(sample.value[1])  # Go's formatting: "NaN", "+Inf", "-Inf", "1e+06" all parse
        except ValueError:
            raise PrometheusAnswerError(f"sample value {sample.value[1]!r} is not a number") from None
        readings.append((sample.metric, value))
    return readings


def parse_series_answer(body: bytes) -> list[dict[str, str]]:
    """A `/api/v1/series` answer: the label sets present (with `__name__`)."""
    data = _decoded_data(_series_decoder, body).data
    assert data is not None  # checked by _decoded_data
    return data


@dataclass(frozen=True, slots=True)
class PrometheusReading:
    page: MetricsPage
    #: Unix time of the scrape the readings come from (None when the answer did not say).
    scraped_at: float | None


def page_from_vector(readings: list[tuple[dict[str, str], float]], matcher_labels: frozenset[str]) -> PrometheusReading:
    """The readings as the page a scrape of the server would have produced, without Prometheus's labels.

    Raises `MoreThanOneServerError` when the readings come from more than one target: two `up`
    series, or two series equal once the target labels are gone.
    """
    targets = [metric for metric, _ in readings if metric.get("__name__") == TARGET_HEALTH_METRIC]
    if len(targets) > 1:
        described = ", ".join(sorted(f"{t.get('job', '')}/{t.get('instance', '')}" for t in targets))
        raise MoreThanOneServerError(f"the match selects {len(targets)} scrape targets ({described}), not one server")
    # The target's own labels when Prometheus says which they are; else the usual ones and the matchers'.
    dropped = {"__name__"} | (set(targets[0]) if targets else PROMETHEUS_TARGET_LABELS | matcher_labels)
    page = MetricsPage()
    scraped_at: float | None = None
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for metric, value in readings:
        name = metric.get("__name__")
        if metric.get(SCRAPED_AT_LABEL[0]) == SCRAPED_AT_LABEL[1]:
            scraped_at = value if math.isfinite(value) else None
            continue
        if name is None or name == TARGET_HEALTH_METRIC:
            continue
        labels = {key: text for key, text in metric.items() if key not in dropped}
        identity = (name, tuple(sorted(labels.items())))
        if identity in seen:
            raise MoreThanOneServerError(
                f"{name} with labels {dict(identity[1])} appears twice once the target labels "
                f"({', '.join(sorted(dropped - {'__name__'}))}) are dropped: the match selects more than one server"
            )
        seen.add(identity)
        page.series.setdefault(name, []).append(Sample(name, labels, value))
    return PrometheusReading(page, scraped_at)


def prometheus_headers(pairs: list[str]) -> dict[str, str]:
    """`Header-Name=ENV_VAR` pairs as {header: variable}; raises ValueError naming a malformed pair."""
    headers: dict[str, str] = {}
    for pair in pairs:
        header, separator, variable = pair.partition("=")
        header, variable = header.strip(), variable.strip()
        if not separator or _HEADER_NAME.fullmatch(header) is None or _ENV_NAME.fullmatch(variable) is None:
            raise ValueError(f"{pair!r} is not Header-Name=ENV_VAR")
        headers[header] = variable
    return headers
