"""Sentence pooling of the classifier: ``--pooling auto | cls | mean``.

Hugging Face's sequence classifiers read the first token (BERT's pooler, the RoBERTa/ELECTRA/DistilBERT heads).
Sentence encoders such as all-MiniLM-L6-v2 were trained with *mean* pooling, so their first token carries
little: on the 85/15 split of CoLA train (no dev), mean pooling raised the full model's held-out MCC from
0.312 / 0.278 to 0.322 / 0.334 (seeds 42 / 43, docs/results.md).

``mean`` keeps the architecture and its weights: a forward hook on the encoder's base model writes the masked
mean of the last hidden states into the first token's place, so every head that reads token 0 (BERT's pooler
dense+tanh, the others' classification heads) reads the mean instead. The choice is stored in the model's
config (``glp_pooling``) and ``apply_saved_pooling`` re-attaches the hook on every load in glp-bench; the
ONNX export traces it, so exported and deployed graphs pool the same way. A saved ``mean`` model also carries
the hook as custom code for plain transformers (``glp_bench.prune.custom_code``), which would read token 0.

``auto`` (default but for the paper budget) is the pooling the encoder was pre-trained with: a
sentence-transformers folder's ``1_Pooling/config.json`` saying mean tokens gives ``mean``; anything else
(a plain Hugging Face checkpoint, CLS or max pooling) gives ``cls``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import GlpError

POOLINGS = ("auto", "cls", "mean")
CONFIG_KEY = "glp_pooling"
ST_POOLING_FILE = "1_Pooling/config.json"


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise GlpError(f"unknown --pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    return pooling


def pooling_from_st_config(config: dict) -> str:
    """``mean`` for a sentence-transformers pooling config that mean-pools (and nothing else), else ``cls``. Pure."""
    others = ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
              "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
    if config.get("pooling_mode_mean_tokens") and not any(config.get(k) for k in others):
        return "mean"
    return "cls"


def pretrained_pooling(model: str) -> str:
    """The pooling ``model`` (a folder or a hub id) was pre-trained with: its sentence-transformers pooling
    config if it has one (for a hub id: if the hub or its cache has it), else ``cls``."""
    path = Path(model).expanduser()
    if path.is_dir():
        file = path / ST_POOLING_FILE
    else:
        try:
            from huggingface_hub import hf_hub_download

            file = Path(hf_hub_download(model, ST_POOLING_FILE))
        except Exception:  # noqa: BLE001 - offline, no such file, no such repo: a plain checkpoint
            return "cls"
    try:
        return pooling_from_st_config(json.loads(file.read_text()))
    except (OSError, ValueError, AttributeError):
        return "cls"


def resolve_pooling(pooling: str, model: str) -> str:
    """``cls`` or ``mean``: ``auto`` resolved from the pre-trained model."""
    check_pooling(pooling)
    return pretrained_pooling(model) if pooling == "auto" else pooling


def masked_mean(hidden, mask):
    """Mean of ``hidden`` (batch, seq, dim) over the positions where ``mask`` (batch, seq) is 1."""
    if mask is None:
        return hidden.mean(dim=1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def _mean_first_token(module, args, kwargs, output):
    """Forward hook of the base model: token 0 of the last hidden states := their masked mean; a pooler that
    read token 0 (BERT's) is re-applied to it."""
    import torch

    mask = kwargs.get("attention_mask")
    if mask is None and len(args) > 1:
        mask = args[1]
    hidden = output[0]
    pooled = masked_mean(hidden, mask)
    hidden = torch.cat([pooled.unsqueeze(1), hidden[:, 1:]], dim=1)
    pooler = getattr(module, "pooler", None)
    if isinstance(output, tuple):
        rest = output[1:]
        if pooler is not None and rest:
            rest = (pooler(hidden), *rest[1:])
        return (hidden, *rest)
    output["last_hidden_state"] = hidden
    if pooler is not None and output.get("pooler_output") is not None:
        output["pooler_output"] = pooler(hidden)
    return output


def _hooked(model) -> bool:
    return any(h is _mean_first_token for h in model.base_model._forward_hooks.values())


def set_pooling(model, pooling: str):
    """Give ``model`` (a sequence classifier) ``pooling`` (``cls`` or ``mean``) and record it in its config;
    returns the model."""
    if pooling not in ("cls", "mean"):
        raise GlpError(f"pooling must be resolved to cls or mean, not {pooling!r}")
    base = model.base_model
    if pooling == "mean" and not _hooked(model):
        base.register_forward_hook(_mean_first_token, with_kwargs=True)
    elif pooling == "cls" and _hooked(model):
        for key, hook in list(base._forward_hooks.items()):
            if hook is _mean_first_token:
                del base._forward_hooks[key]
                base._forward_hooks_with_kwargs.pop(key, None)
    model.config.glp_pooling = pooling
    return model


def model_pooling(config) -> str:
    """The pooling a (saved) model's config records; ``cls`` for models saved without one."""
    return getattr(config, CONFIG_KEY, None) or "cls"


def apply_saved_pooling(model):
    """Re-attach the pooling recorded in a loaded model's config (hooks are not saved with the weights)."""
    return set_pooling(model, model_pooling(model.config))
