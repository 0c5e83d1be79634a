"""The prune stage: search (GLP / baselines) + final fine-tune of every depth, into a run directory.

Budget presets (``--budget``):

* ``paper``: the paper's protocol: each candidate fine-tuned 3 epochs on the whole 85% split; each final
  model 3 epochs on the full train split; lr 2e-5, no warm-up (recipe ``paper``), no distillation.
* ``fast`` (default): a cheaper search (3 epochs on at most ``FAST_SEARCH_SAMPLES`` examples of the 85%
  split) with the paper's 3 final epochs on all of train; recipe ``auto``, pruned finals started from the
  run's full-depth model (not distilled: ``--distill``). (With the fixed
  ``paper`` recipe the fast search keeps its old lr ``FAST_SEARCH_LR``: at 2e-5 every CoLA candidate of
  all-MiniLM-L6-v2 stayed in the majority class.)
* ``smoke``: tiny, for tests and CI (64 examples, 1 epoch everywhere).

The recipe (``--recipe auto``): ``run_sweep`` fine-tunes the full-depth model at ``SWEEP_LRS`` (from the top:
a lower lr only while the lowest tried wins) with an ``AUTO_WARMUP`` warm-up on the search budget and keeps the
best held-out score (loss breaks ties) for every fine-tune. Distillation (default with ``--student-init pretrained``, ``--distill``): the pruned finals learn
from the run's fine-tuned full-depth model, whose train logits ``ensure_teacher`` stores once. Noise: every candidate's held-out predictions are stored
(``RunDir.preds_path``) and ``step_assessor`` bootstraps each step (``glp_bench.prune.noise``). Seeds: ``--search-seeds``,
``--rescore-close`` (``RESCORE_SEEDS`` extra), ``--final-seeds`` (``run_finals``). Successive halving inside
each GLP step and in the recipe sweep's first wave (``--search-halving``, on for the fast budget):
``glp_bench.prune.halving``. Depth epochs
(``--depth-epochs``, ``DEPTH_EPOCHS``): ``scaled`` (default but for the paper budget) trains a final of d of
the model's L layers ``epochs * L / d`` epochs, the full model's compute; ``same`` trains every depth
``epochs`` (the paper).

Student start (``--student-init``, ``STUDENT_INITS``): ``teacher`` (default but for the paper budget) starts
every pruned final from the run's fine-tuned full-depth model with the layers cut out (``teacher_state``,
``Workload.student_without``); ``pretrained`` from the pre-trained model, as the search does.

Pooling (``--pooling``, ``glp_bench.prune.pooling``): resolved once in ``make_plan`` (``auto``: the pooling the
encoder was pre-trained with) and given to the one pre-trained model every candidate and final is cut from.

Everything is seeded: every candidate and every final model starts from the same pre-trained weights and
the same seeded classification head (or from the saved full-depth final), and its fine-tune draws from
``seed`` alone, so a resumed run gives the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

from ..core.jsonio import publish_permissions
from ..core.rundir import RunDir, file_record
from .finals import record_comparison, run_finals
from .halving import RUNGS
from .plan import PrunePlan, _budget_text, _recipe_text, estimate_seconds, search_waves, with_recipe
from .steps import candidate_scorer, removal_orders, rung_cutter, rung_scorer, step_assessor
from .sweep import run_sweep, sweep_halving, sweep_lines
from .work import eta_text, finals_left, prune_work, sweep_first_wave
from .workload import Workload


class Pruner:
    """Holds the data, tokenizer and pre-trained model of one run (its ``work``); scores candidates; trains
    finals; is the only writer of the run directory (executors hand it their results)."""

    def __init__(self, plan: PrunePlan, run: RunDir, progress=None):
        from ..data.checks import check_search_split, check_train_split
        from ..data.loaders import load_task_data, search_split
        from ..data.resolve import get_task
        from .models import load_classifier, load_tokenizer
        from .surgery import kept_layers
        from .train import tokenize

        self.plan, self.run, self.progress = plan, run, progress
        self.task = get_task(plan.task_def or plan.task)
        data = load_task_data(self.task, plan.data_dir)
        check_train_split(self.task, data)  # before any work: one class, constant targets, too few rows
        check_search_split(self.task, data["train"])
        tokenizer = load_tokenizer(plan.model)
        # One pre-trained model with one seeded head: every candidate and final model is cut from it (pruned
        # finals with --student-init teacher: from it with the fine-tuned full model's weights loaded).
        base = load_classifier(plan.model, self.task, seed=plan.seed, pooling=plan.pooling)
        self.layers = kept_layers(base.config)
        ml = plan.final.max_length

        def enc(split):
            return tokenize(split, tokenizer, self.task, ml)

        fit, held = search_split(data["train"], plan.seed)
        self.work = Workload(self.task, base, tokenizer, enc(fit), enc(held), enc(data["train"]),
                             {s: enc(data[s]) for s in self.task.dev_splits}, plan.search, plan.final, plan.device,
                             depth_epochs=plan.depth_epochs, student_init=plan.student_init,
                             reference_epochs=plan.reference_epochs)

    def use(self, plan: PrunePlan) -> None:
        """Switch to ``plan``'s training configs (after the recipe sweep, or with a resolved precision)."""
        self.plan = plan
        self.work.search_config, self.work.final_config, self.work.device = plan.search, plan.final, plan.device
        self.work.depth_epochs, self.work.student_init = plan.depth_epochs, plan.student_init
        self.work.reference_epochs = plan.reference_epochs

    def staging_dir(self, name: str):
        """An empty folder inside the run directory to write model ``name`` into before ``install``."""
        target = self.run.model_path(name)
        tmp = target.with_name(f".model.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        return tmp

    def install(self, name: str, record: dict, staged) -> dict:
        """Move a finished model from its staging folder to ``<run>/<name>/model``; its manifest record."""
        target = self.run.model_path(name)
        publish_permissions(Path(staged))  # safetensors writes its weights 0600
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)
        return {**record, "path": str(target.relative_to(self.run.path)),
                "files": {f.name: file_record(f) for f in sorted(target.iterdir()) if f.is_file()}}


# --- the stage as one call (what 'glp-bench prune' runs) ---------------------------------------


def _glp_done(run) -> int:
    return sum(len(s["candidates"]) for s in run.strategy("glp").steps)


def _finals_done(run) -> int:
    return len(run.finished_models())


def prune_run(plan: PrunePlan, run: RunDir, console) -> dict[str, list[int]]:
    """Run (or resume) the recipe sweep, the search and the final fine-tunes with ``plan.executor``; returns
    the removal order per strategy. This process is the only writer of the run directory, whichever executor
    runs the work."""
    from ..core.progress import make_progress
    from ..data.loaders import describe_data
    from .precision import resolve_precision

    with open_executor(plan.executor, plan.device) as executor, make_progress() as progress:
        precision = resolve_precision(plan.precision, executor.device)
        plan = replace(plan, device=executor.device, search=replace(plan.search, precision=precision),
                       final=replace(plan.final, precision=precision))
        pruner = Pruner(plan, run, progress)
        n, min_depth = len(pruner.layers), plan.min_depth
        if run.exists():  # strategies may be added to an existing run
            run.add_strategies(plan.strategies)
            run.save()
        else:
            run.create(plan.config(n))
        chosen = run.section("recipe", {}).get("chosen")
        if plan.sweep and chosen:
            plan = with_recipe(plan, chosen["lr"])
        pruner.use(plan)
        executor.load(pruner)

        # The plan, with a time estimate from a short calibration of the full model where the work runs
        # (Workload.calibrate), and rounds of executor.slots parallel fine-tunes.
        n_search = sum(range(min_depth + 1, n + 1)) if "glp" in plan.strategies else 0
        on_disk = {k: m for k, m in run.models.items() if run.model_path(k).is_dir()}  # as run_finals counts them
        n_final, finals_todo = finals_left(pruner.layers, min_depth, plan.strategies, plan.seed, plan.final_seeds,
                                           run.strategy("glp").steps, on_disk)
        search_ex = min(plan.search.max_samples or len(pruner.work.fit), len(pruner.work.fit)) * plan.search.epochs
        final_ex = min(plan.final.max_samples or len(pruner.work.train), len(pruner.work.train)) * plan.final.epochs
        depths = range(min_depth, n + 1)
        cost = (sum(depths) / len(depths) + 1) / (n + 1)  # ~ layers + embeddings/head (about one layer)
        waves = search_waves(n, min_depth, run.strategy("glp").steps, executor.slots) \
            if "glp" in plan.strategies else 0
        final_waves = math.ceil(finals_todo / executor.slots)
        if plan.depth_epochs == "scaled":  # every final costs about what the full model's does
            final_waves /= cost
        sweep_waves = (math.ceil(len(sweep_first_wave(plan.sweep["lrs"])) / executor.slots)
                       if plan.sweep and not chosen else 0)
        if waves or sweep_waves or final_waves:
            ex_per_s = executor.calibrate()
            est = estimate_seconds(waves * plan.search_seeds + sweep_waves / cost, final_waves, search_ex, final_ex,
                                   ex_per_s / cost)
            if plan.reference_epochs and not _finals_done(run):  # the full-depth model's extra epochs
                est += (final_ex / plan.final.epochs * (plan.reference_epochs - plan.final.epochs) * plan.final_seeds
                        / ex_per_s)
            started = _glp_done(run) or _finals_done(run) or run.section("recipe", {}).get("points")
            eta = eta_text(est, bool(started))
            if plan.search_halving == "on" and waves:  # how many candidates stop early is not known in advance
                eta = eta.replace("estimated ", "estimated at most ", 1) + " (successive halving stops some candidates early)"
        else:
            eta = "nothing left to do (every fine-tune is finished)"
        console.print(
            f"[bold]plan[/]: {plan.task}, {plan.model} ({n} layers) -> depths {n}..{min_depth}; strategies "
            f"{', '.join(plan.strategies)}; budget {plan.budget} ({_budget_text(plan, bool(chosen))}); {_recipe_text(plan, run)}; "
            f"{n_search} candidate fine-tunes x {plan.search_seeds} seed(s) ({_glp_done(run)} done), up to {n_final} "
            f"final fine-tunes x {plan.final_seeds} seed(s) ({_finals_done(run)} done); precision {precision}; "
            f"{describe_data(pruner.task, plan.data_dir)}; executor {executor.describe()}; "
            f"{eta}; run directory {run.path}"
        )
        overall = progress.add_task("glp-bench prune", total=n_search + n_final)

        def on_update():
            run.save()
            work = prune_work(plan, n, min_depth, len(pruner.work.fit), len(pruner.work.train), run.section("recipe"),
                              run.strategy("glp").steps, run.models)
            progress.update(overall, completed=_glp_done(run) + _finals_done(run), work=work)

        def on_step(step, n_steps, n_cand):
            progress.update(overall, description=f"GLP step {step + 1}/{n_steps} ({n_cand} candidates)")

        on_update()
        if plan.sweep and not chosen:
            progress.update(overall, description="recipe sweep")
            plan = with_recipe(plan, run_sweep(run, plan, executor.scores,
                                               sweep_lines(run, plan, pruner.task.main_metric, console, on_update),
                                               sweep_halving(run, plan, executor, pruner.task,
                                                             pruner.work.held["labels"])))
            pruner.use(plan)
            executor.load(pruner)
            console.print(_recipe_text(plan, run))
        assess = step_assessor(run, pruner.task, pruner.work.held["labels"], plan.seed)
        seeds = plan.search_seed_list()
        halving = None
        if plan.search_halving == "on":
            halving = (RUNGS, rung_scorer(run, executor, seeds, RUNGS),
                       rung_cutter(run, pruner.task, pruner.work.held["labels"], plan.seed, seeds))
        orders = removal_orders(pruner, plan.strategies, min_depth, on_update=on_update, on_step=on_step,
                                score_many=candidate_scorer(run, executor, seeds), assess=assess,
                                rescore_close=plan.rescore_close,
                                rescore_many=candidate_scorer(run, executor, plan.rescore_seed_list()),
                                halving=halving)
        progress.update(overall, description="final fine-tunes")
        run_finals(pruner, executor, orders, plan, on_update)
        if "glp" in run.strategy_names() and len(run.strategy_names()) > 1:
            record_comparison(run, pruner.task, pruner.work.dev, plan.seed)
    return orders


def open_executor(spec, device: str):
    """The executor for ``spec`` (a context manager); ``device`` as the user asked for it."""
    from .executors import LocalExecutor

    if spec.kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(spec, device)
    return LocalExecutor(device)
