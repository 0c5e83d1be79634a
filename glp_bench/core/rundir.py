"""The run-directory contract. Stages talk only through these files, so any stage can be re-run,
resumed, or run on another machine (prune on a GPU box, bench on the target device)::

    runs/<task>-<model-slug>/
      manifest.json          this module: config, environment, search log, models, artifacts
      depth-06/              one folder per distinct pruned model (full depth = the reference)
        model/               fine-tuned PyTorch weights (safetensors) + config + tokenizer (+ modeling_glp.py
                             and README.md for a mean-pooling model: glp_bench.prune.custom_code)
        onnx/model.onnx      fp32 export; variants beside it (model.int8.onnx, ...), export.json
      depth-05-top/          a depth of another strategy whose kept layers differ from the first's
      latency/<target>.json  raw latency samples + summaries (glp_bench.bench)
      report.md              score-vs-speedup table (glp_bench.report.stage)

``manifest.json`` (format ``glp-bench-run``, version 7)::

    config:      task, model, budget, search/final TrainConfig, seed, min_depth, original_depth, recipe, sweep,
                 precision, search_seeds, rescore_close, final_seeds, depth_epochs, student_init, pooling,
                 reference_epochs, search_halving, ...
    recipe:      the auto recipe's sweep: {"lrs", "warmup_ratio", "points": {"<lr>": score record}, "skipped", "chosen",
                 "halving" (with --search-halving on: its rungs, as a GLP step's)}
    teacher:     {"model": "depth-06", "path": "teacher/train-logits.npy", "sha256", ...}   # distillation
    strategies:  {name: {"order": [layer, ...],              # removal order, original numbering
                         "steps": [{"removed": [...],        # layers removed before this step
                                    "candidates": {"<layer>": {"score": x, "loss": l, "seeds": {...}}},
                                    "rescore": {...}, "noise": {"p_best", "within_noise", ...},
                                    "chosen": layer}],       # held-out predictions: search/step-SS/*.npy
                         "models": {"<depth>": "<model name>"}}}
    models:      {"depth-05": {"depth": 5, "kept_layers": [...], "strategies": ["glp"],
                               "dev_scores": {metric: value}, "train": {...}, "path": "depth-05/model",
                               "seed": s, "recipe": {...}, "distill": {"alpha", "temperature"} | None,
                               "init": "teacher" | "pretrained",
                               "seeds": {"<seed>": {"dev_scores": ..., "distill": ...}},
                               "files": {name: {"size": n, "sha256": h}},
                               "onnx": {variant: {...}}}}   # written by export

    int8_choice: {"winner", "on", "why", "preset", "cpu_model", "selection"}    # export: the timed int8 recipe

Only one process writes a run directory at a time (the driver, ``runlock``); every write is atomic. Every path
into the run (recorded in the manifest or built from a model name) must resolve, symlinks followed, inside the
run: :meth:`RunDir.inside` refuses any other (a tampered entry, a symlinked depth folder) before it is used.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .errors import RunDirError
from .jsonio import atomic_write_json, environment, read_versioned, sha256_file
from .records import ModelRecord, RunConfig, StrategyRecord, section
from .shapes import check_manifest

FORMAT = "glp-bench-run"
VERSION = 7
RUNS_ROOT = "runs"
MANIFEST = "manifest.json"
SEARCH_DIR = "search"  # the GLP search's held-out predictions and paused states
TEACHER_FILE = "teacher/train-logits.npy"
LATENCY_DIR = "latency"
REPORT_FILE = "report.md"


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def default_run_dir(task: str, slug: str) -> Path:
    return Path(RUNS_ROOT) / f"{task}-{slug}"


def model_name(depth: int, strategy: str | None = None) -> str:
    return f"depth-{depth:02d}" + (f"-{strategy}" if strategy else "")


def file_record(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def migrate(data: dict) -> dict:
    """Bring an older manifest to the current version, in memory (saved with the next write).

    1 -> 2: runs made before the recipe sweep, distillation and seeds: recipe ``paper`` (fixed learning rates),
    no distillation, one seed everywhere; the model records gain their seed. 2 -> 3: runs made before
    ``--depth-epochs``: ``depth_epochs`` ``same`` (every depth trained the same epochs). 3 -> 4: runs made before
    ``--student-init``: ``student_init`` ``pretrained`` (every final started from the pre-trained model). 4 -> 5: runs
    made before ``--pooling``: ``pooling`` ``cls`` (every model read the first token). 5 -> 6: runs made before
    ``--reference-epochs``: ``reference_epochs`` ``None`` (the full-depth model trained the finals' epochs). 6 -> 7:
    runs made before ``--search-halving``: ``search_halving`` ``off``."""
    if data.get("version", 1) < 2:
        cfg = data.setdefault("config", {})
        cfg.setdefault("recipe", "paper")
        cfg.setdefault("sweep", None)
        cfg.setdefault("precision", "fp32")
        for key in ("search_seeds", "final_seeds"):
            cfg.setdefault(key, 1)
        cfg.setdefault("rescore_close", 0)
        for part in ("search", "final"):
            if isinstance(cfg.get(part), dict):
                cfg[part].setdefault("distill_alpha", 0.0)
                cfg[part].setdefault("distill_temperature", 2.0)
        for rec in (data.get("models") or {}).values():
            if isinstance(rec, dict) and rec.get("dev_scores") is not None:
                rec.setdefault("seed", cfg.get("seed"))
                rec.setdefault("distill", None)
        data["version"] = 2
    if data["version"] < 3:  # 2 -> 3: every depth trained the same epochs (before --depth-epochs scaled)
        data.setdefault("config", {}).setdefault("depth_epochs", "same")
        data["version"] = 3
    if data["version"] < 4:  # 3 -> 4: every final started from the pre-trained model (before --student-init)
        data.setdefault("config", {}).setdefault("student_init", "pretrained")
        data["version"] = 4
    if data["version"] < 5:  # 4 -> 5: every model read the first token (before --pooling)
        data.setdefault("config", {}).setdefault("pooling", "cls")
        data["version"] = 5
    if data["version"] < 6:  # 5 -> 6: the full-depth model trained the finals' epochs (before reference_epochs)
        data.setdefault("config", {}).setdefault("reference_epochs", None)
        data["version"] = 6
    if data["version"] < 7:  # 6 -> 7: every candidate trained its whole budget (before --search-halving)
        data.setdefault("config", {}).setdefault("search_halving", "off")
        data["version"] = 7
    return data


class RunDir:
    """A run directory and its manifest (a plain dict, saved atomically)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data: dict = {}
        self.identity: dict | None = None  # glp_bench.data.identity: recorded by create()

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @staticmethod
    def is_run(path: str | Path) -> bool:
        """Whether ``path`` holds a run (a manifest), without loading it."""
        return (Path(path) / MANIFEST).is_file()

    @classmethod
    def runs_under(cls, root: str | Path) -> list[Path]:
        """The run directories directly under ``root`` (sorted)."""
        root = Path(root)
        return sorted(p for p in root.glob("*") if cls.is_run(p)) if root.is_dir() else []

    def exists(self) -> bool:
        return self.is_run(self.path)

    def load(self) -> RunDir:
        if not self.exists():
            raise RunDirError(f"{self.path} is not a glp-bench run directory (no manifest.json); run 'glp-bench prune' first")
        self.data = migrate(read_versioned(self.manifest_path, FORMAT, VERSION))
        check_manifest(self.data, self.manifest_path)  # wrong-typed fields: one clear error, not a crash later
        self.check_paths()  # every recorded path inside the run
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
        if self.identity is not None:
            self.data["identity"] = self.identity
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

    # --- typed reads (glp_bench.core.records): what stages and benchmarks use ----------------
    @property
    def cfg(self) -> RunConfig:
        """The run's configuration with its defaults."""
        return RunConfig.of(self.data.get("config"))

    def model(self, name: str | None) -> ModelRecord | None:
        """Model ``name``'s record, or None when the run has no such model."""
        raw = self.models.get(name) if name is not None else None
        return ModelRecord.of(name, raw) if raw is not None else None

    def strategy(self, name: str) -> StrategyRecord:
        """Strategy ``name``'s record (empty when the run has none)."""
        return StrategyRecord.of(name, self.strategies.get(name))

    def strategy_names(self) -> list[str]:
        """The run's strategies in its order: the configured ones, then any other recorded."""
        return list(dict.fromkeys(list(self.config.get("strategies") or []) + list(self.strategies)))

    def section(self, key: str, default=None):
        """A top-level manifest section (``recipe``, ``comparison``, ``teacher``, ``int8_choice``)."""
        return section(self.data, key, default)

    # --- recording (the writers of the manifest's content) -----------------------------------
    def set_section(self, key: str, value) -> None:
        """Replace a top-level section (saved by the next ``save``)."""
        self.data[key] = value

    def log(self, key: str, default: dict) -> dict:
        """A section a stage fills in place as work finishes (``recipe``: the sweep's points), created from
        ``default`` when absent; saved by the next ``save``."""
        return self.data.setdefault(key, default)

    def strategy_log(self, strategy: str) -> dict:
        """Strategy ``strategy``'s record, filled in place by the search (``order``, ``steps``)."""
        return self.strategies.setdefault(strategy, {"order": [], "steps": []})

    def record_seed(self, name: str, seed: int, record: dict) -> None:
        """One final seed's scores of model ``name``."""
        self.models[name].setdefault("seeds", {})[str(seed)] = record

    def drop_section(self, key: str) -> None:
        self.data.pop(key, None)

    def record_model(self, name: str, **fields) -> dict:
        """Create or update model ``name``'s record; returns the raw record (for the stage that owns it)."""
        rec = self.models.setdefault(name, {})
        rec.update(fields)
        return rec

    def record_export(self, name: str, variant: str, record: dict) -> None:
        """Model ``name``'s record of one exported variant."""
        self.models[name].setdefault("onnx", {})[variant] = record

    def link_strategy(self, strategy: str, depth: int, name: str) -> None:
        """``strategy`` reaches model ``name`` at ``depth`` (a layer set shared by strategies is one model)."""
        rec = self.models[name].setdefault("strategies", [])
        if strategy not in rec:
            rec.append(strategy)
        self.strategies.setdefault(strategy, {"order": [], "steps": []}).setdefault("models", {})[str(depth)] = name

    def add_strategies(self, names: list[str]) -> None:
        """Strategies added to an existing run (kept in the config, in order)."""
        self.config["strategies"] = list(dict.fromkeys(list(self.config.get("strategies") or []) + list(names)))

    # --- every path into a run (no other module builds one) ------------------------------
    def inside(self, path: Path, entry: str, recorded: str | None = None) -> Path:
        """``path``, once checked to resolve (symlinks followed) inside the run; else ``RunDirError`` naming the
        manifest ``entry`` (and its ``recorded`` value). Nothing is read or written through a refused path."""
        root = self.path.resolve()
        real = Path(path).resolve()
        if real == root or real.is_relative_to(root):
            return path
        what = f"{entry} {recorded!r}" if recorded is not None else entry
        raise RunDirError(
            f"{self.manifest_path}: {what} resolves to {real}, outside the run {root}; glp-bench reads and writes "
            "only inside the run: restore the manifest entry (or replace a symlinked folder by the folder itself)")

    def model_path(self, name: str) -> Path:
        """Where model ``name``'s fine-tuned weights are written."""
        return self.inside(self.path / name / "model", f"models.{name}")

    def dev_preds_path(self, name: str, split: str) -> Path:
        """Model ``name``'s dev predictions on ``split`` (its first final seed), for the strategy comparison."""
        return self.inside(self.path / name / "dev-preds" / f"{split}.npy", f"models.{name}.dev_preds")

    def model_dir(self, name: str) -> Path:
        """Where model ``name``'s weights are: its recorded path, else the default."""
        rec = self.models.get(name) or {}
        return self.file(rec["path"], f"models.{name}.path") if rec.get("path") else self.model_path(name)

    def onnx_dir(self, name: str) -> Path:
        """Model ``name``'s ONNX folder (``model.onnx``, its variants, ``export.json``)."""
        return self.inside(self.model_dir(name).parent / "onnx", f"models.{name}.path (its onnx folder)")

    def export_json(self, name: str) -> Path:
        return self.inside(self.onnx_dir(name) / "export.json", f"models.{name}.path (its export.json)")

    def file(self, recorded: str, entry: str = "a recorded path") -> Path:
        """A path recorded in the manifest (relative to the run) as a path on disk, inside the run."""
        return self.inside(self.path / recorded, entry, recorded)

    def relative(self, path: Path) -> str:
        """``path`` inside the run as the manifest records it."""
        return Path(path).relative_to(self.path).as_posix()

    def check_paths(self) -> None:
        """Every path the manifest records (model folders, ONNX files, the teacher's logits) resolves inside
        the run (``inside``); called by ``load``, so a command refuses a tampered run before any work."""
        for name, rec in self.models.items():
            self.onnx_dir(name)  # the model folder, then its onnx folder
            for variant, orec in (rec.get("onnx") or {}).items():
                if isinstance(orec, dict) and isinstance(orec.get("path"), str):
                    self.file(orec["path"], f"models.{name}.onnx.{variant}.path")
            for split, rel in (rec.get("dev_preds") or {}).items():
                if isinstance(rel, str):
                    self.file(rel, f"models.{name}.dev_preds.{split}")
        teacher = self.data.get("teacher")
        if isinstance(teacher, dict) and isinstance(teacher.get("path"), str):
            self.file(teacher["path"], "teacher.path")

    @property
    def teacher_path(self) -> Path:
        """The reference model's logits on the train split (distillation's soft targets)."""
        return self.inside(self.path / TEACHER_FILE, "teacher")

    def _search_file(self, *parts: str) -> Path:
        """A file under ``search/`` (``SEARCH_DIR``), checked to stay inside the run (``inside``)."""
        return self.inside(self.path.joinpath(SEARCH_DIR, *parts), "the search folder")

    def preds_path(self, step: int, layer: int, seed: int | str, rung: int | None = None) -> Path:
        """Held-out predictions of one GLP candidate fine-tune (for the bootstrap), ``search/step-SS/...``; with
        ``rung``, at that rung of successive halving (``...rung-R.npy``)."""
        at = "" if rung is None else f".rung-{rung + 1}"
        return self._search_file(f"step-{step + 1:02d}", f"layer-{layer:02d}.seed-{seed}{at}.npy")

    def paused_path(self, step: int, layer: int, seed: int | str) -> Path:
        """The saved state of a GLP candidate paused by successive halving (removed once it stops or finishes)."""
        return self._search_file(f"step-{step + 1:02d}", "paused", f"layer-{layer:02d}.seed-{seed}.pt")

    def sweep_preds_path(self, lr: float, seed: int | str, rung: int | None = None) -> Path:
        """Held-out predictions of one recipe-sweep point at a rung of successive halving
        (``search/sweep/lr-L.seed-S.rung-R.npy``; ``rung`` None: the whole budget's)."""
        at = "" if rung is None else f".rung-{rung + 1}"
        return self._search_file("sweep", f"lr-{lr:g}.seed-{seed}{at}.npy")

    def sweep_paused_path(self, lr: float, seed: int | str) -> Path:
        """The saved state of a recipe-sweep point paused by successive halving (removed once it stops or
        finishes)."""
        return self._search_file("sweep", "paused", f"lr-{lr:g}.seed-{seed}.pt")

    @property
    def latency_dir(self) -> Path:
        return self.inside(self.path / LATENCY_DIR, "the latency folder")

    def latency_path(self, target: str) -> Path:
        """``latency/<target>.json``: the results of ``glp-bench latency --device target``."""
        return self.inside(self.latency_dir / f"{target}.json", f"latency results of target {target!r}")

    def latency_targets(self) -> list[str]:
        """Names of the targets with latency results (sorted)."""
        return sorted(p.stem for p in self.latency_dir.glob("*.json")) if self.latency_dir.is_dir() else []

    @property
    def report_path(self) -> Path:
        return self.inside(self.path / REPORT_FILE, "report.md")

    # --- what the other stages ask of a run -----------------------------------------------
    def reference(self, names: list[str] | None = None) -> tuple[int, str | None]:
        """(full depth, the full-depth reference model) among ``names`` (default: every model): the model of
        the original depth, else the deepest; the shortest name wins a tie (``depth-06`` over ``depth-06-top``)."""
        models = self.models
        names = list(models) if names is None else [n for n in names if n in models]
        if not names:
            return int(self.config.get("original_depth") or 0), None
        depth = self.config.get("original_depth") or max(models[n]["depth"] for n in names)
        at = [n for n in names if models[n]["depth"] == depth]
        if not at:
            depth = max(models[n]["depth"] for n in names)
            at = [n for n in names if models[n]["depth"] == depth]
        return depth, sorted(at, key=lambda n: (len(n), n))[0]

    def exported(self) -> dict[str, dict]:
        """Model records with an ``onnx`` part (whatever its status)."""
        return {n: r for n, r in self.models.items() if r.get("onnx")}

    def ok_variants(self, name: str) -> list[str]:
        """The variants of model ``name`` whose export succeeded, in ``glp_bench.core.vocab`` order."""
        from .vocab import ok_variants

        return ok_variants(self.models.get(name) or {})

    def strategy_rank(self, rec: dict) -> int:
        """Position of a model's first strategy in the run's strategy order (for stable listings)."""
        order = list(self.config.get("strategies") or []) + list(self.strategies)
        return min((order.index(s) for s in rec.get("strategies") or [] if s in order), default=len(order))

    def models_at_depth(self, depth: int, strategy: str | None = None) -> list[str]:
        """Finished models of ``depth``, the run's first strategy's first (``strategy`` filters)."""
        finished = self.finished_models()
        names = [n for n, m in finished.items() if m["depth"] == depth
                 and (not strategy or strategy in (m.get("strategies") or []))]
        return sorted(names, key=lambda n: (self.strategy_rank(finished[n]), len(n), n))

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
                "use the same arguments to resume, --fresh to start over, or --run DIR for a new run"
            )
