"""Re-quantizing one graph many times, fast: ONNX Runtime's dynamic quantizer with its weight work memoized.

The fp32-node exclusion (``quant_exclude``) quantizes the same source graph once per node it ranks and once per
step, each time leaving other nodes in fp32. ``onnxruntime.quantization.quantize_dynamic`` re-runs shape
inference on the source and re-quantizes every weight (per channel: a Python loop over the channels) each
time. :func:`quantize_dynamic_cached` does exactly what ``quantize_dynamic`` does, with three things kept in a
:class:`WeightCache` for one source:

* the shape-inferred source model (copied per call);
* the model the quantizer re-infers after turning Gemm into MatMul. ``ONNXQuantizer.__init__`` saves and reloads
  it through a temp folder on every call (0.2 s for all-MiniLM-L6-v2); it is kept per graph structure;
* the initializers each weight quantizes to (ORT's ``quantize_initializer_impl`` /
  ``quantize_weight_per_channel_impl``), keyed by the weight's name, shape and the quantization arguments. A hit
  also needs the same bytes, compared directly rather than hashed (hashing 90 MB per call cost more than
  quantizing).

The files it writes are byte for byte those of the uncached path (``int8_select.quantize`` without a cache;
tests check it).

:func:`unquantized_nodes` names the nodes a quantized graph left as they were (e.g. the activation-by-activation
MatMuls with ``MatMulConstBOnly``): excluding one of them changes nothing, so its sensitivity is 0 without a trial.
"""

from __future__ import annotations

import functools
from pathlib import Path


class WeightCache:
    """What stays the same between quantizations of one source graph: the source model after shape inference,
    and every weight's quantized initializers. One per source file."""

    def __init__(self):
        self.model = None
        self.model_source: str | None = None
        self.weights: dict[tuple, tuple] = {}  # key -> (weight bytes, names, added initializers)
        self.inferred: dict[tuple, object] = {}  # graph structure -> the re-inferred model
        self.hits = 0
        self.misses = 0

    def source_model(self, source: Path):
        """A fresh copy of ``source`` loaded as ``quantize_dynamic`` loads it (shape inference, metadata)."""
        import onnx
        from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

        if self.model_source != str(source):
            self.model, self.model_source = load_model_with_shape_infer(Path(source)), str(source)
        copy = onnx.ModelProto()
        copy.CopyFrom(self.model)
        return copy


    def reinferred(self, model, reload):
        """``reload(model)`` (ORT's ``save_and_reload_model_with_shape_infer``), kept per graph structure (nodes,
        initializer names and shapes: what shape inference reads besides the weights' values); a copy."""
        import onnx

        g = model.graph
        key = (tuple((n.op_type, n.name, tuple(n.input), tuple(n.output)) for n in g.node),
               tuple((t.name, tuple(t.dims), t.data_type) for t in g.initializer),
               tuple(i.SerializeToString() for i in (*g.input, *g.output)), tuple(o.version for o in model.opset_import))
        if key not in self.inferred:
            self.inferred[key] = reload(model)
        copy = onnx.ModelProto()
        copy.CopyFrom(self.inferred[key])
        return copy


def _key(kind: str, tensor, *args) -> tuple:
    return (kind, tensor.name, tuple(tensor.dims), tensor.data_type, *args)


def _content(tensor) -> bytes:
    return tensor.raw_data or tensor.SerializeToString()


@functools.cache
def _quantizer_class():
    from onnxruntime.quantization.base_quantizer import find_by_name
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer

    class CachedQuantizer(ONNXQuantizer):
        """ORT's ``ONNXQuantizer``; a weight quantized before (same name, content, arguments) gets its recorded
        initializers instead of being quantized again."""

        def __init__(self, cache: WeightCache, *args):
            from onnxruntime.quantization import onnx_quantizer

            self.cache = cache
            reload = onnx_quantizer.save_and_reload_model_with_shape_infer
            onnx_quantizer.save_and_reload_model_with_shape_infer = lambda m: cache.reinferred(m, reload)
            try:  # the one call of it in __init__ (dynamic quantization) goes through the cache
                super().__init__(*args)
            finally:
                onnx_quantizer.save_and_reload_model_with_shape_infer = reload

        def _memo(self, key, content: bytes, compute):
            inits = self.model.model.graph.initializer
            hit = self.cache.weights.get(key)
            if hit is None or hit[0] != content:
                before = len(inits)
                names = compute()
                added = []
                for t in inits[before:]:
                    c = type(t)()
                    c.CopyFrom(t)
                    added.append(c)
                self.cache.weights[key] = (content, names, added)
                self.cache.misses += 1
                return names
            _, names, added = hit
            for t in added:
                c = type(t)()
                c.CopyFrom(t)
                inits.append(c)
            self.cache.hits += 1
            return names

        def quantize_initializer_impl(self, weight, qType, reduce_range=False, keep_float_weight=False):  # noqa: N803
            key = _key("tensor", weight, qType, reduce_range, keep_float_weight)
            return self._memo(key, _content(weight), lambda: super(CachedQuantizer, self).quantize_initializer_impl(
                weight, qType, reduce_range, keep_float_weight))

        def quantize_weight_per_channel_impl(self, weight_name, weight_qType, channel_axis, reduce_range=True,  # noqa: N803
                                             keep_float_weight=False):
            init = find_by_name(weight_name, self.model.initializer())
            if init is None:
                return super().quantize_weight_per_channel_impl(weight_name, weight_qType, channel_axis,
                                                                reduce_range, keep_float_weight)
            key = _key("channel", init, weight_qType, channel_axis, reduce_range, keep_float_weight)
            return self._memo(key, _content(init), lambda: super(CachedQuantizer, self).quantize_weight_per_channel_impl(
                weight_name, weight_qType, channel_axis, reduce_range, keep_float_weight))

    return CachedQuantizer


def quantize_dynamic_cached(source: Path, out: Path, cache: WeightCache, *, per_channel: bool, weight_type,
                            nodes_to_exclude=None) -> None:
    """``onnxruntime.quantization.quantize_dynamic(source, out, per_channel=..., weight_type=...,
    nodes_to_exclude=...)`` with ``cache``; also drops the graph's ``value_info`` as ``int8_select`` does."""
    from onnxruntime.quantization.quant_utils import QuantizationMode, QuantType, update_opset_version
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    model = update_opset_version(cache.source_model(source), weight_type)
    cls = _quantizer_class()
    quantizer = cls(cache, model, per_channel, False, QuantizationMode.IntegerOps, False, weight_type,
                    QuantType.QUInt8, None, [], list(nodes_to_exclude or []), list(IntegerOpsRegistry.keys()),
                    {"MatMulConstBOnly": True})
    quantizer.quantize_model()
    del quantizer.model.model.graph.value_info[:]
    quantizer.model.save_model_to_file(str(out), False)


def unquantized_nodes(source: Path, quantized: Path) -> set[str]:
    """Names of the nodes of ``source`` that ``quantized`` still holds unchanged (same op, inputs and outputs)."""
    import onnx

    def nodes(path):
        g = onnx.load(str(path), load_external_data=False).graph
        return {n.name: (n.op_type, tuple(n.input), tuple(n.output)) for n in g.node if n.name}

    after = nodes(quantized)
    return {name for name, sig in nodes(source).items() if after.get(name) == sig}
