"""The measurement core: run benchmark configurations in isolated worker processes, interleaved.

Library API (used by ``glp-bench latency`` and by the CI gate for same-job A/B comparisons)::

    from glp_bench.bench.runner import BenchConfig, measure

    a = BenchConfig(model="old/model.onnx", batch=1, seq=128, threads=1, label="old")
    b = BenchConfig(model="new/model.onnx", batch=1, seq=128, threads=1, label="new")
    ma, mb = measure([a, b], rounds=5, min_runs=20, min_time=1.0)
    ma.summary["p50"], mb.samples            # seconds; every raw sample is kept
    ma.ok, ma.error                          # a failed configuration does not stop the others

How a measurement is made (the protocol every number in glp-bench comes from):

* **Isolation.** Every (configuration, round) pair runs in a fresh ``python -m glp_bench.bench.worker``
  process: no state (allocator arenas, thread pools, caches, JIT) leaks from one configuration into
  another, and the process's peak RSS belongs to that one session. Workers run one at a time.
* **Interleaving.** In each of ``rounds`` rounds every configuration is measured once, in the order
  :func:`glp_bench.bench.stats.interleaved_order` gives (rotations spread over the round), so slow drift
  of the machine biases no configuration and the *ratios* between configurations stay fair.
* **Warm-up excluded.** Each worker first runs ``warmup`` untimed inferences (session creation, first-run
  allocations, TensorRT engine builds happen there).
* **Enough samples.** Each worker then times single inferences until it has at least ``min_runs`` samples
  *and* at least ``min_time`` seconds of timed runs (stopping early only at ``max_time``), so a
  configuration ends up with ``rounds * >= min_runs`` raw samples.
* **Raw samples kept.** :class:`Measurement` keeps every sample per round (seconds); its ``summary`` is
  derived in one place (:func:`glp_bench.bench.stats.summarize`): n, mean, std, cv, min, max, p50/90/99.

The worker's timer is ``time.perf_counter_ns`` around one ``session.run`` (or ``run_with_iobinding`` +
output synchronization on CUDA; ``model(**inputs)`` + ``torch.cuda.synchronize`` for the PyTorch
reference), with Python's garbage collector paused during the timed loop.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ..core.errors import DeviceError
from . import stats
from .settings import LATENCY

ONNXRUNTIME = "onnxruntime"
TORCH = "torch"
BACKENDS = (ONNXRUNTIME, TORCH)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
PROVIDERS = (CPU, CUDA, TENSORRT)

GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")

RESULT_MARKER = "GLP_BENCH_WORKER_RESULT "


@dataclass(frozen=True)
class BenchConfig:
    """One thing to time: a model, how the runtime is set up, and the input shape.

    model:              path of an ``.onnx`` file (backend ``onnxruntime``) or of a Hugging Face model
                        folder (backend ``torch``: the PyTorch eager reference).
    batch, seq:         input shape; inputs are read from the session (input_ids random in
                        ``[1, vocab_size)``, attention_mask all ones, token_type_ids zeros).
    backend:            ``"onnxruntime"`` or ``"torch"``.
    provider:           ``CPUExecutionProvider``, ``CUDAExecutionProvider`` or
                        ``TensorrtExecutionProvider`` (TensorRT with CUDA then CPU as fall-backs). For
                        the torch backend it picks the device (CUDA* -> ``cuda``, else ``cpu``).
    threads:            intra-op threads (ORT ``intra_op_num_threads``; ``torch.set_num_threads``);
                        0 = the runtime's default.
    inter_op_threads:   ORT ``inter_op_num_threads`` (sequential execution uses one anyway).
    spinning:           ORT ``session.intra_op.allow_spinning`` / ``inter_op.allow_spinning``: idle threads
                        spin (lower latency, burns CPU) or sleep (what a battery-powered device wants).
    graph_optimization: ORT graph optimization level: disable, basic, extended or all.
    memory_arena:       ORT ``enable_cpu_mem_arena`` (off = lower peak memory, more allocations).
    io_binding:         CUDA only: inputs copied to the GPU once and outputs bound on the GPU, so the
                        timing holds no host<->device copies.
    cpu_affinity:       CPU ids the worker process is pinned to (``os.sched_setaffinity``; Linux), or
                        None for no pinning.
    device_id:          GPU index for CUDA/TensorRT.
    provider_options:   extra options for the provider (e.g. TensorRT ``trt_fp16_enable``).
    vocab_size:         token ids are drawn from ``[1, min(vocab_size, 30000))``; None = the
                        ``vocab_size`` of a config.json beside the ONNX file, else ``[1, 32)``.
    seed:               seed of the random token ids.
    label:              free text naming the configuration in progress bars and results.
    """

    model: str
    batch: int = 1
    seq: int = 128
    backend: str = ONNXRUNTIME
    provider: str = CPU
    threads: int = 1
    inter_op_threads: int = 1
    spinning: bool = True
    graph_optimization: str = "all"
    memory_arena: bool = True
    io_binding: bool = False
    cpu_affinity: tuple[int, ...] | None = None
    device_id: int = 0
    provider_options: dict = field(default_factory=dict, hash=False, compare=False)
    vocab_size: int | None = None
    seed: int = 0
    label: str = ""

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}, got {self.provider!r}")
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise ValueError(f"graph_optimization must be one of {GRAPH_OPTIMIZATIONS}")
        if self.batch < 1 or self.seq < 1 or self.threads < 0:
            raise ValueError("batch and seq must be >= 1 and threads >= 0")
        if self.cpu_affinity is not None:
            object.__setattr__(self, "cpu_affinity", tuple(int(c) for c in self.cpu_affinity))

    @property
    def on_gpu(self) -> bool:
        return self.provider in (CUDA, TENSORRT)

    @property
    def name(self) -> str:
        return self.label or f"{os.path.basename(self.model)} b{self.batch} s{self.seq} t{self.threads}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cpu_affinity"] = list(self.cpu_affinity) if self.cpu_affinity is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BenchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Measurement:
    """Everything measured for one configuration, across rounds.

    rounds:          raw latency samples (seconds), one list per round, in measurement order.
    positions:       for each round, the configuration's position in that round's order.
    peak_rss_mb:     largest peak resident set size of the worker process over the rounds
                     (interpreter + runtime + model + buffers).
    session_rss_mb:  largest growth of the peak RSS from just before the session/model was created to
                     the end of the timed loop: what the model itself costs in memory.
    session_init_s:  session (or model) creation time per round.
    info:            what the worker reported: providers actually used, runtime versions, input shapes.
    error:           why the configuration could not be measured (its later rounds are skipped).
    """

    config: BenchConfig
    rounds: list[list[float]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    peak_rss_mb: float | None = None
    session_rss_mb: float | None = None
    session_init_s: list[float] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def samples(self) -> list[float]:
        return stats.flatten(self.rounds)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.samples)

    @cached_property
    def summary(self) -> dict:
        """stats.summarize of all samples (seconds); raises ValueError when there are none."""
        return stats.summarize(self.samples)

    def add_round(self, result: dict, position: int) -> None:
        self.rounds.append([float(x) for x in result["samples"]])
        self.positions.append(position)
        self.session_init_s.append(float(result["session_init_s"]))
        self.peak_rss_mb = max(self.peak_rss_mb or 0.0, result["peak_rss_mb"])
        self.session_rss_mb = max(self.session_rss_mb or 0.0, result["session_rss_mb"])
        self.info = result.get("info", {})
        self.__dict__.pop("summary", None)

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "rounds": self.rounds,
            "positions": self.positions,
            "peak_rss_mb": self.peak_rss_mb,
            "session_rss_mb": self.session_rss_mb,
            "session_init_s": self.session_init_s,
            "info": self.info,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Measurement:
        return cls(
            config=BenchConfig.from_dict(d["config"]), rounds=d.get("rounds", []), positions=d.get("positions", []),
            peak_rss_mb=d.get("peak_rss_mb"), session_rss_mb=d.get("session_rss_mb"),
            session_init_s=d.get("session_init_s", []), info=d.get("info", {}), error=d.get("error"),
        )


def check_providers(configs: Sequence[BenchConfig]) -> None:
    """Raise DeviceError (one clear line) when a configuration needs a provider or device this machine lacks."""
    ort_needed = {c.provider for c in configs if c.backend == ONNXRUNTIME}
    if ort_needed - {CPU}:
        import onnxruntime as ort

        available = ort.get_available_providers()
        for provider in sorted(ort_needed - {CPU}):
            if provider not in available:
                hint = (
                    "install onnxruntime-gpu instead of onnxruntime (pip uninstall onnxruntime && pip install "
                    "'glp-bench[gpu]') on a machine with an NVIDIA GPU and CUDA/cuDNN, or use --device cpu"
                )
                if provider == TENSORRT:
                    hint = "install TensorRT and an onnxruntime-gpu build with TensorRT, or drop --tensorrt to use CUDA"
                raise DeviceError(
                    f"{provider} is not available in this onnxruntime {ort.__version__} "
                    f"(available: {', '.join(available)}); {hint}"
                )
        if CUDA in ort_needed or TENSORRT in ort_needed:
            why = probe_cuda(ort)
            if why:
                raise DeviceError(
                    f"CUDAExecutionProvider is installed but cannot run ({why}); check that an NVIDIA GPU is visible "
                    "(nvidia-smi) and that the CUDA/cuDNN versions onnxruntime-gpu needs are installed, or use --device cpu"
                )
    if any(c.backend == TORCH and c.on_gpu for c in configs):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(
                "the PyTorch reference needs CUDA but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}); install a CUDA build of torch, or pass --no-torch"
            )


def probe_cuda(ort) -> str | None:
    """None when a session on CUDAExecutionProvider really runs on the GPU, else why not. ONNX Runtime
    falls back to the CPU silently when the GPU or its libraries are missing; a one-node model shows it."""
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    from glp_runtime.session import SessionError, SessionSettings, build_session

    try:
        build_session(model.SerializeToString(), SessionSettings(provider=CUDA, log_severity=4))
    except SessionError as e:
        if e.kind == "fallback":
            return f"sessions fall back to {e.providers[0] if e.providers else 'nothing'}"
        return e.detail or str(e)
    return None


def spawn(argv: list[str], job: dict, threads: int, timeout: float | None = None) -> dict:
    """Run a worker command in a fresh process with ``job`` as JSON on stdin; its result dict (the line after
    ``RESULT_MARKER``), or ``{"error": message}`` when it fails or times out. The worker imports this very
    installed glp_bench. Used by the latency runner and the gate's A/B worker."""
    env = dict(os.environ)
    if threads > 0:  # OpenMP-based libraries (torch) size their pools from this
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    try:
        proc = subprocess.run(argv, input=json.dumps(job), capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:]) or "no output"
    return {"error": f"worker exited with status {proc.returncode}: {tail}"}


def run_worker(config: BenchConfig, *, warmup: int, min_runs: int, min_time: float, max_time: float,
               timeout: float | None = None) -> dict:
    """Run one configuration once in a fresh worker process; its result dict (see worker.py).

    A worker that fails returns ``{"error": message}`` instead of raising."""
    job = {"config": config.to_dict(), "warmup": warmup, "min_runs": min_runs, "min_time": min_time,
           "max_time": max_time}
    return spawn([sys.executable, "-m", "glp_bench.bench.worker"], job, config.threads, timeout)


def measure(
    configs: Sequence[BenchConfig],
    rounds: int = LATENCY.rounds,
    min_runs: int = LATENCY.min_runs,
    min_time: float = LATENCY.min_time,
    warmup: int = LATENCY.warmup,
    max_time: float = LATENCY.max_time,
    progress=None,
    description: str = "measuring",
    on_round: Callable[[int, list[Measurement]], None] | None = None,
    timeout: float | None = None,
) -> list[Measurement]:
    """Measure every configuration in ``rounds`` interleaved rounds of isolated worker processes.

    Args:
        configs:   what to time; the result list has one :class:`Measurement` per config, same order.
        rounds:    rounds; each measures every configuration once, in a rotated order.
        min_runs:  per worker (so per configuration and round): at least this many timed runs ...
        min_time:  ... and at least this many seconds of timed runs.
        warmup:    untimed runs before timing, per worker (>= 1 recommended: first runs allocate).
        max_time:  a worker stops timing after this many seconds even below ``min_runs`` (slow configs).
        progress:  a ``rich.progress.Progress`` (``glp_bench.core.progress.make_progress()``) to advance, or None.
        on_round:  called after each round with (round index, measurements so far), e.g. to save
                   partial results so an interrupted run loses at most one round.
        timeout:   seconds after which a worker is killed and its configuration marked failed.

    Raises DeviceError before anything runs when a needed provider is missing. A configuration whose
    worker fails gets ``error`` set and is skipped in later rounds; the others carry on.
    """
    if rounds < 1 or min_runs < 1 or min_time < 0 or warmup < 0:
        raise ValueError("need rounds >= 1, min_runs >= 1, min_time >= 0, warmup >= 0")
    check_providers(configs)
    results = [Measurement(c) for c in configs]
    task = progress.add_task(description, total=rounds * len(configs)) if progress is not None else None
    for r, order in enumerate(stats.interleaved_order(len(configs), rounds)):
        for position, i in enumerate(order):
            m = results[i]
            if progress is not None:
                progress.update(task, description=f"{description} [round {r + 1}/{rounds}] {m.config.name}")
            if m.error is None:
                res = run_worker(m.config, warmup=warmup, min_runs=min_runs, min_time=min_time,
                                 max_time=max_time, timeout=timeout)
                if res.get("error"):
                    m.error = res["error"]
                    m.info = res.get("info", m.info)
                else:
                    m.add_round(res, position)
            if progress is not None:
                progress.advance(task)
        if on_round is not None:
            on_round(r, results)
    return results
