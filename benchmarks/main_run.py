"""The main job's run directory for the quality benchmarks (bench_quality.py, bench_distill_heldout.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEFAULT = "runs/cola-all-minilm-l6-v2"


def ensure_main_run(path: str | Path) -> Path:
    """``path`` when it holds a run, else after running ``glp-bench prune --task cola --run path`` into it."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        print(f"{path} has no run: running 'glp-bench prune --task cola --run {path}' first", flush=True)
        subprocess.run([sys.executable, "-m", "glp_bench.cli", "prune", "--task", "cola", "--run", str(path)], check=True)
    return path
