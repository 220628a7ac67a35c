"""The instance registry's use cases (register, list, replace, delete), between controllers and repositories.

Endpoints are checked twice on purpose: every rule that needs no DNS when an instance is
registered or changed (so an obviously forbidden URL is refused at once), and the full check,
with resolution, at every scrape (a name can start resolving elsewhere at any time).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import msgspec

from performance_agent.clock import utc_now
from performance_agent.errors import ConflictError, ErrorDetail, ForbiddenError, NotFoundError, RequestValidationError
from performance_agent.fleet.ports import InstanceExistsError, StoredInstance
from performance_agent.fleet.schemas import (
    HEADER_ENV_SETTING,
    REDACTED,
    HeaderFromEnv,
    HeaderValue,
    Instance,
    InstanceCreate,
    InstanceReplace,
    InstanceSource,
    InstanceSpec,
    metrics_url,
)
from performance_agent.fleet.selectors import SelectorError, parse_selector
from performance_agent.operator_files import OperatorFileError, read_operator_file
from performance_agent.outbound.target_guard import TargetRefusedError, check_static

if TYPE_CHECKING:
    from performance_agent.fleet.ports import InstanceRepository
    from performance_agent.fleet.slo import SloTargets, SloTargetsUpdate
    from performance_agent.outbound.target_guard import TargetAllowlist

__all__ = (
    "FORBIDDEN_HEADERS",
    "ActiveWorkflows",
    "InstanceDeletedHook",
    "InstanceService",
    "parse_label_filters",
    "to_instance",
    "validate_spec",
)


class ActiveWorkflows(Protocol):
    """Which active workflow an instance takes part in; implemented by the workflow repository.

    A protocol here, beside the registry that asks, so the registry does not depend on workflows.
    """

    async def active_workflow_of(self, instance_id: str) -> str | None:
        """The id of the active workflow the instance takes part in, or None."""
        ...

    async def force_release(self, instance_id: str, *, actor: str, at: float, reason: str) -> str | None:
        """Release the instance from its active workflow (an admin's force delete), recorded in that
        workflow's audit trail; the workflow's id, or None when none held it."""
        ...


#: Called with the deleted registration and the time of the delete, after it is gone, so the
#: parts that keep per-instance state (alerting) let go of it.
InstanceDeletedHook = Callable[[StoredInstance, datetime], Awaitable[object]]

#: Headers the HTTP client owns: overriding them would break framing or the pinned connection.
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te"})


def to_instance(stored: StoredInstance) -> Instance:
    """The API view: literal header values are write-only and shown as `REDACTED`."""
    spec = stored.spec
    headers: dict[str, HeaderValue] = {
        name: value if isinstance(value, HeaderFromEnv) else REDACTED for name, value in spec.headers.items()
    }
    state = stored.state
    return Instance(
        instance_id=stored.instance_id,
        engine=spec.engine,
        endpoint=spec.endpoint,
        source=spec.source,
        match=spec.match,
        discovered=spec.discovered,
        gone=spec.gone_since is not None,
        metrics_path=spec.metrics_path,
        labels=spec.labels,
        slo=spec.slo,
        engine_args=spec.engine_args,
        gpu=spec.gpu,
        model=spec.model,
        headers=headers,
        tls_verify=spec.tls_verify,
        ca_bundle=spec.ca_bundle,
        status=state.status,
        last_seen=state.last_seen,
        last_scrape_at=state.last_scrape_at,
        last_error=state.last_error,
        consecutive_failures=state.consecutive_failures,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


def parse_label_filters(filters: list[str]) -> dict[str, str]:
    """`key=value` query values; a malformed one is a 422 on `query.label`."""
    wanted: dict[str, str] = {}
    for text in filters:
        key, separator, value = text.partition("=")
        if not separator or not key:
            raise RequestValidationError(
                f"label filter {text!r} must look like key=value",
                [ErrorDetail(field="query.label", message="expected key=value", type="invalid")],
            )
        wanted[key] = value
    return wanted


def _ca_bundle_problem(ca_bundle: str | None) -> str | None:
    """Why `ca_bundle` cannot serve as a CA bundle (None: it can); reads the file, so run it in a thread."""
    if ca_bundle is None:
        return None
    try:
        ssl.create_default_context(cadata=read_operator_file(ca_bundle).decode("ascii"))
    except OperatorFileError as exc:
        return str(exc)
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        return "not a readable PEM CA bundle on the agent"
    return None


async def validate_spec(spec: InstanceSpec, allowlist: TargetAllowlist, allowed_env: frozenset[str]) -> None:
    """Cross-field and environment-dependent rules the body types cannot express (422 or 403).

    The CA bundle is read in a worker thread: the event loop never waits on a file.
    """
    details: list[ErrorDetail] = []
    for name, value in spec.headers.items():
        if name.lower() in FORBIDDEN_HEADERS:
            details.append(ErrorDetail(field=f"body.headers.{name}", message="set by the agent itself", type="invalid"))
        elif isinstance(value, HeaderFromEnv):
            if value.env not in allowed_env:
                details.append(
                    ErrorDetail(
                        field=f"body.headers.{name}.env",
                        message=f"{value.env} is not listed in {HEADER_ENV_SETTING}",
                        type="invalid",
                    )
                )
        elif value == REDACTED:
            details.append(
                ErrorDetail(
                    field=f"body.headers.{name}",
                    message=f"{REDACTED} is the placeholder shown for a stored secret; send the real value",
                    type="invalid",
                )
            )
    details.extend(_source_details(spec))
    ca_problem = await asyncio.to_thread(_ca_bundle_problem, spec.ca_bundle)
    if ca_problem is not None:
        details.append(ErrorDetail(field="body.ca_bundle", message=ca_problem, type="invalid"))
    if details:
        raise RequestValidationError(
            "The request body is not valid: " + "; ".join(f"{d.field}: {d.message}" for d in details), details
        )
    if spec.endpoint is None:
        return
    try:
        check_static(metrics_url(spec.endpoint, spec.metrics_path), allowlist)
    except TargetRefusedError as refused:
        raise ForbiddenError(
            f"The endpoint is not an allowed scrape target: {refused.reason}",
            error="target_not_allowed",
            context={"host": refused.host} if refused.host else {},
        ) from None


def _source_details(spec: InstanceSpec) -> list[ErrorDetail]:
    """A scrape needs an endpoint; a Prometheus-sourced instance needs valid matchers and nothing of a scrape."""
    if spec.source == "scrape":
        if spec.endpoint is None:
            return [ErrorDetail(field="body.endpoint", message="required with source scrape", type="missing")]
        if spec.match is not None:
            return [ErrorDetail(field="body.match", message="only used with source prometheus", type="invalid")]
        return []
    if spec.match is None:
        return [ErrorDetail(field="body.match", message="required with source prometheus", type="missing")]
    try:
        parse_selector(spec.match)
    except SelectorError as invalid:
        return [ErrorDetail(field="body.match", message=str(invalid), type="invalid")]
    if spec.headers:
        return [
            ErrorDetail(
                field="body.headers",
                message="not used with source prometheus (PERF_AGENT_PROMETHEUS_HEADERS_ENV sets Prometheus's)",
                type="invalid",
            )
        ]
    return []


#: Spec fields no request body carries: discovery owns them.
_DISCOVERY_FIELDS = frozenset({"discovered", "gone_since"})


def _spec_of(body: InstanceCreate | InstanceReplace, slo_defaults: SloTargets) -> InstanceSpec:
    """The spec part of a create/replace body, as stored: targets it omits are the configured defaults."""
    fields = {
        name: getattr(body, name)
        for name in InstanceSpec.__struct_fields__
        if name != "slo" and name not in _DISCOVERY_FIELDS
    }
    return InstanceSpec(**fields, slo=None if body.slo is None else body.slo.over(slo_defaults))


class InstanceService:
    def __init__(
        self,
        *,
        instances: InstanceRepository,
        allowlist: TargetAllowlist,
        allowed_header_env: frozenset[str],
        slo_defaults: SloTargets,
        active_workflows: ActiveWorkflows | None = None,
        instance_deleted_hook: InstanceDeletedHook | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._instances = instances
        self._slo_defaults = slo_defaults
        self._allowlist = allowlist
        self._allowed_env = allowed_header_env
        self._active_workflows = active_workflows
        self._instance_deleted_hook = instance_deleted_hook
        self._clock = clock if clock is not None else utc_now

    @property
    def slo_defaults(self) -> SloTargets:
        """The configured targets, for an instance that declares none."""
        return self._slo_defaults

    async def check_spec(self, spec: InstanceSpec) -> None:
        """The registration rules (422/403), for the other use cases that write a spec (POST /collect)."""
        await validate_spec(spec, self._allowlist, self._allowed_env)

    async def require(self, instance_id: str) -> StoredInstance:
        """The registration, or a 404 `not_found`."""
        stored = await self._instances.get(instance_id)
        if stored is None:
            raise NotFoundError(f"No instance {instance_id!r} is registered.", context={"instance_id": instance_id})
        return stored

    async def register(self, body: InstanceCreate) -> Instance:
        spec = _spec_of(body, self._slo_defaults)
        await validate_spec(spec, self._allowlist, self._allowed_env)
        try:
            stored = await self._instances.create(body.instance_id, spec, self._clock())
        except InstanceExistsError:
            raise ConflictError(
                f"Instance {body.instance_id!r} is already registered; use PUT to replace it.",
                error="instance_exists",
                context={"instance_id": body.instance_id},
            ) from None
        return to_instance(stored)

    async def replace(self, instance_id: str, body: InstanceReplace) -> Instance:
        if body.instance_id is not None and body.instance_id != instance_id:
            raise RequestValidationError(
                "The body's instance_id differs from the path's.",
                [ErrorDetail(field="body.instance_id", message=f"must equal {instance_id!r}", type="invalid")],
            )
        spec = _spec_of(body, self._slo_defaults)
        await validate_spec(spec, self._allowlist, self._allowed_env)
        existing = await self.require(instance_id)
        # A replaced discovered instance stays discovered (and gone, if it is).
        spec = msgspec.structs.replace(spec, discovered=existing.spec.discovered, gone_since=existing.spec.gone_since)
        stored = await self._instances.replace(instance_id, spec, self._clock())
        if stored is None:
            raise NotFoundError(f"No instance {instance_id!r} is registered.", context={"instance_id": instance_id})
        return to_instance(stored)

    async def get(self, instance_id: str) -> Instance:
        return to_instance(await self.require(instance_id))

    async def list(
        self,
        *,
        engine: str | None = None,
        status: str | None = None,
        labels: list[str] | None = None,
        source: InstanceSource | None = None,
    ) -> list[Instance]:
        wanted = parse_label_filters(labels or [])
        found = await self._instances.list(engine=engine, status=status)
        return [
            to_instance(stored)
            for stored in found
            if all(stored.spec.labels.get(key) == value for key, value in wanted.items())
            and (source is None or stored.spec.source == source)
        ]

    async def delete(self, instance_id: str, *, force_by: str | None = None) -> None:
        """Delete the registration, then let the hook resolve what was left firing for it.

        Why after: a refused or failed delete must leave the instance monitored. Should the hook
        fail, the error reaches the caller, and the next start resolves what it left firing.
        `force_by` (an admin's name) first releases the instance from its active workflow, the
        release recorded in that workflow's audit trail: the last resort when a rollout can
        neither finish nor be aborted.
        """
        stored = await self.require(instance_id)
        if self._active_workflows is not None:
            if force_by is not None:
                now = self._clock()
                await self._active_workflows.force_release(
                    instance_id,
                    actor=force_by,
                    at=now.timestamp(),
                    reason=f"instance {instance_id} deleted with force=true by {force_by}",
                )
            workflow_id = await self._active_workflows.active_workflow_of(instance_id)
            if workflow_id is not None:
                raise ConflictError(
                    f"Instance {instance_id!r} is part of active workflow {workflow_id}; finish or abort it first "
                    "(an admin may delete it with ?force=true as a last resort).",
                    error="workflow_conflict",
                    context={"instance_id": instance_id, "workflow_id": workflow_id},
                )
        if not await self._instances.delete(instance_id):
            raise NotFoundError(f"No instance {instance_id!r} is registered.", context={"instance_id": instance_id})
        if self._instance_deleted_hook is not None:
            await self._instance_deleted_hook(stored, self._clock())

    async def replace_slo(self, instance_id: str, update: SloTargetsUpdate) -> Instance:
        """Replace the instance's targets: named ones as given, the others from the configured defaults."""
        stored = await self.require(instance_id)
        spec = msgspec.structs.replace(stored.spec, slo=update.over(self._slo_defaults))
        replaced = await self._instances.replace(instance_id, spec, self._clock())
        if replaced is None:  # deleted between the read and the write
            raise NotFoundError(f"No instance {instance_id!r} is registered.", context={"instance_id": instance_id})
        return to_instance(replaced)
