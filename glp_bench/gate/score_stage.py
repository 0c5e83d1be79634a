"""The score gate (``glp-bench gate --scores``): is a candidate model worse than a baseline on the task's dev
examples? ``run_score_gate`` resolves both sides (``score_sides``), scores them through ONNX Runtime on the
same dev split (the task's first), and decides (``score_decide``); ``document`` is its ``--json`` file.

``--json FILE`` writes format ``glp-bench-score-gate``, version 1 (``jsonio.stamp`` adds format, version,
environment)::

    created, seconds, verdict ("regression" | "no regression" | "undecided"), exit_code (0 | 1 | 2), reasons
    settings:  {max_drop (points), alpha, resamples, seed, provider, threads, onnxruntime}
    task:      {name, labels, main_metric, split, examples, data}
    baseline, candidate: {source, kind, path, model, variant, run, task, max_length, score (main metric,
               fraction), scores (every metric of the task), seconds (scoring time)}
    decision:  glp_bench.gate.score_decide.ScoreVerdict.to_dict(): status, metric, baseline, candidate, delta,
               lo, hi (points), p_worse, max_drop, alpha, n_examples, n_resamples, test, examples_test,
               examples_p, examples_counts, reason
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

JSON_FORMAT, JSON_VERSION = "glp-bench-score-gate", 1


@dataclass
class ScoreGateOptions:
    model: str | None = None
    variant: str | None = None
    task: str | None = None
    data_dir: str | None = None
    max_drop: float | None = None
    alpha: float | None = None
    resamples: int | None = None
    device: str | None = None
    threads: int | None = None

    @classmethod
    def from_args(cls, args) -> ScoreGateOptions:
        return cls(**{k: getattr(args, k, None) for k in cls.__dataclass_fields__})


@dataclass
class ScoreGateResult:
    sides: list
    task: object
    split: str
    data: str
    scores: list  # every metric of the task, per side
    seconds_per_side: list
    verdict: object
    outcome: object
    seconds: float
    options: ScoreGateOptions
    provider: str


def run_score_gate(base_spec: str, cand_spec: str, opts: ScoreGateOptions, console=None) -> ScoreGateResult:
    """Resolve, score and decide. Bad input raises before any model runs."""
    from rich.console import Console

    from ..core.errors import GateInputError
    from ..data.loaders import describe_data, load_task_data
    from ..export.validate import CPU, CUDA, require_provider
    from . import decide, score_decide
    from .score_sides import common_task, resolve_side, side_logits

    t_start = time.perf_counter()
    max_drop = score_decide.DEFAULT_MAX_DROP if opts.max_drop is None else opts.max_drop
    alpha = score_decide.DEFAULT_ALPHA if opts.alpha is None else opts.alpha
    resamples = opts.resamples or score_decide.DEFAULT_RESAMPLES
    if resamples < 100:
        raise GateInputError(f"--resamples {resamples} is too few for a {100 * (1 - alpha):g}% bound; use at least 100")
    if not 0 < alpha < 0.5:
        raise GateInputError(f"--alpha {alpha:g} is not a one-sided significance level; use one below 0.5, e.g. 0.05")
    sides = [resolve_side(base_spec, "baseline", opts.model, opts.variant),
             resolve_side(cand_spec, "candidate", opts.model, opts.variant)]
    task = common_task(sides, opts.task)
    provider = CUDA if opts.device == "cuda" else CPU
    require_provider(provider, "--device cuda")
    data_dir = opts.data_dir or next((s.data_dir for s in sides if s.data_dir), None)
    split = task.dev_splits[0]
    where = describe_data(task, data_dir)
    dev = load_task_data(task, data_dir)[split]
    labels = np.asarray(dev["label"])
    (console or Console(stderr=True)).print(
        f"score gate: {task.name} {split} ({len(dev)} examples; {where}); {task.main_metric}, max drop "
        f"{max_drop:g} points, alpha {alpha:g}, {resamples} paired bootstrap resamples; {provider}")
    from ..prune import models, train  # noqa: F401 - imported before the clock starts: scoring time is scoring

    preds, scores, seconds = [], [], []
    for s in sides:
        t0 = time.perf_counter()
        logits = side_logits(s, dev, task, provider, opts.threads)
        seconds.append(time.perf_counter() - t0)
        preds.append(task.predictions(logits))
        scores.append(task.compute(logits, labels))

    def metric(p, y):
        return task.metric_fn(p, y)[task.main_metric]

    verdict = score_decide.compare_scores(preds[0], preds[1], labels, metric, metric_name=task.main_metric,
                                          regression=task.is_regression, max_drop=max_drop, alpha=alpha,
                                          n_resamples=resamples)
    reasons = [f"scores: {verdict.status}: {verdict.reason}",
               f"{verdict.examples_test}: one-sided p {verdict.examples_p:.2g} (reported, not decisive)"]
    outcome = decide.Outcome(verdict.status, verdict.exit_code, reasons)
    return ScoreGateResult(sides, task, split, where, scores, seconds, verdict, outcome,
                           time.perf_counter() - t_start, opts, provider)


def document(r: ScoreGateResult) -> dict:
    """The ``--json`` file's content (without the stamp: format, version, environment)."""
    import onnxruntime as ort

    from ..core.rundir import now
    from . import score_decide

    v = r.verdict
    return {
        "created": now(), "seconds": r.seconds, "verdict": r.outcome.status, "exit_code": r.outcome.exit_code,
        "reasons": r.outcome.reasons,
        "settings": {"max_drop": v.max_drop, "alpha": v.alpha, "resamples": v.n_resamples, "seed": score_decide.SEED,
                     "provider": r.provider, "threads": r.options.threads, "onnxruntime": ort.__version__},
        "task": {"name": r.task.name, "labels": list(r.task.label_names), "main_metric": r.task.main_metric,
                 "split": r.split, "examples": v.n_examples, "data": r.data},
        **{s.role: {**s.describe(), "score": score[r.task.main_metric], "scores": score, "seconds": sec}
           for s, score, sec in zip(r.sides, r.scores, r.seconds_per_side, strict=True)},
        "decision": v.to_dict(),
    }
