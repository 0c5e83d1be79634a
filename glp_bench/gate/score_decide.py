"""The score gate's decision: is a candidate model worse than a baseline on the same dev examples by more
than ``max_drop`` points? Pure: predictions and gold labels in, a verdict out (no I/O, no models).

* **Paired bootstrap of the task's main metric** (``scipy.stats.bootstrap``, ``paired=True``): every
  resample draws the same example indices for both models, and the statistic is
  ``metric(candidate) - metric(baseline)`` in points (metric x 100), so whatever both models get right or
  wrong together cancels. The metric is the task's own function (MCC, F1, accuracy, Pearson, ...), which
  need not be a mean over examples, so a bootstrap is the test that fits every task. Percentile interval
  (BCa would add a jackknife of 2n metric calls and is undefined when the models agree on every example). ``lo``/``hi`` are the one-sided
  ``1 - alpha`` bounds (the two-sided ``1 - 2 alpha`` interval).

  - **regression** (exit 1): ``hi < -max_drop``: worse by more than max_drop, significant at alpha
    (one-sided);
  - **no regression** (exit 0): ``lo >= -max_drop``: significantly not worse by more than max_drop
    (a non-inferiority test), which identical models always pass;
  - **undecided** (exit 2): otherwise: the interval reaches below ``-max_drop``, so it could be worse by
    more than max_drop but that is not significant (more dev examples or a wider --max-drop decide it).

  ``p_worse`` is the bootstrap's one-sided p-value of "worse by more than max_drop" (the share of
  resamples at or above ``-max_drop``, as ``(k + 1) / (B + 1)``); ``p_worse < alpha`` goes with
  ``hi < -max_drop``.

* **Paired test on the examples**, reported beside the verdict (it tests "more errors", not "metric
  worse by more than max_drop", so it does not decide): for classification the exact McNemar test,
  ``scipy.stats.binomtest`` on the discordant pairs (baseline right and candidate wrong vs the reverse);
  for regression the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) on the per-example differences
  ``|candidate error| - |baseline error|``; both one-sided ("the candidate errs more").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .decide import EXIT_OK, EXIT_REGRESSION, EXIT_UNDECIDED

DEFAULT_MAX_DROP = 1.0  # points (metric x 100)
DEFAULT_ALPHA = 0.05
DEFAULT_RESAMPLES = 1000
SEED = 0  # the resampling is seeded: the same predictions always give the same verdict

REGRESSION, NO_REGRESSION, UNDECIDED = "regression", "no regression", "undecided"
BOOTSTRAP_TEST = "paired bootstrap of the metric difference (percentile interval)"
MCNEMAR_TEST = "exact McNemar (binomial test on discordant pairs)"
WILCOXON_TEST = "Wilcoxon signed-rank on |candidate error| - |baseline error|"

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class ScoreVerdict:
    """The score gate's answer. Scores are fractions as the task reports them; ``delta``, ``lo``, ``hi`` and
    ``max_drop`` are points (x100): candidate - baseline, negative = the candidate is worse."""

    status: str  # regression | no regression | undecided
    metric: str
    baseline: float
    candidate: float
    delta: float
    lo: float | None
    hi: float | None
    p_worse: float | None
    max_drop: float
    alpha: float
    n_examples: int
    n_resamples: int
    test: str
    examples_test: str
    examples_p: float | None  # one-sided p of "the candidate errs more" (McNemar / Wilcoxon)
    examples_counts: dict  # McNemar: baseline_only_right, candidate_only_right; Wilcoxon: worse, better, ties
    reason: str

    @property
    def exit_code(self) -> int:
        return {REGRESSION: EXIT_REGRESSION, UNDECIDED: EXIT_UNDECIDED}.get(self.status, EXIT_OK)

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar(baseline_pred, candidate_pred, labels) -> tuple[float, dict]:
    """Exact one-sided McNemar: p of "the candidate is wrong more often" from the discordant pairs."""
    from scipy.stats import binomtest

    b_ok = np.asarray(baseline_pred) == np.asarray(labels)
    c_ok = np.asarray(candidate_pred) == np.asarray(labels)
    b_only, c_only = int(np.sum(b_ok & ~c_ok)), int(np.sum(~b_ok & c_ok))
    p = 1.0 if b_only + c_only == 0 else float(binomtest(b_only, b_only + c_only, 0.5, alternative="greater").pvalue)
    return p, {"baseline_only_right": b_only, "candidate_only_right": c_only}


def wilcoxon_errors(baseline_pred, candidate_pred, labels) -> tuple[float, dict]:
    """One-sided Wilcoxon signed-rank on ``|candidate error| - |baseline error|`` (zeros dropped)."""
    from scipy.stats import wilcoxon

    y = np.asarray(labels, dtype=float)
    d = np.abs(np.asarray(candidate_pred, dtype=float) - y) - np.abs(np.asarray(baseline_pred, dtype=float) - y)
    counts = {"worse": int(np.sum(d > 0)), "better": int(np.sum(d < 0)), "ties": int(np.sum(d == 0))}
    if not np.any(d):
        return 1.0, counts
    return float(wilcoxon(d, alternative="greater").pvalue), counts


def _check(max_drop: float, alpha: float, n_resamples: int) -> None:
    if not (max_drop >= 0 and math.isfinite(max_drop)):
        raise ValueError(f"max_drop must be >= 0 points, got {max_drop}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if n_resamples < 100:
        raise ValueError(f"n_resamples must be >= 100, got {n_resamples}")


def compare_scores(baseline_pred, candidate_pred, labels, metric: Metric, *, metric_name: str = "score",
                   regression: bool = False, max_drop: float = DEFAULT_MAX_DROP, alpha: float = DEFAULT_ALPHA,
                   n_resamples: int = DEFAULT_RESAMPLES, seed: int = SEED) -> ScoreVerdict:
    """The verdict on two models' predictions of the same examples (see the module docstring).

    ``metric(predictions, labels) -> float`` is the task's main metric as a fraction; ``regression``: the
    predictions are numbers (paired test on errors), else class ids (McNemar)."""
    from scipy.stats import bootstrap

    _check(max_drop, alpha, n_resamples)
    b, c, y = (np.asarray(a) for a in (baseline_pred, candidate_pred, labels))
    if not (b.shape == c.shape == y.shape and y.ndim == 1):
        raise ValueError(f"one prediction per example needed: shapes {b.shape}, {c.shape}, labels {y.shape}")
    n = int(y.size)
    p_ex, counts = (wilcoxon_errors if regression else mcnemar)(b, c, y)
    ex_test = WILCOXON_TEST if regression else MCNEMAR_TEST
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant resample makes Pearson warn; it is a NaN, handled below
        base, cand = float(metric(b, y)), float(metric(c, y))
    delta = 100.0 * (cand - base)

    def verdict(status, lo, hi, p, reason):
        return ScoreVerdict(status, metric_name, base, cand, delta, lo, hi, p, max_drop, alpha, n, n_resamples,
                            BOOTSTRAP_TEST, ex_test, p_ex, counts, reason)

    if n < 2:
        return verdict(UNDECIDED, None, None, None, f"{n} dev example(s): too few to compare")
    if not (math.isfinite(base) and math.isfinite(cand)):
        return verdict(UNDECIDED, None, None, None, f"the {metric_name} is undefined on these predictions "
                       f"(baseline {base}, candidate {cand})")

    def diff(bb, cc, yy):
        return 100.0 * (metric(cc, yy) - metric(bb, yy))

    if np.array_equal(b, c):
        dist = np.zeros(n_resamples)  # the same predictions: every resample's difference is exactly 0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bootstrap((b, c, y), diff, paired=True, vectorized=False, n_resamples=n_resamples,
                            method="percentile", rng=np.random.default_rng(seed))
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
    undefined = int(np.sum(~np.isfinite(dist)))
    if undefined > alpha * n_resamples:
        return verdict(UNDECIDED, None, None, None, f"the {metric_name} is undefined on {undefined} of "
                       f"{n_resamples} resamples (too few or too uniform dev examples)")
    dist = dist[np.isfinite(dist)]
    lo, hi = (float(v) for v in np.quantile(dist, [alpha, 1 - alpha]))
    p_worse = float((np.sum(dist >= -max_drop) + 1) / (dist.size + 1))  # Monte Carlo p: never exactly 0
    ci = f"{delta:+.2f} points, {100 * (1 - 2 * alpha):g}% CI [{lo:+.2f}, {hi:+.2f}]"
    if hi < -max_drop:
        return verdict(REGRESSION, lo, hi, p_worse, f"candidate worse by more than {max_drop:g} points, "
                       f"significantly: {ci} (p {p_worse:.2g} < {alpha:g})")
    if lo >= -max_drop:
        return verdict(NO_REGRESSION, lo, hi, p_worse,
                       f"{ci}: not worse by more than {max_drop:g} points (at alpha {alpha:g})")
    return verdict(UNDECIDED, lo, hi, p_worse, f"{ci}: could be worse by more than {max_drop:g} points but not "
                   f"significantly (p {p_worse:.2g} >= {alpha:g}); more dev examples or a wider --max-drop decide it")
