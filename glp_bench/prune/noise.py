"""How sure a GLP step is of its choice: a seeded, paired bootstrap over the held-out examples. Pure logic.

Every candidate of a step is scored on the same held-out examples, so the bootstrap resamples the *examples*
once per draw and scores every candidate on that draw (paired): ``B`` draws of the held-out indices with
replacement (``numpy.random.default_rng(seed)``), the task's main metric of each candidate's predictions on
each draw (the mean over the candidate's seeds when it was scored with several). From those draws:

* ``intervals``: each candidate's 95% percentile interval;
* ``p_best``: the probability that the chosen candidate is really the best: the share of draws in which it
  scores above every other candidate (a tie at the top counts as 1/k for each of the k tied);
* ``p_over_runner_up``: the same against the runner-up alone (the second-ranked candidate);
* ``within_noise``: the step is a coin toss when ``p_over_runner_up < CONFIDENCE`` (0.95): the runner-up
  wins or ties in at least 5% of the draws.

A step where every candidate predicts the majority class (MCC 0.0 on every draw) is within noise by this
rule, as it should be: ties at the top are noise, not evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

DRAWS = 1000
CONFIDENCE = 0.95


def draw_scores(preds: Mapping[int, np.ndarray], labels: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float],
                draws: int = DRAWS, seed: int = 0) -> dict[int, np.ndarray]:
    """``{candidate: scores of its predictions on each of ``draws`` paired resamples}``. ``preds[c]`` has shape
    ``(seeds, n)`` or ``(n,)``; the score of a draw is the mean over the candidate's seeds."""
    import warnings

    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(draws, n))
    out = {}
    with warnings.catch_warnings():  # a draw with one class makes scikit-learn warn; its score is still defined
        warnings.simplefilter("ignore")
        for c, p in preds.items():
            p = np.atleast_2d(np.asarray(p))
            if p.shape[1] != n:
                raise ValueError(f"candidate {c}: {p.shape[1]} predictions for {n} held-out labels")
            out[c] = np.array([np.mean([metric(row[i], labels[i]) for row in p]) for i in idx])
    return out


def _share_of_wins(mine: np.ndarray, others: np.ndarray) -> float:
    """Share of draws where ``mine`` is the strict maximum; a tie at the top counts 1/k."""
    top = np.maximum(mine, others.max(axis=0)) if len(others) else mine
    tied = 1 + (others == top).sum(axis=0) if len(others) else np.ones_like(mine)
    return float(np.mean(np.where(mine == top, 1.0 / tied, 0.0)))


def assess(draws: Mapping[int, np.ndarray], chosen: int, ranking: list[int]) -> dict:
    """The noise record of a step from its bootstrap ``draws``, the ``chosen`` candidate and the candidates in
    rank order (best first, ``ranking[0] == chosen``)."""
    others = [c for c in ranking if c != chosen]
    runner_up = others[0] if others else None
    mine = draws[chosen]
    p_best = _share_of_wins(mine, np.array([draws[c] for c in others])) if others else 1.0
    p_ru = _share_of_wins(mine, np.array([draws[runner_up]])) if runner_up is not None else 1.0
    return {
        "draws": len(mine),
        "intervals": {str(c): [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for c, v in draws.items()},
        "p_best": round(p_best, 4),
        "runner_up": runner_up,
        "p_over_runner_up": round(p_ru, 4),
        "within_noise": bool(runner_up is not None and p_ru < CONFIDENCE),
    }
