"""The run-directory contract. Stages talk only through these files, so any stage can be re-run,
resumed, or run on another machine (prune on a GPU box, bench on the target device)::

    runs/<task>-<model-slug>/
      manifest.json          this module: config, environment, search log, models, artifacts
      depth-06/              one folder per distinct pruned model (full depth = the reference)
        model/               fine-tuned PyTorch weights (safetensors) + config + tokenizer
        onnx/model.onnx      fp32 export; variants beside it (model.int8.onnx, ...), export.json
      depth-05-top/          a depth of another strategy whose kept layers differ from the first's
      latency/<target>.json  raw latency samples + summaries (glp_bench.bench)
      report.md              score-vs-speedup table (glp_bench.report)

``manifest.json`` (format ``glp-bench-run``, version 1)::

    config:      task, model, budget, search/final TrainConfig, seed, min_depth, original_depth, ...
    strategies:  {name: {"order": [layer, ...],              # removal order, original numbering
                         "steps": [{"removed": [...],        # layers removed before this step
                                    "candidates": {"<layer>": {"score": x, "metrics": {...}}},
                                    "chosen": layer}],
                         "models": {"<depth>": "<model name>"}}}
    models:      {"depth-05": {"depth": 5, "kept_layers": [...], "strategies": ["glp"],
                               "dev_scores": {metric: value}, "train": {...}, "path": "depth-05/model",
                               "files": {name: {"size": n, "sha256": h}},
                               "onnx": {variant: {...}}}}   # written by export

Only one process writes a run directory at a time (the driver); every write is atomic.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .errors import RunDirError
from .jsonio import atomic_write_json, environment, read_versioned, sha256_file

FORMAT = "glp-bench-run"
VERSION = 1
RUNS_ROOT = "runs"


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def default_run_dir(task: str, slug: str) -> Path:
    return Path(RUNS_ROOT) / f"{task}-{slug}"


def model_name(depth: int, strategy: str | None = None) -> str:
    return f"depth-{depth:02d}" + (f"-{strategy}" if strategy else "")


def file_record(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def migrate(data: dict) -> dict:
    """Bring an older manifest to the current version (only version 1 exists so far)."""
    return data


class RunDir:
    """A run directory and its manifest (a plain dict, saved atomically)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data: dict = {}

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def load(self) -> RunDir:
        if not self.exists():
            raise RunDirError(f"{self.path} is not a glp-bench run directory (no manifest.json); run 'glp-bench prune' first")
        self.data = migrate(read_versioned(self.manifest_path, FORMAT, VERSION))
        return self

    def create(self, config: dict) -> RunDir:
        self.data = {
            "format": FORMAT,
            "version": VERSION,
            "created": now(),
            "updated": now(),
            "environment": environment(),
            "config": config,
            "strategies": {},
            "models": {},
        }
        self.save()
        return self

    def save(self) -> None:
        self.data["updated"] = now()
        atomic_write_json(self.manifest_path, self.data)

    # --- convenience accessors -------------------------------------------------------------
    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def models(self) -> dict:
        return self.data.setdefault("models", {})

    @property
    def strategies(self) -> dict:
        return self.data.setdefault("strategies", {})

    def model_path(self, name: str) -> Path:
        return self.path / name / "model"

    def finished_models(self) -> dict[str, dict]:
        """Models whose fine-tuned weights and dev scores are recorded, deepest first."""
        done = {n: m for n, m in self.models.items() if m.get("dev_scores") is not None}
        return dict(sorted(done.items(), key=lambda kv: (-kv[1]["depth"], kv[0])))

    def name_for(self, kept: list[int], depth: int, strategy: str) -> str:
        """Existing model with exactly these kept layers, else a fresh folder name for ``strategy``."""
        for name, rec in self.models.items():
            if rec["kept_layers"] == list(kept):
                return name
        plain = model_name(depth)
        return plain if plain not in self.models else model_name(depth, strategy)

    def check_compatible(self, config: dict, keys: tuple[str, ...]) -> None:
        """Refuse to mix a run with conflicting arguments (``--fresh`` starts over)."""
        old = self.config
        diffs = [f"{k}: run has {old.get(k)!r}, asked {config.get(k)!r}" for k in keys if old.get(k) != config.get(k)]
        if diffs:
            raise RunDirError(
                f"{self.path} was started with other arguments ({'; '.join(diffs)}); "
                "use the same arguments to resume, --fresh to start over, or --run-dir for a new run"
            )
