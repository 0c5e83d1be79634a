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

Speed: a metric with an ``on_draws(preds, labels, idx)`` method scores all draws at once (:func:`main_metric`
gives one for MCC and accuracy: each draw's confusion counts, then scikit-learn's own formula, so every draw's
score is bit for bit scikit-learn's; :func:`roc_auc` the rank form of ROC AUC). Per draw through scikit-learn,
1000 draws took 1.7 s per candidate; the main job scores a few hundred candidate-draw sets.
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
    fast = getattr(metric, "on_draws", None)
    with warnings.catch_warnings():  # a draw with one class makes scikit-learn warn; its score is still defined
        warnings.simplefilter("ignore")
        for c, p in preds.items():
            p = np.atleast_2d(np.asarray(p))
            if p.shape[1] != n:
                raise ValueError(f"candidate {c}: {p.shape[1]} predictions for {n} held-out labels")
            if fast is None:
                out[c] = np.array([np.mean([metric(row[i], labels[i]) for row in p]) for i in idx])
            else:  # (draws, seeds), contiguous: each row's mean is np.mean of that draw's per-seed list
                per_seed = np.ascontiguousarray(np.stack([fast(row, labels, idx) for row in p], axis=1))
                out[c] = per_seed.mean(axis=1)
    return out


class DrawMetric:
    """A metric ``metric(preds, labels) -> float`` (the task's own) that also scores many draws at once:
    ``on_draws(preds, labels, idx)`` -> the score of ``preds[idx[d]]`` against ``labels[idx[d]]`` for each row ``d``."""

    def __init__(self, one, many):
        self._one, self._many = one, many

    def __call__(self, preds, labels) -> float:
        return self._one(preds, labels)

    def on_draws(self, preds, labels, idx) -> np.ndarray:
        return self._many(np.asarray(preds), np.asarray(labels), np.asarray(idx))


def _draw_counts(values: np.ndarray, idx: np.ndarray, size: int) -> np.ndarray:
    """``(draws, size)``: how often each value in ``range(size)`` occurs in ``values[idx[d]]``, per draw ``d``."""
    offset = (np.arange(len(idx)) * size)[:, None]
    return np.bincount((values[idx] + offset).ravel(), minlength=len(idx) * size).reshape(len(idx), size)


def confusions(preds: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``(draws, k, k)`` confusion counts (rows: label, columns: prediction) of each draw ``idx[d]``."""
    classes, codes = np.unique(np.concatenate([labels, preds]), return_inverse=True)
    k = len(classes)
    y, p = codes[:len(labels)], codes[len(labels):]
    return _draw_counts(y * k + p, idx, k * k).reshape(len(idx), k, k)


def mcc_of_confusions(c: np.ndarray) -> np.ndarray:
    """Matthews correlation per confusion matrix, in the float operations of ``sklearn.metrics.matthews_corrcoef``
    (0.0 where it is undefined, as there)."""
    t_sum = c.sum(axis=2, dtype=np.float64)
    p_sum = c.sum(axis=1, dtype=np.float64)
    n_correct = np.trace(c, axis1=1, axis2=2, dtype=np.float64)
    n = p_sum.sum(axis=1)
    cov_ytyp = n_correct * n - np.einsum("dk,dk->d", t_sum, p_sum)
    cov_ypyp = n**2 - np.einsum("dk,dk->d", p_sum, p_sum)
    cov_ytyt = n**2 - np.einsum("dk,dk->d", t_sum, t_sum)
    both = cov_ypyp * cov_ytyt
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(both == 0, 0.0, cov_ytyp / np.sqrt(both))


def accuracy_of_confusions(c: np.ndarray) -> np.ndarray:
    return np.trace(c, axis1=1, axis2=2, dtype=np.float64) / c.sum(axis=(1, 2), dtype=np.float64)


_CONFUSION_FORMS = {"matthews_correlation": mcc_of_confusions, "accuracy": accuracy_of_confusions}


def main_metric(task):
    """The task's main metric as ``metric(preds, labels) -> float``; for MCC and accuracy also with ``on_draws``."""
    key = task.main_metric

    def one(p, y):
        return task.metric_fn(p, y)[key]

    form = _CONFUSION_FORMS.get(key)
    if form is None or task.is_regression:
        return one
    return DrawMetric(one, lambda p, y, idx: form(confusions(p, y, idx)))


def _roc_auc_one(margin, labels) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, margin)) if len(np.unique(labels)) == 2 else 0.5


def roc_auc_draws(margin: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC AUC of ``margin`` on each draw, in its rank form (Mann-Whitney: the share of positive-negative pairs
    ranked right, ties one half) from exact integer counts: the correctly rounded AUC, within 1e-12 of
    scikit-learn's trapezoids; 0.5 for a draw with one class (as the single-sample ``roc_auc``)."""
    order = np.argsort(margin, kind="stable")
    ranked = margin[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # tie groups, ascending
    weight = _draw_counts(np.arange(len(labels)), idx, len(labels))[:, order]  # each example's multiplicity
    pos = labels[order] == labels.max()
    wpos = np.add.reduceat(weight * pos, starts, axis=1)
    wneg = np.add.reduceat(weight * ~pos, starts, axis=1)
    below = np.cumsum(wneg, axis=1) - wneg
    twice_u = (wpos * (2 * below + wneg)).sum(axis=1)
    npos, nneg = wpos.sum(axis=1), wneg.sum(axis=1)
    denom = 2 * npos * nneg
    return np.where(denom == 0, 0.5, twice_u / np.maximum(denom, 1))


roc_auc = DrawMetric(_roc_auc_one, roc_auc_draws)


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
