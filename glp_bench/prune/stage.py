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
``--rescore-close`` (``RESCORE_SEEDS`` extra), ``--final-seeds`` (``run_finals``). Depth epochs
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
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import GlpError
from ..core.records import ModelRecord
from ..core.rundir import RunDir, file_record
from .distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE
from .executors import ExecutorSpec
from .search import baseline_order, default_min_depth, greedy_search
from .train import TrainConfig
from .work import depth_scaled_epochs, eta_text, finals_left, prune_work, sweep_first_wave

FAST_SEARCH_SAMPLES = 2000
FAST_SEARCH_LR = 5e-5
BUDGETS = {
    "paper": {"search": {"epochs": 3.0, "max_samples": None}, "final": {"epochs": 3.0, "max_samples": None}},
    "fast": {"search": {"epochs": 3.0, "max_samples": FAST_SEARCH_SAMPLES, "lr": FAST_SEARCH_LR},
             "final": {"epochs": 3.0, "max_samples": None}, "reference_epochs": 5.0},
    "smoke": {"search": {"epochs": 1.0, "max_samples": 64}, "final": {"epochs": 1.0, "max_samples": 64}},
}
# Keys of the run config that must match to resume a run (strategies may be added to a run).
RESUME_KEYS = ("task", "model", "seed", "min_depth", "search", "final", "recipe", "sweep", "search_seeds",
               "rescore_close", "final_seeds", "depth_epochs", "student_init", "pooling", "reference_epochs")
RECIPES = ("auto", "paper")
# The auto recipe's sweep (full-depth model, the search budget, scored on the 15% part): BERT's fine-tuning
# grid 2e-5..5e-5 plus the higher rates that small and sentence-embedding encoders need, with a 10% warm-up.
SWEEP_LRS = (2e-5, 5e-5, 1e-4, 2e-4)
AUTO_WARMUP = 0.1
RESCORE_SEEDS = 2  # extra seeds per candidate re-scored by --rescore-close
# Epochs of a pruned final: "scaled" = epochs * L / d (the full model's compute for d of L layers; measured on
# the 85/15 split of CoLA, 2 seeds, distilled: +1.3 / +0.3 / +2.5 points at depths 5 / 4 / 3), "same" = epochs.
DEPTH_EPOCHS = ("scaled", "same")
# Where a pruned final starts: "teacher" = the run's fine-tuned full-depth model with the layers cut out (its
# fine-tuned head kept); "pretrained" = the pre-trained model with a fresh head (the paper). Measured on the 85/15
# split of CoLA (see docs/results.md): from the teacher, 3 epochs at depth 3 beat 6 from the pre-trained model.
STUDENT_INITS = ("teacher", "pretrained")


@dataclass
class PrunePlan:
    task: str
    model: str  # resolved hub id or folder
    data_dir: str | None
    strategies: list[str]
    budget: str
    search: TrainConfig
    final: TrainConfig
    seed: int
    min_depth: int | None  # None: half the depth, rounded up
    device: str  # resolved ("cpu", "cuda"); with Ray the executor resolves it against the cluster
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)  # how, not what: not part of the run's config
    task_def: dict | None = None  # a custom task's definition (glp_bench.data.task_def), stored in the config

    recipe: str = "paper"  # auto: learning-rate sweep of the full model on the 85/15 split; paper: fixed lrs
    sweep: dict | None = None  # {"lrs": [...], "warmup_ratio": w, "search_lr_fixed": bool, "final_lr_fixed": bool}
    precision: str = "fp32"  # as asked (auto, fp32, bf16, fp16); resolved where the work runs
    search_seeds: int = 1  # seeds per candidate (ranked by the mean)
    rescore_close: int = 0  # re-score the K best candidates of a step decided within noise
    final_seeds: int = 1  # seeds per final model (the first seed's files are kept and exported)
    depth_epochs: str = "same"  # "scaled": a final of d of L layers trains epochs * L / d epochs
    student_init: str = "pretrained"  # "teacher": pruned finals start from the run's fine-tuned full model
    pooling: str = "cls"  # resolved sentence pooling of the classifier (glp_bench.prune.pooling): cls or mean
    reference_epochs: float | None = None  # epochs of the full-depth final (None: final.epochs, as every depth)

    def config(self, original_depth: int) -> dict:
        def train(cfg):
            d = cfg.to_dict()
            d.pop("precision")  # a speed knob, not the run's identity (a run may resume on other hardware)
            return d

        return {
            "task": self.task, "model": self.model, "data_dir": self.data_dir, "strategies": self.strategies,
            "budget": self.budget, "search": train(self.search), "final": train(self.final),
            "seed": self.seed, "min_depth": self.min_depth, "original_depth": original_depth,
            "max_length": self.final.max_length, "device": self.device,
            "recipe": self.recipe, "sweep": self.sweep, "precision": self.precision,
            "search_seeds": self.search_seeds, "rescore_close": self.rescore_close, "final_seeds": self.final_seeds,
            "depth_epochs": self.depth_epochs, "student_init": self.student_init, "pooling": self.pooling,
            "reference_epochs": self.reference_epochs,
            **({"task_def": self.task_def} if self.task_def else {}),
        }

    def search_seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.search_seeds)]

    def rescore_seed_list(self) -> list[int]:
        return [self.seed + self.search_seeds + i for i in range(RESCORE_SEEDS)]

    def final_seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.final_seeds)]


def default_recipe(budget: str) -> str:
    """``paper`` for the paper budget (to reproduce it), ``auto`` for the others."""
    return "paper" if budget == "paper" else "auto"


def make_plan(task, model, data_dir, strategies, budget="fast", seed=42, min_depth=None, device="cpu",
              search_epochs=None, search_samples=None, epochs=None, lr=None, search_lr=None, recipe=None,
              warmup=None, distill=None, distill_alpha=None, distill_temperature=None, precision="fp32",
              search_seeds=1, rescore_close=0, final_seeds=1, depth_epochs=None, student_init=None,
              pooling=None, reference_epochs=None, max_length=None) -> PrunePlan:
    """The plan of a run: the budget preset, then the knobs that override it (``lr`` sets every fine-tune's
    learning rate, ``search_lr`` the candidates' alone and wins over ``lr``). ``recipe`` (default: auto, paper
    for the paper budget): ``auto`` sweeps ``SWEEP_LRS`` with a ``AUTO_WARMUP`` warm-up unless both learning
    rates are given. ``distill`` (default: on for students started from the pre-trained model, except with the
    paper budget; off for students started from the teacher) distills every pruned final model from the run's
    full-depth model. ``student_init`` (default: teacher, pretrained for the paper budget): see
    ``STUDENT_INITS``. ``depth_epochs`` (default: same; scaled for pretrained students, but for the paper budget):
    see ``DEPTH_EPOCHS``. ``pooling`` (default: auto, cls for the paper budget): ``glp_bench.prune.pooling``,
    resolved here from the pre-trained model. ``reference_epochs`` (default: the budget's ``reference_epochs``
    unless ``epochs`` is given, else the finals' epochs): epochs of the full-depth final alone."""
    from .pooling import check_pooling, resolve_pooling

    if budget not in BUDGETS:
        raise GlpError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    pooling = check_pooling(pooling or ("cls" if budget == "paper" else "auto"))
    recipe = recipe or default_recipe(budget)
    if recipe not in RECIPES:
        raise GlpError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    for name, value in (("--distill-alpha", distill_alpha), ("--distill-temperature", distill_temperature)):
        if value is not None and not (0 < value < math.inf) or (name == "--distill-alpha" and value is not None
                                                                  and value > 1):
            raise GlpError(f"{name} must be a number in {'(0, 1]' if 'alpha' in name else '(0, inf)'}, got {value}")
    student_init = student_init or ("pretrained" if budget == "paper" else "teacher")
    if student_init not in STUDENT_INITS:
        raise GlpError(f"unknown --student-init {student_init!r}; choose from {', '.join(STUDENT_INITS)}")
    depth_epochs = depth_epochs or ("same" if budget == "paper" or student_init == "teacher" else "scaled")
    if depth_epochs not in DEPTH_EPOCHS:
        raise GlpError(f"unknown --depth-epochs {depth_epochs!r}; choose from {', '.join(DEPTH_EPOCHS)}")
    if distill is None:  # on where it helped (pre-trained students); a student cut from the teacher gained nothing
        distill = budget != "paper" and student_init == "pretrained"
    preset = BUDGETS[budget]
    search = TrainConfig(seed=seed, **preset["search"])
    final = TrainConfig(seed=seed, **preset["final"])
    if max_length is not None:  # tokens per example everywhere (default TrainConfig's 128)
        search, final = replace(search, max_length=max_length), replace(final, max_length=max_length)
    if search_epochs is not None:
        search = replace(search, epochs=search_epochs)
    if search_samples is not None:
        search = replace(search, max_samples=search_samples or None)
    if epochs is not None:
        final = replace(final, epochs=epochs)
    if reference_epochs is None and epochs is None:
        reference_epochs = preset.get("reference_epochs")
    if reference_epochs == final.epochs:
        reference_epochs = None
    if lr is not None:
        search, final = replace(search, lr=lr), replace(final, lr=lr)
    if search_lr is not None:
        search = replace(search, lr=search_lr)
    sweep = None
    if recipe == "auto":
        w = AUTO_WARMUP if warmup is None else warmup
        search, final = replace(search, warmup_ratio=w), replace(final, warmup_ratio=w)
        if lr is None:  # the sweep picks the learning rates that were not given
            sweep = {"lrs": list(SWEEP_LRS), "warmup_ratio": w, "search_lr_fixed": search_lr is not None}
    elif warmup is not None:
        search, final = replace(search, warmup_ratio=warmup), replace(final, warmup_ratio=warmup)
    if distill:
        final = replace(final, distill_alpha=distill_alpha or DEFAULT_ALPHA,
                        distill_temperature=distill_temperature or DEFAULT_TEMPERATURE)
    search, final = replace(search, precision=precision), replace(final, precision=precision)
    return PrunePlan(task, model, data_dir, strategies, budget, search, final, seed, min_depth, device,
                     recipe=recipe, sweep=sweep, precision=precision, search_seeds=search_seeds,
                     rescore_close=rescore_close, final_seeds=final_seeds, depth_epochs=depth_epochs,
                     student_init=student_init, pooling=resolve_pooling(pooling, model),
                     reference_epochs=reference_epochs)


def with_recipe(plan: PrunePlan, lr: float) -> PrunePlan:
    """``plan`` with the sweep's winning learning rate in the fine-tunes whose lr was not given."""
    search = plan.search if plan.sweep["search_lr_fixed"] else replace(plan.search, lr=lr)
    return replace(plan, search=search, final=replace(plan.final, lr=lr))


def check_min_depth(min_depth: int | None, depth: int) -> int:
    md = default_min_depth(depth) if min_depth is None else min_depth
    if not 1 <= md <= depth:
        raise GlpError(f"--min-depth {md} is outside 1..{depth} (the model has {depth} layers)")
    return md


@dataclass
class Workload:
    """Everything a candidate or final fine-tune needs and nothing of the run directory: the pre-trained
    model with its seeded head, the tokenizer, the tokenized splits, the training configs and (once the
    reference model is trained) the teacher's logits on the train split. Picklable: the Ray executor puts it
    in the object store, and every task cuts its model from it with ``glp_bench.prune.surgery.drop_layers``; the
    local executor calls the same methods in-process."""

    task_name: str
    base: Any  # pre-trained model with the seeded head; never modified (drop_layers copies)
    tokenizer: Any
    fit: Any  # tokenized 85% split (search fine-tunes)
    held: Any  # tokenized 15% split (search scores)
    train: Any  # tokenized full train split (final fine-tunes)
    dev: dict  # {split: tokenized dev split}
    search_config: TrainConfig
    final_config: TrainConfig
    device: str
    teacher: Any = None  # np.ndarray of the reference model's logits on ``train``, when distilling
    depth_epochs: str = "same"  # PrunePlan.depth_epochs
    student_init: str = "pretrained"  # PrunePlan.student_init
    init_state: Any = None  # the reference model's state dict, when pruned finals start from it
    reference_epochs: float | None = None  # PrunePlan.reference_epochs

    def model_without(self, removed, seed: int | None = None):
        """A copy of the pre-trained model without ``removed``; a head re-initialised from ``seed`` when it is
        not the run's seed (extra seeds: a different head, data order and dropout)."""
        from .surgery import drop_layers
        from .train import reseed_head

        model = drop_layers(self.base, list(removed))  # a copy, with provenance even when nothing is removed
        if seed is not None and seed != self.search_config.seed:
            reseed_head(model, seed)
        return model

    def student_without(self, removed):
        """The fine-tuned full-depth model (``init_state``) without ``removed``: where a pruned final starts
        with ``student_init`` ``teacher``."""
        import copy

        from .surgery import drop_layers

        if self.init_state is None:
            raise GlpError("a pruned final starts from the run's full-depth model (--student-init teacher), which "
                           "is not loaded; re-run the same command, or use --student-init pretrained")
        teacher = copy.deepcopy(self.base)
        teacher.load_state_dict(self.init_state)
        return drop_layers(teacher, list(removed))

    def final_epochs(self, removed, epochs: float) -> float:
        """Epochs of the final model without ``removed``: ``epochs``, scaled to the full model's compute
        with ``depth_epochs`` ``scaled``; the full-depth model's: ``reference_epochs`` when set."""
        from .surgery import kept_layers

        if not removed:
            return self.reference_epochs or epochs
        if self.depth_epochs != "scaled":
            return epochs
        n = len(kept_layers(self.base.config))
        return depth_scaled_epochs(epochs, n, n - len(removed))

    def score(self, removed: tuple[int, ...], candidate: int | None, seeds=None, lr: float | None = None,
              warmup: float | None = None, progress=None) -> dict:
        """GLP's score of removing ``candidate`` after ``removed`` (``None``: nothing more, the recipe sweep):
        fine-tune on the 85% split, main metric on the 15%, once per seed. Returns the mean score and loss,
        one record per seed and ``preds`` ({seed: held-out predictions}, for the bootstrap; the driver stores
        them as files, not in the manifest)."""
        from ..data.resolve import get_task
        from .train import fine_tune, predict

        task = get_task(self.task_name)
        cfg = self.search_config
        if lr is not None:
            cfg = replace(cfg, lr=lr)
        if warmup is not None:
            cfg = replace(cfg, warmup_ratio=warmup)
        drop = [*removed] + ([] if candidate is None else [candidate])
        label = f"  candidate: drop layer {candidate}" if candidate is not None else f"  recipe: lr {cfg.lr:g}"
        per_seed, preds, t0 = {}, {}, time.perf_counter()
        for seed in seeds or [cfg.seed]:
            t1 = time.perf_counter()
            model = self.model_without(drop, seed)
            fine_tune(model, self.fit, self.tokenizer, replace(cfg, seed=seed), self.device, progress,
                      description=label + (f" (seed {seed})" if seeds and len(seeds) > 1 else ""))
            logits = predict(model, self.held, self.tokenizer, self.device)
            metrics = task.compute(logits, self.held["labels"])
            per_seed[str(seed)] = {"score": metrics[task.main_metric], "loss": task.loss(logits, self.held["labels"]),
                                   "metrics": metrics, "seconds": round(time.perf_counter() - t1, 2)}
            preds[str(seed)] = task.predictions(logits).astype("float32" if task.is_regression else "int16")
        first = next(iter(per_seed.values()))
        return {"score": float(np.mean([r["score"] for r in per_seed.values()])),
                "loss": float(np.mean([r["loss"] for r in per_seed.values()])),
                "metrics": first["metrics"] if len(per_seed) == 1 else None,
                "seeds": per_seed, "seconds": round(time.perf_counter() - t0, 2), "preds": preds}

    def final(self, removed: list[int], out_dir=None, progress=None, description: str = "  final",
              seed: int | None = None) -> dict:
        """Fine-tune the model without ``removed`` on the full train split, score it on dev and, with
        ``out_dir``, save it (weights, config, tokenizer); returns its manifest record minus the files. A pruned
        final starts from the fine-tuned full model with ``student_init`` ``teacher`` (else from the pre-trained
        one) and is distilled from the teacher's logits when ``final_config.distill_alpha > 0``."""
        from ..data.resolve import get_task
        from ..data.tasks import flatten_scores
        from .models import save_classifier
        from .train import fine_tune, predict

        task = get_task(self.task_name)
        cfg = self.final_config if seed is None else replace(self.final_config, seed=seed)
        cfg = replace(cfg, epochs=self.final_epochs(removed, cfg.epochs))
        distill = bool(removed) and cfg.distill_alpha > 0
        if not distill:
            cfg = replace(cfg, distill_alpha=0.0)
        elif self.teacher is None:
            raise GlpError("distillation needs the teacher's logits (the run's full-depth model) before the "
                           "pruned final fine-tunes; re-run the same command, or use --no-distill")
        from_teacher = bool(removed) and self.student_init == "teacher"
        # From the teacher the head is fine-tuned already: extra seeds differ in data order and dropout only.
        model = self.student_without(removed) if from_teacher else self.model_without(removed, cfg.seed)
        stats = fine_tune(model, self.train, self.tokenizer, cfg, self.device, progress, description=description,
                          teacher_logits=self.teacher if distill else None)
        logits = {s: predict(model, enc, self.tokenizer, self.device) for s, enc in self.dev.items()}
        scores = flatten_scores(task, {s: task.compute(x, self.dev[s]["labels"]) for s, x in logits.items()})
        if out_dir is not None:
            save_classifier(model, self.tokenizer, out_dir)
        kept = list(model.config.glp_kept_layers)
        return {
            "depth": len(kept), "kept_layers": kept, "dev_scores": scores, "seed": cfg.seed,
            "recipe": {"lr": cfg.lr, "warmup_ratio": cfg.warmup_ratio, "epochs": cfg.epochs,
                       "precision": cfg.precision},
            "distill": {"alpha": cfg.distill_alpha, "temperature": cfg.distill_temperature} if distill else None,
            "init": "teacher" if from_teacher else "pretrained",
            "train": {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()},
            "dev_preds": {s: task.predictions(x).astype("float32" if task.is_regression else "int16")
                          for s, x in logits.items()},
        }

    def teacher_logits(self, model_dir) -> np.ndarray:
        """The reference model's logits on the train split (the soft targets of distillation)."""
        from .models import load_saved_classifier
        from .train import predict

        return predict(load_saved_classifier(model_dir), self.train, self.tokenizer, self.device)

    def calibrate(self) -> float:
        """Steady training throughput (examples/s) of the full model: 8 steps of length-grouped batches, as
        the fine-tunes use; the first step is warm-up and not counted. Feeds the time estimate. (Random
        batches pad to their longest sentence: on CoLA they made the estimate 1.5x too long, 33 min printed
        for a 22-minute run.)"""
        from .train import fine_tune

        cfg = replace(self.search_config, epochs=1, max_samples=8 * self.search_config.batch_size, distill_alpha=0.0)
        return fine_tune(self.model_without([]), self.fit, self.tokenizer, cfg, self.device)["steady_examples_per_s"]


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
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)
        return {**record, "path": str(target.relative_to(self.run.path)),
                "files": {f.name: file_record(f) for f in sorted(target.iterdir()) if f.is_file()}}

def removal_orders(pruner: Pruner, strategies: list[str], min_depth: int, on_update, on_step, score_many,
                   **search_options) -> dict[str, list[int]]:
    """Removal order per strategy (GLP searched and logged in the manifest; baselines computed). ``score_many``
    scores a step's candidates (``candidate_scorer``); ``search_options`` go to ``greedy_search`` (``assess``,
    ``rescore_close``, ``rescore_many``)."""
    run, n = pruner.run, len(pruner.layers)
    orders = {}
    for strategy in strategies:
        rec = run.strategy_log(strategy)
        if strategy == "glp":
            order = greedy_search(pruner.layers, min_depth, score_many, rec["steps"], on_update=on_update,
                                  on_step=on_step, **search_options)
        else:
            order = baseline_order(strategy, n, pruner.plan.seed)[: n - min_depth]
        rec["order"] = order
        on_update()
        orders[strategy] = order
    return orders


def candidate_scorer(run: RunDir, executor, seeds: list[int]):
    """``score_many`` for ``greedy_search``: the executor scores each candidate with ``seeds``; the driver
    stores the held-out predictions (``RunDir.preds_path``) and logs the rest."""

    def score_many(removed, candidates):
        for c, rec in executor.score_many(tuple(removed), list(candidates), seeds=seeds):
            store_preds(run, len(removed), c, rec.pop("preds"))
            yield c, rec

    return score_many


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


def search_waves(n_layers: int, min_depth: int, steps: list[dict], slots: int) -> int:
    """Rounds of at most ``slots`` parallel candidate fine-tunes still needed by a GLP search (``steps``: its
    log so far). A step's candidates run together; the next step needs the previous step's choice."""
    waves = 0
    for i, k in enumerate(range(n_layers, min_depth, -1)):
        step = steps[i] if i < len(steps) else None
        if step is not None and step.get("chosen") is not None:
            continue
        waves += math.ceil((k - len(step["candidates"]) if step else k) / max(slots, 1))
    return waves


def estimate_seconds(n_search: int, n_final: int, search_examples: int, final_examples: int, ex_per_s: float) -> float:
    return (n_search * search_examples + n_final * final_examples) / max(ex_per_s, 1e-9)


# --- the stage's steps beyond the search loop: recipe sweep, stored predictions + noise, teacher, seeds -----

def lr_key(lr: float) -> str:
    return f"{lr:g}"


def run_sweep(run: RunDir, plan: PrunePlan, scores, on_update) -> float:
    """The auto recipe: fine-tune the full-depth model at the sweep's lrs (the search budget, 85% split), score
    on the 15% part (main metric, held-out loss as tie-break); record every point in ``manifest["recipe"]``
    as it finishes (resumable); return the winning lr. The grid is searched from the top: first
    ``sweep_first_wave``, then the next lower lr while the lowest tried wins (a lower lr is tried only when the
    scores still rise towards it; for all-MiniLM-L6-v2 on CoLA 2e-5 never left the majority class).
    ``scores(jobs)`` is an executor's ``scores``."""
    from .search import choose, decided_by

    sweep = plan.sweep
    rec = run.log("recipe", {"mode": "auto", **sweep, "points": {}, "chosen": None})
    grid = sorted(sweep["lrs"])
    tried = sweep_first_wave(grid)
    while True:
        todo = [lr for lr in tried if lr_key(lr) not in rec["points"]]
        jobs = [(lr, {"removed": (), "candidate": None, "lr": lr, "warmup": sweep["warmup_ratio"]}) for lr in todo]
        for lr, result in scores(jobs):
            result.pop("preds", None)
            rec["points"][lr_key(lr)] = {"lr": lr, **result}
            on_update()
        points = {i: rec["points"][lr_key(lr)] for i, lr in enumerate(tried)}
        best = choose(points)  # full tie: the highest lr (choose's last rule: the highest key)
        lower = grid.index(tried[0])
        if best != 0 or lower == 0:
            break
        tried = [grid[lower - 1], *tried]
    rec["skipped"] = [lr for lr in grid if lr not in tried]
    rec["chosen"] = {"lr": tried[best], "warmup_ratio": sweep["warmup_ratio"],
                     "decided_by": decided_by(points, best)}
    on_update()
    return rec["chosen"]["lr"]


def sweep_lines(run: RunDir, plan: PrunePlan, metric: str, console, on_update):
    """``on_update`` for ``run_sweep`` that also prints one plain line per finished sweep point, with elapsed time
    and ETA (the sweep adds no unit to the run's bar, so a log would show nothing for minutes otherwise)."""
    from ..core.progress import fmt_seconds

    t0 = time.monotonic()
    seen = set(run.section("recipe", {}).get("points") or {})
    first, wave = len(seen), len(sweep_first_wave(plan.sweep["lrs"]))

    def update():
        on_update()
        points = run.section("recipe", {}).get("points") or {}
        for key in [k for k in points if k not in seen]:
            seen.add(key)
            done, elapsed = len(points), time.monotonic() - t0
            planned = max(wave, done)
            eta = elapsed / max(done - first, 1) * (planned - done)
            console.print(f"recipe sweep: lr {points[key]['lr']:g}, held-out {metric} {points[key]['score']:.4f}: "
                          f"{done}/{planned} done, elapsed {fmt_seconds(elapsed)}, ETA {fmt_seconds(eta)}",
                          markup=False, highlight=False)

    return update


def save_array(path: Path, array) -> None:
    """``np.save`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(array))
    os.replace(tmp, path)


def store_preds(run: RunDir, step: int, layer: int, preds: dict) -> None:
    for seed, p in preds.items():
        save_array(run.preds_path(step, layer, seed), p)


def step_assessor(run: RunDir, task, held_labels, seed: int):
    """``assess(step, pool, chosen, ranking)`` for ``greedy_search``: the paired bootstrap of
    ``glp_bench.prune.noise`` over the stored held-out predictions (``None`` when a prediction file is missing, e.g.
    a step logged before predictions were stored)."""
    from .noise import assess, draw_scores

    labels = np.asarray(held_labels)

    def metric(p, y):
        return task.metric_fn(p, y)[task.main_metric]

    def run_assess(step: int, pool: dict, chosen: int, ranking: list[int]):
        try:
            preds = {c: np.stack([np.load(run.preds_path(step, c, s)) for s in rec.get("seeds", {})])
                     for c, rec in pool.items()}
        except (OSError, ValueError):
            return None
        if any(p.size == 0 for p in preds.values()):
            return None
        return assess(draw_scores(preds, labels, metric, seed=seed + step), chosen, ranking)

    return run_assess


def record_comparison(run: RunDir, task, dev, seed: int) -> dict:
    """GLP against each baseline per depth on dev (``glp_bench.prune.compare``), into the manifest's ``comparison``:
    a paired bootstrap over the stored dev predictions of the first dev split. Reports; chooses nothing."""
    from .compare import compare_strategies

    split = task.dev_splits[0]
    labels = np.asarray(dev[split]["labels"])

    def preds(name: str):
        rel = (run.model(name) or ModelRecord(name)).dev_preds.get(split)
        try:
            return np.load(run.file(rel, f"models.{name}.dev_preds.{split}")) if rel else None
        except (OSError, ValueError):
            return None

    def metric(p, y):
        return task.metric_fn(p, y)[task.main_metric]

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


def run_finals(pruner: Pruner, executor, orders: dict[str, list[int]], plan: PrunePlan, on_update) -> None:
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


# --- the stage as one call (what 'glp-bench prune' runs) ---------------------------------------


def _glp_done(run) -> int:
    return sum(len(s["candidates"]) for s in run.strategy("glp").steps)


def _finals_done(run) -> int:
    return len(run.finished_models())


def _budget_text(plan, swept: bool = False) -> str:
    def one(cfg, pool, fixed):
        n = f"at most {cfg.max_samples}" if cfg.max_samples else "all"
        lr = f"lr {cfg.lr:g}" if fixed or not plan.sweep or swept else "the sweep's lr"
        return f"{cfg.epochs:g} epochs on {n} examples of {pool} at {lr}"

    fixed = bool(plan.sweep and plan.sweep["search_lr_fixed"])
    scaled = " (x L/d for d of L layers)" if plan.depth_epochs == "scaled" else ""
    ref = f", the full-depth model {plan.reference_epochs:g}" if plan.reference_epochs else ""
    return (f"candidates: {one(plan.search, 'the 85% split', fixed)}; "
            f"finals: {one(plan.final, 'train', False)}{scaled}{ref}")


def prune_run(plan: PrunePlan, run: RunDir, console) -> dict[str, list[int]]:
    """Run (or resume) the recipe sweep, the search and the final fine-tunes with ``plan.executor``; returns
    the removal order per strategy. This process is the only writer of the run directory, whichever executor
    runs the work."""
    from ..core.progress import make_progress
    from ..data.loaders import describe_data
    from .executors import open_executor
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
                                               sweep_lines(run, plan, pruner.task.main_metric, console, on_update)))
            pruner.use(plan)
            executor.load(pruner)
            console.print(_recipe_text(plan, run))
        assess = step_assessor(run, pruner.task, pruner.work.held["labels"], plan.seed)
        orders = removal_orders(pruner, plan.strategies, min_depth, on_update=on_update, on_step=on_step,
                                score_many=candidate_scorer(run, executor, plan.search_seed_list()), assess=assess,
                                rescore_close=plan.rescore_close,
                                rescore_many=candidate_scorer(run, executor, plan.rescore_seed_list()))
        progress.update(overall, description="final fine-tunes")
        run_finals(pruner, executor, orders, plan, on_update)
        if "glp" in run.strategy_names() and len(run.strategy_names()) > 1:
            record_comparison(run, pruner.task, pruner.work.dev, plan.seed)
    return orders


def _recipe_text(plan, run) -> str:
    rec = run.section("recipe", {})
    if plan.recipe == "auto" and plan.sweep and not rec.get("chosen"):
        lrs = ", ".join(f"{x:g}" for x in plan.sweep["lrs"])
        text = (f"recipe auto (lr sweep {lrs}, the lowest only if the one above it wins; warm-up "
                f"{plan.sweep['warmup_ratio']:g}, on the 85/15 split)")
    elif plan.recipe == "auto" and plan.sweep:
        pts = rec.get("points", {})
        got = ", ".join(f"{k}: {v['score']:.3f}" for k, v in sorted(pts.items(), key=lambda kv: kv[1]["lr"]))
        got += "".join(f", {x:g}: not tried" for x in rec.get("skipped", []))
        text = (f"recipe auto: lr {rec['chosen']['lr']:g} (held-out {got}; decided by {rec['chosen']['decided_by']}), "
                f"warm-up {plan.final.warmup_ratio:g}")
    else:
        text = f"recipe {plan.recipe} (lr {plan.search.lr:g} / {plan.final.lr:g}, warm-up {plan.final.warmup_ratio:g})"
    d = plan.final
    start = ("; pruned finals start from the fine-tuned full-depth model" if plan.student_init == "teacher"
             else "; pruned finals start from the pre-trained model")
    start += "; mean pooling" if plan.pooling == "mean" else ""
    return text + start + (f"; distillation alpha {d.distill_alpha:g}, T {d.distill_temperature:g}"
                           if d.distill_alpha > 0 else "; no distillation")
