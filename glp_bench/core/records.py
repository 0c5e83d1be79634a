"""Typed records of the run contract: what the manifest says about a run's configuration, its models, their
exports and the strategies, with the defaults in one place. ``RunDir`` builds them from the manifest
(``run.cfg``, ``run.model(name)``, ``run.strategy(name)``, ``run.section(key)``); stages and benchmarks read
these instead of indexing the raw dict (a fitness test keeps raw indexing inside ``glp_bench.core``). Frozen:
writing goes through ``RunDir``'s recording methods. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_LENGTH = 128  # tokens; the run's --max-length when an older manifest does not say
DEFAULT_SEED = 42


@dataclass(frozen=True)
class RunConfig:
    task: str | None = None
    model: str | None = None
    data_dir: str | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    seed: int = DEFAULT_SEED
    strategies: tuple[str, ...] = ()
    original_depth: int | None = None
    pooling: str = "cls"
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, raw: dict | None) -> RunConfig:
        raw = raw or {}
        return cls(task=raw.get("task"), model=raw.get("model"), data_dir=raw.get("data_dir"),
                   max_length=int(raw.get("max_length") or DEFAULT_MAX_LENGTH),
                   seed=int(raw["seed"]) if raw.get("seed") is not None else DEFAULT_SEED,
                   strategies=tuple(raw.get("strategies") or ()), original_depth=raw.get("original_depth"),
                   pooling=raw.get("pooling") or "cls", raw=raw)


@dataclass(frozen=True)
class ExportRecord:
    variant: str
    path: str | None = None
    status: str | None = None
    sha256: str | None = None
    provider: str | None = None
    preset: str | None = None
    opset: int | None = None
    dev_scores: dict | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def of(cls, variant: str, raw: dict) -> ExportRecord:
        return cls(variant, raw.get("path"), raw.get("status"), raw.get("sha256"), raw.get("provider"),
                   raw.get("preset"), raw.get("opset"), raw.get("dev_scores"), raw)


@dataclass(frozen=True)
class ModelRecord:
    name: str
    depth: int | None = None
    kept_layers: list[int] = field(default_factory=list)
    strategies: tuple[str, ...] = ()
    dev_scores: dict | None = None
    path: str | None = None
    distill: dict | None = None
    dev_preds: dict[str, str] = field(default_factory=dict)
    onnx: dict[str, ExportRecord] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)  # {file name: {"size", "sha256"}} of the saved model
    seeds: dict[str, dict] = field(default_factory=dict)  # {seed: {"dev_scores", ...}} of every final seed
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Fine-tuned and scored on dev."""
        return self.dev_scores is not None

    def score(self, key: str) -> float | None:
        return (self.dev_scores or {}).get(key)

    @classmethod
    def of(cls, name: str, raw: dict | None) -> ModelRecord:
        raw = raw or {}
        return cls(name, raw.get("depth"), list(raw.get("kept_layers") or []), tuple(raw.get("strategies") or ()),
                   raw.get("dev_scores"), raw.get("path"), raw.get("distill"), dict(raw.get("dev_preds") or {}),
                   {v: ExportRecord.of(v, r) for v, r in (raw.get("onnx") or {}).items() if isinstance(r, dict)},
                   dict(raw.get("files") or {}), dict(raw.get("seeds") or {}), raw)


@dataclass(frozen=True)
class StrategyRecord:
    name: str
    order: list[int] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    models: dict[int, str] = field(default_factory=dict)  # depth -> model name

    @classmethod
    def of(cls, name: str, raw: dict | None) -> StrategyRecord:
        raw = raw or {}
        return cls(name, list(raw.get("order") or []), list(raw.get("steps") or []),
                   {int(d): n for d, n in (raw.get("models") or {}).items()})


def section(data: dict, key: str, default: Any = None) -> Any:
    """A top-level manifest section (``recipe``, ``comparison``, ``teacher``, ``int8_choice``, ``identity``)."""
    value = data.get(key) if data else None
    return default if value is None else value
