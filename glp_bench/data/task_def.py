"""Custom tasks: the user's own labelled texts, defined by a small TOML file or by CLI flags.

A definition (a plain dict, stored in the run's manifest as ``config["task_def"]`` so every later stage
rebuilds the task from the run directory alone)::

    name = "tickets"                  # letters, digits, - and _; not a GLUE task's name
    train = "data/train.csv"          # csv, tsv, jsonl or parquet; relative to the TOML file
    dev = "data/dev.csv"
    text = "text"                     # one text column, or two for a pair task: ["question", "answer"]
    label = "label"                   # the label column (default "label")
    labels = ["billing", "bug", "other"]   # class names as they appear in the file; or: regression = true
    metrics = ["accuracy", "f1"]      # from METRICS; default accuracy (classes) or pearson, spearman
    main_metric = "f1"                # selects layers and heads the tables; default: the first metric

Pure apart from reading the TOML file; the data files are read by ``glp_bench.data.loaders``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import TaskError
from ..core.vocab import split_names
from .tasks import TASKS, Task

CLASS_METRICS = ("accuracy", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")
METRICS = CLASS_METRICS + REGRESSION_METRICS
FORMATS = ("csv", "tsv", "jsonl", "parquet")
_KEYS = {"name", "train", "dev", "text", "label", "labels", "regression", "metrics", "main_metric"}

EXAMPLE = """\
name = "tickets"
train = "train.csv"        # csv, tsv, jsonl or parquet, relative to this file
dev = "dev.csv"
text = "text"              # or two columns for pairs: ["question", "answer"]
label = "label"
labels = ["billing", "bug", "other"]   # or: regression = true
metrics = ["accuracy", "f1"]           # accuracy, f1, mcc | pearson, spearman
main_metric = "f1\""""


def _metric(name: str, preds: np.ndarray, labels: np.ndarray, n_labels: int) -> float:
    if name == "accuracy":
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(labels, preds))
    if name == "f1":  # binary: F1 of the second class (GLUE's convention); more classes: macro F1
        from sklearn.metrics import f1_score

        return float(f1_score(labels, preds, average="binary" if n_labels == 2 else "macro",
                              labels=list(range(n_labels))))
    if name == "mcc":
        from sklearn.metrics import matthews_corrcoef

        return float(matthews_corrcoef(labels, preds))
    from scipy.stats import pearsonr, spearmanr

    fn = pearsonr if name == "pearson" else spearmanr
    return float(fn(preds, labels)[0])


@dataclass(frozen=True)
class Metrics:
    """A task's ``metric_fn`` for a custom task: the named metrics of METRICS (picklable, for Ray)."""

    names: tuple[str, ...]
    n_labels: int

    def __call__(self, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return {n: _metric(n, np.asarray(preds), np.asarray(labels), self.n_labels) for n in self.names}


def _str_list(value, what: str, src: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = split_names(value)
        except ValueError as e:
            raise TaskError(f"{src}: {what} {e}: give comma-separated names, e.g. a,b") from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise TaskError(f"{src}: {what} must be a name or a list of names, got {value!r}")
    return list(value)


def normalize(raw: Mapping, src: str, base: Path | None = None, check_files: bool = True) -> dict:
    """A checked, complete definition (paths absolute, defaults filled) from a TOML table or flags.
    ``src`` names where it came from in error messages; relative paths are taken from ``base``.
    ``check_files=False`` (a run's stored definition): the files need not exist (report, deploy)."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise TaskError(f"{src}: unknown key(s) {unknown}; a task definition takes {sorted(_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise TaskError(f"{src}: name must be letters, digits, '-' or '_' (it names the run directory), got {name!r}")
    if name.lower().replace("-", "").replace("_", "") in TASKS:
        raise TaskError(f"{src}: name {name!r} is a GLUE task's; give the custom task another name")
    out: dict = {"name": name}
    for split in ("train", "dev"):
        path = raw.get(split)
        if not isinstance(path, str) or not path:
            raise TaskError(f"{src}: {split} file missing; give {split} = \"path/to/{split}.csv\" "
                            f"({', '.join(FORMATS)})")
        p = Path(path).expanduser()
        p = (base / p) if base is not None and not p.is_absolute() else p
        if p.suffix.lstrip(".").lower() not in FORMATS:
            raise TaskError(f"{src}: {split} file {p} must end in .{', .'.join(FORMATS)}")
        if check_files and not p.is_file():
            raise TaskError(f"{src}: {split} file {p} does not exist")
        out[split] = str(p.resolve()) if check_files else str(p)
    text = _str_list(raw.get("text", "text"), "text", src)
    if len(text) > 2:
        raise TaskError(f"{src}: text takes one column, or two for a pair task; got {text}")
    out["text"] = text
    label = raw.get("label", "label")
    if not isinstance(label, str) or not label:
        raise TaskError(f"{src}: label must be the label column's name, got {label!r}")
    out["label"] = label
    regression = raw.get("regression", False)
    if not isinstance(regression, bool):
        raise TaskError(f"{src}: regression must be true or false, got {regression!r}")
    out["regression"] = regression
    if regression:
        if raw.get("labels"):
            raise TaskError(f"{src}: a regression task has no labels; remove labels or regression")
        out["labels"], allowed = [], REGRESSION_METRICS
    else:
        if raw.get("labels") is None:
            raise TaskError(f"{src}: give the label names (labels = [\"neg\", \"pos\"]) or regression = true")
        labels = _str_list(raw["labels"], "labels", src)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise TaskError(f"{src}: labels must be at least two distinct names, got {labels}")
        padded = next((v for v in labels if v != v.strip() or not v.isprintable()), None)
        if padded is not None:  # the files' labels are compared stripped: such a name could never match
            raise TaskError(f"{src}: label name {padded!r} has surrounding spaces or invisible characters; "
                            "write the names as they appear in the files, without them")
        out["labels"], allowed = labels, CLASS_METRICS
    metrics = _str_list(raw.get("metrics", list(allowed[:1] if not regression else allowed)), "metrics", src)
    bad = [m for m in metrics if m not in allowed]
    if bad:
        kind = "regression" if regression else "classification"
        raise TaskError(f"{src}: metric(s) {bad} do not apply to {kind}; choose from {', '.join(allowed)}")
    out["metrics"] = list(dict.fromkeys(metrics))
    main = raw.get("main_metric", out["metrics"][0])
    if main not in out["metrics"]:
        raise TaskError(f"{src}: main_metric {main!r} is not among metrics {out['metrics']}")
    out["main_metric"] = main
    return out


def read_toml(path: str | Path) -> dict:
    """The normalized definition in a TOML file (paths relative to the file)."""
    import tomllib

    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskError(f"task file {path} does not exist; --task takes a GLUE task or a .toml task definition")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TaskError(f"{path} is not valid TOML ({e})") from None
    return normalize(raw, str(path), path.resolve().parent)


def from_flags(name: str, train: str, dev: str | None, text: str | None, label: str | None,
               labels: str | None, regression: bool, metrics: str | None, main_metric: str | None) -> dict:
    raw = {"name": name, "train": train, "dev": dev, "regression": regression}
    for key, value in (("text", text), ("label", label), ("labels", labels), ("metrics", metrics),
                       ("main_metric", main_metric)):
        if value is not None:
            raw[key] = value
    return normalize(raw, "custom task flags")


def build(definition: Mapping):
    """The ``Task`` of a normalized definition."""
    d = definition
    labels = tuple(d["labels"])
    return Task(d["name"], "", tuple(d["text"]), labels, Metrics(tuple(d["metrics"]), len(labels)),
                d["main_metric"], definition=dict(d))


def add_args(p) -> None:
    """The flags that define a custom task in place of a TOML file (``--task NAME --train ... --dev ...``)."""
    g = p.add_argument_group("custom task by flags (instead of --task GLUE-TASK or --task FILE.toml; "
                             "--task then names it)")
    g.add_argument("--train", default=None, help="train file: .csv, .tsv, .jsonl or .parquet")
    g.add_argument("--dev", default=None, help="dev file, same formats")
    g.add_argument("--text-column", default=None, help="text column, or two comma-separated for pairs (default text)")
    g.add_argument("--label-column", default=None, help="label column (default label)")
    g.add_argument("--labels", default=None, help="comma-separated class names as they appear in the files")
    g.add_argument("--regression", action="store_true", help="the label is a number (instead of --labels)")
    g.add_argument("--metrics", default=None,
                   help=f"comma-separated from {', '.join(METRICS)} (default accuracy, or pearson,spearman)")
    g.add_argument("--main-metric", default=None, help="the metric that selects layers (default the first)")


_FLAGS = ("dev", "text_column", "label_column", "labels", "metrics", "main_metric")
