"""Loading a task's data. For a GLUE task, in this order: ``--data-dir``, ``$GLP_BENCH_DATA``, the copy of
CoLA bundled with glp-bench (CoLA only), the hub dataset ``nyu-mll/glue`` through ``datasets``. A local
folder holds GLUE's own TSV layout, or csv/parquet/jsonl exports with the Hugging Face column names.
A custom task (``glp_bench.data.task_def``) names its own train and dev files (``glp_bench.data.custom``).

``--data-dir`` may be the task's own folder (``.../glue/CoLA``) or a GLUE root with one sub-folder per
task (``.../glue``); ``GLP_BENCH_DATA`` sets the default root. Returns a ``datasets.DatasetDict`` with
``train`` and the task's dev split(s), each holding the task's text columns and ``label``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..core.errors import DataError
from .tasks import Task

HUB_DATASET = "nyu-mll/glue"
# The official CoLA (train.tsv, dev.tsv as distributed by GLUE, README.cola) ships as package data.
BUNDLED = {"cola": Path(__file__).resolve().parent / "bundled" / "cola"}
EXPORT_EXTS = ("tsv", "csv", "parquet", "jsonl", "json")
# A split may also be named as in GLUE's files (dev.tsv) when exported to another format.
_ALIASES = {"validation": ("validation", "dev"), "validation_matched": ("validation_matched", "dev_matched"),
            "validation_mismatched": ("validation_mismatched", "dev_mismatched"), "train": ("train",)}


def _norm(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _split_file(folder: Path, task: Task, split: str) -> tuple[Path, str] | None:
    """(file, kind): kind 'glue' for GLUE's original layout, else the export format."""
    glue_name = task.layout.files[split] if task.layout else None
    if glue_name and (folder / glue_name).is_file():
        return folder / glue_name, "glue"
    for alias in _ALIASES.get(split, (split,)):
        for ext in EXPORT_EXTS:
            f = folder / f"{alias}.{ext}"
            if f.is_file() and f.name != glue_name:
                return f, ext
    return None


def _splits(task: Task) -> tuple[str, ...]:
    return ("train", *task.dev_splits)


def bundled_dir(task: Task) -> Path | None:
    """The bundled copy of ``task``'s data (CoLA), or None."""
    folder = BUNDLED.get(task.name)
    return folder if folder is not None and (folder / "train.tsv").is_file() else None


def data_source(task: Task, data_dir: str | os.PathLike | None) -> tuple[str, Path | None]:
    """(kind, folder) of the data ``load_task_data`` uses: kind is one of 'custom', '--data-dir',
    '$GLP_BENCH_DATA', 'bundled', 'hub' (folder None for 'custom' and 'hub')."""
    if task.is_custom:
        return "custom", None
    if data_dir:
        return "--data-dir", Path(data_dir)
    if os.environ.get("GLP_BENCH_DATA"):
        return "$GLP_BENCH_DATA", Path(os.environ["GLP_BENCH_DATA"])
    bundled = bundled_dir(task)
    return ("bundled", bundled) if bundled is not None else ("hub", None)


def describe_data(task: Task, data_dir: str | os.PathLike | None) -> str:
    """One phrase for the plan line: where ``task``'s data comes from."""
    kind, folder = data_source(task, data_dir)
    if kind == "custom":
        return f"data: {task.definition['train']} + {task.definition['dev']}"
    if kind == "bundled":
        return f"data: the bundled copy of {task.glue_dir} ({folder})"
    if kind == "hub":
        return f"data: the hub ({HUB_DATASET}/{task.name})"
    return f"data: {resolve_task_dir(task, data_dir)} ({kind})"


def has_local_data(task: Task, data_dir: str | os.PathLike | None = None) -> bool:
    """True when ``load_task_data`` would not go to the hub."""
    return data_source(task, data_dir)[0] != "hub"


def resolve_task_dir(task: Task, data_dir: str | os.PathLike | None) -> Path | None:
    """The folder holding ``task``'s files, or None to use the hub. Raises DataError when a folder was
    given but holds no data for the task."""
    root = data_dir or os.environ.get("GLP_BENCH_DATA")
    if not root:
        return bundled_dir(task)
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"data folder {root} {what}; pass --data-dir with GLUE files for {task.name}")
    if any(_split_file(root, task, s) for s in _splits(task)):
        return root
    for child in sorted(root.iterdir()):
        if child.is_dir() and _norm(child.name) in (_norm(task.glue_dir), task.name):
            return child
    expected = ", ".join(task.layout.files.values()) if task.layout else "train/validation files"
    raise DataError(
        f"no {task.name} data in {root}: expected {expected} there or in a {task.glue_dir}/ sub-folder"
    )


def _read_glue_tsv(path: Path, task: Task):
    import pandas as pd

    layout = task.layout
    try:
        df = pd.read_csv(
            path, sep="\t", header=0 if layout.header else None, quoting=csv.QUOTE_NONE,
            dtype=str, keep_default_na=False, on_bad_lines="skip", encoding="utf-8",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path} is not a readable GLUE {task.name} TSV file ({e})") from None
    missing = [c for c in layout.columns.values() if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {missing} of GLUE's {task.name} layout; "
            f"found {list(df.columns)[:12]}"
        )
    out = pd.DataFrame({ours: df[theirs] for ours, theirs in layout.columns.items()})
    # QQP/MNLI have a few malformed rows in GLUE's files; GLUE's own loaders skip them too.
    out = out[(out != "").all(axis=1)]
    return out


def _read_export(path: Path, kind: str):
    import pandas as pd

    try:
        if kind == "csv":
            return pd.read_csv(path, keep_default_na=False)
        if kind == "tsv":
            return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=(kind == "jsonl" or path.read_text()[:1] != "["))
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file, say which
        raise DataError(f"cannot read {path} as {kind}: {e}") from None


def _labels(df, task: Task, path: Path):
    col = df["label"]
    if task.is_regression:
        import numpy as np

        try:
            values = col.astype(float)
        except ValueError:
            raise DataError(f"{path}: {task.name} labels must be numbers") from None
        bad = ~np.isfinite(values.to_numpy())
        if bad.any():
            raise DataError(f"{path}: {int(bad.sum())} {task.name} label(s) are not finite numbers (first: "
                            f"{col[bad].iloc[0]!r}); infinity and nan cannot be learned: fix or drop those rows")
        return values
    mapping = dict(task.layout.label_map or {}) if task.layout else {}
    mapping.update({name: i for i, name in enumerate(task.label_names)})
    mapping.update({str(i): i for i in range(task.num_labels)})
    labels = col.map(lambda v: mapping.get(str(v).strip(), -1))
    bad = labels < 0
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} label(s) not in {task.name}'s labels "
            f"{list(task.label_names)} (first: {col[bad].iloc[0]!r})"
        )
    return labels.astype(int)


def load_local(task: Task, folder: Path):
    from datasets import Dataset, DatasetDict

    splits = {}
    for split in _splits(task):
        found = _split_file(folder, task, split)
        if found is None:
            names = [task.layout.files[split]] if task.layout else []
            names += [f"{_ALIASES.get(split, (split,))[0]}.{{csv,parquet,jsonl}}"]
            raise DataError(f"{folder} has no {split} split for {task.name}: expected {' or '.join(names)}")
        path, kind = found
        df = _read_glue_tsv(path, task) if kind == "glue" else _read_export(path, kind)
        needed = [*task.text_keys, "label"]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise DataError(f"{path} lacks column(s) {missing}; {task.name} needs {needed}")
        df = df[needed].copy()
        df["label"] = _labels(df, task, path)
        for key in task.text_keys:
            df[key] = df[key].astype(str)
        if len(df) == 0:
            raise DataError(f"{path} holds no examples")
        splits[split] = Dataset.from_pandas(df.reset_index(drop=True), preserve_index=False)
    return DatasetDict(splits)


def load_hub(task: Task):
    from datasets import DatasetDict, load_dataset

    from ..core.hub import offline_if_unreachable

    offline = offline_if_unreachable()  # unreachable: the cache at once, no retries
    try:
        ds = load_dataset(HUB_DATASET, task.name)
    except Exception as e:  # noqa: BLE001 - offline, hub down, ...: all the same to the user
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        where = "offline (the hub is unreachable) and not in the datasets cache" if offline else f"hub error: {first}"
        raise DataError(
            f"could not load {HUB_DATASET}/{task.name} from the Hugging Face hub ({where}); "
            "pass --data-dir with a local GLUE folder (or set GLP_BENCH_DATA)"
        ) from None
    return DatasetDict({s: ds[s].select_columns([*task.text_keys, "label"]) for s in _splits(task)})


def load_task_data(task: Task, data_dir: str | os.PathLike | None = None):
    """``DatasetDict`` with ``train`` and the task's dev split(s): a custom task's own files; for GLUE a
    local folder (``data_dir``, ``$GLP_BENCH_DATA``, the bundled CoLA), else the hub."""
    if task.is_custom:
        from .custom import load_custom

        return load_custom(task)
    folder = resolve_task_dir(task, data_dir)
    return load_local(task, folder) if folder is not None else load_hub(task)


def search_split(train, seed: int, held_out: float = 0.15):
    """GLP's split of the *train* split: (fit on 85%, score on 15%), seeded. The dev split is never
    used to choose layers."""
    parts = train.train_test_split(test_size=held_out, seed=seed, shuffle=True)
    return parts["train"], parts["test"]
