"""The latency stage: measure every depth and variant of a run on a target (``measure_run``) into
``latency/<target>.json``, saved after every round so an interrupted measurement keeps what it finished,
merged with what the file already held (glp_bench.bench.merge). ``glp-bench latency`` parses the
arguments and renders the table."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..core.errors import RunDirError
from .settings import LATENCY


def earlier_results(out: Path, replace: bool, new_facts: dict) -> dict | None:
    """The results already in ``out`` to merge with (None: none, or ``replace``); refuses a file measured on
    another machine or set-up (glp_bench.bench.merge.differences)."""
    from . import merge, results

    if replace or not out.is_file():
        return None
    try:
        old = results.load(out)
    except RunDirError as e:
        raise RunDirError(f"{e} (or pass --replace to start {out.name} anew)") from None
    diff = merge.differences(old, new_facts)
    if diff:
        raise RunDirError(f"{out} holds latency measured on another machine or set-up ({'; '.join(diff[:3])}); "
                          "results are not mixed: pass --out OTHER.json to keep both, or --replace to discard them")
    return old


def measure_run(run_dir, target, out: str | Path | None = None, *, models=None, variants=None, threads=None,
                batch_sizes=None, seq_lengths=None, torch_reference=None, rounds: int = LATENCY.rounds,
                min_runs: int = LATENCY.min_runs, min_time: float = LATENCY.min_time, warmup: int = LATENCY.warmup,
                max_time: float = LATENCY.max_time, max_cv: float = LATENCY.max_cv,
                sweep: str = "quick", replace: bool = False, console=None) -> tuple[dict, Path]:
    """Measure ``run_dir`` (a loaded RunDir) on ``target``; returns the results document and its path.
    ``sweep``: "quick" (the default subset) or "full" (every thread count x batch x seq the target lists);
    ``replace``: discard the results already in the file instead of merging with them."""
    import onnxruntime as ort
    from rich.console import Console

    from ..core.jsonio import environment
    from ..core.preflight import writable_file
    from ..core.progress import make_progress
    from ..core.rundir import now
    from . import merge, results, runner
    from .plan import estimate_seconds, make_plan

    console = console or Console(stderr=True)
    plan = make_plan(run_dir, target, models=models, variants=variants, threads=threads,
                     batch_sizes=batch_sizes, seq_lengths=seq_lengths, torch_reference=torch_reference, sweep=sweep)
    runner.check_providers(plan.configs)  # a missing provider fails before any work
    emulation = target.emulation()
    settings = {"rounds": rounds, "min_runs": min_runs, "min_time_s": min_time, "warmup_runs": warmup,
                "max_time_s": max_time, "max_cv": max_cv,
                "order": "interleaved rounds (glp_bench.bench.stats.interleaved_order), one worker process per "
                         "configuration and round"}
    host = {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    out = writable_file(out or run_dir.latency_path(target.name), "--out", writes=results.FORMAT,
                        example=str(run_dir.latency_path(target.name)))
    old = earlier_results(out, replace, {"environment": environment(), "target": target.to_dict()})
    current_sha = {(n, v): (r.get("onnx") or {}).get(v, {}).get("sha256") for n, r in run_dir.models.items()
                   for v in (r.get("onnx") or {})}
    estimate = estimate_seconds(plan.configs, rounds, min_time)
    shape = plan.shapes
    console.print(f"latency on target [bold]{target.name}[/] ({target.provider}), {plan.sweep} sweep (threads "
                  f"{','.join(map(str, shape['threads']))}; batch {','.join(map(str, shape['batch_sizes']))}; seq "
                  f"{','.join(map(str, shape['seq_lengths']))}): {len(plan.configs)} configurations x {rounds} rounds "
                  f"from {run_dir.path}, estimated {_duration(estimate)} or more")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5 * len(host["cpu_affinity"] or [1]):
        console.print(f"[yellow]note:[/] the machine is busy (load average {load:.1f}): the run takes longer than "
                      "estimated and its spread is larger; close other programs for trustworthy numbers")
    if replace and out.is_file():
        console.print(f"[yellow]note:[/] --replace: the results already in {out} are discarded")
    for note in emulation["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    metas = [meta for meta, _ in plan.entries]

    created = now()  # one run, one stamp on its measurements

    def document(measurements, rounds_done: int, complete: bool) -> tuple[dict, dict | None]:
        doc = results.build(run=run_dir, target=target, emulation=emulation, settings=settings, host=host,
                            entries=list(zip(metas, measurements, strict=True)), full_depth=plan.full_depth,
                            rounds_done=rounds_done, complete=complete, extra_warnings=plan.warnings, created=created)
        return merge.combine(old, doc, current_sha) if old is not None else (doc, None)

    def save_partial(r: int, measurements) -> None:
        results.save(out, document(measurements, r + 1, complete=r + 1 == rounds)[0])

    start = time.monotonic()
    with make_progress() as progress:
        measurements = runner.measure(plan.configs, rounds=rounds, min_runs=min_runs, min_time=min_time,
                                      warmup=warmup, max_time=max_time, progress=progress, description=target.name,
                                      on_round=save_partial)
    doc, summary = document(measurements, rounds, complete=True)
    results.save(out, doc)
    console.print(f"measured in {_duration(time.monotonic() - start)} (estimated {_duration(estimate)})")
    for line in merge.describe(summary, old.get("created")) if summary else []:
        console.print(f"[yellow]note:[/] {line} ({out})")
    return doc, Path(out)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
