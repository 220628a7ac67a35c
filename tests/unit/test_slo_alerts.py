"""Burn-rate alerts fire and resolve with timestamps; the webhook payload has Alertmanager's shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from performance_agent.analysis.alerts import (
    ALERT_NAME,
    alert_fingerprint,
    alertmanager_payload,
    evaluate_alerts,
    postable_alert,
)
from performance_agent.analysis.schemas import AlertState, BurnRate, ObjectiveReport, SloReport
from performance_agent.analysis.slo import evaluate_slo
from performance_agent.fleet.slo import SloTargets
from tests.unit.test_slo import NOW, minute_windows

SEVEN_HOURS = 7 * 60


def report_with_bad_minutes(bad: set[int], now: datetime = NOW) -> SloReport:
    return evaluate_slo(
        minute_windows(SEVEN_HOURS, bad=bad), SloTargets(), compliance_window_s=900, period_s=7 * 24 * 3600.0, now=now
    )


LAST_HOUR_BAD = set(range(SEVEN_HOURS - 60, SEVEN_HOURS))


def test_a_bad_last_hour_fires_both_pairs_for_that_objective_only() -> None:
    evaluation = evaluate_alerts("i-1", report_with_bad_minutes(LAST_HOUR_BAD), [], NOW)

    fired = sorted((e.alert.objective, e.alert.pair) for e in evaluation.events)
    assert fired == [("ttft_p99_s", "1h/5m"), ("ttft_p99_s", "6h/30m")]
    assert all(e.kind == "fire" and e.at == NOW for e in evaluation.events)
    fast = next(s for s in evaluation.states if s.pair == "1h/5m")
    assert fast.state == "firing"
    assert fast.started_at == NOW
    assert fast.ended_at is None
    assert fast.burn_rate_long == pytest.approx(100.0)  # every minute bad: 1 / 0.01
    assert fast.burn_rate_short == pytest.approx(100.0)
    slow = next(s for s in evaluation.states if s.pair == "6h/30m")
    assert slow.burn_rate_long == pytest.approx((60 / 360) / 0.01)
    assert fast.labels == {
        "alertname": ALERT_NAME,
        "instance_id": "i-1",
        "objective": "ttft_p99_s",
        "long_window": "1h",
        "short_window": "5m",
        "severity": "page",
    }
    assert fast.fingerprint == alert_fingerprint(fast.labels)


def report_with_burn_rates(rates: dict[str, float | None]) -> SloReport:
    burn_rates = {label: BurnRate(lookback_s=seconds, value=rates.get(label)) for label, seconds in LOOKBACKS.items()}
    return SloReport(
        evaluated_at=NOW,
        target_ratio=0.99,
        period_s=3600.0,
        window_start=NOW,
        objectives=[
            ObjectiveReport(
                objective="error_rate",
                target=0.01,
                comparison="<=",
                current=0.2,
                compliance=0.0,
                good_windows=0,
                bad_windows=1,
                windows_without_data=0,
                error_budget_remaining=0.0,
                period_coverage=1.0,
                burn_rates=burn_rates,
            )
        ],
    )


LOOKBACKS = {"5m": 300.0, "30m": 1800.0, "1h": 3600.0, "6h": 21600.0}
BELOW = 1 - 1e-9


@pytest.mark.parametrize(
    ("rates", "fired"),
    [
        ({"1h": 14.4, "5m": 14.4, "6h": 0.0, "30m": 0.0}, ["1h/5m"]),
        ({"1h": 14.4 * BELOW, "5m": 50.0, "6h": 0.0, "30m": 0.0}, []),
        ({"1h": 50.0, "5m": 14.4 * BELOW, "6h": 0.0, "30m": 0.0}, []),
        ({"1h": 0.0, "5m": 0.0, "6h": 6.0, "30m": 6.0}, ["6h/30m"]),
        ({"1h": 0.0, "5m": 0.0, "6h": 6.0 * BELOW, "30m": 6.0}, []),
        ({"1h": 0.0, "5m": 0.0, "6h": 6.0, "30m": 6.0 * BELOW}, []),
        ({"1h": None, "5m": 100.0, "6h": 100.0, "30m": 100.0}, ["6h/30m"]),
    ],
)
def test_both_windows_of_a_pair_must_reach_the_factor(rates: dict[str, float | None], fired: list[str]) -> None:
    evaluation = evaluate_alerts("i-1", report_with_burn_rates(rates), [], NOW)

    assert [e.alert.pair for e in evaluation.events] == fired


def test_a_bad_last_eight_minutes_fire_nothing_yet() -> None:
    # 5m 100x, 1h 8/60 -> 13.3x (< 14.4); 30m 26.7x, 6h 8/360 -> 2.2x (< 6)
    bad = set(range(SEVEN_HOURS - 8, SEVEN_HOURS))

    evaluation = evaluate_alerts("i-1", report_with_bad_minutes(bad), [], NOW)

    assert evaluation.events == []
    assert evaluation.states == []


def test_a_quiet_short_window_resolves_the_fast_alert() -> None:
    fired = evaluate_alerts("i-1", report_with_bad_minutes(LAST_HOUR_BAD), [], NOW)
    later = NOW + timedelta(minutes=5)
    # the bad hour moves back by five minutes; the last five minutes are good
    bad = {i - 5 for i in LAST_HOUR_BAD}

    evaluation = evaluate_alerts("i-1", report_with_bad_minutes(bad, now=NOW), fired.states, later)

    assert [(e.kind, e.alert.pair, e.at) for e in evaluation.events] == [("resolve", "1h/5m", later)]
    states = {s.pair: s for s in evaluation.states}
    assert states["1h/5m"].state == "resolved"
    assert states["1h/5m"].started_at == NOW
    assert states["1h/5m"].ended_at == later
    assert states["1h/5m"].burn_rate_short == 0.0
    assert states["6h/30m"].state == "firing"
    assert states["6h/30m"].started_at == NOW


def test_missing_burn_rates_keep_the_previous_state() -> None:
    fired = evaluate_alerts("i-1", report_with_bad_minutes(LAST_HOUR_BAD), [], NOW)
    short_history = evaluate_slo(minute_windows(3, bad=set()), SloTargets(), compliance_window_s=900, period_s=3600)

    evaluation = evaluate_alerts("i-1", short_history, fired.states, NOW + timedelta(minutes=1))

    assert evaluation.events == []
    assert {(s.pair, s.state) for s in evaluation.states} == {("1h/5m", "firing"), ("6h/30m", "firing")}


def test_a_resolved_alert_fires_again_with_a_new_start() -> None:
    resolved = AlertState(
        instance_id="i-1",
        objective="ttft_p99_s",
        pair="1h/5m",
        state="resolved",
        started_at=NOW - timedelta(hours=3),
        ended_at=NOW - timedelta(hours=2),
        factor=14.4,
    )

    evaluation = evaluate_alerts("i-1", report_with_bad_minutes(LAST_HOUR_BAD), [resolved], NOW)

    again = next(s for s in evaluation.states if s.pair == "1h/5m")
    assert (again.state, again.started_at, again.ended_at) == ("firing", NOW, None)
    assert ("fire", "1h/5m") in {(e.kind, e.alert.pair) for e in evaluation.events}


def test_other_instances_states_pass_through() -> None:
    other = AlertState(
        instance_id="i-2", objective="error_rate", pair="1h/5m", state="firing", started_at=NOW, factor=14.4
    )

    evaluation = evaluate_alerts("i-1", report_with_bad_minutes(set()), [other], NOW)

    assert evaluation.events == []
    assert evaluation.states == [other]


def test_alertmanager_payload_shape() -> None:
    fired = evaluate_alerts("i-1", report_with_bad_minutes(LAST_HOUR_BAD), [], NOW)
    fast, slow = sorted(fired.states, key=lambda s: s.pair)
    ended = NOW + timedelta(minutes=5)
    resolved = msgspec.structs.replace(slow, state="resolved", ended_at=ended)

    payload = alertmanager_payload(
        [fast, resolved], receiver="perf-agent", external_url="http://agent:8000", generator_url="http://agent:8000/x"
    )
    body = msgspec.json.decode(msgspec.json.encode(payload))

    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["receiver"] == "perf-agent"
    assert body["externalURL"] == "http://agent:8000"
    assert body["groupLabels"] == {"alertname": ALERT_NAME, "instance_id": "i-1"}
    assert body["groupKey"] == '{}:{alertname="PerformanceAgentSLOBurnRate", instance_id="i-1"}'
    assert body["commonLabels"] == {
        "alertname": ALERT_NAME,
        "instance_id": "i-1",
        "objective": "ttft_p99_s",
        "severity": "page",
    }
    assert body["commonAnnotations"] == {"summary": "ttft_p99_s burns its error budget on i-1"}
    first, second = body["alerts"]
    assert set(first) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert first["status"] == "firing"
    assert first["startsAt"] == "2026-01-01T12:00:00Z"
    assert first["endsAt"] == "0001-01-01T00:00:00Z"
    assert first["generatorURL"] == "http://agent:8000/x"
    assert second["status"] == "resolved"
    assert second["endsAt"] == "2026-01-01T12:05:00Z"
    assert len(first["fingerprint"]) == 16
    assert first["fingerprint"] != second["fingerprint"]


def test_all_resolved_gives_a_resolved_notification() -> None:
    alert = AlertState(
        instance_id="i-1",
        objective="error_rate",
        pair="1h/5m",
        state="resolved",
        started_at=NOW,
        ended_at=NOW + timedelta(minutes=1),
        factor=14.4,
        labels={"alertname": ALERT_NAME, "instance_id": "i-1"},
    )

    payload = alertmanager_payload([alert], receiver="r", external_url="http://a")

    assert payload.status == "resolved"
    assert payload.alerts[0].ends_at == "2026-01-01T12:01:00Z"


def test_fingerprints_depend_on_every_label_but_not_on_order() -> None:
    assert alert_fingerprint({"a": "1", "b": "2"}) == alert_fingerprint({"b": "2", "a": "1"})
    assert alert_fingerprint({"a": "1", "b": "2"}) != alert_fingerprint({"a": "1", "b": "3"})
    assert alert_fingerprint({"ab": ""}) != alert_fingerprint({"a": "b"})


def test_payload_refuses_empty_groups_and_naive_times() -> None:
    naive = AlertState(
        instance_id="i-1", objective="x", pair="1h/5m", state="firing", started_at=NOW.replace(tzinfo=None), factor=1.0
    )

    with pytest.raises(ValueError, match="at least one alert"):
        alertmanager_payload([], receiver="r", external_url="http://a")
    with pytest.raises(ValueError, match="timezone-aware"):
        alertmanager_payload([naive], receiver="r", external_url="http://a")


def test_utc_is_used_for_timestamps_from_other_zones() -> None:
    plus_two = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    alert = AlertState(instance_id="i", objective="x", pair="1h/5m", state="firing", started_at=plus_two, factor=1.0)

    payload = alertmanager_payload([alert], receiver="r", external_url="http://a")

    assert payload.alerts[0].starts_at == "2026-01-01T12:00:00Z"
    assert plus_two.astimezone(UTC) == NOW


def test_alertmanager_alerts_end_ahead_while_firing_and_when_they_resolved() -> None:
    fired = evaluate_alerts("i-1", report_with_bad_minutes(LAST_HOUR_BAD), [], NOW)
    firing = next(s for s in fired.states if s.pair == "1h/5m")
    resolved = msgspec.structs.replace(firing, state="resolved", ended_at=NOW + timedelta(minutes=3))

    sent = postable_alert(firing, NOW + timedelta(minutes=1), 240.0, "http://agent/api/v1/alerts?instance_id=i-1")
    closed = postable_alert(resolved, NOW + timedelta(minutes=9), 240.0, "g")

    assert msgspec.to_builtins(sent) == {
        "labels": firing.labels,
        "annotations": firing.annotations,
        "startsAt": "2026-01-01T12:00:00Z",
        "endsAt": "2026-01-01T12:05:00Z",
        "generatorURL": "http://agent/api/v1/alerts?instance_id=i-1",
    }
    assert closed.ends_at == "2026-01-01T12:03:00Z"
