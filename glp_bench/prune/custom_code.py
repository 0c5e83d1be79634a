"""Saved mean-pooling models that load right in plain transformers, through Hugging Face's custom-code route.

A ``--pooling mean`` model saved as its architecture's ``*ForSequenceClassification`` would be read by a plain
``AutoModelForSequenceClassification.from_pretrained`` with the first token: other predictions, silently.
``write_custom_code`` makes the saved folder say what it is: ``modeling_glp.py`` (this package's
``glp_bench/prune/modeling_glp.py``, standalone) beside the weights, config.json's ``model_type``
``glp-mean-<arch>`` with ``auto_map`` naming its classes, and a model card (README.md). Plain transformers then
loads it with ``trust_remote_code=True`` and pools as glp-bench does, and refuses it without (the ``glp-mean-*``
model type is none of its own). ``cls`` models stay plain. glp-bench itself never runs the folder's code:
``load_config`` reads such a config as its base architecture's, and the loaders re-attach the pooling hook
(``glp_bench.prune.pooling``), so export, latency and every other stage see the model they saw before.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..core.jsonio import atomic_write_text

MODELING_FILE = "modeling_glp.py"
TYPE_PREFIX = "glp-mean-"
SOURCE = Path(__file__).resolve().parent / MODELING_FILE


def class_stem(model_type: str) -> str:
    """``bert`` -> ``Bert``, ``xlm-roberta`` -> ``XLMRoberta``: transformers' own class prefix of the architecture."""
    from transformers import CONFIG_MAPPING

    return CONFIG_MAPPING[model_type].__name__.removesuffix("Config")


def base_model_type(model_type: str | None) -> str | None:
    """The architecture of a ``glp-mean-<arch>`` model type; ``None`` for any other."""
    if model_type and model_type.startswith(TYPE_PREFIX):
        return model_type[len(TYPE_PREFIX):]
    return None


def custom_config(config: dict) -> dict:
    """config.json of a mean-pooling model, made to load through ``modeling_glp.py``. Pure."""
    base = config["model_type"]
    stem = class_stem(base)
    return {**config, "model_type": TYPE_PREFIX + base, "architectures": [f"GlpMean{stem}ForSequenceClassification"],
            "auto_map": {"AutoConfig": f"modeling_glp.GlpMean{stem}Config",
                         "AutoModelForSequenceClassification": f"modeling_glp.GlpMean{stem}ForSequenceClassification"}}


def model_card(config: dict) -> str:
    """README.md of a saved mean-pooling model (``config``: its custom config.json). Pure."""
    base = base_model_type(config["model_type"])
    plain = f"{class_stem(base)}ForSequenceClassification"
    kept = config.get("glp_kept_layers")
    layers = f" It keeps layers {kept} of the original encoder." if kept is not None else ""
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [glp-bench, custom_code]
---
# {plain} with mean pooling (saved by glp-bench)

This classifier reads the mean of the token embeddings (masked by the attention mask), not the first
token.{layers} The weights are those of `{plain}`; only the pooling differs, so a plain load would give
other predictions.

## Loading it in plain transformers

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(FOLDER)
model = AutoModelForSequenceClassification.from_pretrained(FOLDER, trust_remote_code=True)
```

`trust_remote_code=True` runs the Python file `{MODELING_FILE}` of this folder. Read it before you trust it: it
imports only torch and transformers, subclasses `{plain}` and changes nothing but the pooling (a forward
hook). Never pass `trust_remote_code=True` for a folder you did not make or check: its code could do anything.

Without `trust_remote_code`, `AutoConfig`, `AutoModelForSequenceClassification` and `pipeline` refuse the
model type `{config["model_type"]}` (a `ValueError` asking for `trust_remote_code=True`) instead of reading the
first token. `{plain}.from_pretrained(FOLDER)` called directly does not refuse: transformers only warns
that the model type differs, and the model reads the first token: wrong predictions.

In glp-bench: `glp_bench.prune.models.load_saved_classifier(FOLDER)` (it runs no code from the folder). The
ONNX models glp-bench exports pool the same way and need no custom code.
"""


def write_custom_code(folder) -> None:
    """Make a saved mean-pooling model folder load right in plain transformers: ``modeling_glp.py``, the
    custom config.json and the model card."""
    folder = Path(folder)
    config = custom_config(json.loads((folder / "config.json").read_text()))
    shutil.copyfile(SOURCE, folder / MODELING_FILE)
    atomic_write_text(folder / "README.md", model_card(config))
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_config(model: str | Path, **kwargs):
    """``model``'s config (a folder or a hub id) as glp-bench loads it, ``kwargs`` applied: a ``glp-mean-<arch>``
    folder's is read as ``<arch>``'s config, without running the folder's code."""
    from transformers import CONFIG_MAPPING, AutoConfig

    file = Path(model).expanduser() / "config.json"
    data = json.loads(file.read_text()) if file.is_file() else {}
    base = base_model_type(data.get("model_type"))
    if base is None:
        return AutoConfig.from_pretrained(model, **kwargs)
    if base not in CONFIG_MAPPING:
        raise ValueError(f"{file} has model_type {data['model_type']!r}, of no architecture transformers knows")
    data = {k: v for k, v in data.items() if k not in ("model_type", "auto_map")}
    data["architectures"] = [f"{class_stem(base)}ForSequenceClassification"]
    return CONFIG_MAPPING[base].from_dict(data, **kwargs)
