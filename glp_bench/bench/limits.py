"""What a latency configuration may ask of the model and of this machine, checked before anything runs:
sequence lengths within the model's positions, thread counts within the CPUs this process may use, and
a batch whose estimated memory fits the memory available now. Pure checks over facts passed in; the
facts (model config, CPUs, MemAvailable) are read by the small functions at the bottom."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DeviceError, RunDirError

MB = 2**20
# Models whose position ids start after the padding index (fairseq style): usable positions are fewer.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text", "ibert")
PROCESS_MB = {"onnxruntime": 60.0, "torch": 500.0}  # interpreter + runtime of a worker, measured here


@dataclass(frozen=True)
class ModelShape:
    """The sizes of an encoder that bound what it can be asked (from its config.json)."""

    hidden: int
    heads: int
    intermediate: int
    max_positions: int | None  # usable sequence length (None: unknown)

    @classmethod
    def from_config(cls, cfg: dict) -> ModelShape | None:
        def first(*keys):
            return next((cfg[k] for k in keys if isinstance(cfg.get(k), int)), None)

        hidden = first("hidden_size", "dim", "d_model")
        heads = first("num_attention_heads", "n_heads")
        if hidden is None or heads is None:
            return None
        intermediate = first("intermediate_size", "hidden_dim") or 4 * hidden
        positions = first("max_position_embeddings")
        if positions is not None and cfg.get("model_type") in OFFSET_POSITIONS:
            positions -= int(cfg.get("pad_token_id") or 0) + 1
        return cls(hidden, heads, intermediate, positions)

    def sequence_bytes(self, seq: int) -> int:
        """Memory one sequence of ``seq`` tokens adds at the peak: fp32 (4 bytes) tensors of one layer alive at
        once (runtimes reuse buffers between layers), x 2 for ONNX Runtime's arena, which grows by doubling:
            2 * 4 * [seq * (4 * hidden + intermediate)  +  4 * heads * seq^2]
                     (hidden states, Q/K/V, context, FFN)  (scores, mask added, softmax, copies)
        Measured (session RSS growth per sequence, ONNX Runtime): all-MiniLM-L6-v2 5.7 MB at seq 128 (estimate
        9.0), 60 MB at seq 512 (108), depths 3 and 6 alike; the tests' tiny BERT 1.4 MB at seq 160 (1.8)."""
        return 2 * 4 * (seq * (4 * self.hidden + self.intermediate) + 4 * self.heads * seq * seq)


def estimate_mb(shape: ModelShape, batch: int, seq: int, weights_bytes: int, backend: str) -> float:
    """Peak memory of a worker: process + weights (held twice: file bytes and prepacked) + the batch."""
    return PROCESS_MB.get(backend, PROCESS_MB["torch"]) + (2 * weights_bytes + batch * shape.sequence_bytes(seq)) / MB


def largest_batch(shape: ModelShape, seq: int, weights_bytes: int, backend: str, available_mb: float) -> int:
    room = available_mb - estimate_mb(shape, 0, seq, weights_bytes, backend)
    return max(0, int(room * MB // shape.sequence_bytes(seq)))


# --- the checks (raise one clear error) -----------------------------------------------------------------


def check_threads(thread_counts: list[int], cpus: int, source: str) -> None:
    over = [t for t in thread_counts if t > cpus]
    if over:
        raise DeviceError(f"{source} asks for {max(over)} threads but this process may use {cpus} CPU(s); "
                          f"use at most {cpus} (e.g. --threads 1,{cpus})" if cpus > 1 else
                          f"{source} asks for {max(over)} threads but this process may use 1 CPU; use --threads 1")


def check_seq(seq_lengths: list[int], shapes: dict[str, ModelShape | None], source: str) -> None:
    for name, shape in shapes.items():
        if shape is None or shape.max_positions is None:
            continue
        over = [s for s in seq_lengths if s > shape.max_positions]
        if over:
            raise RunDirError(f"{source} asks for sequence length {max(over)} but {name} has "
                              f"{shape.max_positions} positions (max_position_embeddings); use sequence lengths "
                              f"up to {shape.max_positions}")


def check_memory(configs: list[tuple[str, str, ModelShape | None, int, int, int]], available_mb: float | None,
                 source: str) -> None:
    """``configs``: (name, backend, shape, weights bytes, batch, seq) of every CPU configuration."""
    if available_mb is None:
        return
    worst = None
    for name, backend, shape, weights, batch, seq in configs:
        if shape is None:
            continue
        need = estimate_mb(shape, batch, seq, weights, backend)
        if need > available_mb and (worst is None or need > worst[0]):
            worst = (need, name, backend, shape, weights, batch, seq)
    if worst:
        need, name, backend, shape, weights, batch, seq = worst
        fits = largest_batch(shape, seq, weights, backend, available_mb)
        raise DeviceError(f"{source}: batch {batch} x seq {seq} of {name} ({backend}) needs about "
                          f"{need / 1024:.1f} GB (estimate: glp_bench.bench.limits) but {available_mb / 1024:.1f} GB "
                          f"is available; use batch sizes up to {fits}" if fits >= 1 else
                          f"{source}: {name} ({backend}) at seq {seq} needs more memory than the "
                          f"{available_mb / 1024:.1f} GB available even at batch 1; use shorter sequences")


# --- facts ----------------------------------------------------------------------------------------------


def available_mb() -> float | None:
    """MemAvailable of /proc/meminfo (Linux) in MB, else None (no memory check)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_shape(*folders: Path) -> ModelShape | None:
    """The ModelShape of the first ``config.json`` among ``folders`` (None when none is readable)."""
    for folder in folders:
        try:
            cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(cfg, dict):
            return ModelShape.from_config(cfg)
    return None
