"""The latency stage: measure every depth and variant of a run on a target (``measure_run``) into
``latency/<target>.json``, saved after every round so an interrupted measurement keeps what it finished.
``glp-bench latency`` parses the arguments and renders the table."""

from __future__ import annotations

import os
from pathlib import Path


def measure_run(run_dir, target, out: str | Path | None = None, *, models=None, variants=None, threads=None,
                batch_sizes=None, seq_lengths=None, torch_reference=None, rounds: int = 3, min_runs: int = 10,
                min_time: float = 1.0, warmup: int = 3, max_time: float = 60.0, max_cv: float = 0.10,
                console=None) -> tuple[dict, Path]:
    """Measure ``run_dir`` (a loaded RunDir) on ``target``; returns the results document and its path."""
    import onnxruntime as ort
    from rich.console import Console

    from ..core.preflight import writable_file
    from ..core.progress import make_progress
    from . import results, runner
    from .plan import make_plan

    console = console or Console(stderr=True)
    plan = make_plan(run_dir, target, models=models, variants=variants, threads=threads,
                     batch_sizes=batch_sizes, seq_lengths=seq_lengths, torch_reference=torch_reference)
    runner.check_providers(plan.configs)  # a missing provider fails before any work
    emulation = target.emulation()
    settings = {"rounds": rounds, "min_runs": min_runs, "min_time_s": min_time, "warmup_runs": warmup,
                "max_time_s": max_time, "max_cv": max_cv,
                "order": "interleaved rounds (glp_bench.bench.stats.interleaved_order), one worker process per "
                         "configuration and round"}
    host = {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    out = writable_file(out or run_dir.latency_path(target.name), "--out")
    console.print(f"latency on target [bold]{target.name}[/] ({target.provider}): {len(plan.configs)} configurations "
                  f"x {rounds} rounds from {run_dir.path}")
    for note in emulation["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    metas = [meta for meta, _ in plan.entries]

    def document(measurements, rounds_done: int, complete: bool) -> dict:
        return results.build(run=run_dir, target=target, emulation=emulation, settings=settings, host=host,
                             entries=list(zip(metas, measurements, strict=True)), full_depth=plan.full_depth,
                             rounds_done=rounds_done, complete=complete, extra_warnings=plan.warnings)

    def save_partial(r: int, measurements) -> None:
        results.save(out, document(measurements, r + 1, complete=r + 1 == rounds))

    with make_progress() as progress:
        measurements = runner.measure(plan.configs, rounds=rounds, min_runs=min_runs, min_time=min_time,
                                      warmup=warmup, max_time=max_time, progress=progress, description=target.name,
                                      on_round=save_partial)
    doc = document(measurements, rounds, complete=True)
    results.save(out, doc)
    return doc, Path(out)
