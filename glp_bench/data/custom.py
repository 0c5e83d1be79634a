"""Reading a custom task's train and dev files (csv, tsv, jsonl, parquet) into the ``DatasetDict`` every
stage uses (text columns as named in the definition, ``label`` as class ids or floats).

Every problem is one ``DataError`` naming the file, the row and the fix: not UTF-8, unreadable, a
missing column, an empty split, a label outside the label set (class ids in ASCII digits only), a
regression target that is not a finite number written in ASCII, a missing text. Rows are counted from 1
without the header; text formats also give the file's line.
"""

from __future__ import annotations

import csv
import math
import numbers
import re
from pathlib import Path

import numpy as np

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


# A number as users' files write it: ASCII digits, an optional sign, '.' decimals, an exponent. Python's float()
# also takes '1_000', full-width and Arabic-Indic digits, 'inf' and 'nan': none of them is let through silently.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT32_MAX = 3.4028234663852886e38  # a larger target becomes inf when training in float32


def _target(v, where: str, column: str) -> float:
    """A regression target: a finite number (a JSON/parquet number, or text in ``_NUMBER``'s form)."""
    fix = "fix or drop the row"
    if isinstance(v, bool) or not isinstance(v, (numbers.Real, str)):
        raise DataError(f"{where}: regression target {v!r} in column {column!r} is not a number; {fix}")
    if isinstance(v, str):
        text = v.strip()
        if not _NUMBER.fullmatch(text):
            hint = ""
            if text.lower().lstrip("+-") in ("inf", "infinity", "nan"):
                raise DataError(f"{where}: regression target {v!r} in column {column!r} is not a finite number "
                                f"(infinity and nan cannot be learned); {fix}")
            if any(c.isdigit() or c.isnumeric() for c in text) and not text.isascii():
                hint = " (write it with the ASCII digits 0-9)"
            elif "," in text:
                hint = " (write decimals with a '.')"
            raise DataError(f"{where}: regression target {v!r} in column {column!r} is not a number{hint}; {fix}")
    x = float(v)
    if not math.isfinite(x) or abs(x) > _FLOAT32_MAX:
        raise DataError(f"{where}: regression target {v!r} in column {column!r} is not a finite number (infinity, "
                        f"nan and values beyond float32's range cannot be learned); {fix}")
    return x


def _label_key(v) -> str | None:
    """The label as text to look up in the label set: stripped; a JSON boolean as JSON writes it; a whole float
    (a class id read as 1.0) without its decimals."""
    if _missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):  # JSON true/false, a parquet bool column
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _labels(values, task: Task, path: Path, column: str) -> list:
    if task.is_regression:
        return [_target(v, _where(path, i), column) for i, v in enumerate(values)]
    index = {name: i for i, name in enumerate(task.label_names)}
    ids = f"0-{task.num_labels - 1}"
    out = []
    for i, v in enumerate(values):
        key = _label_key(v)
        if key in index:
            out.append(index[key])
        elif isinstance(v, (bool, np.bool_)) and str(bool(v)) in index:  # labels = ["False", "True"]
            out.append(index[str(bool(v))])
        elif key is not None and re.fullmatch(r"[0-9]+", key) and int(key) < task.num_labels:
            out.append(int(key))  # a class id (0..n-1) in place of its name
        else:
            hint = ""
            if key and any(c.isdigit() or c.isnumeric() for c in key) and not key.isascii():
                hint = f" (a class id is written with the ASCII digits {ids})"
            raise DataError(f"{_where(path, i)}: label {v!r} in column {column!r} is not in the label set "
                            f"{list(task.label_names)} nor a class id {ids}{hint}; add it to labels or fix the row")
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
