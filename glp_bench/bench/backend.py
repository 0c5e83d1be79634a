"""The ONNX Runtime backend of the measurement library: a session built by the one session builder with the
latency harness's settings, synthetic inputs, and the process facts (RSS, CPU pinning) a worker records.
Used by every worker scenario (``glp_bench.bench.worker``); the PyTorch backend is ``glp_bench.bench.torch_eager``.
"""

from __future__ import annotations

import os
import resource
import sys
import time

from .inputs import ORT_TYPES, make_inputs, vocab_size_near
from .runner import BenchConfig


def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss_mb() -> float:
    """Resident set size now (Linux VmRSS), else the peak so far."""
    v = _proc_status_mb("VmRSS")
    return v if v is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process: Linux VmHWM (reset by exec, unlike ru_maxrss, which
    inherits the parent's peak across fork+exec), else ru_maxrss (KiB on Linux, bytes on macOS)."""
    v = _proc_status_mb("VmHWM")
    if v is not None:
        return v
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def pin(cpus) -> str:
    if cpus is None:
        return "none"
    if not hasattr(os, "sched_setaffinity"):
        return "unsupported on this OS"
    os.sched_setaffinity(0, set(cpus))
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def ort_runner(cfg: BenchConfig):
    """(run, info): a zero-argument callable doing one timed inference with ONNX Runtime."""
    import onnxruntime as ort
    from glp_runtime.session import SessionError, SessionSettings, build_session

    settings = SessionSettings(provider=cfg.provider, intra_op_threads=cfg.threads,
                               inter_op_threads=cfg.inter_op_threads, graph_optimization=cfg.graph_optimization,
                               memory_arena=cfg.memory_arena, spinning=cfg.spinning, sequential=True,
                               device_id=cfg.device_id, provider_options=cfg.provider_options)
    rss0 = current_rss_mb()
    t0 = time.perf_counter()
    try:
        sess = build_session(cfg.model, settings)
    except SessionError as e:
        if e.kind == "fallback":
            used = e.providers
            raise RuntimeError(f"{cfg.provider} was asked for but the session runs on "
                               f"{used[0] if used else 'nothing'} (providers {used})") from None
        raise RuntimeError(str(e)) from None
    init_s = time.perf_counter() - t0
    used = sess.get_providers()

    specs = [(i.name, ORT_TYPES.get(i.type, "int64")) for i in sess.get_inputs()]
    feeds = make_inputs(specs, cfg.batch, cfg.seq, cfg.vocab_size or vocab_size_near(cfg.model), cfg.seed)
    info = {"runtime": f"onnxruntime {ort.__version__}", "providers": used,
            "inputs": {k: list(v.shape) for k, v in feeds.items()}, "io_binding": False}

    if cfg.on_gpu and cfg.io_binding:
        binding = sess.io_binding()
        device_inputs = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", cfg.device_id) for k, v in feeds.items()}
        for name, value in device_inputs.items():
            binding.bind_ortvalue_input(name, value)
        for out in sess.get_outputs():
            binding.bind_output(out.name, "cuda", cfg.device_id)
        info["io_binding"] = True

        def run():
            sess.run_with_iobinding(binding)
            binding.synchronize_outputs()  # the GPU work is finished when the timer stops
    else:

        def run():
            sess.run(None, feeds)

    return run, info, init_s, rss0
