"""The CI gate's decision logic: raw latency samples in, a verdict out. Pure: no I/O, no processes.

The rule is asv's: a candidate is a **regression** only when it is slower than the baseline by more than
``factor`` (default 1.10) *and* the difference is statistically significant (one-sided p < ``alpha``,
default 0.01). Significance alone is not enough (with enough samples every 1% difference is
"significant"), and a large ratio alone is not enough (one unlucky round can produce it).

Two designs, one per gate mode:

* **Paired** (same-job A/B, :func:`compare_paired`). Baseline and candidate are measured in the same job,
  alternating, each round of each in a fresh worker process (``glp_bench.bench.runner.measure``), so the
  k-th baseline round and the k-th candidate round ran back to back. The independent unit is the worker
  process (samples inside one process share its state and are not independent), so each round is
  reduced to its median and each pair to the log ratio ``d_k = log(candidate_k / baseline_k)``; a slow
  spell of the machine inflates both members of a pair and cancels in ``d_k``.

  - ratio: ``exp`` of the Hodges-Lehmann estimate of the ``d_k`` (median of the Walsh averages
    ``(d_i + d_j) / 2``, i <= j): the estimator that goes with the signed-rank test, robust to a bad round;
  - significance: Wilcoxon signed-rank test on the ``d_k`` (``scipy.stats.wilcoxon``), one-sided.
  - With n pairs the smallest one-sided p-value is ``2**-n``, so a decision at alpha 0.01 needs at least
    7 pairs (:func:`min_pairs`); fewer is "undecided", never a pass.

* **Unpaired** (against a stored baseline, :func:`compare_unpaired`). The baseline's samples come from an
  earlier ``glp-bench latency`` file, so nothing pairs them with the candidate's.

  - ratio: candidate / baseline balanced median (``stats.balanced_median``: mean of per-round medians);
  - significance: Mann-Whitney U on all raw samples (``scipy.stats.mannwhitneyu``), one-sided. Samples
    inside a worker are correlated, so these p-values are optimistic; together with the machine's drift
    between the two measurements this is why the stored mode's factor is wider (``STORED_FACTOR``).

:func:`run_timing` adds the automatic re-measure: when the first pass finds the candidate slower than the
factor, it measures once more and decides on the pooled rounds of both passes, so one bad spell of the
machine is not enough to fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..bench import stats
from ..core.errors import MeasurementFailed

DEFAULT_FACTOR = 1.10
#: Against a stored baseline the two measurements lie minutes to weeks apart: the machine's state (other
#: load, frequency scaling, thermal state, process placement) differs in ways interleaving cannot cancel,
#: typically by up to ~10% on a quiet dedicated runner, so the threshold is wider to keep false alarms rare.
STORED_FACTOR = 1.25
DEFAULT_ALPHA = 0.01

REGRESSION = "regression"
IMPROVEMENT = "improvement"
NO_CHANGE = "no change"
NOT_SIGNIFICANT = "not significant"
UNDECIDED = "undecided"

PAIRED_TEST = "Wilcoxon signed-rank on paired per-round log ratios"
UNPAIRED_TEST = "Mann-Whitney U on raw samples"

EXIT_OK, EXIT_REGRESSION, EXIT_UNDECIDED = 0, 1, 2


@dataclass(frozen=True)
class TimingVerdict:
    """The timing half of the gate's answer.

    status:      regression | improvement | no change | not significant | undecided
    ratio:       candidate latency / baseline latency (> 1: the candidate is slower); None when undecided
                 before any estimate could be made
    p_slower:    one-sided p-value of "the candidate is slower" (p_faster: "... faster")
    n_baseline, n_candidate: the units the test used (pairs or rounds, raw samples)
    baseline_s, candidate_s: balanced medians (seconds) of each side, for the table
    reason:      one line saying why
    """

    status: str
    ratio: float | None
    p_slower: float | None
    p_faster: float | None
    factor: float
    alpha: float
    test: str
    n_baseline: int
    n_candidate: int
    baseline_s: float | None
    candidate_s: float | None
    reason: str

    @property
    def exit_code(self) -> int:
        return {REGRESSION: EXIT_REGRESSION, UNDECIDED: EXIT_UNDECIDED}.get(self.status, EXIT_OK)

    @property
    def suspect(self) -> bool:
        """Slower than the factor (significant or not): worth a re-measure before failing."""
        return self.ratio is not None and self.ratio > self.factor

    def to_dict(self) -> dict:
        return asdict(self)


def _check(factor: float, alpha: float) -> None:
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def classify(ratio: float, p_slower: float, p_faster: float, factor: float, alpha: float) -> str:
    """asv's rule: beyond the factor *and* significant -> regression/improvement; beyond the factor but not
    significant -> not significant; within the factor -> no change (whatever the p-value)."""
    if ratio > factor:
        return REGRESSION if p_slower < alpha else NOT_SIGNIFICANT
    if ratio < 1 / factor:
        return IMPROVEMENT if p_faster < alpha else NOT_SIGNIFICANT
    return NO_CHANGE


def _reason(status: str, ratio: float, p_slower: float, p_faster: float, factor: float, alpha: float) -> str:
    pct = f"{abs(ratio - 1):.1%} {'slower' if ratio >= 1 else 'faster'}"
    if status == REGRESSION:
        return f"candidate {pct} (ratio {ratio:.3f} > factor {factor:.2f}) and significant (p {p_slower:.2g} < {alpha:g})"
    if status == IMPROVEMENT:
        return f"candidate {pct} (ratio {ratio:.3f} < 1/{factor:.2f}) and significant (p {p_faster:.2g} < {alpha:g})"
    if status == NOT_SIGNIFICANT:
        p = p_slower if ratio > 1 else p_faster
        return f"candidate {pct} (ratio {ratio:.3f}) but not significant (p {p:.2g} >= {alpha:g}): too noisy to tell"
    return f"candidate {pct} (ratio {ratio:.3f}), within the factor {factor:.2f}"


def min_pairs(alpha: float = DEFAULT_ALPHA) -> int:
    """Fewest pairs for which the one-sided signed-rank test can reach p < alpha (its smallest p is 2**-n)."""
    return math.floor(math.log2(1 / alpha)) + 1


def min_p_mannwhitney(n1: int, n2: int) -> float:
    """Smallest one-sided p-value the exact Mann-Whitney U test can give with samples of n1 and n2."""
    return 1 / math.comb(n1 + n2, n1) if n1 and n2 else 1.0


def hodges_lehmann(d: Sequence[float]) -> float:
    """Hodges-Lehmann location estimate of one sample: the median of its Walsh averages (d_i + d_j) / 2, i <= j."""
    a = np.asarray(d, dtype=float)
    i, j = np.triu_indices(a.size)
    return float(np.median((a[i] + a[j]) / 2))


def _undecided(reason: str, factor: float, alpha: float, test: str, nb: int = 0, nc: int = 0,
               ratio: float | None = None) -> TimingVerdict:
    return TimingVerdict(UNDECIDED, ratio, None, None, factor, alpha, test, nb, nc, None, None, reason)


def _round_medians(rounds: Sequence[Sequence[float]], side: str) -> list[float] | str:
    meds = []
    for k, r in enumerate(rounds):
        if not len(r):
            return f"{side} round {k + 1} has no samples"
        m = float(np.median(np.asarray(r, dtype=float)))
        if not (m > 0 and math.isfinite(m)):
            return f"{side} round {k + 1} has a non-positive or non-finite median latency"
        meds.append(m)
    return meds


def compare_paired(baseline_rounds: Sequence[Sequence[float]], candidate_rounds: Sequence[Sequence[float]],
                   factor: float = DEFAULT_FACTOR, alpha: float = DEFAULT_ALPHA) -> TimingVerdict:
    """Same-job A/B verdict from paired rounds (round k of each side measured back to back)."""
    from scipy.stats import wilcoxon

    _check(factor, alpha)
    if len(baseline_rounds) != len(candidate_rounds):
        raise ValueError(f"paired rounds needed: {len(baseline_rounds)} baseline vs {len(candidate_rounds)} candidate")
    n = len(baseline_rounds)
    need = min_pairs(alpha)
    if n < need:
        return _undecided(f"too few samples: {n} paired round(s); with n pairs the smallest one-sided p-value is "
                          f"2^-n, so p < {alpha:g} needs at least {need} rounds (raise --rounds)",
                          factor, alpha, PAIRED_TEST, n, n)
    b = _round_medians(baseline_rounds, "baseline")
    c = _round_medians(candidate_rounds, "candidate")
    for bad in (b, c):
        if isinstance(bad, str):
            return _undecided(bad, factor, alpha, PAIRED_TEST, n, n)
    d = np.log(np.asarray(c)) - np.log(np.asarray(b))
    ratio = math.exp(hodges_lehmann(d))
    if np.all(d == 0):
        p_slower = p_faster = 1.0
    else:
        p_slower = float(wilcoxon(d, alternative="greater").pvalue)
        p_faster = float(wilcoxon(d, alternative="less").pvalue)
    status = classify(ratio, p_slower, p_faster, factor, alpha)
    return TimingVerdict(status, ratio, p_slower, p_faster, factor, alpha, PAIRED_TEST, n, n,
                         stats.balanced_median(baseline_rounds), stats.balanced_median(candidate_rounds),
                         _reason(status, ratio, p_slower, p_faster, factor, alpha))


def compare_unpaired(baseline_rounds: Sequence[Sequence[float]], candidate_rounds: Sequence[Sequence[float]],
                     factor: float = STORED_FACTOR, alpha: float = DEFAULT_ALPHA) -> TimingVerdict:
    """Verdict against a stored baseline: ratio of balanced medians, Mann-Whitney U on the raw samples."""
    from scipy.stats import mannwhitneyu

    _check(factor, alpha)
    bs, cs = stats.flatten(baseline_rounds), stats.flatten(candidate_rounds)
    best_p = min_p_mannwhitney(len(bs), len(cs))
    if best_p >= alpha:
        return _undecided(f"too few samples: {len(bs)} baseline and {len(cs)} candidate samples cannot reach "
                          f"p < {alpha:g} (best possible {best_p:.2g}); measure more runs", factor, alpha,
                          UNPAIRED_TEST, len(bs), len(cs))
    if min(bs) <= 0 or min(cs) <= 0:
        return _undecided("latency samples must be positive", factor, alpha, UNPAIRED_TEST, len(bs), len(cs))
    b_lat = stats.balanced_median([r for r in baseline_rounds if len(r)])
    c_lat = stats.balanced_median([r for r in candidate_rounds if len(r)])
    ratio = c_lat / b_lat
    p_slower = float(mannwhitneyu(cs, bs, alternative="greater").pvalue)
    p_faster = float(mannwhitneyu(cs, bs, alternative="less").pvalue)
    status = classify(ratio, p_slower, p_faster, factor, alpha)
    return TimingVerdict(status, ratio, p_slower, p_faster, factor, alpha, UNPAIRED_TEST, len(bs), len(cs),
                         b_lat, c_lat, _reason(status, ratio, p_slower, p_faster, factor, alpha))


# --- the measure -> decide -> (re-measure -> decide) loop ---------------------------------------


@dataclass
class GatePass:
    """One measurement pass: the rounds it added per side and the verdict on everything pooled so far."""

    baseline_rounds: list[list[float]]
    candidate_rounds: list[list[float]]
    verdict: TimingVerdict

    def to_dict(self) -> dict:
        return {"baseline_rounds_s": self.baseline_rounds, "candidate_rounds_s": self.candidate_rounds,
                "verdict": self.verdict.to_dict()}


Rounds = list[list[float]]


def run_timing(measure: Callable[[int], tuple[Rounds, Rounds]],
               compare: Callable[[Rounds, Rounds], TimingVerdict], rounds: int, *, remeasure: bool = True,
               factor: float = DEFAULT_FACTOR, alpha: float = DEFAULT_ALPHA, test: str = PAIRED_TEST) -> list[GatePass]:
    """Measure ``rounds`` rounds, decide; when the candidate looks slower than the factor (significant or
    not) and ``remeasure`` is on, measure ``rounds`` more and decide again on both passes pooled.

    ``measure(n)`` returns the *new* rounds of each side (a stored baseline returns its rounds on the first
    call and ``[]`` afterwards); it raises :class:`MeasurementFailed` when it cannot, which ends in an
    undecided verdict. The last pass's verdict is the gate's."""
    passes: list[GatePass] = []
    pooled_b: Rounds = []
    pooled_c: Rounds = []
    for _ in range(2 if remeasure else 1):
        try:
            b, c = measure(rounds)
        except MeasurementFailed as e:
            verdict = _undecided(f"measurement failed: {e}", factor, alpha, test)
            passes.append(GatePass([], [], verdict))
            break
        pooled_b, pooled_c = pooled_b + [list(r) for r in b], pooled_c + [list(r) for r in c]
        verdict = compare(pooled_b, pooled_c)
        passes.append(GatePass([list(r) for r in b], [list(r) for r in c], verdict))
        if not verdict.suspect:
            break
    return passes


# --- the overall verdict and the stored baseline's environment ------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The gate's answer: status (regression | no regression | undecided), exit code and the reasons."""

    status: str
    exit_code: int
    reasons: list[str] = field(default_factory=list)


def overall(timing: TimingVerdict | None, structure_regressions: Sequence[str], structure_fails: bool = True) -> Outcome:
    """Combine the timing verdict with the structural regressions (noise-free, so they fail the gate on
    their own when ``structure_fails``; a timing verdict that could not be reached is then irrelevant)."""
    reasons = []
    if timing is not None:
        reasons.append(f"timing: {timing.status}: {timing.reason}")
    for r in structure_regressions:
        reasons.append(f"structure: {r}" + ("" if structure_fails else " (reported only)"))
    if structure_fails and structure_regressions:
        return Outcome(REGRESSION, EXIT_REGRESSION, reasons)
    if timing is None:
        return Outcome("no regression", EXIT_OK, reasons or ["structure: no regression (timing not measured)"])
    if timing.status == REGRESSION:
        return Outcome(REGRESSION, EXIT_REGRESSION, reasons)
    if timing.status == UNDECIDED:
        return Outcome(UNDECIDED, EXIT_UNDECIDED, reasons)
    return Outcome("no regression", EXIT_OK, reasons)


def environment_mismatches(stored_env: dict, stored_ort: str | None, stored_threads: int,
                           current_env: dict, current_ort: str | None, threads: int) -> list[str]:
    """What differs between the machine a stored baseline was measured on and this one, among the facts
    that change latency: CPU model, physical and logical cores, ONNX Runtime version, intra-op threads."""
    out = []
    for key, name in (("cpu_model", "CPU"), ("physical_cores", "physical cores"), ("logical_cores", "logical cores")):
        a, b = stored_env.get(key), current_env.get(key)
        if a != b:
            out.append(f"{name} {a!r} vs {b!r} here")
    if stored_ort != current_ort:
        out.append(f"onnxruntime {stored_ort} vs {current_ort} here")
    if stored_threads != threads:
        out.append(f"threads {stored_threads} vs {threads} asked")
    return out
