"""glp-bench prune-and-export: prune (search + final fine-tunes) then export every depth to ONNX."""

from __future__ import annotations


def add_parser(sub):
    from .export import add_export_args
    from .prune import add_prune_args

    p = sub.add_parser(
        "prune-and-export", help="prune, then export every depth to ONNX with validation and variants (the main job)",
        description="'glp-bench prune' followed by 'glp-bench export' on the same run directory, with the options "
        "of both. Resumable like prune: re-running skips finished candidates, final models and up-to-date exports.",
    )
    add_prune_args(p)
    add_export_args(p)
    return p


def run(args) -> int:
    """The prune command, then the export stage on the run directory it opened (its lock held throughout)."""
    import time

    from rich.console import Console

    from ..core.progress import make_progress
    from ..export.stage import export_run
    from ..export.validate import CUDA, require_provider
    from ..export.variants import parse_variants
    from ..report.render import write_run_report_or_warn
    from . import export as export_cmd
    from . import prune as prune_cmd
    from ._common import quiet_hf

    # bad export options fail now, not after an hour of pruning
    if "fp16" in parse_variants(args.variants):
        require_provider(CUDA, "the fp16 variant")
    err = Console(stderr=True)
    t0 = time.perf_counter()
    quiet_hf()
    plan, opened = prune_cmd.prepare(args)
    with opened:
        run_dir = opened.run.path  # the resolved default when --run was not given
        prune_cmd.prune(plan, opened.run)
        t1 = time.perf_counter()
        with make_progress(transient=True) as progress:
            report = export_run(run_dir, data_dir=args.data_dir, progress=progress, **export_cmd.export_kwargs(args))
        export_cmd.render(report, Console())
        t2 = time.perf_counter()
        err.print(f"prune {(t1 - t0) / 60:.1f} min, export {(t2 - t1) / 60:.1f} min, total {(t2 - t0) / 60:.1f} min "
                  f"-> {run_dir}")
        write_run_report_or_warn(run_dir, err)
    report.raise_for_failures()
    return 0
