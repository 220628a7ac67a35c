"""Instances, collect and history endpoints. Thin: parse, call `InstanceService`, shape the answer.

Invalid instance ids are a 422 `validation_error` everywhere, in bodies and in paths alike
(`path.instance_id`), so a client can tell "malformed id" from "unknown id" (404).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, post, put
from litestar.enums import MediaType
from litestar.params import PathParameter, QueryParameter

from performance_agent.context import AgentDependency
from performance_agent.errors import error_responses
from performance_agent.fleet.instances import InstanceService
from performance_agent.fleet.schemas import (
    ENGINE_PATTERN,
    INSTANCE_ID_PATTERN,
    CollectRequest,
    Instance,
    InstanceCreate,
    InstanceReplace,
    InstanceStatus,
)
from performance_agent.metrics import examples
from performance_agent.metrics.snapshot import InstanceSnapshot
from performance_agent.openapi_spec import example_body, responses
from performance_agent.security import Role

__all__ = ("CollectController", "HistoryController", "InstancesController")

_WRITE = {"role": Role.operator}

InstanceIdPath = Annotated[
    str,
    PathParameter(
        pattern=INSTANCE_ID_PATTERN,
        max_length=128,
        description="Letters, digits, `.`, `_` and `-`; 1 to 128 characters.",
    ),
]
EnginePath = Annotated[str, PathParameter(pattern=ENGINE_PATTERN, description="The engine the server runs.")]


class InstancesController(Controller):
    path = "/api/v1/instances"
    tags = ["Instances"]

    @post(
        "/",
        opt=_WRITE,
        status_code=201,
        operation_id="RegisterInstance",
        summary="Register an inference server",
        responses=responses(201, Instance, examples.INSTANCE, "Registered", 403, 409, 422),
    )
    async def register(
        self,
        agent: AgentDependency,
        data: Annotated[InstanceCreate, example_body("Register a vLLM server", examples.INSTANCE_CREATE)],
    ) -> Instance:
        """Add a server to the registry; the background collector scrapes it from then on.

        The endpoint must pass the scrape-target guard (403 `target_not_allowed`); a known id is
        a 409 `instance_exists` (use PUT to replace it).
        """
        return await InstanceService.of(agent).register(data)

    @get(
        "/",
        operation_id="ListInstances",
        summary="Registered instances with their scrape status",
        responses=responses(200, list[Instance], [examples.INSTANCE], "Registered instances", 422),
    )
    async def list_instances(
        self,
        agent: AgentDependency,
        engine: Annotated[str | None, QueryParameter(pattern=ENGINE_PATTERN, description="Only this engine.")] = None,
        status: Annotated[
            InstanceStatus | None, QueryParameter(description="Only instances whose last scrape had this outcome.")
        ] = None,
        label: Annotated[
            list[str] | None,
            QueryParameter(description="`key=value`; repeat for several labels (all must match)."),
        ] = None,
    ) -> list[Instance]:
        """Every registered instance (ordered by id) with status, last_seen and last_error."""
        return await InstanceService.of(agent).list(engine=engine, status=status, labels=label)

    @get(
        "/{instance_id:str}",
        operation_id="GetInstance",
        summary="One registered instance",
        responses=responses(200, Instance, examples.INSTANCE, "The instance", 404, 422),
    )
    async def get_instance(self, agent: AgentDependency, instance_id: InstanceIdPath) -> Instance:
        """The instance's registration and the outcome of its last scrape."""
        return await InstanceService.of(agent).get(instance_id)

    @put(
        "/{instance_id:str}",
        opt=_WRITE,
        operation_id="ReplaceInstance",
        summary="Replace an instance's registration",
        responses=responses(200, Instance, examples.INSTANCE, "Replaced", 404, 422),
    )
    async def replace(
        self,
        agent: AgentDependency,
        instance_id: InstanceIdPath,
        data: Annotated[InstanceReplace, example_body("Replace the registration", examples.INSTANCE_REPLACE)],
    ) -> Instance:
        """Replace every registered field (omitted optional fields return to their defaults).

        The scrape status and history are kept. Literal header values must be sent again: GET
        shows them as `REDACTED`.
        """
        return await InstanceService.of(agent).replace(instance_id, data)

    @delete(
        "/{instance_id:str}",
        opt=_WRITE,
        operation_id="DeleteInstance",
        summary="Remove an instance and its history",
        responses=error_responses(404, 409, 422),
    )
    async def delete_instance(self, agent: AgentDependency, instance_id: InstanceIdPath) -> None:
        """Remove the instance and every stored snapshot of it (204).

        409 `workflow_conflict` while the instance takes part in an active rollout workflow.
        """
        await InstanceService.of(agent).delete(instance_id)


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
        agent: AgentDependency,
        engine: EnginePath,
        data: Annotated[CollectRequest, example_body("Scrape an SGLang server", examples.COLLECT_REQUEST)],
    ) -> InstanceSnapshot:
        """Fetch `endpoint + metrics_path`, normalize it, upsert the instance and store the snapshot.

        Failures store no snapshot but record `last_error` on the instance: 403
        `target_not_allowed`, 502 `upstream_unreachable` / `upstream_error` (with `upstream_status`)
        / `upstream_invalid_metrics`, 504 `upstream_timeout`, 422 `engine_mismatch` (with
        `detected_engine`, or `registered_engine` when the id is registered under another engine).
        """
        return await InstanceService.of(agent).collect(engine, data)


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
        agent: AgentDependency,
        instance_id: InstanceIdPath,
        hours: Annotated[int, QueryParameter(ge=1, le=720, description="How far back to look.")] = 24,
        limit: Annotated[int, QueryParameter(ge=1, le=10000, description="At most this many snapshots.")] = 100,
    ) -> Response[bytes]:
        """A JSON array of stored snapshots (the same shape `POST /collect` returns)."""
        body = await InstanceService.of(agent).history(instance_id, hours=hours, limit=limit)
        return Response(content=body, media_type=MediaType.JSON)
