"""The measurement library's defaults, defined once: how long and how often a configuration is timed.

``MeasureSettings`` is one measurement's protocol (the latency stage's interleaved rounds, the gate's alternating
A/B rounds and export's int8 candidate timing each start from a preset here and change only what their scenario
needs); every command-line default and every library default reads these presets, so a change of protocol is one
edit. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class MeasureSettings:
    rounds: int = 3  # fresh worker processes, interleaved (pyperf's habit: one process is one sample of the noise)
    min_runs: int = 10  # timed runs per configuration and round, at least
    min_time: float = 1.0  # seconds of timed runs per configuration and round, at least
    warmup: int = 3  # untimed runs per worker before timing (session creation, first allocations)
    max_time: float = 60.0  # a worker stops timing after this many seconds, even below min_runs
    max_cv: float = 0.10  # a coefficient of variation above this is reported as too noisy to trust

    def but(self, **changes) -> MeasureSettings:
        return replace(self, **changes)


LATENCY = MeasureSettings()  # glp-bench latency: interleaved rounds per target
GATE_AB = LATENCY.but(rounds=10, min_time=0.5)  # the gate's same-job A/B rounds (alternating, one model each turn)
INT8_CANDIDATES = LATENCY.but(min_time=0.25)  # export's short timing of the int8 candidates
