"""Layer surgery: delete encoder layers *for real* and keep their provenance in the config.

``drop_layers(model, layers)`` removes the given layers (original numbering) from a copy of the model:
the modules are deleted from the ``nn.ModuleList``, the config's depth is updated, and
``config.glp_kept_layers`` lists the kept layers' indices in the *original* model, so a pruned model
saved and loaded again still knows where it came from (and can be pruned further).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from ..core.errors import SurgeryError
from .models import layer_spec


def _layer_list(model):
    spec = layer_spec(model.config.model_type)
    module = model.base_model
    for attr in spec.layers_path.split("."):
        module = getattr(module, attr)
    return module, spec


def original_depth(config) -> int:
    return getattr(config, "glp_original_num_layers", None) or getattr(config, layer_spec(config.model_type).depth_attr)


def kept_layers(config) -> list[int]:
    """Indices (original numbering) of the layers a model still has."""
    kept = getattr(config, "glp_kept_layers", None)
    return list(kept) if kept is not None else list(range(original_depth(config)))


def validate_removal(kept: list[int], layers: Iterable[int]) -> list[int]:
    """Check a layer set against the layers a model still has; return it sorted. Pure."""
    layers = list(layers)
    if len(set(layers)) != len(layers):
        raise SurgeryError(f"layer set {layers} has duplicates")
    unknown = [i for i in layers if i not in kept]
    if unknown:
        raise SurgeryError(f"layer(s) {unknown} not in the model's layers {kept} (original numbering)")
    if len(layers) >= len(kept):
        raise SurgeryError(f"removing {sorted(layers)} would leave no encoder layer; keep at least one")
    return sorted(layers)


def drop_layers(model, layers: Iterable[int]):
    """A copy of ``model`` without ``layers`` (original numbering). The input model is not modified."""
    modules, spec = _layer_list(model)
    kept = kept_layers(model.config)
    assert len(kept) == len(modules), f"config says {len(kept)} layers, model has {len(modules)}"
    remove = set(validate_removal(kept, layers))

    pruned = copy.deepcopy(model)
    new_modules, _ = _layer_list(pruned)
    keep_pos = [pos for pos, orig in enumerate(kept) if orig not in remove]
    for pos in reversed(range(len(new_modules))):
        if pos not in keep_pos:
            del new_modules[pos]
    new_kept = [kept[pos] for pos in keep_pos]
    # Layers that index a per-layer cache must be renumbered (BERT-family attention keeps layer_idx).
    for new_idx, layer in enumerate(new_modules):
        for sub in layer.modules():
            if hasattr(sub, "layer_idx") and isinstance(sub.layer_idx, int):
                sub.layer_idx = new_idx
    config = pruned.config
    config.glp_original_num_layers = original_depth(model.config)
    config.glp_kept_layers = new_kept
    setattr(config, spec.depth_attr, len(new_kept))
    assert len(new_modules) == len(new_kept) == getattr(config, spec.depth_attr)
    return pruned


def keep_only(model, keep: Iterable[int]):
    """A copy of ``model`` keeping exactly the layers ``keep`` (original numbering)."""
    keep = set(keep)
    return drop_layers(model, [i for i in kept_layers(model.config) if i not in keep])
