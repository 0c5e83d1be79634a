"""Synthetic model inputs for latency runs (latency does not depend on the token ids), shared by the ONNX
Runtime and PyTorch backends of the worker."""

from __future__ import annotations

import json
import os

FALLBACK_VOCAB = 32  # every real vocabulary has at least this many ids; latency does not depend on them


def vocab_size_near(model_path: str) -> int | None:
    """``vocab_size`` from the config.json the exporter saves beside the ONNX file (or one folder up)."""
    here = os.path.dirname(os.path.abspath(model_path))
    for folder in (here, os.path.dirname(here), os.path.join(os.path.dirname(here), "model")):
        try:
            with open(os.path.join(folder, "config.json")) as f:
                v = json.load(f).get("vocab_size")
            if isinstance(v, int) and v > 1:
                return v
        except (OSError, ValueError):
            continue
    return None


def make_inputs(specs, batch: int, seq: int, vocab_size: int | None, seed: int) -> dict:
    """Arrays for the model's inputs, by name: [(name, numpy dtype), ...] -> {name: array}."""
    import numpy as np

    rng = np.random.default_rng(seed)
    high = min(vocab_size, 30000) if vocab_size else FALLBACK_VOCAB
    out = {}
    for name, dtype in specs:
        if name == "input_ids":
            a = rng.integers(1, max(high, 2), size=(batch, seq))
        elif name == "attention_mask":
            a = np.ones((batch, seq))
        elif name == "token_type_ids":
            a = np.zeros((batch, seq))
        elif name == "position_ids":
            a = np.broadcast_to(np.arange(seq), (batch, seq))
        else:
            raise ValueError(f"the model has an input {name!r} this benchmark does not know how to fill")
        out[name] = np.ascontiguousarray(a, dtype=dtype)
    return out


ORT_TYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(float)": "float32",
             "tensor(float16)": "float16"}
