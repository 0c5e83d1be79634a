"""The final fine-tunes: every distinct layer set of every strategy on the full train split, scored on dev (the
full-depth reference first: the pruned ones start from it or learn from its logits), their dev predictions
stored, and GLP compared with the baselines per depth."""

from __future__ import annotations

import numpy as np

from ..core.errors import GlpError
from ..core.records import ModelRecord
from ..core.rundir import RunDir, file_record
from .plan import PrunePlan
from .steps import save_array
from .workload import Workload


def final_jobs(run: RunDir, layers: list[int], orders: dict[str, list[int]]) -> list[tuple[str, str, list[int]]]:
    """(strategy, model name, kept layers) for every depth of every strategy, full depth first, each
    distinct layer set once (it is shared by the strategies that reach it)."""
    jobs, seen = [], {}
    for depth_removed in range(0, max((len(o) for o in orders.values()), default=0) + 1):
        for strategy, order in orders.items():
            if depth_removed > len(order):
                continue
            kept = [i for i in layers if i not in order[:depth_removed]]
            key = tuple(kept)
            if key not in seen:
                seen[key] = run.name_for(kept, len(kept), strategy)
                if run.model(seen[key]) is None:
                    run.record_model(seen[key], depth=len(kept), kept_layers=kept, strategies=[], dev_scores=None)
            name = seen[key]
            run.link_strategy(strategy, len(kept), name)
            jobs.append((strategy, name, kept))
    return jobs


def record_comparison(run: RunDir, task, dev, seed: int) -> dict:
    """GLP against each baseline per depth on dev (``glp_bench.prune.compare``), into the manifest's ``comparison``:
    a paired bootstrap over the stored dev predictions of the first dev split. Reports; chooses nothing."""
    from .compare import compare_strategies
    from .noise import main_metric

    split = task.dev_splits[0]
    labels = np.asarray(dev[split]["labels"])

    def preds(name: str):
        rel = (run.model(name) or ModelRecord(name)).dev_preds.get(split)
        try:
            return np.load(run.file(rel, f"models.{name}.dev_preds.{split}")) if rel else None
        except (OSError, ValueError):
            return None

    metric = main_metric(task)
    by_depth = {s: {d: n for d, n in run.strategy(s).models.items() if (run.model(n) or ModelRecord(n)).finished}
                for s in run.strategy_names()}
    result = {"split": split, "metric": task.main_metric, "key": task.main_dev_key,
              "baselines": compare_strategies(by_depth, preds, labels, metric, seed=seed)}
    run.set_section("comparison", result)
    run.save()
    return result


def _reference_record(run: RunDir, reference: str, what: str, fix: str) -> ModelRecord:
    rec = run.model(reference) or ModelRecord(reference)
    if not rec.finished or not run.model_path(reference).is_dir():
        raise GlpError(f"{what} needs the run's full-depth model {reference}, which is missing or failed in "
                       f"{run.path}; re-run the same command to re-create it, or use {fix}")
    return rec


def teacher_state(run: RunDir, reference: str) -> dict:
    """The saved full-depth model's weights (CPU tensors), where pruned finals start with ``--student-init
    teacher``."""
    from .models import load_saved_classifier

    _reference_record(run, reference, "--student-init teacher", "--student-init pretrained")
    return load_saved_classifier(run.model_path(reference)).state_dict()


def ensure_teacher(run: RunDir, work: Workload, reference: str) -> np.ndarray:
    """The reference model's logits on the train split, computed once and stored in the run directory
    (``teacher/train-logits.npy``, recorded with its sha256 in ``manifest["teacher"]``); re-used when the
    recorded file is intact, re-computed when it is missing or edited."""
    rec = _reference_record(run, reference, "distillation", "--no-distill")
    path = run.teacher_path
    known = run.section("teacher")
    weights = rec.files.get("model.safetensors", {}).get("sha256")
    if known and known.get("model_sha256") == weights \
            and path.is_file() and file_record(path)["sha256"] == known.get("sha256"):
        return np.load(path)
    logits = work.teacher_logits(run.model_path(reference)).astype(np.float32)
    save_array(path, logits)
    run.set_section("teacher", {"model": reference, "path": run.relative(path), "rows": int(len(logits)),
                                **file_record(path), "model_sha256": weights})
    run.save()
    return logits


def run_finals(pruner, executor, orders: dict[str, list[int]], plan: PrunePlan, on_update) -> None:
    """Fine-tune every depth of every strategy on the full train split with each final seed, score on dev.
    The full-depth reference (first seed) comes first: the pruned models start from it (``teacher_state``,
    ``--student-init teacher``) and learn from its logits (``ensure_teacher``, distillation). The first seed's model is saved (and later exported); extra seeds only score, into
    ``models[name]["seeds"]``. Resumable per (model, seed)."""
    run, layers = pruner.run, pruner.layers
    jobs = final_jobs(run, layers, orders)
    distinct = list(dict.fromkeys((name, tuple(kept)) for _, name, kept in jobs))
    seeds = plan.final_seed_list()

    def pending(name: str, seed: int) -> bool:
        rec = run.model(name)
        if seed == seeds[0]:
            return not rec.finished or not run.model_path(name).is_dir()
        return str(seed) not in rec.seeds

    def job(name, kept, seed):
        removed = [i for i in layers if i not in kept]
        return (name, seed), {"removed": removed, "seed": seed, "save": seed == seeds[0]}

    def collect(todo):
        for (name, seed), record, staged in executor.run_finals(todo):
            dev_preds = record.pop("dev_preds", None) or {}
            if seed == seeds[0] and dev_preds:
                for split, p in dev_preds.items():
                    save_array(run.dev_preds_path(name, split), p)
                record["dev_preds"] = {s: run.relative(run.dev_preds_path(name, s)) for s in dev_preds}
            if staged is not None:
                run.record_model(name, **pruner.install(name, record, staged))
            run.record_seed(name, seed, {k: record.get(k) for k in ("dev_scores", "distill", "init", "train")})
            on_update()

    reference = next((name for name, kept in distinct if len(kept) == len(layers)), None)
    if reference is not None and pending(reference, seeds[0]):
        collect([job(reference, layers, seeds[0])])
    pruned = any(len(k) < len(layers) for _, k in distinct)
    distill, from_teacher = pruned and plan.final.distill_alpha > 0, pruned and plan.student_init == "teacher"
    if (distill or from_teacher) and reference is None:
        raise GlpError("distillation and --student-init teacher need the run's full-depth model; use --no-distill "
                       "--student-init pretrained")
    if distill:
        pruner.work.teacher = ensure_teacher(run, pruner.work, reference)
    if from_teacher:
        pruner.work.init_state = teacher_state(run, reference)
    if distill or from_teacher:
        executor.load(pruner)
    collect([job(name, kept, seed) for name, kept in distinct for seed in seeds if pending(name, seed)])
