"""Same-job A/B measurement for the gate: baseline and candidate alternate inside fresh worker processes.

Each round is one fresh ``python -m glp_bench.bench.worker`` process (scenario ``alternating``) that creates *both*
sessions (with the latency harness's own session code, ``glp_bench.bench.backend.ort_runner``, so settings are those of
``glp-bench latency``), warms both up, then times them alternately, one inference at a time (A B, B A,
A B, ...), until both ``min_runs`` pairs and ``min_time`` seconds are reached. Rounds alternate which
session is created and run first. So the two members of a pair run a few milliseconds apart and see the
same state of the machine: on a shared CI runner, where a worker process may get a whole core or half of
one for its lifetime (other jobs' processes come and go), this is what keeps the ratio honest.

Two clocks are recorded per inference:

* ``wall``: ``time.perf_counter_ns`` around ``session.run`` (the latency a user sees);
* ``cpu``: ``time.process_time_ns`` around it: CPU time the process spent on the inference. With one
  intra-op thread on the CPU all the work runs on the calling thread, so this is the inference's work
  itself, and it does not grow when other processes compete for the cores (wall time does, by up to the
  number of competitors). Extra layers, lost fusions and extra copies all show up in it.

The gate decides on ``cpu`` when the provider is the CPU and threads == 1 (``--clock auto``), else on
``wall`` (more threads: CPU time would count spinning threads; GPUs: the work is not on the CPU).
"""

from __future__ import annotations

import gc
import sys
import time

from .runner import CPU, BenchConfig, spawn
from .settings import GATE_AB

CLOCKS = ("wall", "cpu")


def choose_clock(clock: str, config: BenchConfig) -> str:
    """``auto`` -> ``cpu`` for one CPU thread, else ``wall``; explicit choices are kept."""
    if clock == "auto":
        return "cpu" if config.provider == CPU and config.threads == 1 else "wall"
    if clock not in CLOCKS:
        raise ValueError(f"clock must be auto, wall or cpu, got {clock!r}")
    return clock


# --- the worker process --------------------------------------------------------------------------


def time_alternating(runs: list, order: list[int], *, warmup: int, min_runs: int, min_time: float,
                     max_time: float) -> tuple[list[list[float]], list[list[float]]]:
    """Warm up, then time ``runs`` (zero-argument callables) alternately, one call each in turn, the order
    reversed every other turn, until ``min_runs`` turns and ``min_time`` seconds (or ``max_time``).
    Returns (wall, cpu): per callable, its samples in seconds."""
    for _ in range(warmup):
        for i in order:
            runs[i]()
    wall: list[list[float]] = [[] for _ in runs]
    cpu: list[list[float]] = [[] for _ in runs]
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        k = 0
        while True:
            for i in (order if k % 2 == 0 else order[::-1]):
                c0, t0 = cpu_clock(), clock()
                runs[i]()
                t1, c1 = clock(), cpu_clock()
                wall[i].append((t1 - t0) * 1e-9)
                cpu[i].append((c1 - c0) * 1e-9)
            k += 1
            elapsed = (clock() - start) * 1e-9
            if (k >= min_runs and elapsed >= min_time) or elapsed >= max_time:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return wall, cpu


def run_pair_job(job: dict) -> dict:
    from .backend import ort_runner, pin

    configs = [BenchConfig.from_dict(c) for c in job["configs"]]
    first = job.get("first", 0)
    pin(configs[0].cpu_affinity)
    order = [first, 1 - first]
    runners: dict[int, tuple] = {}
    for i in order:  # the session created first alternates between rounds
        runners[i] = ort_runner(configs[i])
    wall, cpu = time_alternating([runners[0][0], runners[1][0]], order, warmup=job["warmup"],
                                 min_runs=job["min_runs"], min_time=job["min_time"], max_time=job["max_time"])
    return {"wall": wall, "cpu": cpu, "first": first, "session_init_s": [runners[0][2], runners[1][2]],
            "info": [runners[0][1], runners[1][1]], "error": None}


def run_candidates_job(job: dict) -> dict:
    """Several sessions timed in turn, one inference each (export's int8 candidates); a candidate whose
    session cannot be built is reported in ``failed`` and the others are timed."""
    from .backend import ort_runner

    configs = [BenchConfig.from_dict(c) for c in job["configs"]]
    runs, failed = [], []
    for cfg in configs:
        try:
            runs.append(ort_runner(cfg)[0])
            failed.append(None)
        except Exception as e:  # noqa: BLE001 - a candidate that cannot run is reported, the others timed
            runs.append(None)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            failed.append(f"{type(e).__name__}: {first}"[:300])
    ok = [i for i, f in enumerate(failed) if f is None]
    wall, cpu = time_alternating([runs[i] for i in ok], list(range(len(ok))), warmup=job["warmup"],
                                 min_runs=job["min_runs"], min_time=job["min_time"], max_time=job["max_time"])
    full_wall, full_cpu = [[] for _ in configs], [[] for _ in configs]
    for k, i in enumerate(ok):
        full_wall[i], full_cpu[i] = wall[k], cpu[k]
    return {"wall": full_wall, "cpu": full_cpu, "failed": failed, "error": None}


# --- the parent side ------------------------------------------------------------------------------


def run_pair_worker(baseline: BenchConfig, candidate: BenchConfig, *, first: int, warmup: int, min_runs: int,
                    min_time: float, max_time: float, timeout: float | None = None) -> dict:
    """One round in a fresh process; its result dict, or ``{"error": ...}`` when the worker failed."""
    job = {"scenario": "alternating", "configs": [baseline.to_dict(), candidate.to_dict()], "first": first,
           "warmup": warmup, "min_runs": min_runs, "min_time": min_time, "max_time": max_time}
    return spawn([sys.executable, "-m", "glp_bench.bench.worker"], job, max(baseline.threads, candidate.threads), timeout)


def measure_pairs(baseline: BenchConfig, candidate: BenchConfig, rounds: int, *, warmup: int = GATE_AB.warmup,
                  min_runs: int = GATE_AB.min_runs, min_time: float = GATE_AB.min_time,
                  max_time: float = GATE_AB.max_time, progress=None, description: str = "A/B",
                  start_round: int = 0, timeout: float | None = None) -> list[dict]:
    """``rounds`` fresh-process rounds of alternating A/B timing; one result dict per round (see
    :func:`run_pair_job`: ``wall``/``cpu`` = [baseline samples, candidate samples], seconds). Raises
    ``glp_bench.core.errors.MeasurementFailed`` when a worker fails."""
    from ..core.errors import MeasurementFailed

    task = progress.add_task(description, total=rounds) if progress is not None else None
    out = []
    for r in range(rounds):
        res = run_pair_worker(baseline, candidate, first=(start_round + r) % 2, warmup=warmup, min_runs=min_runs,
                              min_time=min_time, max_time=max_time, timeout=timeout)
        if res.get("error"):
            raise MeasurementFailed(res["error"])
        out.append(res)
        if progress is not None:
            progress.advance(task)
    return out


