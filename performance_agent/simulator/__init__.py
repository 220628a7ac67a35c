"""Simulated vLLM, TGI and SGLang servers for tests, the demo and benchmarks.

The simulator stands in for remote inference servers. It imports nothing of the agent (not
`engines/`, `metrics/`, `storage/`, settings): its metric names, types, labels and bucket edges
are written here from the engines' own sources (docs/sources.md, "Engine metrics"), so a wrong name in the agent's
adapters cannot hide behind a shared table.

Modules
-------
* `knobs` / `capacity` — each engine's launch flags (accepted as `--max-num-seqs` or
  `max_num_seqs`) and the memory arithmetic that turns them into engine-neutral physics:
  weights = params * bytes/weight (FP8/INT8 halve it, 4-bit ~0.28 plus a dequant overhead),
  KV bytes/token = 2 * layers * kv_heads * head_dim * bytes/element (FP8 KV halves it),
  KV pool = memory share - weights - activation reserve. Impossible flags make the engine
  refuse to start with the message it would log.
* `load_model` — one continuous-batching engine rank as a seeded fluid model. Each step
  decodes one token per running request and spends the rest of the token budget on prefill:
      step_s = (overhead + max(memory_bytes / bandwidth, 2 * params * tokens / flops)) * regression
  KV usage = tokens held / pool; vLLM preempts the newest request when decode growth
  overflows the pool, SGLang reserves part of the remaining output first (fewer retractions),
  TGI reserves prompt + max_new_tokens and rejects beyond `max_concurrent_requests`.
  Queues build when arrivals exceed the service rate; Little's law holds by construction.
  Time advances in whole ticks (0.5 simulated s), so results depend only on elapsed time and
  the seed, never on how often the page was read.
* `vllm_page`, `tgi_page`, `sglang_page` with `exposition` — each engine's metric set per
  version profile (`current`, `old`, and vLLM `0.10`), rendered in the byte style of its
  client library: vLLM = prometheus_client single process (`_total`, `_created` families,
  sorted labels); SGLang = prometheus_client multiprocess (no `_created`, `_sum` first — as
  the real SGLang sample shows); TGI = Rust metrics-exporter-prometheus (no `_total`, integer
  counters, 35 geometric duration buckets, `tgi_request_skipped_tokens` as a summary).
* `shape` — latency shapes: a lognormal spread and a share of slow requests multiplying every
  reported latency (per request; per token via bucket probabilities), from one seeded stream per
  server; presets `none` (default) and `heavy-tailed` (sigma 0.5, 7% of requests 6x slower).
* `control` / `instance` — one server's lifecycle and its HTTP answers (pure).
* `server` — asyncio HTTP/1.1 listeners; `fleet` — a background-thread fleet for Python;
  `cli` — `simulate --engine vllm --count 3 --base-port 9100`.

HTTP surface (each instance at its own port's root, and always at the hub under `/i/{id}`)
-----------------------------------------------------------------------------------------
`GET /metrics`, `GET /health`; TGI `GET /info`, SGLang `GET /get_server_info`, vLLM
`GET /version`; `GET /control` (flags, resolved config, derived capacity, faults, load,
latency shape, gauges); `POST /control/config` (merge flags live, strict: 400 unknown flag, 422 a
config the engine would refuse); `POST /control/faults` (`latency_regression`, `ttft_regression`,
`kv_pressure`, `error_burst`, `unreachable`, `garbage_page`, `scrape_delay_s`, `http_error`;
`null`/`false`/`0` clears one, `{"clear": true}` all); `GET`/`POST /control/shape` (`preset`,
`sigma`, `slow_share`, `slow_factor`, `seed`; 422 `invalid_shape`); `POST /control/load`
(arrival rate, length means, prefix share); `POST /control/restart` (counters back to zero);
`POST /control/apply` `{"changes": {"--flag": value|null}, "env": {...}}` = redeploy: merge then
restart, and like a real redeploy a bad flag leaves the server down (`state: crashed`, data plane
refusing) until a good apply; the launch variables `SIMULATOR_LATENCY_REGRESSION` and
`SIMULATOR_TTFT_REGRESSION` are the faults' twins an actuator can set and roll back. The hub
also lists the fleet at `GET /fleet`. Full reference: `docs/simulator.md`.

Time: simulated seconds = wall seconds * `time_scale` from an injectable clock (`ManualClock`
in tests). With `time_scale` k, counters grow k times faster per wall second while latencies
stay in simulated seconds.
"""

from __future__ import annotations

from performance_agent.simulator.control import Faults
from performance_agent.simulator.fleet import InstanceHandle, ManualClock, SimulatedFleet, build_specs, start_simulator
from performance_agent.simulator.instance import SimulatedInstance, SimulatedServerSpec
from performance_agent.simulator.knobs import Hardware, SimulatedModel
from performance_agent.simulator.load_model import Workload
from performance_agent.simulator.shape import SHAPE_PRESETS, LatencyShape

__all__ = (
    "SHAPE_PRESETS",
    "Faults",
    "Hardware",
    "InstanceHandle",
    "LatencyShape",
    "ManualClock",
    "SimulatedFleet",
    "SimulatedInstance",
    "SimulatedModel",
    "SimulatedServerSpec",
    "Workload",
    "build_specs",
    "start_simulator",
)
