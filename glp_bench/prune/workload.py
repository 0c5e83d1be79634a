"""What one fine-tune needs and nothing of the run directory (``Workload``): picklable, so the Ray executor
ships it to the workers once through the object store."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..core.errors import GlpError
from .train import TrainConfig
from .work import depth_scaled_epochs


def load_state(state):
    """A paused fine-tune's state, given or as the path of the file the driver saved it in."""
    if isinstance(state, dict):
        return state
    import torch

    return torch.load(state, map_location="cpu", weights_only=True)


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
              warmup: float | None = None, progress=None, pause_at: float | None = None,
              resume: dict | None = None) -> dict:
        """GLP's score of removing ``candidate`` after ``removed`` (``None``: nothing more, the recipe sweep):
        fine-tune on the 85% split, main metric on the 15%, once per seed. Returns the mean score and loss,
        one record per seed and ``preds`` ({seed: held-out predictions}, for the bootstrap; the driver stores
        them as files, not in the manifest). Successive halving: ``pause_at`` (a share of the budget) stops the
        fine-tunes there, scores them and returns their states as ``checkpoints`` ({seed: state}); ``resume``
        ({seed: state, or the path of a file holding it}) continues from such states."""
        from ..data.resolve import get_task
        from .halving import rung_outputs
        from .train import fine_tune, predict

        task = get_task(self.task_name)
        cfg = self.search_config
        if lr is not None:
            cfg = replace(cfg, lr=lr)
        if warmup is not None:
            cfg = replace(cfg, warmup_ratio=warmup)
        drop = [*removed] + ([] if candidate is None else [candidate])
        label = f"  candidate: drop layer {candidate}" if candidate is not None else f"  recipe: lr {cfg.lr:g}"
        if pause_at is not None:
            label += f" (to {pause_at:.0%} of its budget)"
        per_seed, preds, paused, t0 = {}, {}, {}, time.perf_counter()
        for seed in seeds or [cfg.seed]:
            t1 = time.perf_counter()
            model = self.model_without(drop, seed)
            state = (resume or {}).get(str(seed))
            stats = fine_tune(model, self.fit, self.tokenizer, replace(cfg, seed=seed), self.device, progress,
                              description=label + (f" (seed {seed})" if seeds and len(seeds) > 1 else ""),
                              pause_at=pause_at, resume=load_state(state) if state is not None else None)
            if "checkpoint" in stats:
                paused[str(seed)] = stats["checkpoint"]
            logits = predict(model, self.held, self.tokenizer, self.device)
            metrics = task.compute(logits, self.held["labels"])
            per_seed[str(seed)] = {"score": metrics[task.main_metric], "loss": task.loss(logits, self.held["labels"]),
                                   "metrics": metrics, "seconds": round(time.perf_counter() - t1, 2)}
            preds[str(seed)] = rung_outputs(task, logits) if "checkpoint" in stats else \
                task.predictions(logits).astype("float32" if task.is_regression else "int16")
        first = next(iter(per_seed.values()))
        return {"score": float(np.mean([r["score"] for r in per_seed.values()])),
                "loss": float(np.mean([r["loss"] for r in per_seed.values()])),
                "metrics": first["metrics"] if len(per_seed) == 1 else None,
                "seeds": per_seed, "seconds": round(time.perf_counter() - t0, 2), "preds": preds,
                **({"checkpoints": paused} if paused else {})}

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
