"""Instances and SLO-target endpoints. Thin: parse, call `InstanceService`, shape the answer.

Invalid instance ids are a 422 `validation_error` everywhere, in bodies and in paths alike
(`path.instance_id`), so a client can tell "malformed id" from "unknown id" (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter, SkipValidation

from performance_agent.errors import ForbiddenError, error_responses
from performance_agent.fleet import examples
from performance_agent.fleet.instances import InstanceService
from performance_agent.fleet.schemas import (
    ENGINE_PATTERN,
    INSTANCE_ID_PATTERN,
    Instance,
    InstanceCreate,
    InstanceReplace,
    InstanceStatus,
)
from performance_agent.fleet.slo import SloTargetsUpdate
from performance_agent.openapi_spec import example_body, responses
from performance_agent.security import ApiKeyRing, KeyRingDependency, Role, principal_of

__all__ = ("FleetDependency", "InstanceIdPath", "InstancesController", "SloController")

_WRITE = {"role": Role.operator}

#: How handlers receive the app's one `InstanceService` (built by the composition root).
#: `SkipValidation`: Litestar would otherwise run the service through msgspec on every request.
FleetDependency = NamedDependency[SkipValidation[InstanceService]]

InstanceIdPath = Annotated[
    str,
    PathParameter(
        pattern=INSTANCE_ID_PATTERN,
        max_length=128,
        description="Letters, digits, `.`, `_` and `-`; 1 to 128 characters; not `.` nor `..`.",
    ),
]


def _admin_name(request: Request[Any, Any, Any], key_ring: ApiKeyRing) -> str:
    """The caller's key name when it is an admin's; without keys the API is open and the caller anonymous."""
    if not key_ring.enabled:
        return "anonymous"
    principal = principal_of(request.scope, key_ring)
    if principal is None or principal.role < Role.admin:
        role = principal.role.name if principal is not None else "none"
        raise ForbiddenError(
            f"force=true needs the admin role; this key has {role}.",
            context={"required_role": Role.admin.name, "role": role},
        )
    return principal.name


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
        fleet: FleetDependency,
        data: Annotated[InstanceCreate, example_body("Register a vLLM server", examples.INSTANCE_CREATE)],
    ) -> Instance:
        """Add a server to the registry; the background collector scrapes it from then on.

        The endpoint must pass the scrape-target guard (403 `target_not_allowed`); a known id is
        a 409 `instance_exists` (use PUT to replace it).
        """
        return await fleet.register(data)

    @get(
        "/",
        operation_id="ListInstances",
        summary="Registered instances with their scrape status",
        responses=responses(200, list[Instance], [examples.INSTANCE], "Registered instances", 422),
    )
    async def list_instances(
        self,
        fleet: FleetDependency,
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
        return await fleet.list(engine=engine, status=status, labels=label)

    @get(
        "/{instance_id:str}",
        operation_id="GetInstance",
        summary="One registered instance",
        responses=responses(200, Instance, examples.INSTANCE, "The instance", 404, 422),
    )
    async def get_instance(self, fleet: FleetDependency, instance_id: InstanceIdPath) -> Instance:
        """The instance's registration and the outcome of its last scrape."""
        return await fleet.get(instance_id)

    @put(
        "/{instance_id:str}",
        opt=_WRITE,
        operation_id="ReplaceInstance",
        summary="Replace an instance's registration",
        responses=responses(200, Instance, examples.INSTANCE, "Replaced", 404, 422),
    )
    async def replace(
        self,
        fleet: FleetDependency,
        instance_id: InstanceIdPath,
        data: Annotated[InstanceReplace, example_body("Replace the registration", examples.INSTANCE_REPLACE)],
    ) -> Instance:
        """Replace every registered field (omitted optional fields return to their defaults).

        The scrape status and history are kept. Literal header values must be sent again: GET
        shows them as `REDACTED`.
        """
        return await fleet.replace(instance_id, data)

    @delete(
        "/{instance_id:str}",
        opt=_WRITE,
        operation_id="DeleteInstance",
        summary="Remove an instance and its history",
        responses=error_responses(403, 404, 409, 422),
    )
    async def delete_instance(
        self,
        request: Request[Any, Any, Any],
        fleet: FleetDependency,
        key_ring: KeyRingDependency,
        instance_id: InstanceIdPath,
        force: Annotated[
            bool,
            QueryParameter(
                description="Admin only, last resort: release the instance from its active workflow first "
                "(recorded in that workflow's audit trail)."
            ),
        ] = False,
    ) -> None:
        """Remove the instance and every stored snapshot of it (204).

        409 `workflow_conflict` while the instance takes part in an active rollout workflow, unless
        an admin passes `force=true` (403 for any other role).
        """
        force_by = _admin_name(request, key_ring) if force else None
        await fleet.delete(instance_id, force_by=force_by)


class SloController(Controller):
    path = "/api/v1/instances"
    tags = ["Analysis"]

    @put(
        "/{instance_id:str}/slo",
        opt=_WRITE,
        operation_id="ReplaceInstanceSlo",
        summary="Replace an instance's SLO targets",
        responses=responses(200, Instance, examples.INSTANCE_WITH_SLO, "The instance with its new targets.", 404, 422),
    )
    async def replace_slo(
        self,
        fleet: FleetDependency,
        instance_id: InstanceIdPath,
        data: Annotated[SloTargetsUpdate, example_body("Stricter latency targets", examples.SLO_UPDATE)],
    ) -> Instance:
        """Replace the targets: named ones as given, every other one from the configured defaults.

        Latencies must be positive seconds, `error_rate` and `target_ratio` fractions in (0, 1];
        anything else is a 422 naming the field (`body.ttft_p99_s`). `GET /instances/{id}`
        shows the stored targets; analyses and background alerts use them from the next scrape.
        """
        return await fleet.replace_slo(instance_id, data)
