"""What ``glp-bench latency`` measures: the run's exported models x the target's settings -> configs.

Every depth with an ONNX variant the target lists (status "ok" in the manifest, file present) is
measured, plus always the full-depth fp32 model (the reference of every speedup) and, when asked, the
full-depth PyTorch eager model; for every thread count x batch size x sequence length of the sweep
(:func:`sweep_shapes`: the target's full lists, or the quick default's subset). The options are checked
against the models and this machine before anything runs (glp_bench.bench.limits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from glp_runtime.limits import available_cpus

from ..core.errors import RunDirError
from ..core.rundir import RunDir
from ..core.targets import Target
from . import limits
from .results import TORCH_VARIANT
from .runner import CPU, CUDA, ONNXRUNTIME, TORCH, BenchConfig

SWEEPS = ("quick", "full")
# Seconds a worker costs beyond its timed runs (process start, imports, session, warm-up), measured on an
# idle 2-core EPYC with all-MiniLM-L6-v2 (a busy machine takes longer): for the plan line's estimate.
WORKER_OVERHEAD_S = {ONNXRUNTIME: 0.8, TORCH: 4.0}


@dataclass
class Plan:
    entries: list[tuple[dict, BenchConfig]]  # (meta for the results file, config)
    full_depth: int
    reference: str  # model name of the full-depth reference
    warnings: list[str] = field(default_factory=list)
    sweep: str = "full"
    shapes: dict = field(default_factory=dict)  # {"threads": [...], "batch_sizes": [...], "seq_lengths": [...]}

    @property
    def configs(self) -> list[BenchConfig]:
        return [c for _, c in self.entries]


def find_run_dir(run_dir: str | None, root: str | Path = "runs") -> Path:
    """``--run`` as given, else the only run directory under ``./runs``."""
    if run_dir:
        return Path(run_dir)
    root = Path(root)
    runs = RunDir.runs_under(root)
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise RunDirError(f"no run directory found under {root}/; pass --run DIR (made by 'glp-bench prune' + 'export')")
    raise RunDirError(f"several run directories under {root}/ ({', '.join(p.name for p in runs)}); choose one with --run DIR")


def sweep_shapes(target: Target, sweep: str = "quick", max_length: int | None = None, *,
                 threads: list[int] | None = None, batch_sizes: list[int] | None = None,
                 seq_lengths: list[int] | None = None, thread_counts: list[int] | None = None) -> dict:
    """Thread counts, batch sizes and sequence lengths to measure; options given win over the sweep.

    ``full``: every value the target lists. ``quick`` (the default): the target's last thread count (the
    one it deploys with), its smallest batch and the next one (latency and throughput), and one sequence
    length: the listed one nearest the run's max_length."""
    if sweep not in SWEEPS:
        raise ValueError(f"sweep must be one of {SWEEPS}, got {sweep!r}")
    counts = thread_counts or target.thread_counts()
    batches = sorted(target.batch_sizes)
    seqs = list(target.seq_lengths)
    if sweep == "quick":
        counts = counts[-1:]
        batches = batches[:2]
        ref = max_length or 128
        seqs = [min(seqs, key=lambda s: (abs(s - ref), s))]
    return {"threads": list(threads or counts), "batch_sizes": list(batch_sizes or batches),
            "seq_lengths": list(seq_lengths or seqs)}


def estimate_seconds(configs: list[BenchConfig], rounds: int, min_time: float) -> float:
    """configurations x rounds x (min-time + the worker's overhead): a lower bound when a run of a
    configuration takes longer than min-time / min-runs (large batches)."""
    return rounds * sum(min_time + WORKER_OVERHEAD_S.get(c.backend, WORKER_OVERHEAD_S[TORCH]) for c in configs)


def make_plan(run: RunDir, target: Target, *, models: list[str] | None = None, variants: list[str] | None = None,
              threads: list[int] | None = None, batch_sizes: list[int] | None = None,
              seq_lengths: list[int] | None = None, torch_reference: bool | None = None,
              sweep: str = "full", cpus: int | None = None, memory_mb: float | None = None,
              check_memory: bool = True) -> Plan:
    """The configurations to measure. Raises RunDirError when the run has nothing to measure, and
    RunDirError/DeviceError naming the option when a sequence length exceeds a model's positions, a
    thread count the CPUs this process may use (``cpus``, default: its affinity) or a batch the memory
    available (``memory_mb``, default MemAvailable)."""
    warnings: list[str] = []
    exported = run.exported()
    if not exported:
        raise RunDirError(
            f"{run.path} has no exported ONNX models; run 'glp-bench export --run {run.path}' first"
        )
    if models:
        unknown = [m for m in models if m not in exported]
        if unknown:
            raise RunDirError(f"{run.path} has no exported model {', '.join(unknown)}; exported: {', '.join(exported)}")
        exported = {n: exported[n] for n in models}
    wanted = list(variants or target.variants)
    full_depth, ref_name = run.reference()
    ref = run.model(ref_name)
    if ref_name not in exported and ref is not None and ref.onnx:
        exported[ref_name] = ref.raw

    def usable(name: str, variant: str) -> Path | None:
        rec = (exported.get(name, {}).get("onnx") or {}).get(variant)
        if not rec:
            return None
        if rec.get("status") != "ok":
            warnings.append(f"{name}/{variant}: skipped, its export status is {rec.get('status')!r}"
                            + (f" ({rec['error']})" if rec.get("error") else ""))
            return None
        path = run.file(rec["path"])
        if not path.is_file():
            warnings.append(f"{name}/{variant}: skipped, {path} is missing; re-run 'glp-bench export'")
            return None
        if rec.get("size") is not None and path.stat().st_size != rec["size"]:
            warnings.append(f"{name}/{variant}: {path} changed since export (size differs); measuring it anyway")
        return path

    selected: list[tuple[str, str, Path]] = []
    for name in sorted(exported, key=lambda n: (-exported[n]["depth"], n)):
        for variant in wanted:
            path = usable(name, variant)
            if path is not None:
                selected.append((name, variant, path))
    if not selected:
        raise RunDirError(
            f"{run.path} has no usable ONNX file for variants {', '.join(wanted)} (status ok and on disk); "
            f"run 'glp-bench export --run {run.path} --variants {','.join(wanted)}' or choose other --variants"
        )
    if (ref_name, "fp32") not in {(n, v) for n, v, _ in selected}:
        ref_path = usable(ref_name, "fp32") if ref_name in exported else None
        if ref_path is None:
            warnings.append(f"the full-depth fp32 model ({ref_name}) is not available: speedups vs full depth are missing")
        else:
            selected.insert(0, (ref_name, "fp32", ref_path))

    provider = target.provider
    shapes = sweep_shapes(target, sweep, run.cfg.max_length, threads=threads,
                          batch_sizes=batch_sizes, seq_lengths=seq_lengths)
    use_torch = target.torch_reference if torch_reference is None else torch_reference
    torch_model = run.model_dir(ref_name)
    if use_torch and not (torch_model / "config.json").is_file():
        warnings.append(f"PyTorch reference skipped: {torch_model} has no fine-tuned model")
        use_torch = False
    _check(run, target, selected, shapes, (threads, batch_sizes, seq_lengths), ref_name, torch_model if use_torch else None,
           cpus, memory_mb if memory_mb is not None else (limits.available_mb() if check_memory else None))

    entries: list[tuple[dict, BenchConfig]] = []
    for t in shapes["threads"]:
        for b in shapes["batch_sizes"]:
            for s in shapes["seq_lengths"]:
                common = dict(batch=b, seq=s, threads=t, inter_op_threads=target.inter_op_threads,
                              spinning=target.spinning, memory_arena=target.memory_arena,
                              graph_optimization=target.graph_optimization, cpu_affinity=target.affinity(t))
                for name, variant, path in selected:
                    rec = exported[name]
                    orec = rec["onnx"][variant]
                    options = {}
                    if provider == "TensorrtExecutionProvider" and variant == "fp16":
                        options["trt_fp16_enable"] = True
                    cfg = BenchConfig(model=str(path), backend=ONNXRUNTIME, provider=provider,
                                      io_binding=target.device == "cuda" and target.io_binding,
                                      provider_options=options, label=f"{name}/{variant} b{b} s{s} t{t}", **common)
                    meta = {"model": name, "depth": rec["depth"], "kept_layers": rec.get("kept_layers"),
                            "variant": variant, "path": orec["path"], "file_size": path.stat().st_size,
                            "sha256": orec.get("sha256"), "preset": orec.get("preset"),
                            "dev_scores": orec.get("dev_scores")}
                    entries.append((meta, cfg))
                if use_torch:
                    cfg = BenchConfig(model=str(torch_model), backend=TORCH,
                                      provider=CUDA if target.device == "cuda" else CPU,
                                      label=f"{ref_name}/{TORCH_VARIANT} b{b} s{s} t{t}", **common)
                    meta = {"model": ref_name, "depth": full_depth, "kept_layers": ref.kept_layers,
                            "variant": TORCH_VARIANT, "path": str(torch_model.relative_to(run.path)),
                            "file_size": _folder_weights_size(torch_model), "sha256": None, "preset": None,
                            "dev_scores": ref.dev_scores}
                    entries.append((meta, cfg))
    if target.quantization and any(v == "int8" for _, v, _ in selected):
        presets = {exported[n]["onnx"]["int8"].get("preset") for n, v, _ in selected if v == "int8"}
        presets.discard(None)
        if presets and presets != {target.quantization}:
            warnings.append(f"the target wants {target.quantization} int8 quantization but the run's int8 files use "
                            f"{', '.join(sorted(presets))}: precision is emulated with those; re-export with "
                            f"--quant-preset {target.quantization} for the exact scheme")
    return Plan(entries=entries, full_depth=full_depth, reference=ref_name, warnings=warnings, sweep=sweep,
                shapes=shapes)


def _check(run: RunDir, target: Target, selected: list[tuple[str, str, Path]], shapes: dict, given: tuple,
           ref_name: str, torch_model: Path | None, cpus: int | None, memory_mb: float | None) -> None:
    """The sweep against the models (positions) and this machine (CPUs, memory), before any work."""
    threads, batch_sizes, seq_lengths = given
    def where(key: str) -> str:
        return f"'{key}' of target file {target.source}" if target.source else f"'{key}' of target {target.name}"

    cpus = cpus or available_cpus()  # the runtime's rule: what it will refuse too
    limits.check_threads(shapes["threads"], cpus, "--threads" if threads else where("threads"))
    models = {}  # (name, backend) -> (shape, weights bytes)
    for name, _variant, path in selected:
        shape = limits.read_shape(path.parent, run.model_dir(name))
        size = path.stat().st_size
        models[(name, ONNXRUNTIME)] = (shape, max(size, models.get((name, ONNXRUNTIME), (None, 0))[1]))
    if torch_model is not None:
        models[(ref_name, TORCH)] = (limits.read_shape(torch_model), _folder_weights_size(torch_model))
    limits.check_seq(shapes["seq_lengths"], {n: shape for (n, _), (shape, _) in models.items()},
                     "--seq-lengths" if seq_lengths else where("seq_lengths"))
    on_cpu = target.device == "cpu"  # GPU memory is not estimated
    configs = [(name, backend, shape, size, b, s) for (name, backend), (shape, size) in models.items()
               if on_cpu for b in shapes["batch_sizes"] for s in shapes["seq_lengths"]]
    limits.check_memory(configs, memory_mb, "--batch-sizes" if batch_sizes else where("batch_sizes"))


def _folder_weights_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*") if f.suffix in (".safetensors", ".bin"))
