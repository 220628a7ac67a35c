"""The collect and history use cases: scrape one server now, read what was stored.

Here rather than in the registry because both are about readings; they still write through the
registry's rules (`InstanceService.check_spec`), so `POST /collect` refuses exactly what
`POST /instances` refuses.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from performance_agent.clock import utc_now
from performance_agent.errors import (
    ApiError,
    ErrorDetail,
    ForbiddenError,
    RequestValidationError,
    UnprocessableError,
    UpstreamError,
)
from performance_agent.fleet.schemas import InstanceSpec
from performance_agent.metrics.scraper import ScrapeFailure

if TYPE_CHECKING:
    from collections.abc import Callable

    from performance_agent.fleet.instances import InstanceService
    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.fleet.schemas import CollectRequest
    from performance_agent.metrics.collection import CollectionService
    from performance_agent.metrics.ports import SnapshotRepository
    from performance_agent.metrics.snapshot import InstanceSnapshot

__all__ = ("CollectService", "scrape_failure_to_api_error")


def scrape_failure_to_api_error(failure: ScrapeFailure) -> ApiError:
    context: dict[str, object] = dict(failure.context)
    if failure.upstream_status is not None:
        context["upstream_status"] = failure.upstream_status
    reason = failure.reason
    if reason == "target_not_allowed":
        return ForbiddenError(failure.message, error=reason, context=context)
    if reason == "upstream_timeout":
        return UpstreamError(failure.message, error=reason, status_code=504, context=context)
    if reason in ("upstream_unreachable", "upstream_error", "upstream_invalid_metrics"):
        return UpstreamError(failure.message, error=reason, context=context)
    if reason in ("engine_mismatch", "scrape_config_invalid"):
        return UnprocessableError(failure.message, error=reason, context=context)
    return ApiError(failure.message, context=context)


class CollectService:
    def __init__(
        self,
        *,
        fleet: InstanceService,
        instances: InstanceRepository,
        snapshots: SnapshotRepository,
        collection: CollectionService,
        default_timeout_s: float,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._fleet = fleet
        self._instances = instances
        self._snapshots = snapshots
        self._collection = collection
        self._default_timeout_s = default_timeout_s
        self._clock = clock if clock is not None else utc_now

    async def collect(self, engine: str, body: CollectRequest) -> InstanceSnapshot:
        existing = await self._instances.get(body.instance_id)
        if existing is not None and existing.spec.engine != engine:
            raise UnprocessableError(
                f"Instance {body.instance_id!r} is registered as {existing.spec.engine}, not {engine}.",
                error="engine_mismatch",
                context={"registered_engine": existing.spec.engine, "requested_engine": engine},
            )
        if body.endpoint is msgspec.UNSET and (existing is None or existing.spec.source != "prometheus"):
            raise RequestValidationError(
                "endpoint is required unless the instance is registered with source prometheus.",
                [ErrorDetail(field="body.endpoint", message="required", type="missing")],
            )
        base = existing.spec if existing is not None else InstanceSpec(engine=engine)
        changes: dict[str, object] = {"engine": engine}
        for name in ("endpoint", "metrics_path", "headers", "tls_verify", "ca_bundle"):
            value = getattr(body, name)
            if value is not msgspec.UNSET:
                changes[name] = value
        spec = msgspec.structs.replace(base, **changes)
        await self._fleet.check_spec(spec)
        stored, _ = await self._instances.upsert(body.instance_id, spec, self._clock())
        timeout_s = body.timeout_s if body.timeout_s is not msgspec.UNSET else self._default_timeout_s
        try:
            return await self._collection.scrape(stored, timeout_s=timeout_s)
        except ScrapeFailure as failure:
            raise scrape_failure_to_api_error(failure) from None

    async def history(self, instance_id: str, *, hours: int, limit: int) -> bytes:
        """Stored snapshots as one JSON array, newest first, joined without re-encoding."""
        await self._fleet.require(instance_id)
        since = self._clock() - timedelta(hours=hours)
        rows = await self._snapshots.history_json(instance_id, since, limit)
        return b"[" + b",".join(rows) + b"]"
