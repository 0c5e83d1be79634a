"""The prune stage's plan: budget presets, recipes, the run's training configs (``PrunePlan``, ``make_plan``;
``PrunePlan.from_config``: a recorded run's plan) and the plan line's texts and time estimate. Pure but for
reading the model's config in ``make_plan``. The presets are described in ``glp_bench.prune.stage``'s docstring."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from ..core.errors import GlpError
from .distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE
from .executors import ExecutorSpec
from .search import default_min_depth
from .train import TrainConfig

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
               "rescore_close", "final_seeds", "depth_epochs", "student_init", "pooling", "reference_epochs",
               "search_halving")
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
    search_halving: str = "off"  # "on": successive halving inside each GLP step (glp_bench.prune.halving)

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
            "reference_epochs": self.reference_epochs, "search_halving": self.search_halving,
            **({"task_def": self.task_def} if self.task_def else {}),
        }

    @classmethod
    def from_config(cls, config: dict) -> PrunePlan:
        """The plan a run recorded: ``config``'s inverse, from a manifest's ``config`` section (``run.config``, or
        ``run.cfg``). The executor is not recorded (local); the fine-tunes' precision is the recorded one."""
        raw = getattr(config, "raw", config)  # a RunConfig: the section it was read from
        precision = raw.get("precision", "fp32")
        known = {f.name for f in fields(TrainConfig)}

        def train(d: dict) -> TrainConfig:
            return TrainConfig(**{**{k: v for k, v in d.items() if k in known}, "precision": precision})

        knobs = ("recipe", "search_seeds", "rescore_close", "final_seeds", "depth_epochs", "student_init", "pooling",
                 "reference_epochs", "search_halving")
        sweep = raw.get("sweep")
        return cls(raw["task"], raw["model"], raw.get("data_dir"), list(raw.get("strategies") or []), raw["budget"],
                   train(raw["search"]), train(raw["final"]), raw["seed"], raw.get("min_depth"), raw.get("device", "cpu"),
                   task_def=raw.get("task_def"), sweep=dict(sweep) if sweep else None, precision=precision,
                   **{k: raw[k] for k in knobs if k in raw})

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
              pooling=None, reference_epochs=None, max_length=None, search_halving=None) -> PrunePlan:
    """The plan of a run: the budget preset, then the knobs that override it (``lr`` sets every fine-tune's
    learning rate, ``search_lr`` the candidates' alone and wins over ``lr``). ``recipe`` (default: auto, paper
    for the paper budget): ``auto`` sweeps ``SWEEP_LRS`` with a ``AUTO_WARMUP`` warm-up unless both learning
    rates are given. ``distill`` (default: on for students started from the pre-trained model, except with the
    paper budget; off for students started from the teacher) distills every pruned final model from the run's
    full-depth model. ``student_init`` (default: teacher, pretrained for the paper budget): see
    ``STUDENT_INITS``. ``depth_epochs`` (default: same; scaled for pretrained students, but for the paper budget):
    see ``DEPTH_EPOCHS``. ``pooling`` (default: auto, cls for the paper budget): ``glp_bench.prune.pooling``,
    resolved here from the pre-trained model. ``reference_epochs`` (default: the budget's ``reference_epochs``
    unless ``epochs`` is given, else the finals' epochs): epochs of the full-depth final alone. ``search_halving``
    (default: on for the fast budget, else off): ``glp_bench.prune.halving``."""
    from .halving import HALVING, default_halving
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
    search_halving = search_halving or default_halving(budget)
    if search_halving not in HALVING:
        raise GlpError(f"unknown --search-halving {search_halving!r}; choose from {', '.join(HALVING)}")
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
                     reference_epochs=reference_epochs, search_halving=search_halving)


def with_recipe(plan: PrunePlan, lr: float) -> PrunePlan:
    """``plan`` with the sweep's winning learning rate in the fine-tunes whose lr was not given."""
    search = plan.search if plan.sweep["search_lr_fixed"] else replace(plan.search, lr=lr)
    return replace(plan, search=search, final=replace(plan.final, lr=lr))


def check_min_depth(min_depth: int | None, depth: int) -> int:
    md = default_min_depth(depth) if min_depth is None else min_depth
    if not 1 <= md <= depth:
        raise GlpError(f"--min-depth {md} is outside 1..{depth} (the model has {depth} layers)")
    return md


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


def _recipe_text(plan, run) -> str:
    rec = run.section("recipe", {})
    if plan.recipe == "auto" and plan.sweep and not rec.get("chosen"):
        lrs = ", ".join(f"{x:g}" for x in plan.sweep["lrs"])
        text = (f"recipe auto (lr sweep {lrs}, the lowest only if the one above it wins; warm-up "
                f"{plan.sweep['warmup_ratio']:g}, on the 85/15 split)")
    elif plan.recipe == "auto" and plan.sweep:
        pts = rec.get("points", {})
        got = ", ".join(f"{k}: {v['score']:.3f}" + (f" (stopped at {v['stopped_at']})" if v.get("stopped_at") else "")
                        for k, v in sorted(pts.items(), key=lambda kv: kv[1]["lr"]))
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
