"""glp-bench report: dev score against speedup for every depth, variant and target of one or more runs."""

from __future__ import annotations

from ._common import non_negative_float, positive_int

FORMATS = ("table", "markdown", "json", "csv")


def add_parser(sub):
    from ..report.stage import DEFAULT_MAX_DROP

    p = sub.add_parser(
        "report", help="score vs speedup per depth/variant/target, Pareto frontier, recommendation, plot",
        description="Tabulate every pruned depth and ONNX variant of a run: kept layers, strategy, dev scores "
        "(PyTorch, and each ONNX variant through ONNX Runtime), the change against the full model, latency "
        "p50/p90 at batch 1, throughput at the largest batch, speedup against full depth, file size and the "
        "Pareto frontier of score against latency; one table per run and latency target, strategies side by "
        "side per depth, and the fastest artifact within --max-drop points of the full model.",
    )
    p.add_argument("--run", "--run-dir", dest="runs", action="append", default=None, metavar="DIR",
                   help="run directory; repeat to combine runs (default: the only one under ./runs)")
    p.add_argument("--target", "--device", dest="targets", action="append", default=None, metavar="NAME",
                   help="latency target (latency/NAME.json); repeatable (default: every target measured)")
    p.add_argument("--max-drop", type=non_negative_float, default=DEFAULT_MAX_DROP, metavar="POINTS",
                   help="recommend the fastest artifact whose main dev score is at most this many points (the "
                   "metric x 100: GLUE points on a GLUE task) below the full model (default %(default)s)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also draw score against speedup per strategy and variant, Pareto frontier included")
    p.add_argument("--glue", action="store_true",
                   help="only the GLUE-wide table (runs of several tasks: one row per strategy and depth, one "
                   "column per task's main metric in GLUE points, the average, the speedup); without it the table "
                   "follows the per-run report (table, markdown; JSON key glue)")
    p.add_argument("--glue-target", default=None, metavar="NAME",
                   help="latency target of the GLUE-wide table's speedups (default: the first --target, else the "
                   "first measured)")
    p.add_argument("--output", "-o", default=None, metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="latency columns from this thread count (default: the most threads measured)")
    p.add_argument("--seq", type=positive_int, default=None, metavar="N",
                   help="latency columns at this sequence length (default: the run's max length if measured)")
    return p


def run(args) -> int:
    import io
    import sys
    from pathlib import Path

    from rich.console import Console

    from ..bench.plan import find_run_dir
    from ..core.errors import GlpError
    from ..core.jsonio import atomic_write_text
    from ..core.preflight import writable_file
    from ..report.glue import build_glue, check_glue_only, render_report_rich, report_text
    from ..report.render import JSON_FORMAT
    from ..report.stage import build_report

    for option, path, writes in (("--output", args.output, JSON_FORMAT), ("--plot", args.plot, None)):
        if path:
            writable_file(path, option, writes=writes, example="report.md" if option == "--output" else "plot.png")
    if args.output and args.plot and Path(args.output).absolute() == Path(args.plot).absolute():
        raise GlpError(f"--output and --plot name the same file {args.output}; give the plot its own file")
    runs = args.runs or [find_run_dir(None)]
    if len(set(runs)) != len(runs):
        raise GlpError(f"--run given twice for the same directory ({', '.join(runs)})")
    report = build_report(runs, args.targets, threads=args.threads, seq=args.seq, max_drop=args.max_drop)
    glue = build_glue(report, args.glue_target or (args.targets or [None])[0], strict=args.glue)  # several tasks
    if args.glue:
        check_glue_only(glue, runs)

    if args.format == "table":
        if args.output:
            console = Console(record=True, width=200, no_color=True, file=io.StringIO())
            render_report_rich(report, glue, console, args.glue)
            atomic_write_text(args.output, console.export_text())
        else:
            render_report_rich(report, glue, Console(), args.glue)
    else:
        text = report_text(report, glue, args.format, args.glue)
        if args.output:
            atomic_write_text(args.output, text)
        else:
            sys.stdout.write(text)
    err = Console(stderr=True)
    if args.output:
        err.print(f"report: {args.output}")
    if args.plot:
        from ..report.plot import plot_report

        err.print(f"plot: {plot_report(report, args.plot)}")
    return 0
