"""What the machine and the model allow: CPUs for threads, positions and vocabulary for token ids.

* :func:`available_cpus`: the CPUs this process may run on (its affinity mask, else ``os.cpu_count``).
  Thread counts above it only oversubscribe the cores (``--threads 100000`` used to hang creating threads).
* :func:`embedding_limits`: the rows of the ONNX model's position and word embeddings, read from the graph's
  initializers with ``onnx`` (glp-runtime depends on it; without it the check is skipped). A bundle whose
  ``max_length`` exceeds the positions would fail on the first long text, so it is refused when it loads.
"""

from __future__ import annotations

import os
from pathlib import Path

# models whose position ids start after the padding index (RoBERTa: padding_idx + 1)
OFFSET_POSITIONS = ("roberta", "camembert")


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _rows(init) -> int | None:
    dims = list(init.dims)
    return int(dims[0]) if len(dims) == 2 else None


def embedding_limits(model_path: str | Path, pad_id: int = 0) -> dict[str, int | None]:
    """{"positions": longest sequence the position embeddings hold, "vocab": word-embedding rows}; None
    where the graph has no recognisable initializer (or ``onnx`` is not installed)."""
    try:
        import onnx
    except ImportError:
        return {"positions": None, "vocab": None}
    graph = onnx.load(str(model_path), load_external_data=False).graph
    out: dict[str, int | None] = {"positions": None, "vocab": None}
    for init in graph.initializer:
        name = init.name.lower()
        if name.endswith(("_scale", "_zero_point")):  # int8: the quantized table is "<name>_quantized"
            continue
        rows = _rows(init)
        if rows is None:
            continue
        if "position_embeddings" in name and out["positions"] is None:
            offset = pad_id + 1 if any(k in name for k in OFFSET_POSITIONS) else 0
            out["positions"] = rows - offset
        elif "word_embeddings" in name and out["vocab"] is None:
            out["vocab"] = rows
    return out
