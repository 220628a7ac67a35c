"""Burn-rate alert state changes and the Alertmanager webhook payload, as pure functions.

The caller stores the states and sends the payload; time comes in as `now`, so firing and
resolving are testable without a clock. An alert whose burn rates are unknown (no data)
keeps its previous state: missing data neither fires nor resolves it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from performance_agent.analysis.schemas import AlertEvaluation, AlertEvent, AlertState, SloReport
from performance_agent.analysis.slo import BURN_RATE_PAIRS, BurnRatePair, format_lookback

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = (
    "ALERT_NAME",
    "AlertmanagerAlert",
    "AlertmanagerPayload",
    "PostableAlert",
    "alert_fingerprint",
    "alertmanager_payload",
    "evaluate_alerts",
    "postable_alert",
    "resolve_unmonitored",
)

ALERT_NAME = "PerformanceAgentSLOBurnRate"
_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager sends as endsAt of a firing alert


def alert_fingerprint(labels: Mapping[str, str]) -> str:
    """Stable 16-hex-digit identity of a label set (Alertmanager fingerprints are 64-bit, shown as hex)."""
    canonical = "\x00".join(f"{key}\x00{labels[key]}" for key in sorted(labels))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _labels(instance_id: str, objective: str, pair: BurnRatePair) -> dict[str, str]:
    return {
        "alertname": ALERT_NAME,
        "instance_id": instance_id,
        "objective": objective,
        "long_window": format_lookback(pair.long_s),
        "short_window": format_lookback(pair.short_s),
        "severity": "page",
    }


def evaluate_alerts(
    instance_id: str,
    report: SloReport,
    previous: Sequence[AlertState],
    now: datetime,
    pairs: Sequence[BurnRatePair] = BURN_RATE_PAIRS,
) -> AlertEvaluation:
    """New alert states for one instance and the fire/resolve events that lead to them.

    `previous` holds the instance's stored states (firing and resolved); states of other
    instances are passed through unchanged.
    """
    known = {(s.instance_id, s.objective, s.pair): s for s in previous}
    states: dict[tuple[str, str, str], AlertState] = dict(known)
    events: list[AlertEvent] = []
    for objective in report.objectives:
        for pair in pairs:
            key = (instance_id, objective.objective, pair.name)
            long_rate = objective.burn_rates.get(format_lookback(pair.long_s))
            short_rate = objective.burn_rates.get(format_lookback(pair.short_s))
            if long_rate is None or short_rate is None or long_rate.value is None or short_rate.value is None:
                continue
            burning = long_rate.value >= pair.factor and short_rate.value >= pair.factor
            before = known.get(key)
            was_firing = before is not None and before.state == "firing"
            annotations = {
                "summary": f"{objective.objective} burns its error budget on {instance_id}",
                "description": (
                    f"Burn rate {long_rate.value:.2f}x over {format_lookback(pair.long_s)} and "
                    f"{short_rate.value:.2f}x over {format_lookback(pair.short_s)} "
                    f"(threshold {pair.factor:g}x; target {objective.comparison} {objective.target:g})."
                ),
            }
            if burning and not was_firing:
                labels = _labels(instance_id, objective.objective, pair)
                state = AlertState(
                    instance_id=instance_id,
                    objective=objective.objective,
                    pair=pair.name,
                    state="firing",
                    started_at=now,
                    factor=pair.factor,
                    burn_rate_long=long_rate.value,
                    burn_rate_short=short_rate.value,
                    labels=labels,
                    annotations=annotations,
                    fingerprint=alert_fingerprint(labels),
                )
                events.append(AlertEvent(kind="fire", at=now, alert=state))
            elif before is not None and was_firing:
                state = msgspec.structs.replace(
                    before,
                    burn_rate_long=long_rate.value,
                    burn_rate_short=short_rate.value,
                    annotations=annotations,
                )
                if not burning:
                    state = msgspec.structs.replace(state, state="resolved", ended_at=now)
                    events.append(AlertEvent(kind="resolve", at=now, alert=state))
            else:
                continue
            states[key] = state
    return AlertEvaluation(states=list(states.values()), events=events)


def resolve_unmonitored(firing: Sequence[AlertState], now: datetime, reason: str) -> list[AlertEvent]:
    """Resolve events for firing alerts of an instance the agent stopped monitoring (deleted).

    Why resolve rather than leave them: nothing would ever evaluate them again, so they would
    fire forever on `/metrics` and at the receiver. `reason` replaces the burn-rate description
    (the last burn rates are kept). An episode never ends before it started, even when `now`
    comes from a clock behind the one that fired it.
    """
    events: list[AlertEvent] = []
    for alert in firing:
        if alert.state != "firing":
            continue
        ended_at = max(now, alert.started_at)
        resolved = msgspec.structs.replace(
            alert, state="resolved", ended_at=ended_at, annotations={**alert.annotations, "description": reason}
        )
        events.append(AlertEvent(kind="resolve", at=ended_at, alert=resolved))
    return events


class AlertmanagerAlert(msgspec.Struct, kw_only=True):
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str = msgspec.field(name="startsAt")
    ends_at: str = msgspec.field(name="endsAt")
    generator_url: str = msgspec.field(name="generatorURL")
    fingerprint: str


class AlertmanagerPayload(msgspec.Struct, kw_only=True):
    """Alertmanager webhook body, version 4, so existing receivers accept it unchanged."""

    version: str
    group_key: str = msgspec.field(name="groupKey")
    truncated_alerts: int = msgspec.field(name="truncatedAlerts")
    status: str
    receiver: str
    group_labels: dict[str, str] = msgspec.field(name="groupLabels")
    common_labels: dict[str, str] = msgspec.field(name="commonLabels")
    common_annotations: dict[str, str] = msgspec.field(name="commonAnnotations")
    external_url: str = msgspec.field(name="externalURL")
    alerts: list[AlertmanagerAlert]


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("alert timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in maps[1:])}


def alertmanager_payload(
    alerts: Sequence[AlertState],
    *,
    receiver: str,
    external_url: str,
    group_by: Sequence[str] = ("alertname", "instance_id"),
    generator_url: str = "",
) -> AlertmanagerPayload:
    """Group `alerts` into one notification; group labels are the `group_by` labels all alerts share."""
    if not alerts:
        raise ValueError("an Alertmanager notification carries at least one alert")
    common_labels = _common([a.labels for a in alerts])
    group_labels = {k: common_labels[k] for k in group_by if k in common_labels}
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items())) + "}"
    return AlertmanagerPayload(
        version="4",
        group_key=group_key,
        truncated_alerts=0,
        status="firing" if any(a.state == "firing" for a in alerts) else "resolved",
        receiver=receiver,
        group_labels=group_labels,
        common_labels=common_labels,
        common_annotations=_common([a.annotations for a in alerts]),
        external_url=external_url,
        alerts=[
            AlertmanagerAlert(
                status=a.state,
                labels=dict(a.labels),
                annotations=dict(a.annotations),
                starts_at=_rfc3339(a.started_at),
                ends_at=_rfc3339(a.ended_at) if a.ended_at is not None else _ZERO_TIME,
                generator_url=generator_url,
                fingerprint=a.fingerprint,
            )
            for a in alerts
        ],
    )


class PostableAlert(msgspec.Struct, kw_only=True):
    """One alert as Alertmanager's `POST /api/v2/alerts` takes it (its `postableAlert` schema)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str = msgspec.field(name="startsAt")
    ends_at: str = msgspec.field(name="endsAt")
    generator_url: str = msgspec.field(name="generatorURL")


def postable_alert(alert: AlertState, now: datetime, valid_for_s: float, generator_url: str) -> PostableAlert:
    """The alert for Alertmanager: a firing one ends `valid_for_s` after `now` unless sent again, a resolved one
    ends when it resolved (Alertmanager resolves it at once when that is past)."""
    if alert.state == "firing" or alert.ended_at is None:
        ends_at = now + timedelta(seconds=valid_for_s)
    else:
        ends_at = alert.ended_at
    return PostableAlert(
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        starts_at=_rfc3339(alert.started_at),
        ends_at=_rfc3339(ends_at),
        generator_url=generator_url,
    )
