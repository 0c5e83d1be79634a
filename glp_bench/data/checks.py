"""Checks of a task's loaded splits that no single row shows, made before any training: a classification train
split needs two classes, regression targets must vary (Pearson and Spearman are undefined otherwise), and GLP's
85/15 split of train needs enough rows for both parts. Each failure is one ``DataError`` naming the split's
source and the fix."""

from __future__ import annotations

import math
from collections import Counter

from ..core.errors import DataError
from .tasks import Task

HELD_OUT = 0.15  # GLP's held-out share of train (glp_bench.data.loaders.search_split)
MIN_PART_ROWS = 2  # rows each part of the 85/15 split needs at least: a score over one example means nothing


def min_search_rows(held_out: float = HELD_OUT, per_part: int = MIN_PART_ROWS) -> int:
    """The fewest train rows whose seeded split (``datasets``' ``train_test_split``: ``ceil(held_out * n)``
    held out, the rest to fit) leaves ``per_part`` rows in each part (7 for 15% and 2)."""
    n = per_part
    while math.ceil(held_out * n) < per_part or n - math.ceil(held_out * n) < per_part:
        n += 1
    return n


def split_source(task: Task, split: str) -> str:
    """How a message names a split: a custom task's file, else ``the cola train split``."""
    if task.is_custom:
        return str(task.definition["train" if split == "train" else "dev"])
    return f"the {task.name} {split} split"


def check_train_split(task: Task, data) -> None:
    """A train split a model can learn from (two classes or more; varying regression targets), and dev
    targets a regression metric can be computed on."""
    labels = list(data["train"]["label"])
    if task.is_regression:
        for split in ("train", *task.dev_splits):
            values = set(data[split]["label"])
            if len(values) == 1:
                raise DataError(f"{split_source(task, split)}: every regression target is {next(iter(values)):g}; "
                                "correlations (Pearson, Spearman) need targets that vary: add "
                                "rows with other values")
        return
    counts = Counter(labels)
    if len(counts) < 2:
        (only, n), = counts.items()
        raise DataError(f"{split_source(task, 'train')} holds one class only ({task.label_names[only]!r}, {n} "
                        f"rows): a classifier needs examples of at least two of {list(task.label_names)}; add rows "
                        "of another class")


def check_search_split(task: Task, train) -> None:
    """Enough train rows for GLP's seeded 85/15 split (it is not stratified: no per-class minimum)."""
    need = min_search_rows()
    if len(train) < need:
        raise DataError(f"{split_source(task, 'train')} holds {len(train)} row(s); 'glp-bench prune' fine-tunes "
                        f"candidates on 85% of train and scores them on the other 15%, which needs at least "
                        f"{need} rows ({MIN_PART_ROWS} in each part): add rows")
