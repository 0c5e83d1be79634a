"""glp-bench gate: is a candidate ONNX model slower than a baseline? The exit status is the verdict.

Decision logic: ``glp_bench.gate.decide``; structural facts: ``glp_bench.gate.structure``; inputs: ``glp_bench.gate.inputs``;
same-job measurement: ``glp_bench.bench.alternating``; tables: ``glp_bench.gate.render``.

``--json FILE`` writes format ``glp-bench-gate``, version 1 (``jsonio.stamp`` adds format, version, environment)::

    created, mode ("same-job" | "stored"), seconds, verdict ("regression" | "no regression" | "undecided"),
    exit_code (0 | 1 | 2), reasons: [one line each]
    settings:  {batch, seq, threads, rounds, min_runs, min_time, warmup, provider, factor, alpha, remeasure,
                structure ("fail" | "report"), max_time_s, test, clock ("cpu" | "wall"), onnxruntime}
    baseline:  {source, onnx, kind/model/variant (same-job) | record_key, stored_environment, stored_created
                (stored), structure: glp_bench.gate.structure.facts (a stored baseline whose file is gone: file size only)}
    candidate: {source, onnx, kind, model, variant, structure}
    timing:    glp_bench.gate.decide.TimingVerdict.to_dict(): status, ratio, p_slower, p_faster, factor, alpha, test,
               n_baseline, n_candidate, baseline_s, candidate_s, reason
    passes:    [{baseline_rounds_s, candidate_rounds_s (seconds on the decision clock, the rounds this pass added),
                 verdict (on everything pooled so far)}]
    rounds:    same-job: [{first ("baseline" | "candidate"), wall_s: [baseline, candidate], cpu_s: [...],
                           session_init_s: [...]}] one per worker process
    structure: {rows: glp_bench.gate.structure.compare rows, regressions: [one line each]}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ._common import non_negative_float, non_negative_int, positive_float, positive_int, probability

JSON_FORMAT, JSON_VERSION = "glp-bench-gate", 1


def add_parser(sub):
    p = sub.add_parser(
        "gate", help="CI regression gate on inference time: exit 0 no regression, 1 regression, 2 undecided",
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
                   help="rounds per pass, one worker per model and round (default 10; stored: the file's rounds)")
    p.add_argument("--min-runs", type=positive_int, default=None, help="timed runs per worker, at least (default 10)")
    p.add_argument("--min-time", type=non_negative_float, default=None,
                   help="seconds of timed runs per worker, at least (default 0.5)")
    p.add_argument("--warmup", type=non_negative_int, default=None, help="untimed warm-up runs per worker (default 3)")
    p.add_argument("--max-time", type=positive_float, default=60.0, help="a worker stops timing after this (default 60 s)")
    p.add_argument("--factor", type=positive_float, default=None,
                   help="slowdown ratio beyond which a significant difference is a regression "
                   "(default 1.10 same-job, 1.25 against a stored baseline)")
    p.add_argument("--alpha", type=probability, default=0.01, help="significance level (default 0.01)")
    p.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                   help="what is compared in same-job mode: cpu = CPU time per inference (immune to other processes "
                   "competing for the cores), wall = wall-clock latency; auto (default): cpu for 1 CPU thread, else wall. "
                   "A stored baseline is always compared on wall time")
    p.add_argument("--no-remeasure", dest="remeasure", action="store_false",
                   help="decide on the first pass (default: a suspected regression is measured once more)")
    p.add_argument("--structure", choices=("fail", "report"), default="fail",
                   help="structural regressions fail the gate (default) or are only reported")
    p.add_argument("--json", default=None, help="write the verdict and all evidence to this file")
    return p


SAME_JOB_DEFAULTS = {"batch": 1, "seq": 128, "threads": 1, "rounds": 10, "min_runs": 10, "min_time": 0.5, "warmup": 3}


def _short(path) -> str:
    from pathlib import Path

    parts = Path(path).parts
    return str(Path(*parts[-3:])) if len(parts) > 3 else str(path)


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


@dataclass
class Setup:
    """What one mode decided: the settings, the configurations, the baseline's facts and how to measure."""

    mode: str  # "same-job" | "stored"
    settings: dict
    factor: float
    provider: str
    clock: str
    configs: list
    base_facts: dict
    base_desc: str
    baseline_info: dict
    compare: Callable
    test: str
    measure: Callable  # (rounds, progress) -> (new baseline rounds, new candidate rounds)
    raw: list = field(default_factory=list)  # same-job: every round's result, both clocks


def _facts(path) -> dict:
    """Structural facts of an ONNX file; a file that is not a loadable ONNX model is bad input (exit 2)."""
    from google.protobuf.message import DecodeError

    from ..gate import structure
    from ..gate.inputs import GateInputError

    try:
        return structure.facts(path)
    except (DecodeError, ValueError, OSError) as e:  # what onnx.load raises for a damaged file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise GateInputError(f"{path} is not a loadable ONNX model ({first}); re-export it") from None


def _same_job(args, base_spec: str, cand_path) -> Setup:
    from ..bench import runner
    from ..bench.alternating import choose_clock, measure_pairs
    from ..gate import decide
    from ..gate.inputs import resolve_model

    base_path, base_info = resolve_model(base_spec, args.model, args.variant)
    settings = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in SAME_JOB_DEFAULTS.items()}
    factor = args.factor or decide.DEFAULT_FACTOR
    provider = runner.CUDA if args.device == "cuda" else runner.CPU
    common = dict(batch=settings["batch"], seq=settings["seq"], threads=settings["threads"], provider=provider,
                  io_binding=provider == runner.CUDA)
    configs = [runner.BenchConfig(model=str(base_path), label="baseline", **common),
               runner.BenchConfig(model=str(cand_path), label="candidate", **common)]
    clock = choose_clock(args.clock, configs[0])
    raw: list[dict] = []

    def measure(n: int, progress):
        res = measure_pairs(configs[0], configs[1], n, start_round=len(raw), min_runs=settings["min_runs"],
                            min_time=settings["min_time"], warmup=settings["warmup"], max_time=args.max_time,
                            progress=progress, description=f"gate pass {1 + len(raw) // n}")
        raw.extend(res)
        return [r[clock][0] for r in res], [r[clock][1] for r in res]

    return Setup("same-job", settings, factor, provider, clock, configs, _facts(base_path), _short(base_path),
                 {"source": base_spec, "onnx": str(base_path), **base_info},
                 lambda b, c: decide.compare_paired(b, c, factor, args.alpha), decide.PAIRED_TEST, measure, raw)


def _stored(args, base_spec: str, cand_path, cand_info: dict) -> Setup:
    from pathlib import Path

    import onnxruntime as ort

    from ..bench import runner
    from ..core.errors import GlpError
    from ..core.jsonio import environment
    from ..gate import decide
    from ..gate.inputs import GateInputError, load_stored, select_record, stored_model_path

    if args.clock == "cpu":
        raise GlpError("a stored baseline holds wall-clock samples: --clock cpu works only in same-job mode "
                       "('glp-bench gate OLD.onnx NEW.onnx')")
    doc = load_stored(base_spec)
    rec = select_record(doc, key=args.key, model=args.model, variant=args.variant or cand_info.get("variant"),
                        batch=args.batch, seq=args.seq, threads=args.threads)
    threads = rec["threads"] if args.threads is None else args.threads
    mismatches = decide.environment_mismatches(doc.get("environment", {}), (doc.get("host") or {}).get("onnxruntime"),
                                             rec["threads"], environment(), ort.__version__, threads)
    provider = {"cuda": runner.CUDA, "cpu": runner.CPU}.get(args.device, rec["provider"])
    if provider != rec["provider"]:
        mismatches.append(f"provider {rec['provider']} vs {provider} asked")
    if mismatches:
        raise GateInputError(
            f"the stored baseline {base_spec} ({rec['key']}) was measured in another environment: "
            f"{'; '.join(mismatches)}. Timings do not transfer between environments: re-measure the baseline here "
            "with 'glp-bench latency', or compare in the same job: 'glp-bench gate OLD.onnx NEW.onnx'")
    s = doc.get("settings", {})
    settings = {"batch": rec["batch"], "seq": rec["seq"], "threads": threads,
                "rounds": args.rounds or s.get("rounds") or 3, "min_runs": args.min_runs or s.get("min_runs") or 10,
                "min_time": args.min_time if args.min_time is not None else s.get("min_time_s", 1.0),
                "warmup": args.warmup if args.warmup is not None else s.get("warmup_runs", 3)}
    factor = args.factor or decide.STORED_FACTOR
    config = runner.BenchConfig(
        model=str(cand_path), batch=rec["batch"], seq=rec["seq"], threads=threads, provider=provider,
        inter_op_threads=(doc.get("target") or {}).get("inter_op_threads", 1), spinning=rec.get("spinning", True),
        graph_optimization=rec.get("graph_optimization", "all"), memory_arena=rec.get("memory_arena", True),
        io_binding=bool(rec.get("io_binding")),
        cpu_affinity=tuple(rec["cpu_affinity"]) if rec.get("cpu_affinity") else None, label="candidate")
    base_file = stored_model_path(doc, base_spec, rec)
    base_facts = _facts(base_file) if base_file else ({"file_size": rec["file_size"]} if rec.get("file_size") else {})
    stored_rounds = [list(r) for r in rec["samples_s"]]
    passes_done = []

    def measure(n: int, progress):
        (m,) = runner.measure([config], rounds=n, min_runs=settings["min_runs"], min_time=settings["min_time"],
                              warmup=settings["warmup"], max_time=args.max_time, progress=progress,
                              description=f"gate pass {len(passes_done) + 1}")
        passes_done.append(n)
        if m.error:
            raise decide.MeasurementFailed(f"candidate ({_short(m.config.model)}): {m.error}")
        return (stored_rounds if len(passes_done) == 1 else []), m.rounds

    return Setup("stored", settings, factor, provider, "wall", [config], base_facts,
                 f"{rec['key']} (stored {Path(base_spec).name})",
                 {"source": base_spec, "record_key": rec["key"], "onnx": str(base_file) if base_file else None,
                  "stored_environment": doc.get("environment"), "stored_created": doc.get("created")},
                 lambda b, c: decide.compare_unpaired(b, c, factor, args.alpha), decide.UNPAIRED_TEST, measure)


def run(args) -> int:
    import time
    from pathlib import Path

    import onnxruntime as ort
    from rich.console import Console

    from ..bench import runner
    from ..core.errors import GlpError
    from ..core.jsonio import atomic_write_json, stamp
    from ..core.preflight import writable_file
    from ..core.progress import make_progress
    from ..core.rundir import now
    from ..gate import decide, structure
    from ..gate.inputs import resolve_model
    from ..gate.render import outcome_text, sides_table, structure_table, timing_table

    t_start = time.perf_counter()
    if args.factor is not None and args.factor <= 1:
        raise GlpError(f"--factor must be > 1 (a slowdown ratio such as 1.10), got {args.factor}")
    if args.json:
        writable_file(args.json, "--json")  # before the measurement, not after it
    base_spec, cand_spec = _specs(args)
    cand_path, cand_info = resolve_model(cand_spec, args.model, args.variant)
    if Path(base_spec).suffix == ".json":
        setup = _stored(args, base_spec, cand_path, cand_info)
    else:
        setup = _same_job(args, base_spec, cand_path)
    runner.check_providers(setup.configs)  # a missing provider is bad input (exit 2) before any work
    cand_facts = _facts(cand_path)
    rows = structure.compare(setup.base_facts, cand_facts)
    regressions = structure.regressions(rows)

    st = setup.settings
    Console(stderr=True).print(
        f"gate ({'stored baseline' if setup.mode == 'stored' else 'same-job A/B'}): {setup.base_desc} vs "
        f"{_short(cand_path)}; batch {st['batch']}, seq {st['seq']}, {st['threads']} thread(s), {setup.provider}; "
        f"{setup.clock} clock; {st['rounds']} rounds per pass, factor {setup.factor:.2f}, alpha {args.alpha:g}")
    with make_progress(transient=True) as progress:
        passes = decide.run_timing(lambda n: setup.measure(n, progress), setup.compare, st["rounds"],
                                 remeasure=args.remeasure, factor=setup.factor, alpha=args.alpha, test=setup.test)
    timing = passes[-1].verdict
    outcome = decide.overall(timing, regressions, args.structure == "fail")
    seconds = time.perf_counter() - t_start

    raw = setup.raw
    wall = [[r["wall"][0] for r in raw], [r["wall"][1] for r in raw]] if raw and setup.clock != "wall" else None
    out = Console()
    out.print(sides_table([("baseline", setup.base_desc, [r for p in passes for r in p.baseline_rounds]),
                           ("candidate", _short(cand_path), [r for p in passes for r in p.candidate_rounds])],
                          clock=setup.clock, wall=wall))
    out.print(timing_table(passes))
    out.print(structure_table(rows))
    out.print(outcome_text(outcome))
    out.print(f"gate took {seconds:.1f} s")

    if args.json:
        atomic_write_json(args.json, stamp(JSON_FORMAT, JSON_VERSION, {
            "created": now(), "mode": setup.mode, "seconds": seconds,
            "verdict": outcome.status, "exit_code": outcome.exit_code, "reasons": outcome.reasons,
            "settings": {**st, "provider": setup.provider, "factor": setup.factor, "alpha": args.alpha,
                         "remeasure": args.remeasure, "structure": args.structure, "max_time_s": args.max_time,
                         "test": setup.test, "clock": setup.clock, "onnxruntime": ort.__version__},
            "baseline": {**setup.baseline_info, "structure": setup.base_facts},
            "candidate": {"source": cand_spec, "onnx": str(cand_path), **cand_info, "structure": cand_facts},
            "timing": timing.to_dict(), "passes": [p.to_dict() for p in passes],
            "rounds": [{"first": "baseline" if r["first"] == 0 else "candidate", "wall_s": r["wall"], "cpu_s": r["cpu"],
                        "session_init_s": r["session_init_s"]} for r in raw],
            "structure": {"rows": rows, "regressions": regressions},
        }))
    if outcome.exit_code == decide.EXIT_UNDECIDED:
        raise GlpError(f"could not decide: {timing.reason}")
    return outcome.exit_code
