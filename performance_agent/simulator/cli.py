"""`simulate`: serve simulated engines in the foreground until SIGINT/SIGTERM.

    simulate --engine vllm --count 3 --base-port 9100 [--version old|current] [--seed N]
             [--time-scale X] [--single-port] [--hub-port P]
             [--latency-shape none|heavy-tailed] [--latency-sigma S] [--slow-share P] [--slow-factor F]

Prints one line per instance (endpoint, metrics path, control URL) and exits 0 on a signal,
closing every listener first; a port already in use exits 1 with a one-line message. The shape
flags start from the preset (default `none`, today's behaviour) and override its fields; every
instance draws the shape from its own stream (`--seed` + its id), see `shape.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import TYPE_CHECKING

from performance_agent.simulator.fleet import build_specs
from performance_agent.simulator.instance import SimulatedInstance
from performance_agent.simulator.pages import ENGINES
from performance_agent.simulator.server import SimulatorServer
from performance_agent.simulator.shape import SHAPE_PRESETS, LatencyShape, ShapeError, parse_shape

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("build_parser", "main", "shape_from_args")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simulate", description="Serve simulated vLLM/TGI/SGLang servers.")
    parser.add_argument("--engine", choices=sorted(ENGINES), required=True)
    parser.add_argument("--count", type=int, default=1, help="number of instances (default 1)")
    parser.add_argument("--base-port", type=int, default=0, help="first port; 0 picks free ports (default)")
    parser.add_argument("--hub-port", type=int, default=None, help="port of /i/{id}/... (default: after the last)")
    parser.add_argument("--version", default="current", help="metric-name generation: current, old (vLLM: 0.10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per wall second")
    parser.add_argument("--single-port", action="store_true", help="serve every instance under /i/{id}/ on one port")
    shape = parser.add_argument_group("latency shape", "spread and tail of every reported latency (default: none)")
    shape.add_argument("--latency-shape", choices=list(SHAPE_PRESETS), default=None, help="named shape to start from")
    shape.add_argument("--latency-sigma", type=float, default=None, help="lognormal spread sigma, 0..3")
    shape.add_argument("--slow-share", type=float, default=None, help="share of slow requests, 0..1")
    shape.add_argument("--slow-factor", type=float, default=None, help="how much slower a slow request is, 1..1000")
    return parser


def shape_from_args(args: argparse.Namespace) -> LatencyShape:
    """The shape the flags ask for; raises `ShapeError` for a value out of range."""
    body: dict[str, object] = {"preset": args.latency_shape or "none"}
    given = {"sigma": args.latency_sigma, "slow_share": args.slow_share, "slow_factor": args.slow_factor}
    body |= {key: value for key, value in given.items() if value is not None}
    return parse_shape(LatencyShape(), body)[0]


async def _serve(server: SimulatorServer, stop: asyncio.Event) -> None:
    await server.start()
    try:
        for instance_id in server.instances:
            d = server.describe(instance_id)
            print(f"{instance_id:<16} {d['engine']:<7} {d['endpoint']}{d['metrics_path']}  control: {d['control_url']}")
        print(f"fleet listing: http://{server.host}:{server.hub_port}/fleet  (Ctrl-C to stop)", flush=True)
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    binding = ENGINES[args.engine]
    if args.version not in binding.versions:
        print(
            f"simulate: {args.engine} has no version {args.version!r} ({', '.join(binding.versions)})", file=sys.stderr
        )
        return 2
    if args.count < 1 or args.time_scale <= 0 or not 0 <= args.base_port <= 65535:
        print("simulate: --count must be >= 1, --time-scale > 0 and --base-port within 0..65535", file=sys.stderr)
        return 2
    try:
        shape = shape_from_args(args)
    except ShapeError as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    specs = build_specs(args.engine, args.count, version=args.version, seed=args.seed, latency_shape=shape)
    instances = [SimulatedInstance(spec, str(spec.instance_id), time.time, args.time_scale) for spec in specs]
    server = SimulatorServer(instances, base_port=args.base_port, single_port=args.single_port, hub_port=args.hub_port)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await _serve(server, stop)

    try:
        asyncio.run(run())
    except OSError as error:
        print(f"simulate: cannot listen: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a signal that arrived before the handlers were installed
        return 0
    return 0
