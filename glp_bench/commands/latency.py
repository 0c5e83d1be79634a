"""glp-bench latency: latency and throughput of every depth and variant of a run with ONNX Runtime."""

from __future__ import annotations

from ..bench.settings import LATENCY
from ._common import non_negative_float, non_negative_int, positive_float, positive_int


def _items(text: str, example: str) -> list[str]:
    """A comma-separated list; an empty one or an empty entry (``1,,2``, ``fp32,``) is refused, not skipped."""
    import argparse

    from ..core.vocab import split_names

    try:
        return split_names(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e}: give a comma-separated list, e.g. {example}") from None


def _ints(text: str) -> list[int]:
    import argparse

    try:
        values = [int(x) for x in _items(text, "1,8")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _models(text: str) -> list[str]:
    return _items(text, "depth-06,depth-03")


def _variants(text: str) -> list[str]:
    return _items(text, "fp32,int8")


def add_parser(sub):
    p = sub.add_parser(
        "latency", help="measure latency and throughput of every depth/variant with ONNX Runtime on a target",
        description="Measure every exported depth and variant of a run with ONNX Runtime on a target (cpu, cuda, "
        "embedded-arm64, your own deploy/targets/NAME.toml or a path to a .toml). Each configuration runs in an "
        "isolated worker process, in interleaved rounds, warm-up excluded, timed until both --min-runs and "
        "--min-time are reached; every raw sample is kept. Results: <run>/latency/<target>.json (merged with "
        "the measurements already there) and a table with p50/p90/p99, CV, throughput, peak memory, file size "
        "and speedups vs the full-depth fp32 model and vs PyTorch eager. The default quick sweep takes about 2 "
        "minutes for the main job's run on 2 cores (the plan line gives the estimate); --sweep full measures "
        "every thread count x batch size x sequence length of the target.",
    )
    p.add_argument("--device", "--target", dest="device", default="cpu",
                   help="target name (cpu, cuda, embedded-arm64, or NAME.toml in ./deploy/targets or "
                   "$GLP_BENCH_TARGETS) or a path to a target .toml (default cpu)")
    p.add_argument("--run", "--run-dir", dest="run_dir", default=None,
                   help="run directory (default: the only one under ./runs)")
    p.add_argument("--models", type=_models, default=None, help="only these models, e.g. depth-06,depth-03")
    p.add_argument("--variants", type=_variants, default=None, help="override the target's variants, e.g. fp32,int8")
    p.add_argument("--sweep", choices=("quick", "full"), default="quick",
                   help="quick (default): the target's last thread count, its two smallest batch sizes and the "
                   "sequence length nearest the run's max_length; full: every thread count x batch size x "
                   "sequence length the target lists")
    p.add_argument("--threads", type=_ints, default=None,
                   help="thread counts instead of the sweep's, e.g. 1,2 (at most the CPUs this process may use)")
    p.add_argument("--batch-sizes", type=_ints, default=None,
                   help="batch sizes instead of the sweep's, e.g. 1,8,32 (refused when the estimated memory "
                   "does not fit the memory available)")
    p.add_argument("--seq-lengths", type=_ints, default=None,
                   help="sequence lengths instead of the sweep's, e.g. 64,128,256 (at most the model's positions)")
    p.add_argument("--rounds", type=positive_int, default=LATENCY.rounds, help="interleaved rounds (default %(default)s)")
    p.add_argument("--min-runs", type=positive_int, default=LATENCY.min_runs,
                   help="timed runs per configuration and round, at least (default %(default)s)")
    p.add_argument("--min-time", type=non_negative_float, default=LATENCY.min_time,
                   help="seconds of timed runs per configuration and round, at least (default %(default)s)")
    p.add_argument("--warmup", type=non_negative_int, default=LATENCY.warmup,
                   help="untimed warm-up runs per worker (default %(default)s)")
    p.add_argument("--max-time", type=positive_float, default=LATENCY.max_time,
                   help="a worker stops timing after this many seconds even below --min-runs (default %(default)s)")
    p.add_argument("--max-cv", type=positive_float, default=LATENCY.max_cv,
                   help="warn when a configuration's coefficient of variation exceeds this (default %(default)s)")
    torch_group = p.add_mutually_exclusive_group()
    torch_group.add_argument("--no-torch", dest="torch", action="store_false", default=None,
                             help="skip the PyTorch eager reference")
    torch_group.add_argument("--torch", dest="torch", action="store_true",
                             help="measure the PyTorch eager reference even when the target turns it off")
    p.add_argument("--tensorrt", action="store_true", help="cuda targets: use the TensorRT execution provider")
    p.add_argument("--out", default=None, help="results file (default <run>/latency/<target>.json)")
    p.add_argument("--replace", action="store_true",
                   help="discard the measurements already in the results file (default: merge with them: "
                   "configurations measured again are replaced, the others kept; a file from another machine "
                   "or set-up is refused)")
    return p


def run(args) -> int:
    import dataclasses

    from rich.console import Console

    from ..bench.plan import find_run_dir
    from ..core.openrun import open_run
    from ..core.targets import TargetError, resolve_target

    target = resolve_target(args.device)
    if args.tensorrt:
        if target.device != "cuda":
            raise TargetError(f"--tensorrt needs a cuda target; {target.name} is a {target.device} target")
        target = dataclasses.replace(target, tensorrt=True)
    with open_run(find_run_dir(args.run_dir)) as opened:  # latency/ and report.md are written into the run
        return _measure(args, target, opened.run, Console(stderr=True))


def _measure(args, target, run_dir, console) -> int:
    """Measure the opened run on ``target``: the table, the depth fits, the warnings, the report."""
    from rich.console import Console

    from ..bench.render import render_table
    from ..bench.stage import measure_run
    from ..core.errors import GlpError
    from ..report.render import write_run_report_or_warn

    doc, out = measure_run(run_dir, target, args.out, models=args.models, variants=args.variants,
                           threads=args.threads, batch_sizes=args.batch_sizes, seq_lengths=args.seq_lengths,
                           torch_reference=args.torch, rounds=args.rounds, min_runs=args.min_runs,
                           min_time=args.min_time, warmup=args.warmup, max_time=args.max_time, max_cv=args.max_cv,
                           sweep=args.sweep, replace=args.replace, console=console)
    Console().print(render_table(doc))
    for fit in doc["depth_fit"]:
        Console().print(f"{fit['variant']} b{fit['batch']} s{fit['seq']} t{fit['threads']}: latency ~ "
                        f"{fit['intercept_s'] * 1e3:.2f} ms + {fit['slope_s'] * 1e3:.2f} ms x depth (r2 {fit['r2']:.3f})")
    unstable = [m for m in doc["measurements"] if m["unstable"]]
    for w in doc["warnings"]:
        if len(unstable) <= 3 or "spread too large" not in w:
            console.print(f"[yellow]warning:[/] {w}")
    if len(unstable) > 3:
        worst = max(unstable, key=lambda m: m["summary_s"]["cv"])
        console.print(f"[yellow]warning:[/] {len(unstable)} of {len(doc['measurements'])} configurations have a spread "
                      f"too large to trust (CV > {args.max_cv:.0%}; worst {worst['key']} at "
                      f"{worst['summary_s']['cv']:.0%}): the machine is busy; close other programs, pin to idle "
                      "cores, or raise --min-time/--rounds (every warning is in the results file)")
    console.print(f"results: {out}")
    write_run_report_or_warn(run_dir.path, console)
    if not any(m["summary_s"] for m in doc["measurements"]):
        raise GlpError(f"no configuration could be measured (see the warnings above and {out})")
    return 0
