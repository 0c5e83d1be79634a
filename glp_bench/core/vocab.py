"""The words every stage shares: model variants and execution providers (one definition each).

Providers and graph-optimization levels come from ``glp_runtime.session``, the one session builder, so
glp-bench and the deployed runtime cannot disagree on them.
"""

from __future__ import annotations

from glp_runtime.session import CPU, CUDA, GRAPH_LEVELS, TENSORRT

ONNX_VARIANTS = ("fp32", "fp32-opt", "int8", "fp16")  # export order (fp32 first: the others derive from it)
TORCH_VARIANT = "torch-eager"  # the PyTorch eager reference of latency results and reports
GRAPH_OPTIMIZATIONS = tuple(GRAPH_LEVELS)
PROVIDERS = (CPU, CUDA, TENSORRT)

# ONNX Runtime's fused and quantized operators, by family: what export records and the gate compares
FUSED_OP_FAMILIES: dict[str, tuple[str, ...]] = {
    "attention": ("Attention", "QAttention", "MultiHeadAttention", "PackedAttention", "PackedMultiHeadAttention",
                  "GroupQueryAttention", "DecoderMaskedMultiHeadAttention", "SparseAttention", "LongformerAttention"),
    "layer norm": ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "EmbedLayerNormalization",
                   "QEmbedLayerNormalization", "SimplifiedLayerNormalization", "SkipGroupNorm"),
    "gelu": ("BiasGelu", "FastGelu", "Gelu", "QuickGelu", "QGelu"),
    "quantized matmul": ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul",
                         "MatMulNBits", "QGemm", "QOrderedMatMul"),
}
FUSED_OPS = frozenset(op for ops in FUSED_OP_FAMILIES.values() for op in ops)


def variant_rank(variant: str, torch_first: bool = False) -> int:
    """Sort key of a variant: ONNX variants in ``ONNX_VARIANTS`` order, the torch reference first or last."""
    if variant == TORCH_VARIANT:
        return -1 if torch_first else len(ONNX_VARIANTS)
    return ONNX_VARIANTS.index(variant) if variant in ONNX_VARIANTS else len(ONNX_VARIANTS) + 1


def ok_variants(record: dict) -> list[str]:
    """The variants of a model record (``manifest["models"][name]``) whose export succeeded, in order."""
    return sorted((v for v, r in (record.get("onnx") or {}).items() if r.get("status") == "ok"), key=variant_rank)


def split_names(text: str) -> list[str]:
    """A comma-separated list (``fp32,int8``), entries stripped; ``ValueError`` for an empty list or an empty
    entry (``fp32,,int8``, ``glp,``): a typo is refused, never read as a shorter list."""
    items = [x.strip() for x in text.split(",")]
    if not all(items):
        raise ValueError(f"{text!r} has an empty entry" if any(items) else f"{text!r} names nothing")
    return items
