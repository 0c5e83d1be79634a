"""The PyTorch eager reference: the full-depth fine-tuned model run by ``transformers`` without ONNX
Runtime, timed by the same worker protocol, so a report shows what ONNX Runtime itself buys.

Used by the worker for configurations with ``backend="torch"`` (``BenchConfig.model`` is a Hugging
Face model folder, e.g. ``<run>/depth-06/model``). fp32, ``torch.inference_mode``, the model's
default attention implementation, ``torch.set_num_threads(threads)``; on CUDA every timed call ends
with ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import inspect
import time


def torch_runner(cfg, current_rss_mb):
    """(run, info, init_s, rss_before_mb) for ``cfg`` (a BenchConfig with backend "torch")."""
    import torch

    from .inputs import make_inputs

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        torch.set_num_interop_threads(max(cfg.inter_op_threads, 1))
    except RuntimeError:  # already set (only allowed once per process)
        pass
    device = torch.device(f"cuda:{cfg.device_id}" if cfg.on_gpu else "cpu")
    rss0 = current_rss_mb()
    t0 = time.perf_counter()
    from ..prune.models import saved_classifier

    model = saved_classifier(cfg.model, dtype=torch.float32)
    model.eval().to(device)
    init_s = time.perf_counter() - t0

    accepted = inspect.signature(model.forward).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
    vocab = cfg.vocab_size or getattr(model.config, "vocab_size", None)
    arrays = make_inputs([(n, "int64") for n in names], cfg.batch, cfg.seq, vocab, cfg.seed)
    inputs = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
    info = {"runtime": f"torch {torch.__version__}", "providers": [str(device)],
            "inputs": {k: list(v.shape) for k, v in inputs.items()},
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "torch_threads": torch.get_num_threads()}

    def run():
        with torch.inference_mode():
            model(**inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run, info, init_s, rss0
