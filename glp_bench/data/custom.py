"""Reading a custom task's train and dev files (csv, tsv, jsonl, parquet) into the ``DatasetDict`` every
stage uses (text columns as named in the definition, ``label`` as class ids or floats).

Every problem is one ``DataError`` naming the file, the row and the fix: not UTF-8, unreadable, a
missing column, an empty split, a label outside the label set, a non-numeric regression target, a
missing text. Rows are counted from 1 without the header; text formats also give the file's line.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..core.errors import DataError
from .tasks import Task


def _check_utf8(path: Path) -> None:
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not UTF-8 (byte 0x{raw[e.start]:02x}); "
                        "save the file as UTF-8") from None


def _read(path: Path):
    import pandas as pd

    kind = path.suffix.lstrip(".").lower()
    if not path.is_file():
        raise DataError(f"{path} does not exist; fix the task's train/dev paths")
    if kind != "parquet":
        _check_utf8(path)
    try:
        if kind == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        if kind == "tsv":
            return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
                               encoding="utf-8")
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: it holds no examples") from None
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file: say which
        raise DataError(f"cannot read {path} as {kind}: {str(e).splitlines()[0]}") from None


def _where(path: Path, i: int) -> str:
    """Row ``i`` (0-based in the frame) as the user finds it in the file."""
    kind = path.suffix.lstrip(".").lower()
    if kind in ("csv", "tsv"):
        return f"{path} row {i + 1} (line {i + 2})"
    if kind == "jsonl":
        return f"{path} row {i + 1} (line {i + 1})"
    return f"{path} row {i + 1}"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _labels(values, task: Task, path: Path, column: str) -> list:
    out = []
    if task.is_regression:
        for i, v in enumerate(values):
            try:
                x = float(v)
                if x != x:
                    raise ValueError
            except (TypeError, ValueError):
                raise DataError(f"{_where(path, i)}: regression target {v!r} in column {column!r} is not a "
                                "number; fix or drop the row") from None
            out.append(x)
        return out
    index = {name: i for i, name in enumerate(task.label_names)}
    for i, v in enumerate(values):
        key = str(v).strip() if not _missing(v) else None
        if isinstance(v, float) and v.is_integer():
            key = str(int(v))
        if key in index:
            out.append(index[key])
        elif key is not None and key.isdigit() and int(key) < task.num_labels and key not in index:
            out.append(int(key))  # a class id (0..n-1) in place of its name
        else:
            raise DataError(f"{_where(path, i)}: label {v!r} in column {column!r} is not in the label set "
                            f"{list(task.label_names)}; add it to labels or fix the row")
    return out


def load_split(task: Task, path: str | Path):
    """One split of a custom task: a ``datasets.Dataset`` with the text columns and ``label``."""
    import pandas as pd
    from datasets import Dataset

    path = Path(path)
    d = task.definition
    df = _read(path)
    needed = [*d["text"], d["label"]]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; it has {list(df.columns)[:12]}: fix the file or "
                        f"the task's text/label columns")
    if len(df) == 0:
        raise DataError(f"{path} holds no examples (empty split); add rows")
    cols = {}
    for key in d["text"]:
        values = df[key].tolist()
        for i, v in enumerate(values):
            if _missing(v):
                raise DataError(f"{_where(path, i)}: no text in column {key!r}; fix or drop the row")
        cols[key] = [str(v) for v in values]
    cols["label"] = _labels(df[d["label"]].tolist(), task, path, d["label"])
    return Dataset.from_pandas(pd.DataFrame(cols), preserve_index=False)


def load_custom(task: Task):
    from datasets import DatasetDict

    d = task.definition
    return DatasetDict({"train": load_split(task, d["train"]), "validation": load_split(task, d["dev"])})
