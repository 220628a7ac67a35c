"""The guided demo (`make demo`, `python -m performance_agent demo`).

Starts simulated vLLM, TGI and SGLang servers (in this process) and the agent (a uvicorn child
process) on 127.0.0.1 and walks a newcomer through the agent's public HTTP API: register,
collect, analyze, optimize, a gradual rollout with approval, and an automatic rollback.

Modules: `cli` (entry point, signals, cleanup), `story` (the steps), `client` (httpx, each
request printed), `answers` (summaries and expectation checks, pure), `console` (output, pure),
`scenario` (the simulated fleet and rollout settings), `processes` (the agent process).
"""

from __future__ import annotations

from performance_agent.demo.cli import main

__all__ = ("main",)
