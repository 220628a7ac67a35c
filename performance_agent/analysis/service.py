"""The analyze use case (window figures, findings, SLO compliance), between the controller and the repositories.

`evaluate` is shared with the optimizer: both need the same window figures and findings, so a
plan is always built from exactly what `POST /analyze` would have reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from performance_agent.analysis.api import (
    AnalysisResponse,
    AnalysisWindow,
    AnalyzeRequest,
    figures_view,
    slo_analysis,
)
from performance_agent.analysis.detectors import detect_bottlenecks, summarize
from performance_agent.analysis.slo import evaluate_slo_timeline
from performance_agent.analysis.slo_history import SloHistory
from performance_agent.analysis.window import decode_scrape_figures, models_seen, timeline, window_figures
from performance_agent.analysis.window_history import WindowHistory
from performance_agent.clock import utc_now
from performance_agent.errors import ConflictError, NotFoundError
from performance_agent.fleet.slo import effective_targets
from performance_agent.metrics.goodput import goodput_targets
from performance_agent.metrics.scraper import ScrapeFailure
from performance_agent.metrics.snapshot import InstanceSnapshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.analysis.api import TargetsSource
    from performance_agent.analysis.schemas import DetectionReport, WindowFigures
    from performance_agent.analysis.slo_timeline import SloTimeline
    from performance_agent.analysis.thresholds import Thresholds
    from performance_agent.analysis.window import ScrapeFigures, WindowSource
    from performance_agent.fleet.ports import InstanceRepository, StoredInstance
    from performance_agent.fleet.slo import SloTargets, SloTargetsUpdate
    from performance_agent.metrics.collection import CollectionService
    from performance_agent.metrics.ports import SnapshotRepository

__all__ = ("AnalysisService", "Evaluation")


#: More snapshots than any retention holds at the fastest scrape interval (one week at 0.05 s is 12M;
#: realistic: one week at 15 s is 40,320). The period's time line is read in one query.
_HISTORY_LIMIT = 10_000_000
_snapshot_decoder = msgspec.json.Decoder(InstanceSnapshot)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Evaluation:
    """Everything one analysis found out about one instance over one window."""

    instance: StoredInstance
    analyzed_at: datetime
    window_minutes: int
    model_name: str | None
    figures: WindowFigures
    source: WindowSource
    detection: DetectionReport
    #: Each scrape's own window since the analysis window's start, oldest first.
    timeline: list[WindowFigures]
    #: Every scrape window of the SLO period, in the columns the SLO math reads.
    slo_timeline: SloTimeline
    latest: InstanceSnapshot
    collected_now: bool
    #: The targets the SLO report and goodput are measured against, and where they came from.
    targets: SloTargets
    targets_source: TargetsSource


class AnalysisService:
    def __init__(
        self,
        *,
        instances: InstanceRepository,
        snapshots: SnapshotRepository,
        collection: CollectionService,
        thresholds: Thresholds,
        slo_defaults: SloTargets,
        period_s: float,
        scrape_timeout_s: float,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._instances = instances
        self._snapshots = snapshots
        self._collection = collection
        self._thresholds = thresholds
        self._defaults = slo_defaults
        self._period_s = period_s
        self._timeout_s = scrape_timeout_s
        self._clock = clock if clock is not None else utc_now
        # Decoded history, kept between requests: the service is built once per app, so the
        # caches live exactly as long as the agent (see `slo_history` and `window_history`).
        self._slo_history = SloHistory()
        self._window_history = WindowHistory()

    @property
    def defaults(self) -> SloTargets:
        return self._defaults

    async def _require(self, instance_id: str) -> StoredInstance:
        stored = await self._instances.get(instance_id)
        if stored is None:
            raise NotFoundError(f"No instance {instance_id!r} is registered.", context={"instance_id": instance_id})
        return stored

    async def evaluate(
        self,
        instance_id: str,
        *,
        window_minutes: int,
        model_name: str | None = None,
        slo: SloTargetsUpdate | None = None,
    ) -> Evaluation:
        """Figures and findings of the instance over the last `window_minutes` (404 unknown, 409 no data).

        `slo` overrides the instance's targets (goodput is measured against the result).
        """
        stored = await self._require(instance_id)
        targets, stored_source = effective_targets(stored, self._defaults)
        targets_source: TargetsSource = stored_source
        if slo is not None:
            targets, targets_source = slo.over(targets), "request"
        latency_targets = goodput_targets(targets)
        collected_now = False
        scrape_error: str | None = None
        if not await self._snapshots.history_json(instance_id, _EPOCH, 1):  # cheaper than counting them all
            try:
                await self._collection.scrape(stored, timeout_s=self._timeout_s)
                collected_now = True
            except ScrapeFailure as failure:
                scrape_error = failure.reason
        now = self._clock()
        window_start = now - timedelta(minutes=window_minutes)
        period_start = min(now - timedelta(seconds=self._period_s), window_start)
        documents = await self._snapshots.history_json(instance_id, window_start, _HISTORY_LIMIT)
        recent = [decode_scrape_figures(document) for document in documents]
        in_window = [s for s in recent if window_start <= s.collected_at <= now]
        scrape_window = await self._window_history.window(
            self._snapshots, instance_id, stored.created_at, window_start, now, model_name, latency_targets
        )
        engine = stored.spec.engine
        computed = window_figures(
            scrape_window.raws,
            in_window,
            engine=engine,
            model_name=model_name,
            aggregated=scrape_window.aggregated,
            goodput_targets=latency_targets,
        )
        if computed is None:
            period = await self._snapshots.history_json(instance_id, period_start, _HISTORY_LIMIT)
            scrapes = [decode_scrape_figures(document) for document in period]
            raise self._insufficient(instance_id, window_minutes, model_name, in_window, scrapes, scrape_error)
        figures, source = computed
        newest = next(i for i, s in enumerate(recent) if window_start <= s.collected_at <= now)  # newest first
        return Evaluation(
            instance=stored,
            analyzed_at=now,
            window_minutes=window_minutes,
            model_name=model_name,
            figures=figures,
            source=source,
            detection=detect_bottlenecks(figures, self._thresholds),
            timeline=timeline(recent, engine, model_name),
            slo_timeline=await self._slo_history.timeline(
                self._snapshots, instance_id, stored.created_at, period_start, model_name
            ),
            latest=_snapshot_decoder.decode(documents[newest]),
            collected_now=collected_now,
            targets=targets,
            targets_source=targets_source,
        )

    @staticmethod
    def _insufficient(
        instance_id: str,
        window_minutes: int,
        model_name: str | None,
        in_window: list[ScrapeFigures],
        scrapes: list[ScrapeFigures],
        scrape_error: str | None,
    ) -> ConflictError:
        context: dict[str, object] = {
            "instance_id": instance_id,
            "window_minutes": window_minutes,
            "scrapes_in_window": len(in_window),
        }
        if scrape_error is not None:
            context["scrape_error"] = scrape_error
            message = f"Instance {instance_id!r} has no history and collecting now failed ({scrape_error})."
        elif model_name is not None and in_window:
            context["model_name"] = model_name
            context["available_models"] = models_seen(scrapes)
            message = f"No scrape in the last {window_minutes} minutes shows model {model_name!r}."
        else:
            message = f"No scrape of {instance_id!r} in the last {window_minutes} minutes; widen the window."
        return ConflictError(message, error="insufficient_data", context=context)

    async def analyze(self, body: AnalyzeRequest) -> AnalysisResponse:
        evaluation = await self.evaluate(
            body.instance_id, window_minutes=body.window_minutes, model_name=body.model_name, slo=body.slo
        )
        targets, targets_source = evaluation.targets, evaluation.targets_source
        report = evaluate_slo_timeline(
            evaluation.slo_timeline,
            targets,
            compliance_window_s=body.window_minutes * 60.0,
            period_s=self._period_s,
            now=evaluation.analyzed_at,
            current=evaluation.figures,
        )
        figures, source = evaluation.figures, evaluation.source
        return AnalysisResponse(
            instance_id=body.instance_id,
            engine=evaluation.instance.spec.engine,
            analyzed_at=evaluation.analyzed_at,
            window=AnalysisWindow(
                minutes=body.window_minutes,
                start=source.start,
                end=source.end,
                duration_s=figures.window_s,
                scrapes=source.scrapes,
                source="history" if source.kind == "history" else "single_scrape",
                model_name=body.model_name,
                collected_now=evaluation.collected_now,
                figures=figures_view(figures),
                not_evaluated=evaluation.detection.not_evaluated,
            ),
            bottlenecks=evaluation.detection.findings,
            slo=slo_analysis(report, targets, targets_source),
            summary=summarize(evaluation.detection),
        )
