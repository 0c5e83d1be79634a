"""The prune stage: search (GLP / baselines) + final fine-tune of every depth, into a run directory.

Budget presets (``--budget``):

* ``paper``: the paper's protocol: each candidate fine-tuned 3 epochs on the whole 85% split; each final
  model 3 epochs on the full train split.
* ``fast`` (default): a cheaper search (3 epochs on at most ``FAST_SEARCH_SAMPLES`` examples of the 85%
  split, at lr ``FAST_SEARCH_LR``, the top of BERT's fine-tuning grid 2e-5..5e-5) with the paper's final
  fine-tuning (3 epochs on all of train at 2e-5). Why 3 epochs and 5e-5: a shorter or gentler candidate
  fine-tune leaves all-MiniLM-L6-v2 on CoLA in the majority class (held-out MCC 0.0 for every candidate at
  1 epoch, at 2 epochs with lr 1e-4, and at 3 epochs with lr 2e-5), so the metric could not choose; at 3
  epochs and 5e-5 the candidates separate (drop layer 5: 0.176, drop 0 or 3: 0.0), in the same order as
  the final 3-epoch models (0.170 vs 0.0).
* ``smoke``: tiny, for tests and CI (64 examples, 1 epoch everywhere).

Everything is seeded: every candidate and every final model starts from the same pre-trained weights and
the same seeded classification head, and its fine-tune draws from ``seed`` alone, so a resumed run gives
the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import GlpError
from .executors import ExecutorSpec
from .manifest import RunDir, file_record
from .search import baseline_order, default_min_depth, greedy_search, sequential
from .train import TrainConfig

FAST_SEARCH_SAMPLES = 2000
FAST_SEARCH_LR = 5e-5
BUDGETS = {
    "paper": {"search": {"epochs": 3.0, "max_samples": None}, "final": {"epochs": 3.0, "max_samples": None}},
    "fast": {"search": {"epochs": 3.0, "max_samples": FAST_SEARCH_SAMPLES, "lr": FAST_SEARCH_LR},
             "final": {"epochs": 3.0, "max_samples": None}},
    "smoke": {"search": {"epochs": 1.0, "max_samples": 64}, "final": {"epochs": 1.0, "max_samples": 64}},
}
# Keys of the run config that must match to resume a run (strategies may be added to a run).
RESUME_KEYS = ("task", "model", "seed", "min_depth", "search", "final")


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

    def config(self, original_depth: int) -> dict:
        return {
            "task": self.task, "model": self.model, "data_dir": self.data_dir, "strategies": self.strategies,
            "budget": self.budget, "search": self.search.to_dict(), "final": self.final.to_dict(),
            "seed": self.seed, "min_depth": self.min_depth, "original_depth": original_depth,
            "max_length": self.final.max_length, "device": self.device,
        }


def make_plan(task, model, data_dir, strategies, budget="fast", seed=42, min_depth=None, device="cpu",
              search_epochs=None, search_samples=None, epochs=None, lr=None, search_lr=None) -> PrunePlan:
    """The plan of a run: the budget preset, then the knobs that override it (``lr`` sets every fine-tune's
    learning rate, ``search_lr`` the candidates' alone and wins over ``lr``)."""
    if budget not in BUDGETS:
        raise GlpError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    preset = BUDGETS[budget]
    search = TrainConfig(seed=seed, **preset["search"])
    final = TrainConfig(seed=seed, **preset["final"])
    if search_epochs is not None:
        search = replace(search, epochs=search_epochs)
    if search_samples is not None:
        search = replace(search, max_samples=search_samples or None)
    if epochs is not None:
        final = replace(final, epochs=epochs)
    if lr is not None:
        search, final = replace(search, lr=lr), replace(final, lr=lr)
    if search_lr is not None:
        search = replace(search, lr=search_lr)
    return PrunePlan(task, model, data_dir, strategies, budget, search, final, seed, min_depth, device)


def check_min_depth(min_depth: int | None, depth: int) -> int:
    md = default_min_depth(depth) if min_depth is None else min_depth
    if not 1 <= md <= depth:
        raise GlpError(f"--min-depth {md} is outside 1..{depth} (the model has {depth} layers)")
    return md


@dataclass
class Workload:
    """Everything a candidate or final fine-tune needs and nothing of the run directory: the pre-trained
    model with its seeded head, the tokenizer, the tokenized splits and the training configs. Picklable:
    the Ray executor puts it in the object store once, and every task cuts its model from it with
    ``glp_bench.surgery.drop_layers``; the local executor calls the same methods in-process."""

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

    def model_without(self, removed):
        from .surgery import drop_layers

        return drop_layers(self.base, list(removed))  # a copy, with provenance even when nothing is removed

    def score(self, removed: tuple[int, ...], candidate: int, progress=None) -> dict:
        """GLP's score of removing ``candidate`` after ``removed``: fine-tune on the 85% split, main metric on 15%."""
        from .tasks import get_task
        from .train import fine_tune, predict

        task = get_task(self.task_name)
        model = self.model_without([*removed, candidate])
        t0 = time.perf_counter()
        fine_tune(model, self.fit, self.tokenizer, self.search_config, self.device, progress,
                  description=f"  candidate: drop layer {candidate}")
        logits = predict(model, self.held, self.tokenizer, self.device)
        metrics = task.compute(logits, self.held["labels"])
        return {"score": metrics[task.main_metric], "loss": task.loss(logits, self.held["labels"]),
                "metrics": metrics, "seconds": round(time.perf_counter() - t0, 2)}

    def final(self, removed: list[int], out_dir, progress=None, description: str = "  final") -> dict:
        """Fine-tune the pre-trained model without ``removed`` on the full train split, score it on dev and
        save it (weights, config, tokenizer) into ``out_dir``; returns its manifest record minus the files."""
        from .tasks import flatten_scores, get_task
        from .train import evaluate, fine_tune

        task = get_task(self.task_name)
        model = self.model_without(removed)
        stats = fine_tune(model, self.train, self.tokenizer, self.final_config, self.device, progress,
                          description=description)
        scores = flatten_scores(task, evaluate(model, self.dev, self.tokenizer, task, self.device))
        model.save_pretrained(out_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(out_dir)
        kept = list(model.config.glp_kept_layers)
        return {
            "depth": len(kept), "kept_layers": kept, "dev_scores": scores,
            "train": {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()},
        }

    def calibrate(self) -> float:
        """Steady training throughput (examples/s) of the full model: 8 steps of length-grouped batches, as
        the fine-tunes use; the first step is warm-up and not counted. Feeds the time estimate. (Random
        batches pad to their longest sentence: on CoLA they made the estimate 1.5x too long, 33 min printed
        for a 22-minute run.)"""
        from .train import fine_tune

        cfg = TrainConfig(epochs=1, max_samples=8 * self.search_config.batch_size, seed=self.search_config.seed)
        return fine_tune(self.model_without([]), self.fit, self.tokenizer, cfg, self.device)["steady_examples_per_s"]


class Pruner:
    """Holds the data, tokenizer and pre-trained model of one run (its ``work``); scores candidates; trains
    finals; is the only writer of the run directory (executors hand it their results)."""

    def __init__(self, plan: PrunePlan, run: RunDir, progress=None, console=None):
        from .data import load_task_data, search_split
        from .models import load_classifier, load_tokenizer
        from .surgery import kept_layers
        from .tasks import get_task
        from .train import tokenize

        self.plan, self.run, self.progress, self.console = plan, run, progress, console
        self.task = get_task(plan.task)
        data = load_task_data(self.task, plan.data_dir)
        tokenizer = load_tokenizer(plan.model)
        # One pre-trained model with one seeded head: every candidate and final model is cut from it.
        base = load_classifier(plan.model, self.task, seed=plan.seed)
        self.layers = kept_layers(base.config)
        ml = plan.final.max_length

        def enc(split):
            return tokenize(split, tokenizer, self.task, ml)

        fit, held = search_split(data["train"], plan.seed)
        self.work = Workload(self.task.name, base, tokenizer, enc(fit), enc(held), enc(data["train"]),
                             {s: enc(data[s]) for s in self.task.dev_splits}, plan.search, plan.final, plan.device)

    def model_without(self, removed):
        return self.work.model_without(removed)

    def score(self, removed: tuple[int, ...], candidate: int) -> dict:
        """GLP's score of removing ``candidate`` after ``removed`` (``Workload.score``), in this process."""
        return self.work.score(removed, candidate, self.progress)

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

    def final(self, name: str, kept: list[int]) -> dict:
        """Fine-tune the pre-trained model keeping ``kept`` on the full train split; save; score on dev."""
        removed = [i for i in self.layers if i not in kept]
        staged = self.staging_dir(name)
        record = self.work.final(removed, staged, self.progress, description=f"  final {name}")
        return self.install(name, record, staged)


def removal_orders(pruner: Pruner, strategies: list[str], min_depth: int, on_update, on_step,
                   score_many=None) -> dict[str, list[int]]:
    """Removal order per strategy (GLP searched and logged in the manifest; baselines computed). ``score_many``
    scores a step's candidates (an executor's; default: one after the other in this process)."""
    run, n = pruner.run, len(pruner.layers)
    orders = {}
    for strategy in strategies:
        rec = run.strategies.setdefault(strategy, {"order": [], "steps": []})
        if strategy == "glp":
            order = greedy_search(pruner.layers, min_depth, score_many or sequential(pruner.score), rec["steps"],
                                  on_update=on_update, on_step=on_step)
        else:
            order = baseline_order(strategy, n, pruner.plan.seed)[: n - min_depth]
        rec["order"] = order
        on_update()
        orders[strategy] = order
    return orders


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
                run.models.setdefault(seen[key], {"depth": len(kept), "kept_layers": kept, "strategies": [],
                                                  "dev_scores": None})
            name = seen[key]
            if strategy not in run.models[name]["strategies"]:
                run.models[name]["strategies"].append(strategy)
            run.strategies[strategy].setdefault("models", {})[str(len(kept))] = name
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
