"""Issue-14 benchmark (not a test): where should a pruned final start, and does distillation help each pruned
depth? Measured on the train split only.

The main job's final models are scored on dev, where one seed moves CoLA's MCC by several points; this asks
the same question without touching dev. On the main job's run directory (made first if missing): a teacher
(the full-depth model) is fine-tuned on the 85% part of train with the run's recipe; for each GLP depth of the
run, the pruned model is fine-tuned on the same 85% part with and without distillation from that teacher
(the run's alpha and T), started from that teacher with the layers cut out (``--student-init teacher``, every
depth the run's epochs) and from the pre-trained model (``pretrained``, epochs scaled by L/d), ``--seeds``
seeds each, and scored on the held-out 15%. Then the search: every
candidate of GLP's first step fine-tuned with the search budget and distilled from the same teacher, ranked
against the run's own (undistilled) candidate scores: would distilling candidates change the removal? Results go to
``<run>/bench-distill-heldout.json`` as they finish (versioned, atomic; an interrupted benchmark resumes).
Prints per depth and seed, the means and the difference; exits 0 (a benchmark reports, it does not gate).

    python benchmarks/bench_distill_heldout.py [--run runs/cola-all-minilm-l6-v2] [--seeds 2] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace

from main_run import DEFAULT, ensure_main_run

FORMAT, VERSION = "glp-bench-bench-distill-heldout", 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=DEFAULT, help="the main job's run directory")
    p.add_argument("--seeds", type=int, default=2, help="student seeds per configuration (default 2)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    args = p.parse_args()
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    run_path = ensure_main_run(args.run)

    import numpy as np
    import torch

    from glp_bench.commands._common import quiet_hf
    from glp_bench.core.jsonio import atomic_write_json, environment, read_versioned
    from glp_bench.core.rundir import RunDir
    from glp_bench.data.resolve import task_of_run
    from glp_bench.prune.models import load_saved_classifier
    from glp_bench.prune.plan import PrunePlan
    from glp_bench.prune.precision import resolve_precision
    from glp_bench.prune.stage import Pruner
    from glp_bench.prune.train import fine_tune, predict
    from glp_bench.prune.work import depth_scaled_epochs

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_hf()
    run = RunDir(run_path).load()
    cfg = run.config
    task = task_of_run(cfg)
    lr = (run.section("recipe", {}).get("chosen") or {}).get("lr", cfg["final"]["lr"])
    plan = replace(PrunePlan.from_config(cfg), strategies=["glp"], device="cpu", depth_epochs="same")
    precision = resolve_precision(plan.precision, "cpu")
    work = Pruner(plan, run).work
    base = replace(work.final_config, lr=lr, warmup_ratio=cfg["final"]["warmup_ratio"], precision=precision,
                   max_samples=None, distill_alpha=0.0)
    alpha = cfg["final"].get("distill_alpha") or 0.5
    temp = cfg["final"].get("distill_temperature") or 2.0
    layers = list(range(cfg["original_depth"]))
    glp = {str(d): n for d, n in run.strategy("glp").models.items()}
    depths = sorted((int(d) for d in glp if int(d) < cfg["original_depth"]), reverse=True)

    out_path = run.path / "bench-distill-heldout.json"
    doc = read_versioned(out_path, FORMAT, VERSION) if out_path.is_file() else {
        "format": FORMAT, "version": VERSION, "run": str(run.path), "results": {}}
    doc["environment"] = environment()
    results = doc["results"]

    def score(removed, seed, teacher=None, train=base, start="pretrained"):
        """Fine-tune on the 85% part (distilled from ``teacher`` when given; a final started from the 85%
        teacher trains the run's epochs, one from the pre-trained model epochs x L/d), score on the 15% part."""
        c = replace(train, seed=seed, distill_alpha=alpha if teacher is not None else 0.0, distill_temperature=temp)
        if train is base and start == "pretrained":
            c = replace(c, epochs=depth_scaled_epochs(c.epochs, len(layers), len(layers) - len(removed)))
        model = work.student_without(removed) if start == "teacher" else work.model_without(removed, seed)
        t0 = time.perf_counter()
        fine_tune(model, work.fit, work.tokenizer, c, "cpu", teacher_logits=teacher)
        logits = predict(model, work.held, work.tokenizer, "cpu")
        return model, {"score": task.compute(logits, work.held["labels"])[task.main_metric],
                       "loss": task.loss(logits, work.held["labels"]), "seconds": round(time.perf_counter() - t0, 1)}

    teacher_file = run.path / "bench-distill-heldout.teacher.npy"
    teacher_dir = run.path / "bench-distill-heldout.teacher"  # the 85% teacher itself: students start from it
    if not teacher_file.is_file() or not (teacher_dir / "config.json").is_file():
        model, rec = score([], cfg["seed"])
        np.save(teacher_file, predict(model, work.fit, work.tokenizer, "cpu"))
        model.save_pretrained(teacher_dir)
        results["teacher"] = rec
        atomic_write_json(out_path, doc)
        print(f"teacher (full depth, 85% split, lr {lr:g}): held-out {task.main_metric} {rec['score']:.4f}", flush=True)
    teacher = np.load(teacher_file)
    work.init_state = load_saved_classifier(teacher_dir).state_dict()
    seeds = [cfg["seed"] + i for i in range(args.seeds)]
    starts = ("teacher", "pretrained")

    def key(d, start, distilled, seed):  # pre-trained starts keep the keys of earlier versions
        return f"depth {d} | {'from teacher | ' if start == 'teacher' else ''}" \
               f"{'distilled' if distilled else 'not distilled'} | seed {seed}"

    for d in depths:
        kept = run.model(glp[str(d)]).kept_layers
        removed = [i for i in layers if i not in kept]
        for start in starts:
            for seed in seeds:
                for distilled in (True, False):
                    k = key(d, start, distilled, seed)
                    if k not in results:
                        results[k] = score(removed, seed, teacher if distilled else None, start=start)[1]
                        atomic_write_json(out_path, doc)
                    print(f"{k}: held-out {results[k]['score']:.4f} ({results[k]['seconds']:.0f} s)", flush=True)

    print(f"\nstart and distillation on the 85/15 split of train ({run.path}; teacher held-out "
          f"{results['teacher']['score']:.4f}; alpha {alpha:g}, T {temp:g}; seeds {seeds})")
    for d in depths:
        for start in starts:
            dl = [results[key(d, start, True, s)]["score"] for s in seeds]
            nd = [results[key(d, start, False, s)]["score"] for s in seeds]
            diff = (statistics.fmean(dl) - statistics.fmean(nd)) * 100
            print(f"depth {d} from {start:10s}: distilled {statistics.fmean(dl):.4f} "
                  f"({' '.join(f'{v:.3f}' for v in dl)}), not {statistics.fmean(nd):.4f} "
                  f"({' '.join(f'{v:.3f}' for v in nd)}): {diff:+.2f} points")

    # The search with distilled candidates: GLP's first step, same budget and seed as the run's candidates.
    step = run.strategy("glp").steps[0]
    sweep = cfg.get("sweep") or {}
    search_lr = lr if sweep and not sweep.get("search_lr_fixed") else cfg["search"]["lr"]  # what the run's candidates used
    search = replace(work.search_config, lr=search_lr, warmup_ratio=cfg["search"]["warmup_ratio"], precision=precision)
    for layer in sorted(int(c) for c in step["candidates"]):
        k = f"step 1 candidate {layer} | distilled | seed {cfg['seed']}"
        if k not in results:
            results[k] = score([layer], cfg["seed"], teacher, search)[1]
            atomic_write_json(out_path, doc)
    plain = {int(c): r["score"] for c, r in step["candidates"].items()}
    dist = {c: results[f"step 1 candidate {c} | distilled | seed {cfg['seed']}"]["score"] for c in plain}
    print(f"\nGLP step 1, candidates on the search budget ({cfg['search'].get('max_samples') or 'all'} examples, "
          f"lr {search.lr:g}), held-out {task.main_metric}:")
    for c in sorted(plain):
        print(f"  drop layer {c}: not distilled {plain[c]:.4f} (the run's), distilled {dist[c]:.4f}")
    best = lambda s: max(s, key=lambda c: (s[c], c))  # noqa: E731 - GLP's rule: best score, then the highest layer
    print(f"  chosen: layer {best(plain)} not distilled, layer {best(dist)} distilled; "
          f"run chose {step.get('chosen')}")
    print(f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
