"""Issue-14 quality benchmark (not a test): what the recipe, distillation and the noise-aware search buy.

On real CoLA with the default model, on the main job's own run directory (``glp-bench prune-and-export --task
cola`` or ``glp-bench prune --task cola``; run first if the folder is missing), same machine, same run:

* full-depth dev MCC with the paper's recipe (lr 2e-5, no warm-up, 3 epochs) and with the run's ``auto`` recipe
  (the run's full-depth epochs, ``--reference-epochs``; and, for a
  run with ``--pooling mean``, the auto recipe reading the first token instead: what the pooling buys);
* for depths 5, 4 and 3, the GLP model (the run's kept layers) with and without distillation from the run's
  full-depth model (started where the run's start, ``--student-init``, with the run's epochs per depth,
  ``--depth-epochs``);
* for each GLP step: the rule that decided it and whether it was within noise (paired bootstrap).

Each configuration is fine-tuned with ``--seeds`` seeds (the run's seed, then +1, ...); the run's own models
are its first seed and are not trained again. Results are stored in ``<run>/bench-quality.json`` as they
finish (versioned, atomic), so an interrupted benchmark resumes. Prints the table, the issue's targets and
PASS/MISS for each; always exits 0 unless something failed (a benchmark reports, it does not gate).

    python benchmarks/bench_quality.py [--run runs/cola-all-minilm-l6-v2] [--seeds 2] [--rows all|shipped]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace

from main_run import DEFAULT, ensure_main_run

FORMAT, VERSION = "glp-bench-bench-quality", 1
DEPTHS = (3, 4, 5)  # the shallowest first: an interrupted run has the rows the targets need most


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=DEFAULT, help="the main job's run directory")
    p.add_argument("--seeds", type=int, default=2, help="seeds per configuration (default 2)")
    p.add_argument("--rows", choices=["all", "shipped"], default="all",
                   help="all (default): every configuration; shipped: the full depth (auto recipe, and first-token "
                   "pooling for a mean-pooled run) and each depth as the run trained it (about half the time)")
    args = p.parse_args()
    if args.seeds < 1:
        p.error("--seeds must be at least 1")

    run_path = ensure_main_run(args.run)

    import numpy as np

    from glp_bench.commands._common import quiet_hf
    from glp_bench.core.jsonio import atomic_write_json, environment, read_versioned
    from glp_bench.core.rundir import RunDir
    from glp_bench.data.resolve import task_of_run
    from glp_bench.prune.plan import PrunePlan
    from glp_bench.prune.stage import Pruner
    from glp_bench.report.quality import step_rows

    quiet_hf()
    run = RunDir(run_path).load()
    cfg = run.config
    task = task_of_run(cfg)
    key = task.main_dev_key
    glp = {str(d): n for d, n in run.strategy("glp").models.items()}
    chosen = run.section("recipe", {}).get("chosen") or {}
    auto_lr = chosen.get("lr", cfg["final"]["lr"])
    # the run's own plan: pruned depths start and train as the run's (its epochs, pooling, max length, ...)
    plan = replace(PrunePlan.from_config(cfg), strategies=["glp"], device="cpu")
    from glp_bench.prune.precision import resolve_precision

    precision = resolve_precision(plan.precision, "cpu")
    pruner = Pruner(replace(plan, search=replace(plan.search, precision=precision),
                            final=replace(plan.final, precision=precision)), run)
    work = pruner.work
    layers = pruner.layers
    if run.teacher_path.is_file():
        work.teacher = np.load(run.teacher_path)
    else:  # a run that did not distill: the same soft targets, in memory (the run directory is not changed)
        work.teacher = work.teacher_logits(run.model_path(glp[str(cfg["original_depth"])]))
    if plan.student_init == "teacher":
        from glp_bench.prune.finals import teacher_state

        work.init_state = teacher_state(run, glp[str(cfg["original_depth"])])
    auto = replace(work.final_config, lr=auto_lr, warmup_ratio=cfg["final"]["warmup_ratio"])
    paper = replace(work.final_config, lr=2e-5, warmup_ratio=0.0, distill_alpha=0.0)
    alpha = cfg["final"].get("distill_alpha") or 0.5
    temp = cfg["final"].get("distill_temperature") or 2.0

    out_path = run.path / "bench-quality.json"
    doc = read_versioned(out_path, FORMAT, VERSION) if out_path.is_file() else {
        "format": FORMAT, "version": VERSION, "run": str(run.path), "results": {}}
    doc["environment"] = environment()
    results = doc["results"]
    seeds = [cfg["seed"] + i for i in range(args.seeds)]

    configs = [("full depth, auto recipe", cfg["original_depth"], [], replace(auto, distill_alpha=0.0))]
    for d in DEPTHS:
        name = glp.get(str(d))
        if name is None:
            continue
        kept = run.model(name).kept_layers
        removed = [i for i in layers if i not in kept]
        distilled = run.model(name).distill is not None
        if args.rows == "all" or distilled:
            configs.append((f"depth {d} GLP {kept}, distilled", d, removed,
                            replace(auto, distill_alpha=alpha, distill_temperature=temp)))
        if args.rows == "all" or not distilled:
            configs.append((f"depth {d} GLP {kept}, not distilled", d, removed, replace(auto, distill_alpha=0.0)))
    if plan.pooling == "mean":  # what mean pooling buys, on dev (reported, never used to choose)
        configs.append(("full depth, auto recipe, first-token pooling", cfg["original_depth"], [],
                        replace(auto, distill_alpha=0.0)))
    if args.rows == "all":
        configs.append(("full depth, paper recipe", cfg["original_depth"], [], paper))  # last: the old baseline

    def from_run(label, depth, seed):
        """The run's own model is the first seed of its configuration (auto recipe; distilled per the run)."""
        if seed != cfg["seed"] or "paper recipe" in label or "first-token" in label:
            return None
        rec = run.model(glp[str(depth)])
        distilled = rec.distill is not None
        if depth == cfg["original_depth"] or distilled == label.endswith(", distilled"):
            return rec.dev_scores[key]
        return None

    t0 = time.perf_counter()
    for label, depth, removed, tcfg in configs:
        for seed in seeds:
            k = f"{label} | seed {seed}"
            if k in results:
                continue
            score = from_run(label, depth, seed)
            source = "run"
            if score is None:
                if tcfg.distill_alpha > 0 and work.teacher is None:
                    results[k] = {"error": "the run has no teacher logits"}
                    continue
                from glp_bench.prune.pooling import set_pooling

                work.final_config = tcfg
                work.reference_epochs = None if "paper recipe" in label else plan.reference_epochs  # paper: 3
                set_pooling(work.base, "cls" if "first-token" in label else plan.pooling)
                rec = work.final(removed, None, description=f"  {label} (seed {seed})", seed=seed)
                score, source = rec["dev_scores"][key], f"trained in {rec['train']['seconds']:.0f} s"
            results[k] = {"label": label, "depth": depth, "seed": seed, "score": score, "source": source}
            atomic_write_json(out_path, doc)
            print(f"{label:45s} seed {seed}: dev {key} {score:.4f} ({source})", flush=True)

    def stats(label):
        vals = [results[f"{label} | seed {s}"]["score"] for s in seeds if "score" in results.get(f"{label} | seed {s}", {})]
        return vals, statistics.fmean(vals) if vals else float("nan"), statistics.stdev(vals) if len(vals) > 1 else 0.0

    print(f"\nquality benchmark on {run.path} ({cfg['model']}), dev {key}, seeds {seeds}, {plan.pooling} pooling, "
          f"auto lr {auto_lr:g}, distillation alpha {alpha:g} T {temp:g}, pruned depths start from "
          f"{'the full model' if plan.student_init == 'teacher' else 'the pre-trained model'}, depth epochs {plan.depth_epochs} "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"{'configuration':50s} {'per seed':28s} {'mean':>7s} {'std':>7s}")
    means = {}
    for label, *_ in configs:
        vals, mean, std = stats(label)
        means[label] = mean
        print(f"{label:50s} {' '.join(f'{v:.4f}' for v in vals):28s} {mean:7.4f} {std:7.4f}")
    steps = step_rows(run.strategies)
    for s in steps:
        verdict = "-" if s["within_noise"] is None else ("within noise" if s["within_noise"] else "clear")
        print(f"GLP step {s['step']}: removed layer {s['removed']}, held-out {s['score']:.2f}, decided by "
              f"{s['decided_by']}, {verdict} (P(best) {s['p_best']})")

    full = means["full depth, auto recipe"]
    print("\ntargets (issue 14):")

    def check(ok, text):
        print(f"  {'PASS' if ok else 'MISS'}  {text}")

    paper_mean = means.get("full depth, paper recipe")
    check(full >= 0.30, f"full-depth dev MCC >= 0.30: {full:.4f} (paper recipe "
          f"{'not run' if paper_mean is None else f'{paper_mean:.4f}'})")
    for d in DEPTHS:
        dl = next((lab for lab, dd, *_ in configs if dd == d and lab.endswith(", distilled")), None)
        nd = next((lab for lab, dd, *_ in configs if dd == d and lab.endswith("not distilled")), None)
        if dl is None and nd is None:
            continue
        shipped = means[dl] if run.model(glp[str(d)]).distill else means[nd]
        if d == 3:
            check(shipped >= 0.20, f"depth 3 >= 0.20: {shipped:.4f}")
        else:
            check(shipped >= 0.9 * full, f"depth {d} >= 90% of full ({0.9 * full:.4f}): {shipped:.4f}")
        if d in (4, 3) and dl and nd:
            check(means[dl] > means[nd], f"depth {d}: distilled {means[dl]:.4f} vs not {means[nd]:.4f} "
                  f"({(means[dl] - means[nd]) * 100:+.2f} points)")
    by_score = sum(1 for s in steps if s["decided_by"] == "score")
    check(by_score >= 2, f"GLP steps decided by the metric: {by_score} of {len(steps)}")
    print(f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
