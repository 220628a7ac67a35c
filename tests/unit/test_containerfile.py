"""The Containerfile, checked by reading it: no container engine exists on the build machines.

`containerfile_problems` holds the rules. The real file must have none, and each rule is shown
to fire on a copy of the real file with exactly that mistake put in, so no rule is decorative.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from uvicorn.main import main as uvicorn_cli

from performance_agent import __version__
from tests.containerfile import (
    Containerfile,
    ContainerIgnore,
    Instruction,
    Stage,
    parse_containerfile,
    parse_containerignore,
)
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Callable

CONTAINERFILE = REPO_ROOT / "Containerfile"
CONTAINERIGNORE = REPO_ROOT / ".containerignore"
READY_PATH = "/api/v1/health/ready"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
NUMERIC_USER = re.compile(r"(\d+)(?::(\d+))?")


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _image_problems(image: str, where: str) -> list[str]:
    if "@sha256:" in image:
        return []
    last_segment = image.rsplit("/", 1)[-1]
    if ":" not in last_segment:
        return [f"{where}: base image {image!r} has no tag, so it floats to latest"]
    if last_segment.rsplit(":", 1)[1] == "latest":
        return [f"{where}: base image {image!r} uses the floating 'latest' tag"]
    return []


def _option_value(argv: list[str], option: str) -> str | None:
    return argv[argv.index(option) + 1] if option in argv and argv.index(option) + 1 < len(argv) else None


def _uvicorn_options() -> set[str]:
    return {name for parameter in uvicorn_cli.params for name in (*parameter.opts, *parameter.secondary_opts)}


def _cmd_argv(cf: Containerfile) -> list[str]:
    """The final CMD's argv, or [] when it is missing or in shell form (reported by the command rules)."""
    cmd = cf.final.last("CMD")
    try:
        return cmd.exec_form() if cmd is not None else []
    except ValueError:
        return []


def _stage_problems(cf: Containerfile) -> list[str]:
    problems: list[str] = []
    if len(cf.stages) < 2:
        problems.append("single stage: build tools would ship in the runtime image")
    earlier = {stage.name for stage in cf.stages[:-1] if stage.name}
    copies_from = {i.options.get("from") for i in cf.final.all("COPY")}
    if not earlier & copies_from:
        problems.append("the final stage copies nothing from a build stage")
    for index, stage in enumerate(cf.stages):
        if stage.image not in cf.stage_names():
            problems.extend(_image_problems(stage.image, f"stage {index}"))
        for instruction in stage.all("COPY"):
            source = instruction.options.get("from")
            if source and source not in cf.stage_names():
                problems.extend(_image_problems(source, f"line {instruction.line}"))
    return problems


def _user_problems(cf: Containerfile) -> list[str]:
    user = cf.final.last("USER")
    if user is None:
        return ["the final stage never sets USER, so the service runs as root"]
    match = NUMERIC_USER.fullmatch(user.body)
    if match is None:
        return [f"USER {user.body!r} is not numeric; runAsNonRoot cannot verify a name"]
    if "0" in {match.group(1), match.group(2)}:
        return [f"USER {user.body!r} runs as root"]
    return []


def _command_problems(cf: Containerfile) -> list[str]:
    problems: list[str] = []
    cmd = cf.final.last("CMD")
    if cf.final.last("ENTRYPOINT") is not None:
        problems.append("ENTRYPOINT set: CMD would become its arguments")
    if cmd is None:
        return [*problems, "no CMD"]
    try:
        argv = cmd.exec_form()
    except ValueError:
        return [*problems, "CMD is in shell form: SIGTERM would reach sh, not uvicorn"]
    if argv[:2] != ["uvicorn", "performance_agent.app:create_app"] or "--factory" not in argv:
        problems.append("CMD does not run uvicorn on the performance_agent.app:create_app factory")
    if _option_value(argv, "--host") != "0.0.0.0":
        problems.append("CMD does not bind 0.0.0.0; the published port would be unreachable")
    if _option_value(argv, "--loop") != "uvloop" or _option_value(argv, "--http") != "httptools":
        problems.append("CMD does not select uvloop and httptools")
    if "--no-proxy-headers" not in argv:
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 (a sidecar, anyone on the pod) and
        # hand each request a fresh rate-limit bucket; the agent reads it from PERF_AGENT_TRUSTED_PROXIES.
        problems.append("CMD leaves uvicorn's proxy headers on")
    known = _uvicorn_options()
    problems.extend(f"uvicorn has no option {arg}" for arg in argv if arg.startswith("--") and arg not in known)
    exposed = [i.body for i in cf.final.all("EXPOSE")]
    port = _option_value(argv, "--port")
    if exposed != [port]:
        problems.append(f"EXPOSE {exposed} does not match the CMD port {port}")
    env_port = cf.final.env(cf.global_args).get("PERF_AGENT_PORT")
    if env_port is not None and env_port != port:
        problems.append(f"PERF_AGENT_PORT={env_port} disagrees with the CMD port {port}")
    if cf.final.last("STOPSIGNAL") is None or cf.final.all("STOPSIGNAL")[-1].body not in {"SIGTERM", "SIGINT"}:
        problems.append("STOPSIGNAL is not one uvicorn shuts down gracefully on")
    return problems


def _healthcheck_problems(cf: Containerfile) -> list[str]:
    check = cf.final.last("HEALTHCHECK")
    if check is None or check.body.upper() == "NONE":
        return ["no HEALTHCHECK in the final stage"]
    if not check.body.startswith("CMD "):
        return ["HEALTHCHECK is not a CMD"]
    argv = Instruction(keyword="CMD", arguments=check.body.removeprefix("CMD "), line=check.line).exec_form()
    script = argv[-1] if argv[:2] == ["python", "-c"] else ""
    problems: list[str] = []
    port = _option_value(_cmd_argv(cf), "--port")
    if f"'http://127.0.0.1:{port}{READY_PATH}'" not in script or "urllib.request.urlopen" not in script:
        problems.append(f"HEALTHCHECK does not ask {READY_PATH} on the served port with python's urllib")
    probe_timeout = re.search(r"timeout=(\d+(?:\.\d+)?)", script)
    engine_timeout = re.fullmatch(r"(\d+)s", check.options.get("timeout", ""))
    if probe_timeout is None or engine_timeout is None:
        problems.append("HEALTHCHECK needs both --timeout and a urlopen timeout")
    elif float(probe_timeout.group(1)) >= int(engine_timeout.group(1)):
        problems.append("the urlopen timeout is not below HEALTHCHECK --timeout, so failures read as kills")
    return problems


def _environment_problems(cf: Containerfile) -> list[str]:
    problems: list[str] = []
    env = cf.final.env(cf.global_args)
    if env.get("PERF_AGENT_HOST") != "0.0.0.0":
        problems.append("PERF_AGENT_HOST is not 0.0.0.0")
    database = Path(env.get("PERF_AGENT_DATABASE", "relative"))
    volumes = [Path(v) for i in cf.final.all("VOLUME") for v in i.exec_form()]
    if not database.is_absolute() or database.parent not in volumes:
        problems.append("PERF_AGENT_DATABASE does not live in a declared VOLUME")
    user = cf.final.last("USER")
    owner = user.body if user is not None else "?"
    chowned = any(
        re.search(rf"chown {re.escape(owner)} {re.escape(str(database.parent))}\b", i.body) for i in cf.final.all("RUN")
    )
    if not chowned:
        problems.append(f"{database.parent} is not chowned to {owner}, so the agent cannot write its database")
    for stage in cf.stages:
        names = [*stage.env(cf.global_args), *stage.args(cf.global_args)]
        problems.extend(
            f"{name} looks like a secret baked into the image" for name in names if SECRET_NAME.search(name)
        )
    problems.extend(f"global ARG {name} looks like a secret" for name in cf.global_args if SECRET_NAME.search(name))
    return problems


def _label_problems(cf: Containerfile) -> list[str]:
    labels: dict[str, str] = {}
    variables = cf.final.args(cf.global_args)
    for instruction in cf.final.all("LABEL"):
        labels.update(
            {k: v.replace("${VERSION}", variables.get("VERSION", "")) for k, v in instruction.key_values().items()}
        )
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    expected = {
        "org.opencontainers.image.title": project["name"],
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.licenses": project["license"],
    }
    return [
        f"label {key} is {labels.get(key)!r}, expected {value!r}"
        for key, value in expected.items()
        if labels.get(key) != value
    ]


def _python_version_problems(cf: Containerfile) -> list[str]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    minimum = str(project["requires-python"]).removeprefix(">=")
    wrong = [
        s.image for s in cf.stages if s.image.startswith("python:") and not s.image.startswith(f"python:{minimum}")
    ]
    return [f"{image} is not the python {minimum} the project is tested with" for image in wrong]


def _copy_source_problems(cf: Containerfile, ignore: ContainerIgnore, repo: Path) -> list[str]:
    problems: list[str] = []
    for stage in cf.stages:
        for instruction in stage.all("COPY"):
            if "from" in instruction.options:
                continue
            for source in instruction.body.split()[:-1]:
                if not (repo / source).exists():
                    problems.append(f"line {instruction.line}: COPY source {source} does not exist")
                elif ignore.excludes(source):
                    problems.append(f"line {instruction.line}: COPY source {source} is excluded by .containerignore")
    return problems


def containerfile_problems(cf: Containerfile, ignore: ContainerIgnore, repo: Path = REPO_ROOT) -> list[str]:
    return [
        *_stage_problems(cf),
        *_user_problems(cf),
        *_command_problems(cf),
        *_healthcheck_problems(cf),
        *_environment_problems(cf),
        *_label_problems(cf),
        *_python_version_problems(cf),
        *_copy_source_problems(cf, ignore, repo),
    ]


@pytest.fixture
def real() -> Containerfile:
    return parse_containerfile(CONTAINERFILE)


@pytest.fixture
def ignore() -> ContainerIgnore:
    return parse_containerignore(CONTAINERIGNORE)


def test_the_containerfile_breaks_no_rule(real: Containerfile, ignore: ContainerIgnore) -> None:
    assert containerfile_problems(real, ignore) == []


def test_the_containerfile_was_read_as_intended(real: Containerfile) -> None:
    """Guards the parser: the rules above are only as good as what it extracted."""
    assert [stage.name for stage in real.stages] == ["builder", "runtime"]
    assert real.global_args == {"PYTHON_IMAGE": "python:3.11-slim-bookworm"}
    assert real.directives == {"syntax": "docker/dockerfile:1"}
    assert real.final.last("USER") == Instruction("USER", "10001:10001", real.final.all("USER")[0].line)
    cmd = real.final.last("CMD")
    assert cmd is not None
    assert cmd.exec_form()[:3] == ["uvicorn", "performance_agent.app:create_app", "--factory"]
    env = real.final.env(real.global_args)
    assert env["PERF_AGENT_DATABASE"] == "/var/lib/performance-agent/agent.db"
    assert env["PATH"] == "/opt/venv/bin:${PATH}"
    assert env["PERF_AGENT_ENVIRONMENT"] == "production"


def test_podman_users_are_told_to_keep_the_healthcheck() -> None:
    assert "podman build --format docker" in CONTAINERFILE.read_text(encoding="utf-8")


def test_build_context_carries_only_what_the_build_copies(ignore: ContainerIgnore) -> None:
    for path in (".git/config", ".venv/bin/python", "tests/unit/test_containerfile.py", "var/agent.db", "docs/x.md"):
        assert ignore.excludes(path), path
    for path in ("node_modules/x", ".ci/run", "Makefile", "performance_agent/__pycache__/app.cpython-311.pyc"):
        assert ignore.excludes(path), path
    for path in (
        "pyproject.toml",
        "README.md",
        "performance_agent/app.py",
        "performance_agent/static/openapi/redoc.standalone.js",
    ):
        assert not ignore.excludes(path), path


def _mutated(cf: Containerfile, keyword: str, new_arguments: str | None, stage: int = -1) -> Containerfile:
    """A copy of ``cf`` with every ``keyword`` in the stage replaced (or removed when None)."""
    changed = copy.deepcopy(cf)
    target: Stage = changed.stages[stage]
    rebuilt: list[Instruction] = []
    for instruction in target.instructions:
        if instruction.keyword != keyword:
            rebuilt.append(instruction)
        elif new_arguments is not None:
            rebuilt.append(Instruction(keyword, new_arguments, instruction.line))
    target.instructions = rebuilt
    return changed


def _with_base_image(image: str) -> Callable[[Containerfile], Containerfile]:
    def change(cf: Containerfile) -> Containerfile:
        changed = copy.deepcopy(cf)
        for stage in changed.stages:
            stage.image = image
        return changed

    return change


def _append(cf: Containerfile, keyword: str, arguments: str) -> Containerfile:
    changed = copy.deepcopy(cf)
    changed.final.instructions.append(Instruction(keyword, arguments, 999))
    return changed


def _with_env(extra: str) -> Callable[[Containerfile], Containerfile]:
    return lambda cf: _append(cf, "ENV", extra)


_HEALTH = (
    'CMD ["python", "-c", "import urllib.request; urllib.request.urlopen(\'http://127.0.0.1:8000{}\', timeout={})"]'
)

MISTAKES: dict[str, tuple[Callable[[Containerfile], Containerfile], str]] = {
    "single stage": (lambda cf: Containerfile(cf.global_args, cf.stages[-1:], cf.directives), "single stage"),
    "no copy from builder": (lambda cf: _mutated(cf, "COPY", "pyproject.toml /opt/"), "copies nothing from a build"),
    "latest base": (_with_base_image("python:latest"), "floating 'latest' tag"),
    "untagged base": (_with_base_image("docker.io/library/python"), "has no tag"),
    "other python": (_with_base_image("python:3.13-slim"), "is not the python 3.11"),
    "named user": (lambda cf: _mutated(cf, "USER", "agent"), "is not numeric"),
    "root user": (lambda cf: _mutated(cf, "USER", "0:0"), "runs as root"),
    "no user": (lambda cf: _mutated(cf, "USER", None), "never sets USER"),
    "shell cmd": (lambda cf: _mutated(cf, "CMD", "uvicorn performance_agent.app:create_app"), "shell form"),
    "no factory": (
        lambda cf: _mutated(cf, "CMD", '["uvicorn", "performance_agent.app:app", "--port", "8000"]'),
        "factory",
    ),
    "loopback bind": (
        lambda cf: _mutated(
            cf, "CMD", '["uvicorn", "performance_agent.app:create_app", "--factory", "--port", "8000"]'
        ),
        "does not bind 0.0.0.0",
    ),
    "made-up flag": (
        lambda cf: _mutated(
            cf, "CMD", '["uvicorn", "performance_agent.app:create_app", "--factory", "--port", "8000", "--workers-max"]'
        ),
        "no option --workers-max",
    ),
    "proxy headers on": (
        lambda cf: _mutated(
            cf,
            "CMD",
            '["uvicorn", "performance_agent.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", '
            '"--loop", "uvloop", "--http", "httptools"]',
        ),
        "proxy headers on",
    ),
    "port mismatch": (lambda cf: _mutated(cf, "EXPOSE", "8080"), "does not match the CMD port"),
    "env port mismatch": (_with_env("PERF_AGENT_PORT=9000"), "disagrees with the CMD port"),
    "entrypoint": (lambda cf: _append(cf, "ENTRYPOINT", '["tini", "--"]'), "ENTRYPOINT set"),
    "no stopsignal": (lambda cf: _mutated(cf, "STOPSIGNAL", None), "STOPSIGNAL"),
    "no healthcheck": (lambda cf: _mutated(cf, "HEALTHCHECK", None), "no HEALTHCHECK"),
    "healthcheck none": (lambda cf: _mutated(cf, "HEALTHCHECK", "NONE"), "no HEALTHCHECK"),
    "wrong probe path": (
        lambda cf: _mutated(cf, "HEALTHCHECK", "--timeout=5s " + _HEALTH.format("/healthz", 2)),
        "does not ask /api/v1/health/ready",
    ),
    "probe outlives engine": (
        lambda cf: _mutated(cf, "HEALTHCHECK", "--timeout=5s " + _HEALTH.format(READY_PATH, 5)),
        "not below HEALTHCHECK --timeout",
    ),
    "baked api keys": (_with_env("PERF_AGENT_API_KEYS=ops:admin:0123456789abcdef"), "PERF_AGENT_API_KEYS looks like"),
    "loopback host env": (_with_env("PERF_AGENT_HOST=127.0.0.1"), "PERF_AGENT_HOST is not 0.0.0.0"),
    "database outside volume": (_with_env("PERF_AGENT_DATABASE=/tmp/agent.db"), "does not live in a declared VOLUME"),
    "volume not chowned": (lambda cf: _mutated(cf, "RUN", "mkdir -p /var/lib/performance-agent"), "is not chowned"),
    "stale version label": (
        lambda cf: _mutated(cf, "LABEL", 'org.opencontainers.image.title="performance-agent"'),
        "org.opencontainers.image.version",
    ),
    "missing copy source": (
        lambda cf: _mutated(cf, "COPY", "no-such-dir ./no-such-dir", stage=0),
        "COPY source no-such-dir does not exist",
    ),
    "ignored copy source": (
        lambda cf: _mutated(cf, "COPY", "tests ./tests", stage=0),
        "COPY source tests is excluded",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_rule_catches_its_mistake(real: Containerfile, ignore: ContainerIgnore, mistake: str) -> None:
    change, expected = MISTAKES[mistake]
    problems = containerfile_problems(change(real), ignore)
    assert any(expected in problem for problem in problems), problems
