"""Running exported models with ONNX Runtime: sessions with clear errors, logits for a tokenized
split, dev-set scores, and the real-input batches that export validation compares with PyTorch.

ONNX Runtime's own failure modes are unfriendly: a corrupt file raises ``InvalidProtobuf`` from deep
inside pybind, and asking for ``CUDAExecutionProvider`` without it only *warns* and runs on the CPU.
``make_session`` turns both into one-line ``GlpError``s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from glp_runtime.session import CPU, CUDA

from ..core.errors import DeviceError, ExportError


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def _missing_provider(provider: str, what: str, available: list[str]) -> DeviceError:
    hint = " (install onnxruntime-gpu instead of onnxruntime and make sure a CUDA GPU is visible)" if provider == CUDA else ""
    return DeviceError(f"{what} needs {provider}, which this onnxruntime build lacks (available: {', '.join(available)}){hint}")


def require_provider(provider: str, what: str = "this model") -> None:
    """Raise DeviceError unless ``provider`` is in this onnxruntime build."""
    available = available_providers()
    if provider not in available:
        raise _missing_provider(provider, what, available)


def make_session(path: str | Path, provider: str = CPU, threads: int | None = None):
    """An ``InferenceSession`` on exactly ``provider`` (``glp_runtime.session``, the one session builder);
    ExportError for a missing/corrupt file, DeviceError when the provider is absent or does not start
    (ONNX Runtime would silently fall back to the CPU)."""
    from glp_runtime.session import SessionError, SessionSettings, build_session

    path = Path(path)
    try:
        return build_session(path, SessionSettings(provider=provider, intra_op_threads=threads or 0))
    except SessionError as e:
        if e.kind == "missing":
            raise ExportError(f"{path} does not exist; run 'glp-bench export' to create it") from None
        if e.kind == "provider":
            raise _missing_provider(provider, str(path), e.providers) from None
        if e.kind == "fallback":
            raise DeviceError(f"ONNX Runtime could not start {provider} for {path} (got {e.providers})") from None
        raise ExportError(
            f"{path} is not a loadable ONNX model ({e.detail or e}); it is corrupt or incomplete: "
            "re-export it with 'glp-bench export --run DIR --force'"
        ) from None


def run_logits(session, batch: dict[str, np.ndarray]) -> np.ndarray:
    """Logits for one padded batch; feeds exactly the graph's inputs, as int64."""
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in batch]
    if missing:
        raise ExportError(f"the ONNX graph wants input(s) {missing} the tokenizer does not produce")
    feed = {n: np.ascontiguousarray(batch[n], dtype=np.int64) for n in names}
    out = session.run(None, feed)[0]
    return np.asarray(out, dtype=np.float32)


def pad(tokenizer, rows: list[dict], max_length: int | None = None) -> dict[str, np.ndarray]:
    """Pad tokenized rows to their longest member (or to ``max_length``) as numpy int64 arrays."""
    padding = "max_length" if max_length else "longest"
    out = tokenizer.pad(rows, padding=padding, max_length=max_length, return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


def _features(encoded) -> list[str]:
    return [c for c in encoded.column_names if c != "labels"]


def predict_onnx(session, encoded, tokenizer, batch_size: int = 64) -> np.ndarray:
    """Logits for a tokenized split in the split's order (batches sorted by length, padded dynamically)."""
    encoded = encoded.with_format(None)
    rows = encoded.select_columns(_features(encoded))
    order = np.argsort([len(x) for x in encoded["input_ids"]], kind="stable")
    out = [
        run_logits(session, pad(tokenizer, [rows[int(j)] for j in order[i : i + batch_size]]))
        for i in range(0, len(order), batch_size)
    ]
    logits = np.concatenate(out)
    result = np.empty_like(logits)
    result[order] = logits
    return result


BATCH_INVARIANT = {"int8": False}  # dynamic int8: activation scales span the batch (variants absent: invariant)


def scoring_batch_size(variant: str | None, batch_size: int = 64) -> int:
    """The batch that scores ``variant`` the way the deploy runtime serves it: one input at a time for a
    variant whose outputs depend on the rest of the batch (int8), else ``batch_size``. Same rule as
    ``glp_runtime``'s ``Classifier.batch_invariant``, so a bundle's expected score is what it serves."""
    return batch_size if BATCH_INVARIANT.get(variant or "", True) else 1


def score_onnx(session, encoded_splits: dict, tokenizer, task, variant: str | None = None) -> dict[str, float]:
    """The task's flat dev scores (as ``flatten_scores``) of an ONNX model on every dev split (``variant``:
    batched as the runtime serves it, ``scoring_batch_size``)."""
    from ..data.tasks import flatten_scores

    size = scoring_batch_size(variant)
    per_split = {
        name: task.compute(predict_onnx(session, enc, tokenizer, size), enc["labels"])
        for name, enc in encoded_splits.items()
    }
    return flatten_scores(task, per_split)


def score_main(session, encoded, tokenizer, task, variant: str | None = None) -> float:
    """The task's main metric of an ONNX model on one tokenized split (not a dev split: export's decisions)."""
    logits = predict_onnx(session, encoded, tokenizer, scoring_batch_size(variant))
    return float(task.compute(logits, encoded["labels"])[task.main_metric])


@dataclass
class ValidationBatch:
    """One real-input batch: where it came from and the padded arrays."""

    label: str  # e.g. "shortest", "mixed"
    batch: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.batch["input_ids"].shape)  # type: ignore[return-value]


def validation_batches(encoded, tokenizer, max_length: int = 128, large: int = 16) -> list[ValidationBatch]:
    """Real dev inputs at several sequence lengths: batch 1 of the shortest, median and longest
    example; a batch of ``large`` examples spread over the length range (padded to its longest, so
    padding masks are exercised); the same batch padded to ``max_length`` (the paper's protocol)."""
    encoded = encoded.with_format(None)
    rows = encoded.select_columns(_features(encoded))
    lengths = np.array([len(x) for x in encoded["input_ids"]])
    if len(lengths) == 0:
        raise ExportError("the dev split is empty; cannot validate the export on real inputs")
    order = np.argsort(lengths, kind="stable")
    n = len(order)
    singles = {"shortest": order[0], "median": order[n // 2], "longest": order[-1]}
    spread = order[np.unique(np.linspace(0, n - 1, min(large, n)).round().astype(int))]
    mixed = [rows[int(i)] for i in spread]
    out = [ValidationBatch(label, pad(tokenizer, [rows[int(i)]])) for label, i in singles.items()]
    out.append(ValidationBatch("mixed", pad(tokenizer, mixed)))
    if max_length > int(lengths.max()):
        out.append(ValidationBatch("mixed-max-length", pad(tokenizer, mixed, max_length=max_length)))
    return out


def torch_logits(model, batches: list[ValidationBatch]) -> list[np.ndarray]:
    """PyTorch (CPU, eval mode) logits for the validation batches: the reference."""
    import torch

    from ..prune.train import model_input_names

    accepted = model_input_names(model)
    model.to("cpu").eval()
    out = []
    with torch.inference_mode():
        for vb in batches:
            feed = {k: torch.from_numpy(v) for k, v in vb.batch.items() if k in accepted}
            out.append(model(**feed).logits.float().numpy())
    return out


def compare(session, batches: list[ValidationBatch], reference: list[np.ndarray]) -> list[dict]:
    """Per batch: shape and max |ORT - PyTorch| logit difference. Wrong shapes or NaN/inf logits
    raise ExportError (no tolerance can pass them)."""
    results = []
    for vb, ref in zip(batches, reference, strict=True):
        got = run_logits(session, vb.batch)
        if got.shape != ref.shape:
            raise ExportError(f"ONNX logits have shape {got.shape} on the {vb.label} batch, PyTorch's {ref.shape}")
        if not np.isfinite(got).all():
            raise ExportError(f"ONNX Runtime produced NaN/inf logits on the {vb.label} batch {vb.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        results.append({"inputs": vb.label, "batch_size": vb.shape[0], "seq_len": vb.shape[1], "max_abs_diff": diff})
    return results
