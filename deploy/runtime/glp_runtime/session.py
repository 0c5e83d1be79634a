"""The one place that builds an ``onnxruntime.InferenceSession``, for glp_runtime and for glp-bench.

glp-bench's export validation, latency worker, gate and deploy self-check and this runtime all call
:func:`build_session` with a :class:`SessionSettings`, so what is measured is what is deployed: the same
provider chain, thread, spinning, arena and graph-optimization settings. ONNX Runtime silently falls
back to the CPU when a GPU provider cannot start; ``build_session`` refuses that instead. Failures raise
:class:`SessionError` with a ``kind`` (``missing``, ``provider``, ``load``, ``fallback``) that each
caller turns into its own one-line error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL"}


class SessionError(Exception):
    """A session that cannot be built; ``kind`` says why, ``detail`` is ONNX Runtime's first line."""

    def __init__(self, kind: str, message: str, detail: str = "", providers: list[str] | None = None):
        super().__init__(message)
        self.kind, self.detail, self.providers = kind, detail, providers or []


@dataclass(frozen=True)
class SessionSettings:
    provider: str = CPU
    intra_op_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    memory_arena: bool = True
    spinning: bool | None = None  # None: ONNX Runtime's default
    sequential: bool = False  # ExecutionMode.ORT_SEQUENTIAL (the latency worker sets it)
    device_id: int = 0
    provider_options: dict = field(default_factory=dict)
    trt_cache_dir: str | None = None  # TensorRT engine cache (default: beside the model)
    log_severity: int = 3  # errors only: ORT's warnings about unused initializers are noise

    @classmethod
    def from_runtime(cls, settings: dict, provider: str | None = None, threads: int | None = None):
        """The settings of a bundle's ``runtime.json`` (``session`` part), optionally overridden."""
        return cls(provider=provider_name(provider) if provider else (settings.get("providers") or [CPU])[0],
                   intra_op_threads=int(threads if threads is not None else settings.get("intra_op_threads", 0)),
                   inter_op_threads=int(settings.get("inter_op_threads", 0)),
                   graph_optimization=settings.get("graph_optimization", "all"),
                   memory_arena=bool(settings.get("memory_arena", True)),
                   spinning=bool(settings.get("spinning", True)))


def provider_name(name: str) -> str:
    """``cpu``/``cuda``/``tensorrt`` -> ONNX Runtime's provider name (other names pass through)."""
    return PROVIDER_ALIASES.get(name.lower(), name)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def provider_chain(s: SessionSettings, model_dir: str | None = None) -> list:
    """The asked provider first; TensorRT falls back to CUDA for the nodes it does not take, GPUs to the CPU."""
    if s.provider == CPU:
        return [CPU]
    if s.provider == CUDA:
        return [(CUDA, {"device_id": s.device_id, **s.provider_options}), CPU]
    if s.provider == TENSORRT:
        cache = s.trt_cache_dir or os.path.join(model_dir or ".", "trt-cache")
        trt = {"device_id": s.device_id, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
               **s.provider_options}
        return [(TENSORRT, trt), (CUDA, {"device_id": s.device_id}), CPU]
    return [s.provider, CPU]


def session_options(s: SessionSettings):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = s.log_severity
    so.intra_op_num_threads = int(s.intra_op_threads)
    so.inter_op_num_threads = int(s.inter_op_threads)
    if s.sequential:
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS.get(s.graph_optimization,
                                                                                       "ORT_ENABLE_ALL"))
    so.enable_cpu_mem_arena = bool(s.memory_arena)
    if s.spinning is not None:
        spin = "1" if s.spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return so


def build_session(model: str | Path | bytes, settings: SessionSettings | None = None):
    """An ``InferenceSession`` of ``model`` (a path or serialized bytes) on exactly ``settings.provider``."""
    import onnxruntime as ort

    s = settings or SessionSettings()
    is_path = not isinstance(model, bytes | bytearray)
    if is_path and not Path(model).is_file():
        raise SessionError("missing", f"{model} does not exist")
    available = ort.get_available_providers()
    if s.provider not in available:
        raise SessionError("provider", f"{s.provider} is not available in onnxruntime {ort.__version__} "
                                       f"(available: {', '.join(available)})", providers=available)
    model_dir = os.path.dirname(os.path.abspath(model)) if is_path else None
    try:
        session = ort.InferenceSession(str(model) if is_path else model, session_options(s),
                                       providers=provider_chain(s, model_dir))
    except Exception as e:  # noqa: BLE001 - onnxruntime's pybind errors share no useful base class
        raise SessionError("load", f"{model if is_path else 'the model'} cannot be loaded by onnxruntime "
                                   f"{ort.__version__} ({first_line(e)})", first_line(e)) from None
    used = session.get_providers()
    if not used or used[0] != s.provider:
        raise SessionError("fallback", f"onnxruntime could not start {s.provider} (got {used})", providers=used)
    return session
