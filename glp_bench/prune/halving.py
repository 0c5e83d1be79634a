"""Successive halving inside a GLP step and in the recipe sweep's first wave (``--search-halving on``). Pure logic.

Every candidate of a step first trains a share of its budget (the rungs ``RUNGS``: 1/3, then 2/3 of its steps,
the learning-rate schedule always the full budget's) and is scored on the held-out 15%. At each rung the
paired bootstrap of ``glp_bench.prune.noise`` (the same draws of the held-out examples for every candidate)
compares each candidate with the rung's leader by :func:`rung_measure` (ROC AUC of the margin for two classes:
threshold-free, where the step's metric still ties at the majority class); a candidate that
scores at least the leader in fewer than ``1 - CONFIDENCE`` (5%) of the draws is clearly behind and stops
there. The others continue from their saved state (``glp_bench.prune.train.fine_tune``'s ``pause_at`` /
``resume``: bit for bit where an uninterrupted fine-tune would be), so a candidate that survives every rung
ends with exactly the score full GLP gives it, and the step chooses among the survivors.

Ties at the top are noise, never evidence: two candidates both predicting the majority class (MCC 0 on every
draw) score "at least the leader" on every draw, and both go on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .noise import CONFIDENCE

RUNGS = (1 / 3, 2 / 3)
HALVING = ("on", "off")


def default_halving(budget: str) -> str:
    """On for the fast budget (its search is the main job's largest share), off for the paper's protocol and the
    smoke budget (one epoch of 64 examples: nothing to halve)."""
    return "on" if budget == "fast" else "off"


def rung_outputs(task, logits: np.ndarray) -> np.ndarray:
    """What a rung stores of a candidate's held-out logits: the margin of the positive class for a two-class
    task (its ranking is the rung's measure, :func:`rung_measure`), else the predictions as the step does."""
    logits = np.asarray(logits, dtype=np.float32)
    if not task.is_regression and task.num_labels == 2:
        return (logits[:, 1] - logits[:, 0]).astype(np.float32)
    return task.predictions(logits).astype("float32" if task.is_regression else "int16")


def rung_measure(task):
    """``(name, metric(outputs, labels))`` the rungs compare candidates by. Two classes: ROC AUC of the margin.
    Early in a fine-tune every candidate may still predict the majority class (CoLA at 1/3 of the fast budget:
    MCC 0.0 for all six), so a thresholded metric ties everywhere; how well the margin already *ranks* the
    examples does not (``noise.roc_auc``: every bootstrap draw at once). Else the task's main metric of the predictions (regression metrics need no threshold)."""
    from .noise import main_metric, roc_auc

    if not task.is_regression and task.num_labels == 2:
        return "roc_auc", roc_auc
    return task.main_metric, main_metric(task)


def behind(draws: Mapping[int, np.ndarray], leader: int) -> dict[int, float]:
    """``{candidate: share of draws scoring at least the leader}`` for the candidates clearly behind ``leader``
    (share below ``1 - CONFIDENCE``); ``draws`` as ``glp_bench.prune.noise.draw_scores`` gives them."""
    top = np.asarray(draws[leader])
    out = {}
    for c, d in draws.items():
        if c == leader:
            continue
        share = float(np.mean(np.asarray(d) >= top))
        if share < 1 - CONFIDENCE:
            out[c] = round(share, 4)
    return out


def rung_label(fraction: float) -> str:
    """``"1/3"`` for 1/3: the rung's name in the manifest and the logs."""
    from fractions import Fraction

    f = Fraction(fraction).limit_denominator(12)
    return f"{f.numerator}/{f.denominator}"
