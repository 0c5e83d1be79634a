"""Deployment variants of an exported ``model.onnx``: graph-optimized fp32, dynamic int8, fp16.

* ``fp32-opt``: ONNX Runtime's transformer fusions (optimum's O2: Attention, SkipLayerNormalization,
  BiasGelu, ...; exact GELU kept) for the CPU. Still fp32, so it must match PyTorch like ``fp32``.
* ``int8``: dynamic quantization (weights int8 offline, activations quantized per batch). Several
  candidates are built and the fastest for the target CPU is kept (``glp_bench.export.int8_select``): the
  *fused* graph, where attention becomes ``QAttention``, and the plain graph through ORT's
  ``quantize_dynamic``. The fused candidates' preset follows the target CPU (optimum's
  ``AutoQuantizationConfig``): ``avx512_vnni`` (u8s8: VNNI's dot product does not saturate),
  ``avx512`` (u8s8 without VNNI: ONNX Runtime's docs warn that VPMADDUBSW can saturate; compare the
  int8 dev score), ``avx2`` (u8u8 weights, which avoid that saturation) and ``arm64`` (u8s8).
* ``fp16``: the same fusions for the GPU with weights and activations in fp16 (inputs/outputs kept
  int64/fp32); runs on ``CUDAExecutionProvider``.

Why int8 quantization of a fused graph needs pre-processing: ONNX Runtime's quantizer looks up each
tensor's element type in the ``value_info`` that *ONNX* shape inference produces. ONNX does not know
the ``com.microsoft`` contrib ops the fusions create (``Attention``, ``SkipLayerNormalization``), so
their outputs get no type and quantization stops with "Unable to find data type for weight_name".
ONNX Runtime's symbolic shape inference knows those ops; ``quant_pre_process`` (ORT's documented
pre-quantization step) runs it, then ONNX shape inference, so every tensor is typed.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ExportError
from ..core.machine import cpu_flags
from ..core.vocab import split_names
from .graph import fused_ops, optimize_graph
from .validate import CPU, CUDA

FP32_TOLERANCE = 1e-4  # max |logit difference| allowed between an fp32 graph and PyTorch


@dataclass(frozen=True)
class Variant:
    name: str
    filename: str
    provider: str  # where the artifact must run
    tolerance: float | None  # None: lossy, judged by its dev score instead
    help: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("fp32", "model.onnx", CPU, FP32_TOLERANCE, "optimum export, fp32 (always built: the others derive from it)"),
        Variant("fp32-opt", "model.opt.onnx", CPU, FP32_TOLERANCE, "fp32 with ONNX Runtime transformer fusions (O2)"),
        Variant("int8", "model.int8.onnx", CPU, None, "dynamic int8, the fastest of several candidates for the CPU"),
        Variant("fp16", "model.fp16.onnx", CUDA, None, "fp16 with GPU fusions, for CUDAExecutionProvider"),
    )
}
DEFAULT_VARIANTS = ("fp32", "int8")
PRESETS = ("avx512_vnni", "avx512", "avx2", "arm64")


def parse_variants(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """Variant names in canonical order, fp32 always included (it is the source of the others)."""
    try:
        names = split_names(spec) if isinstance(spec, str) else [s.strip() for s in spec]
    except ValueError as e:
        raise ExportError(f"--variants {e}: give comma-separated variants, e.g. fp32,int8") from None
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ExportError(f"unknown variant(s) {', '.join(map(repr, unknown))}; choose from {', '.join(VARIANTS)}")
    wanted = {"fp32", *names}
    return [n for n in VARIANTS if n in wanted]


# --- int8 presets ---------------------------------------------------------------------------


def detect_preset(machine: str | None = None, flags: set[str] | None = None) -> tuple[str, str]:
    """(preset, reason) for this CPU. Pure when ``machine`` and ``flags`` are given."""
    machine = (machine if machine is not None else platform.machine()).lower()
    flags = cpu_flags() if flags is None else flags
    if machine in ("arm64", "aarch64") or machine.startswith("armv8"):
        return "arm64", f"machine {machine}"
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni", "CPU flag avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512", "CPU flags avx512f+avx512bw without VNNI"
    if "avx2" in flags:
        return "avx2", "CPU flag avx2"
    # u8u8 (the avx2 preset) is correct on every x86 CPU: no saturation, only speed is at stake.
    return "avx2", f"no AVX2/AVX-512 flag found on {machine or 'this machine'}; u8u8 is the safe choice"


def resolve_preset(preset: str | None) -> tuple[str, str]:
    if preset in (None, "", "auto"):
        return detect_preset()
    if preset not in PRESETS:
        raise ExportError(f"unknown quantization preset {preset!r}; choose auto or one of {', '.join(PRESETS)}")
    return preset, "chosen with --quant-preset"


# --- building -------------------------------------------------------------------------------


def build_variant(name: str, fp32_path: Path, model_config, preset: str) -> dict:
    """Build variant ``name`` next to ``fp32_path``; returns build details for the record. int8: the fastest
    candidate (``glp_bench.export.int8_select.select``); the export stage's int8 step, which also keeps the
    score, is ``glp_bench.export.int8.build_int8``."""
    variant = VARIANTS[name]
    dst = fp32_path.parent / variant.filename
    if name == "fp32-opt":
        optimize_graph(fp32_path, dst, model_config)
        return {"source": "fp32", "optimization": "O2", "fused_ops": fused_ops(dst)}
    if name == "int8":
        from .int8_select import select as select_int8

        return {**select_int8(fp32_path, dst, model_config, preset), "fused_ops": fused_ops(dst)}
    if name == "fp16":
        optimize_graph(fp32_path, dst, model_config, for_gpu=True, fp16=True)
        return {"source": "fp32", "optimization": "O2 (GPU) + fp16", "fused_ops": fused_ops(dst)}
    raise ExportError(f"variant {name!r} is not built by build_variant")
