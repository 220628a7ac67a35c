"""Command line: `python -m performance_agent serve | migrate | simulate | demo | openapi`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ("main",)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from performance_agent.app import create_app
    from performance_agent.settings import SettingsError, load_settings
    from performance_agent.storage.database import SqliteDatabase, StorageError
    from performance_agent.storage.factory import open_database

    try:
        settings = load_settings()
        app = create_app(settings)
        database = open_database(settings.storage_url)
        if isinstance(database, SqliteDatabase):
            database.ensure_unlocked()
    except (SettingsError, ValueError, StorageError) as exc:
        print(f"performance-agent: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # create_app already routed uvicorn's loggers to the JSON handler
        access_log=False,
        # uvicorn's proxy headers would believe X-Forwarded-For from any local peer (its default
        # trusts 127.0.0.1), handing every caller on the host a fresh rate-limit bucket per request.
        # The agent decides client identity itself, from PERF_AGENT_TRUSTED_PROXIES only (ratelimit.py).
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _migrate() -> int:
    """Apply the missing schema migrations and exit (what every start-up does first, alone)."""
    import asyncio

    from performance_agent.settings import SettingsError, load_settings
    from performance_agent.storage.database import StorageError
    from performance_agent.storage.factory import open_database
    from performance_agent.storage.sql import migrate

    try:
        database = open_database(load_settings().storage_url)
        before, after = asyncio.run(migrate(database))
    except (SettingsError, ValueError, StorageError) as exc:
        print(f"performance-agent: {exc}", file=sys.stderr)
        return 2
    change = "already current" if before == after else f"migrated from version {before}"
    print(f"performance-agent: {database.description}: schema version {after} ({change})")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    import msgspec

    from performance_agent.app import create_app
    from performance_agent.settings import Settings

    schema = create_app(Settings(database=":memory:", log_level="ERROR")).openapi_schema.to_schema()
    text = msgspec.json.format(msgspec.json.encode(schema), indent=2).decode() + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def _simulate(argv: list[str]) -> int:
    from performance_agent.simulator.cli import main as simulator_main

    return int(simulator_main(argv))


def _demo(argv: list[str]) -> int:
    from performance_agent.demo import main as demo_main

    return demo_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        return _simulate(argv[1:])
    if argv[:1] == ["demo"]:
        return _demo(argv[1:])
    parser = argparse.ArgumentParser(prog="performance-agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the agent under uvicorn (settings from PERF_AGENT_*)")
    serve.add_argument("--host", default=None, help="override PERF_AGENT_HOST")
    serve.add_argument("--port", type=int, default=None, help="override PERF_AGENT_PORT")
    commands.add_parser("migrate", help="apply the database's missing schema migrations and exit")
    openapi = commands.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--output", default="-", help="file to write, or - for stdout")
    commands.add_parser("simulate", help="run simulated vLLM/TGI/SGLang servers (see simulate --help)")
    commands.add_parser("demo", help="guided demo on a simulated fleet through the public API (see demo --help)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "migrate":
        return _migrate()
    return _openapi(args)


if __name__ == "__main__":
    sys.exit(main())
