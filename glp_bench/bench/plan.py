"""What ``glp-bench latency`` measures: the run's exported models x the target's settings -> configs.

Every depth with an ONNX variant the target lists (status "ok" in the manifest, file present) is
measured, plus always the full-depth fp32 model (the reference of every speedup) and, when asked, the
full-depth PyTorch eager model; for every thread count x batch size x sequence length of the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import RunDirError
from ..core.rundir import RunDir
from ..core.targets import Target
from .results import TORCH_VARIANT
from .runner import CPU, CUDA, ONNXRUNTIME, TORCH, BenchConfig


@dataclass
class Plan:
    entries: list[tuple[dict, BenchConfig]]  # (meta for the results file, config)
    full_depth: int
    reference: str  # model name of the full-depth reference
    warnings: list[str] = field(default_factory=list)

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


def make_plan(run: RunDir, target: Target, *, models: list[str] | None = None, variants: list[str] | None = None,
              threads: list[int] | None = None, batch_sizes: list[int] | None = None,
              seq_lengths: list[int] | None = None, torch_reference: bool | None = None) -> Plan:
    """The configurations to measure. Raises RunDirError when the run has nothing to measure."""
    warnings: list[str] = []
    exported = {n: r for n, r in run.models.items() if r.get("onnx")}
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
    if ref_name not in exported and ref_name in run.models and run.models[ref_name].get("onnx"):
        exported[ref_name] = run.models[ref_name]

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
    thread_counts = threads or target.thread_counts()
    use_torch = target.torch_reference if torch_reference is None else torch_reference
    torch_model = run.model_dir(ref_name)
    if use_torch and not (torch_model / "config.json").is_file():
        warnings.append(f"PyTorch reference skipped: {torch_model} has no fine-tuned model")
        use_torch = False

    entries: list[tuple[dict, BenchConfig]] = []
    for t in thread_counts:
        for b in batch_sizes or target.batch_sizes:
            for s in seq_lengths or target.seq_lengths:
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
                    meta = {"model": ref_name, "depth": full_depth, "kept_layers": run.models[ref_name].get("kept_layers"),
                            "variant": TORCH_VARIANT, "path": str(torch_model.relative_to(run.path)),
                            "file_size": _folder_weights_size(torch_model), "sha256": None, "preset": None,
                            "dev_scores": run.models[ref_name].get("dev_scores")}
                    entries.append((meta, cfg))
    if target.quantization and any(v == "int8" for _, v, _ in selected):
        presets = {exported[n]["onnx"]["int8"].get("preset") for n, v, _ in selected if v == "int8"}
        presets.discard(None)
        if presets and presets != {target.quantization}:
            warnings.append(f"the target wants {target.quantization} int8 quantization but the run's int8 files use "
                            f"{', '.join(sorted(presets))}: precision is emulated with those; re-export with "
                            f"--quant-preset {target.quantization} for the exact scheme")
    return Plan(entries=entries, full_depth=full_depth, reference=ref_name, warnings=warnings)


def _folder_weights_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*") if f.suffix in (".safetensors", ".bin"))
