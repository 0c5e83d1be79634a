"""Statistics over raw latency samples: plain functions over lists of seconds (asv's habit).

Every figure glp-bench reports is derived here, in one place, from the raw samples it keeps
(optimum-benchmark's habit): percentiles, mean, standard deviation, coefficient of variation,
throughput, speedups, the linear fit of latency on depth, and the interleaved measurement order.
Nothing here does I/O or imports anything heavier than numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .settings import LATENCY

#: A spread above this coefficient of variation (std / mean) makes a measurement "unstable":
#: its numbers are reported with a warning instead of being trusted silently (pyperf's habit).
DEFAULT_MAX_CV = LATENCY.max_cv

PERCENTILES = (50, 90, 99)


def _array(samples: Iterable[float]) -> np.ndarray:
    a = np.asarray(list(samples), dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError("need a non-empty flat list of samples")
    if not np.all(np.isfinite(a)):
        raise ValueError("samples must be finite numbers")
    return a


def flatten(rounds: Iterable[Iterable[float]]) -> list[float]:
    """All samples of all rounds, in measurement order."""
    return [float(x) for r in rounds for x in r]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between closest ranks (numpy's default)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    return float(np.percentile(_array(samples), q))


def mean(samples: Sequence[float]) -> float:
    return float(_array(samples).mean())


def std(samples: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1); 0 for a single sample."""
    a = _array(samples)
    return float(a.std(ddof=1)) if a.size > 1 else 0.0


def cv(samples: Sequence[float]) -> float:
    """Coefficient of variation: sample std / mean (0 when the mean is 0)."""
    m = mean(samples)
    return std(samples) / m if m else 0.0


def summarize(samples: Sequence[float]) -> dict:
    """The summary of one measurement, all in the samples' unit (seconds in glp-bench)::

        {"n", "mean", "std", "cv", "min", "max", "p50", "p90", "p99"}
    """
    a = _array(samples)
    m = float(a.mean())
    s = float(a.std(ddof=1)) if a.size > 1 else 0.0
    p = np.percentile(a, PERCENTILES)
    return {
        "n": int(a.size),
        "mean": m,
        "std": s,
        "cv": s / m if m else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        **{f"p{q}": float(v) for q, v in zip(PERCENTILES, p, strict=True)},
    }


def balanced_median(rounds: Sequence[Sequence[float]]) -> float:
    """The mean over rounds of each round's median: the latency used for ratios between configurations.

    Within a round the median shrugs off outliers; averaging over interleaved rounds, in which every
    configuration takes turns at every part of a round (:func:`interleaved_order`), cancels a slow
    linear drift of the machine, which the median of the pooled samples does not fully do."""
    meds = [float(np.median(_array(r))) for r in rounds if len(r)]
    if not meds:
        raise ValueError("need at least one non-empty round")
    return float(np.mean(meds))


def is_unstable(summary: dict, max_cv: float = DEFAULT_MAX_CV) -> bool:
    """True when the spread is too large to trust the numbers (CV above ``max_cv``)."""
    return summary["cv"] > max_cv


def spread_warning(label: str, summary: dict, max_cv: float = DEFAULT_MAX_CV) -> str | None:
    """A one-line warning for an unstable measurement, else None."""
    if not is_unstable(summary, max_cv):
        return None
    return (
        f"{label}: spread too large to trust (CV {summary['cv']:.1%} > {max_cv:.0%}, "
        f"p50 {summary['p50'] * 1e3:.3g} ms, p99 {summary['p99'] * 1e3:.3g} ms); "
        "close other programs, pin the benchmark to idle cores, or raise --min-time/--rounds"
    )


def throughput(batch: int, seq: int, mean_s: float) -> dict:
    """Sequences/s and tokens/s of a run that processes ``batch`` x ``seq`` tokens in ``mean_s``.

    The mean (not the median) is used: total work / total time over all timed runs."""
    if mean_s <= 0:
        raise ValueError("mean latency must be positive")
    return {"sequences_per_s": batch / mean_s, "tokens_per_s": batch * seq / mean_s}


def speedup(reference_s: float, candidate_s: float) -> float:
    """How many times faster ``candidate`` is than ``reference`` (ratio of latencies, >1 = faster)."""
    if reference_s <= 0 or candidate_s <= 0:
        raise ValueError("latencies must be positive")
    return reference_s / candidate_s


def interleaved_order(n_configs: int, rounds: int) -> list[list[int]]:
    """The order in which ``n_configs`` configurations are measured in each of ``rounds`` rounds.

    Every round measures every configuration once. Round ``r`` is the base order rotated by
    ``r * n_configs // rounds`` places, so the rotations spread evenly over a round: each
    configuration's average position over the rounds is close to the middle of a round, and a slow
    drift of the machine (thermal throttling, a neighbour's job starting) inflates every
    configuration about equally instead of penalising whichever happened to come last. With
    ``rounds >= n_configs`` every configuration occupies every position (a Latin square)."""
    if n_configs < 0 or rounds < 1:
        raise ValueError("need n_configs >= 0 and rounds >= 1")
    orders = []
    for r in range(rounds):
        shift = (r * n_configs) // rounds if rounds <= n_configs else r % max(n_configs, 1)
        orders.append([(i + shift) % n_configs for i in range(n_configs)])
    return orders


def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares line ``y = intercept + slope * x`` with its coefficient of determination r2."""
    from scipy.stats import linregress

    xa, ya = _array(x), _array(y)
    if xa.size != ya.size or xa.size < 2 or np.ptp(xa) == 0:
        raise ValueError("need two equally long lists with at least two different x values")
    fit = linregress(xa, ya)
    r2 = 1.0 if np.ptp(ya) == 0 else float(fit.rvalue) ** 2  # a flat line fits flat data exactly
    return {"slope": float(fit.slope), "intercept": float(fit.intercept), "r2": r2}


def predicted_speedups(depths: Sequence[int], latencies_s: Sequence[float]) -> dict[int, dict]:
    """For each depth k: the measured speedup over the deepest model and the one predicted by a linear
    fit of latency on depth (``fit(L) / fit(k)``), and their relative difference."""
    fit = linear_fit(depths, latencies_s)
    full = max(depths)
    lat = dict(zip(depths, latencies_s, strict=True))

    def f(d):
        return fit["intercept"] + fit["slope"] * d

    out = {}
    for d in sorted(lat):
        measured = lat[full] / lat[d]
        predicted = f(full) / f(d)
        out[d] = {"measured": measured, "predicted": predicted, "rel_diff": measured / predicted - 1.0}
    return out
