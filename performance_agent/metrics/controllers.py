"""Collect and history endpoints. Thin: parse, call `CollectService`, shape the answer."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import PathParameter, QueryParameter, SkipValidation

from performance_agent.fleet.controllers import InstanceIdPath
from performance_agent.fleet.schemas import ENGINE_PATTERN, CollectRequest
from performance_agent.metrics import examples
from performance_agent.metrics.service import CollectService
from performance_agent.metrics.snapshot import InstanceSnapshot
from performance_agent.openapi_spec import example_body, responses
from performance_agent.security import Role

__all__ = ("CollectController", "CollectDependency", "HistoryController")

_WRITE = {"role": Role.operator}

#: How handlers receive the app's one `CollectService` (built by the composition root).
CollectDependency = NamedDependency[SkipValidation[CollectService]]

EnginePath = Annotated[str, PathParameter(pattern=ENGINE_PATTERN, description="The engine the server runs.")]


class CollectController(Controller):
    path = "/api/v1/collect"
    tags = ["Metrics"]

    @post(
        "/{engine:str}",
        opt=_WRITE,
        status_code=200,
        operation_id="CollectMetrics",
        summary="Scrape one server now and store its snapshot",
        responses=responses(200, InstanceSnapshot, examples.SNAPSHOT, "The stored snapshot", 403, 422, 502, 504),
    )
    async def collect(
        self,
        collect_service: CollectDependency,
        engine: EnginePath,
        data: Annotated[CollectRequest, example_body("Scrape an SGLang server", examples.COLLECT_REQUEST)],
    ) -> InstanceSnapshot:
        """Fetch `endpoint + metrics_path`, normalize it, upsert the instance and store the snapshot.

        Failures store no snapshot but record `last_error` on the instance: 403
        `target_not_allowed`, 502 `upstream_unreachable` / `upstream_error` (with `upstream_status`)
        / `upstream_invalid_metrics`, 504 `upstream_timeout`, 422 `engine_mismatch` (with
        `detected_engine`, or `registered_engine` when the id is registered under another engine).
        """
        return await collect_service.collect(engine, data)


class HistoryController(Controller):
    path = "/api/v1/history"
    tags = ["Metrics"]

    @get(
        "/{instance_id:str}",
        operation_id="GetHistory",
        summary="Stored snapshots of one instance, newest first",
        responses=responses(
            200,
            list[InstanceSnapshot],
            [examples.SNAPSHOT],
            "Snapshots collected within the last `hours`, newest first, at most `limit`.",
            404,
            422,
        ),
    )
    async def history(
        self,
        collect_service: CollectDependency,
        instance_id: InstanceIdPath,
        hours: Annotated[int, QueryParameter(ge=1, le=720, description="How far back to look.")] = 24,
        limit: Annotated[int, QueryParameter(ge=1, le=10000, description="At most this many snapshots.")] = 100,
    ) -> Response[bytes]:
        """A JSON array of stored snapshots (the same shape `POST /collect` returns)."""
        body = await collect_service.history(instance_id, hours=hours, limit=limit)
        return Response(content=body, media_type=MediaType.JSON)
