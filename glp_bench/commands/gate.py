"""glp-bench gate: is a candidate ONNX model slower than a baseline (or, with ``--scores``, worse on the dev
set: ``glp_bench.gate.score_stage``)? The exit status is the verdict.

The measurement, the decision and the ``--json`` document (format ``glp-bench-gate``) are the gate stage's,
``glp_bench.gate.stage``; this module parses the arguments and renders the evidence
(``glp_bench.gate.render``).
"""

from __future__ import annotations

from ..bench.settings import GATE_AB
from ._common import non_negative_float, non_negative_int, positive_float, positive_int, probability


def add_parser(sub):
    p = sub.add_parser(
        "gate", help="CI regression gate on inference time (or dev scores: --scores): exit 0 no regression, 1 "
        "regression, 2 undecided",
        description="Decide whether CANDIDATE is slower than BASELINE; the exit status is the verdict (0 = no "
        "regression, 1 = regression, 2 = could not decide / bad input), with tables of the evidence. Same-job A/B "
        "(BASELINE is an ONNX model, export folder or run directory): both are measured now in --rounds fresh worker "
        "processes that alternate the two models inference by inference, comparing CPU time per inference at 1 CPU "
        "thread (immune to other jobs on the machine; --clock) and wall time otherwise; a regression needs the "
        "candidate slower by more than --factor (1.10) AND significant (one-sided Wilcoxon signed-rank test over the "
        "rounds, p < --alpha), and is re-measured once before failing. Stored baseline (BASELINE is a latency/<target>.json from 'glp-bench latency'): the "
        "candidate is measured now with the stored settings and compared with the stored samples (Mann-Whitney U); "
        "the CPU, cores, ONNX Runtime version and threads must match, and the default factor is wider (1.25). "
        "Structural checks (encoder layers, fused operators, nodes, file size) are noise-free and fail the gate on "
        "their own (--structure report to only report them).",
    )
    p.add_argument("baseline_pos", nargs="?", metavar="BASELINE",
                   help="ONNX model, export folder, run directory, or a latency .json (stored baseline)")
    p.add_argument("candidate_pos", nargs="?", metavar="CANDIDATE", help="ONNX model, export folder or run directory")
    p.add_argument("--baseline", default=None, help="same as BASELINE")
    p.add_argument("--candidate", default=None, help="same as CANDIDATE")
    p.add_argument("--model", default=None,
                   help="for run directories: which model (default: the full-depth one); stored baseline: its model")
    p.add_argument("--variant", default=None,
                   help="for folders and run directories: fp32 (default), fp32-opt, int8 or fp16")
    p.add_argument("--key", default=None, help="stored baseline: the measurement key, e.g. depth-06/fp32/b1/s128/t1")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="cpu (CPUExecutionProvider, default) or cuda (CUDAExecutionProvider with IO binding)")
    p.add_argument("--batch", type=positive_int, default=None, help="batch size (default 1)")
    p.add_argument("--seq", type=positive_int, default=None, help="sequence length (default 128)")
    p.add_argument("--threads", type=non_negative_int, default=None, help="intra-op threads (default 1; 0 = runtime default)")
    p.add_argument("--rounds", type=positive_int, default=None,
                   help=f"rounds per pass, one worker per model and round (default {GATE_AB.rounds}; stored: the file's rounds)")
    p.add_argument("--min-runs", type=positive_int, default=None, help=f"timed runs per worker, at least (default {GATE_AB.min_runs})")
    p.add_argument("--min-time", type=non_negative_float, default=None,
                   help=f"seconds of timed runs per worker, at least (default {GATE_AB.min_time:g})")
    p.add_argument("--warmup", type=non_negative_int, default=None, help=f"untimed warm-up runs per worker (default {GATE_AB.warmup})")
    p.add_argument("--max-time", type=positive_float, default=GATE_AB.max_time,
                   help="a worker stops timing after this (default %(default)s s)")
    p.add_argument("--factor", type=positive_float, default=None,
                   help="slowdown ratio beyond which a significant difference is a regression "
                   "(default 1.10 same-job, 1.25 against a stored baseline)")
    p.add_argument("--alpha", type=probability, default=None,
                   help="significance level (default 0.01 for timing, 0.05 one-sided with --scores)")
    p.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                   help="what is compared in same-job mode: cpu = CPU time per inference (immune to other processes "
                   "competing for the cores), wall = wall-clock latency; auto (default): cpu for 1 CPU thread, else wall. "
                   "A stored baseline is always compared on wall time")
    p.add_argument("--no-remeasure", dest="remeasure", action="store_false",
                   help="decide on the first pass (default: a suspected regression is measured once more)")
    p.add_argument("--structure", choices=("fail", "report"), default="fail",
                   help="structural regressions fail the gate (default) or are only reported")
    p.add_argument("--json", default=None, help="write the verdict and all evidence to this file")
    g = p.add_argument_group(
        "score gate (--scores)",
        "Is CANDIDATE worse than BASELINE on the task's dev examples? Both (run directories, export or depth "
        "folders, .onnx files with their tokenizer beside them, or deploy bundles; --model/--variant as above) are "
        "scored through ONNX Runtime on the same dev split; a paired bootstrap of the task's main metric decides: "
        "exit 1 when the candidate is worse by more than --max-drop points with one-sided significance, 2 when it "
        "could be but that is not significant, 0 otherwise")
    g.add_argument("--scores", action="store_true", help="compare dev scores instead of inference time")
    g.add_argument("--max-drop", type=non_negative_float, default=None,
                   help="points (metric x 100) the candidate may lose (default 1.0)")
    g.add_argument("--task", default=None,
                   help="the task (GLUE name or .toml task file) when a side is an .onnx file outside a run, or a "
                   "bundle of a custom task (default: the run's or the bundle's)")
    g.add_argument("--data-dir", default=None, help="the task's data folder (default: the run's, $GLP_BENCH_DATA, "
                   "the bundled CoLA)")
    g.add_argument("--resamples", type=positive_int, default=None, help="bootstrap resamples (default 1000)")
    return p


SCORE_ONLY = ("max_drop", "task", "data_dir", "resamples")
TIMING_ONLY = ("key", "batch", "seq", "rounds", "min_runs", "min_time", "warmup", "factor")


def _check_mode(args) -> None:
    """Options of the other mode are bad input, not silently ignored."""
    from ..core.errors import GlpError

    wrong = TIMING_ONLY if args.scores else SCORE_ONLY
    given = [f"--{k.replace('_', '-')}" for k in wrong if getattr(args, k, None) is not None]
    if args.scores and (args.clock != "auto" or not args.remeasure or args.structure != "fail"):
        given.append("--clock/--no-remeasure/--structure")
    if given:
        raise GlpError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} "
                       + ("for the timing gate, not --scores; drop it" if args.scores
                          else "for the score gate: add --scores"))


def _run_scores(args) -> int:
    from rich.console import Console

    from ..core.jsonio import atomic_write_json, stamp
    from ..core.preflight import writable_file
    from ..gate import decide
    from ..gate.render import outcome_text, score_tables
    from ..gate.score_stage import JSON_FORMAT, JSON_VERSION, ScoreGateOptions, document, run_score_gate
    from ._common import quiet_hf

    quiet_hf()
    if args.json:
        writable_file(args.json, "--json", writes=JSON_FORMAT, example="gate.json")
    base_spec, cand_spec = _specs(args)
    r = run_score_gate(base_spec, cand_spec, ScoreGateOptions.from_args(args))
    out = Console()
    for table in score_tables(r):
        out.print(table)
    out.print(outcome_text(r.outcome))
    out.print(f"score gate took {r.seconds:.1f} s")
    if args.json:
        atomic_write_json(args.json, stamp(JSON_FORMAT, JSON_VERSION, document(r)))
    if r.outcome.exit_code == decide.EXIT_UNDECIDED:
        from ..core.errors import GlpError

        raise GlpError(f"could not decide: {r.verdict.reason}")
    return r.outcome.exit_code



def _specs(args) -> tuple[str, str]:
    from ..core.errors import GlpError

    if args.baseline and args.baseline_pos and args.candidate_pos is None and args.candidate is None:
        args.candidate_pos, args.baseline_pos = args.baseline_pos, None  # "gate --baseline X CANDIDATE"
    for opt, pos, name in ((args.baseline, args.baseline_pos, "baseline"), (args.candidate, args.candidate_pos, "candidate")):
        if opt and pos and opt != pos:
            raise GlpError(f"the {name} is given twice ({pos!r} and --{name} {opt!r}); give it once")
    base, cand = args.baseline or args.baseline_pos, args.candidate or args.candidate_pos
    if not base or not cand:
        raise GlpError("the gate needs a BASELINE and a CANDIDATE: 'glp-bench gate OLD.onnx NEW.onnx' (same-job A/B) "
                       "or 'glp-bench gate --baseline runs/X/latency/cpu.json NEW.onnx' (stored baseline)")
    return base, cand


def run(args) -> int:
    from rich.console import Console

    from ..core.errors import GlpError
    from ..core.jsonio import atomic_write_json, stamp
    from ..core.preflight import writable_file
    from ..gate import decide
    from ..gate.render import outcome_text, sides_table, structure_table, timing_table
    from ..gate.stage import JSON_FORMAT, JSON_VERSION, GateOptions, document, run_gate, short_path

    _check_mode(args)
    if args.scores:
        return _run_scores(args)
    if args.alpha is None:
        args.alpha = decide.DEFAULT_ALPHA
    if args.factor is not None and args.factor <= 1:
        raise GlpError(f"--factor must be > 1 (a slowdown ratio such as 1.10), got {args.factor}")
    if args.json:
        writable_file(args.json, "--json", writes=JSON_FORMAT, example="gate.json")  # before the measurement
    base_spec, cand_spec = _specs(args)
    r = run_gate(base_spec, cand_spec, GateOptions.from_args(args))
    setup, passes = r.setup, r.passes
    raw = setup.raw
    wall = [[x["wall"][0] for x in raw], [x["wall"][1] for x in raw]] if raw and setup.clock != "wall" else None
    out = Console()
    out.print(sides_table([("baseline", setup.base_desc, [x for p in passes for x in p.baseline_rounds]),
                           ("candidate", short_path(r.cand_path), [x for p in passes for x in p.candidate_rounds])],
                          clock=setup.clock, wall=wall))
    out.print(timing_table(passes))
    out.print(structure_table(r.rows))
    out.print(outcome_text(r.outcome))
    out.print(f"gate took {r.seconds:.1f} s")
    if args.json:
        atomic_write_json(args.json, stamp(JSON_FORMAT, JSON_VERSION, document(r)))
    if r.outcome.exit_code == decide.EXIT_UNDECIDED:
        raise GlpError(f"could not decide: {r.timing.reason}")
    return r.outcome.exit_code
