"""The gate stage: is a candidate ONNX model slower than a baseline? ``run_gate`` measures and decides
(same-job A/B or against a stored baseline) and ``document`` is its ``--json`` file; ``glp-bench gate``
only parses arguments and renders.

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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..bench.settings import GATE_AB

JSON_FORMAT, JSON_VERSION = "glp-bench-gate", 1


@dataclass
class GateOptions:
    """The gate's knobs (``glp-bench gate --help``); None: the mode's default."""

    model: str | None = None
    variant: str | None = None
    key: str | None = None
    device: str | None = None
    batch: int | None = None
    seq: int | None = None
    threads: int | None = None
    rounds: int | None = None
    min_runs: int | None = None
    min_time: float | None = None
    warmup: int | None = None
    max_time: float = GATE_AB.max_time
    factor: float | None = None
    alpha: float = 0.01
    clock: str = "auto"
    remeasure: bool = True
    structure: str = "fail"

    @classmethod
    def from_args(cls, args) -> GateOptions:
        return cls(**{k: getattr(args, k) for k in cls.__dataclass_fields__})


SAME_JOB_DEFAULTS = {"batch": 1, "seq": 128, "threads": 1, "rounds": GATE_AB.rounds, "min_runs": GATE_AB.min_runs,
                     "min_time": GATE_AB.min_time, "warmup": GATE_AB.warmup}


def short_path(path) -> str:
    from pathlib import Path

    parts = Path(path).parts
    return str(Path(*parts[-3:])) if len(parts) > 3 else str(path)


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

    from . import structure
    from .inputs import GateInputError

    try:
        return structure.facts(path)
    except (DecodeError, ValueError, OSError) as e:  # what onnx.load raises for a damaged file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise GateInputError(f"{path} is not a loadable ONNX model ({first}); re-export it") from None


def _same_job(args: GateOptions, base_spec: str, cand_path) -> Setup:
    from ..bench import runner
    from ..bench.alternating import choose_clock, measure_pairs
    from . import decide
    from .inputs import resolve_model

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

    return Setup("same-job", settings, factor, provider, clock, configs, _facts(base_path), short_path(base_path),
                 {"source": base_spec, "onnx": str(base_path), **base_info},
                 lambda b, c: decide.compare_paired(b, c, factor, args.alpha), decide.PAIRED_TEST, measure, raw)


def _stored(args: GateOptions, base_spec: str, cand_path, cand_info: dict) -> Setup:
    from pathlib import Path

    import onnxruntime as ort

    from ..bench import runner
    from ..core.errors import GlpError
    from ..core.jsonio import environment
    from . import decide
    from .inputs import GateInputError, load_stored, select_record, stored_model_path

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
            raise decide.MeasurementFailed(f"candidate ({short_path(m.config.model)}): {m.error}")
        return (stored_rounds if len(passes_done) == 1 else []), m.rounds

    return Setup("stored", settings, factor, provider, "wall", [config], base_facts,
                 f"{rec['key']} (stored {Path(base_spec).name})",
                 {"source": base_spec, "record_key": rec["key"], "onnx": str(base_file) if base_file else None,
                  "stored_environment": doc.get("environment"), "stored_created": doc.get("created")},
                 lambda b, c: decide.compare_unpaired(b, c, factor, args.alpha), decide.UNPAIRED_TEST, measure)


@dataclass
class GateResult:
    setup: Setup
    cand_spec: str
    cand_path: Path
    cand_info: dict
    cand_facts: dict
    rows: list
    regressions: list
    passes: list
    timing: object
    outcome: object
    seconds: float
    options: GateOptions


def run_gate(base_spec: str, cand_spec: str, args: GateOptions, console=None) -> GateResult:
    """Measure and decide: structural comparison, then timing passes (re-measured once when asked)."""
    from rich.console import Console

    from ..bench import runner
    from ..core.errors import GlpError
    from ..core.progress import make_progress
    from . import decide, structure
    from .inputs import resolve_model

    t_start = time.perf_counter()
    if args.factor is not None and args.factor <= 1:
        raise GlpError(f"--factor must be > 1 (a slowdown ratio such as 1.10), got {args.factor}")
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
    (console or Console(stderr=True)).print(
        f"gate ({'stored baseline' if setup.mode == 'stored' else 'same-job A/B'}): {setup.base_desc} vs "
        f"{short_path(cand_path)}; batch {st['batch']}, seq {st['seq']}, {st['threads']} thread(s), {setup.provider}; "
        f"{setup.clock} clock; {st['rounds']} rounds per pass, factor {setup.factor:.2f}, alpha {args.alpha:g}")
    with make_progress(transient=True) as progress:
        passes = decide.run_timing(lambda n: setup.measure(n, progress), setup.compare, st["rounds"],
                                 remeasure=args.remeasure, factor=setup.factor, alpha=args.alpha, test=setup.test)
    timing = passes[-1].verdict
    outcome = decide.overall(timing, regressions, args.structure == "fail")
    seconds = time.perf_counter() - t_start
    return GateResult(setup, cand_spec, cand_path, cand_info, cand_facts, rows, regressions, passes, timing, outcome,
                      seconds, args)


def document(r: GateResult) -> dict:
    """The ``--json`` file's content (without the stamp: format, version, environment)."""
    import onnxruntime as ort

    from ..core.rundir import now

    setup, st, args = r.setup, r.setup.settings, r.options
    return {
        "created": now(), "mode": setup.mode, "seconds": r.seconds,
        "verdict": r.outcome.status, "exit_code": r.outcome.exit_code, "reasons": r.outcome.reasons,
        "settings": {**st, "provider": setup.provider, "factor": setup.factor, "alpha": args.alpha,
                     "remeasure": args.remeasure, "structure": args.structure, "max_time_s": args.max_time,
                     "test": setup.test, "clock": setup.clock, "onnxruntime": ort.__version__},
        "baseline": {**setup.baseline_info, "structure": setup.base_facts},
        "candidate": {"source": r.cand_spec, "onnx": str(r.cand_path), **r.cand_info, "structure": r.cand_facts},
        "timing": r.timing.to_dict(), "passes": [p.to_dict() for p in r.passes],
        "rounds": [{"first": "baseline" if x["first"] == 0 else "candidate", "wall_s": x["wall"], "cpu_s": x["cpu"],
                    "session_init_s": x["session_init_s"]} for x in setup.raw],
        "structure": {"rows": r.rows, "regressions": r.regressions},
    }
