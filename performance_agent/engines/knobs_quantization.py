"""How each engine serves each quantization method: flag value, whether a quantized checkpoint is needed.

Facts from vLLM `model_executor/layers/quantization/__init__.py`, TGI `docs/source/reference/launcher.md`
(`--quantize`) and SGLang `docs/advanced_features/server_arguments.md`; commits in docs/sources.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ("QUANTIZATION_METHODS", "QuantizationMethod", "QuantizationOption")

QuantizationMethod = Literal["fp8", "int8", "int4_awq", "int4_gptq"]


@dataclass(frozen=True, slots=True)
class QuantizationOption:
    """How one engine serves one quantization method.

    `needs_checkpoint` is true when the engine cannot quantize a 16-bit checkpoint on the fly,
    so the change is a new model artifact, not a flag flip.
    """

    flag_value: str
    needs_checkpoint: bool
    weight_bits: int
    hardware_note: str
    quality_risk: Literal["low", "medium", "high"]


QUANTIZATION_METHODS: dict[str, dict[QuantizationMethod, QuantizationOption]] = {
    # vLLM quantization/__init__.py (~0.9, 2026): fp8 = dynamic FP8 from a BF16 checkpoint (Hopper/Ada+); INT8 W8A8 and
    # W4A16 come as compressed-tensors / AWQ / GPTQ checkpoints (Marlin kernels).
    "vllm": {
        "fp8": QuantizationOption("fp8", False, 8, "FP8 needs compute capability >= 8.9 (Ada, Hopper or newer)", "low"),
        "int8": QuantizationOption(
            "compressed-tensors", True, 8, "INT8 W8A8 kernels need compute capability >= 7.5", "medium"
        ),
        "int4_awq": QuantizationOption(
            "awq_marlin", True, 4, "Marlin kernels need compute capability >= 8.0", "medium"
        ),
        "int4_gptq": QuantizationOption(
            "gptq_marlin", True, 4, "Marlin kernels need compute capability >= 8.0", "medium"
        ),
    },
    # TGI launcher.md @db931fcf: fp8 (e4m3, H100+); eetq = on-the-fly 8-bit; awq/gptq need quantized checkpoints.
    "tgi": {
        "fp8": QuantizationOption("fp8", False, 8, "FP8 needs an H100-class GPU or newer", "low"),
        "int8": QuantizationOption("eetq", False, 8, "EETQ int8 weight-only kernels (CUDA)", "low"),
        "int4_awq": QuantizationOption(
            "awq", True, 4, "AWQ kernels (Marlin used automatically where supported)", "medium"
        ),
        "int4_gptq": QuantizationOption(
            "gptq", True, 4, "GPTQ kernels (Marlin used automatically where supported)", "medium"
        ),
    },
    # SGLang server_arguments.md @004813e1: fp8 online; w8a8_int8 and awq/gptq need quantized checkpoints.
    "sglang": {
        "fp8": QuantizationOption("fp8", False, 8, "FP8 needs compute capability >= 8.9 (Ada, Hopper or newer)", "low"),
        "int8": QuantizationOption("w8a8_int8", True, 8, "INT8 W8A8 kernels", "medium"),
        "int4_awq": QuantizationOption(
            "awq_marlin", True, 4, "Marlin kernels need compute capability >= 8.0", "medium"
        ),
        "int4_gptq": QuantizationOption(
            "gptq_marlin", True, 4, "Marlin kernels need compute capability >= 8.0", "medium"
        ),
    },
}
