"""The one isolated worker of the measurement library: ``python -m glp_bench.bench.worker`` reads one job (JSON)
on stdin and runs its scenario (``scenarios``: interleaved rounds, alternating A/B, alternating candidates). The
interleaved scenario, here, creates the session (or PyTorch model), warms up, times single inferences, and
prints one result line::

    GLP_BENCH_WORKER_RESULT {"samples": [s, ...], "session_init_s": s, "peak_rss_mb": mb,
                             "session_rss_mb": mb, "info": {...}, "error": null}

Started by :func:`glp_bench.bench.runner.run_worker`, one process per configuration and round, so no
state leaks between measurements and the peak RSS is this session's alone.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback

from .backend import current_rss_mb, ort_runner, peak_rss_mb, pin
from .runner import RESULT_MARKER, TORCH, BenchConfig


def run_job(job: dict) -> dict:
    cfg = BenchConfig.from_dict(job["config"])
    affinity = pin(cfg.cpu_affinity)
    if cfg.backend == TORCH:
        from .torch_eager import torch_runner

        run, info, init_s, rss0 = torch_runner(cfg, current_rss_mb)
    else:
        run, info, init_s, rss0 = ort_runner(cfg)
    info["cpu_affinity"] = affinity

    for _ in range(job["warmup"]):
        run()
    min_runs, min_time, max_time = job["min_runs"], job["min_time"], job["max_time"]
    samples: list[float] = []
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        while True:
            t0 = clock()
            run()
            t1 = clock()
            samples.append((t1 - t0) * 1e-9)
            elapsed = (t1 - start) * 1e-9
            if (len(samples) >= min_runs and elapsed >= min_time) or elapsed >= max_time:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    peak = peak_rss_mb()
    return {"samples": samples, "session_init_s": init_s, "peak_rss_mb": peak,
            "session_rss_mb": max(peak - rss0, 0.0), "info": info, "error": None}


def scenarios() -> dict:
    """What a job's ``"scenario"`` runs: interleaved rounds (one configuration per process, the latency stage),
    alternating A/B (two sessions in turn, the gate), alternating candidates (export's int8 choice)."""
    from .alternating import run_candidates_job, run_pair_job

    return {"interleaved": run_job, "alternating": run_pair_job, "candidates": run_candidates_job}


def main() -> int:
    try:
        job = json.loads(sys.stdin.read())
        result = scenarios()[job.get("scenario", "interleaved")](job)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which keeps going
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        result = {"error": f"{type(e).__name__}: {first}"[:500], "traceback": traceback.format_exc()[-2000:]}
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
