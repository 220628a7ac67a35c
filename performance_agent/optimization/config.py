"""The configuration a plan starts from: what the page reveals, what registration declared, engine defaults.

The page wins because it is what the server actually runs; a declared value that disagrees is
kept in the note. A setting none of the three can tell is listed as unknown, never filled in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from performance_agent.engines.knobs import KNOBS, ConfigValue, Knob
from performance_agent.engines.knobs_defaults import engine_default
from performance_agent.optimization.schemas import ConfigEntry, CurrentConfig, GpuSpec, ModelSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("coerce", "normalize_arg_name", "resolve_current_config")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def normalize_arg_name(name: str) -> str:
    """`--max-num-seqs`, `max-num-seqs`, `MAX_NUM_SEQS` and `max_num_seqs` are one setting."""
    return name.lstrip("-").replace("-", "_").lower()


def coerce(entry: Knob, raw: ConfigValue) -> ConfigValue:
    """Read a page label or declared argument as the knob's type; unreadable text stays None."""
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() in ("", "none", "null"):
            return None
        if entry.kind == "bool":
            lowered = text.lower()
            return True if lowered in _TRUE else False if lowered in _FALSE else None
        if entry.kind in ("int", "float"):
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if entry.kind == "int" and number.is_integer() else number
        return text
    if entry.kind == "bool":
        return bool(raw)
    if entry.kind == "int" and isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return raw


def _declared(entry: Knob, args: Mapping[str, ConfigValue]) -> tuple[bool, ConfigValue]:
    for key in entry.declared_keys:
        if key in args:
            value = coerce(entry, args[key])
            if entry.inverted and isinstance(value, bool):
                value = not value
            return True, value
        if entry.kind == "bool" and f"no_{key}" in args:
            value = coerce(entry, args[f"no_{key}"])
            return True, (not value) if isinstance(value, bool) else None
    if entry.env is not None and entry.env.lower() in args:
        return True, coerce(entry, args[entry.env.lower()])
    return False, None


def _page(entry: Knob, engine_config: Mapping[str, ConfigValue]) -> tuple[bool, ConfigValue]:
    for key in entry.page_keys:
        if key in engine_config:
            return True, coerce(entry, engine_config[key])
    return False, None


def resolve_current_config(
    engine: str,
    engine_config: Mapping[str, ConfigValue],
    engine_args: Mapping[str, ConfigValue] | None = None,
    gpu: GpuSpec | None = None,
    model: ModelSpec | None = None,
    engine_version: str | None = None,
) -> CurrentConfig:
    """Every tunable setting of the engine with its value and source, plus what stays unknown."""
    if engine not in KNOBS:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(sorted(KNOBS))}")
    args = {normalize_arg_name(k): v for k, v in (engine_args or {}).items()}
    settings: dict[str, ConfigEntry] = {}
    unknown: list[str] = []
    for concept, entry in KNOBS[engine].items():
        on_page, page_value = _page(entry, engine_config)
        was_declared, declared_value = _declared(entry, args)
        flag = entry.flag or entry.env
        if on_page and page_value is not None:
            note = None
            if was_declared and declared_value != page_value:
                note = f"declared {declared_value!r} but the page shows {page_value!r}"
            settings[concept] = ConfigEntry(flag=flag, value=page_value, source="page", note=note)
        elif was_declared:
            settings[concept] = ConfigEntry(flag=flag, value=declared_value, source="declared")
        else:
            default = engine_default(
                engine,
                concept,
                engine_version,
                gpu.name if gpu else None,
                gpu.memory_gib if gpu else None,
                gpu.count if gpu else 1,
            )
            if default is not None:
                settings[concept] = ConfigEntry(
                    flag=flag, value=default, source="engine default", note=entry.default_note
                )
            else:
                settings[concept] = ConfigEntry(flag=flag, value=None, source="unknown", note=entry.default_note)
                if flag is not None:
                    unknown.append(concept)
        if entry.inverted:
            explained = f"value is the setting itself; {entry.flag} = true turns it off"
            existing = settings[concept].note
            settings[concept].note = f"{existing}; {explained}" if existing else explained
    if model is None or model.quantization is None:
        quant = settings.get("quantization")
        if quant is not None and quant.source == "unknown":
            quant.note = "no --quantization/--quantize declared; a pre-quantized checkpoint would not show here"
    if gpu is None or gpu.memory_gib is None:
        unknown.append("gpu.memory_gib")
    if gpu is None or gpu.name is None:
        unknown.append("gpu.name")
    if model is None or model.params_b is None:
        unknown.append("model.params_b")
    if model is None or None in (model.num_layers, model.num_kv_heads, model.head_dim):
        unknown.append("model.kv_shape")
    return CurrentConfig(
        engine=engine, engine_version=engine_version, settings=settings, gpu=gpu, model=model, unknown=unknown
    )
