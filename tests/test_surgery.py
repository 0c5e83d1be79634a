"""Layer surgery on tiny random models of every supported architecture: the pruned model must compute
exactly what the original computes with those layers skipped."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from glp_bench.core.errors import ModelError, SurgeryError
from glp_bench.prune.models import layer_spec
from glp_bench.prune.surgery import drop_layers, keep_only, kept_layers

from .conftest import ARCHS, make_tokenizer


def _layers(model):
    module = model.base_model
    for attr in layer_spec(model.config.model_type).layers_path.split("."):
        module = getattr(module, attr)
    return module


def _skip(layer):
    """Make ``layer`` an identity on its hidden states, without touching the model's structure."""

    def hook(module, args, kwargs, output):
        hidden = args[0] if args else next(iter(kwargs.values()))
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return layer.register_forward_hook(hook, with_kwargs=True)


def _inputs(tmp_path):
    tok = make_tokenizer(tmp_path / "tok")
    return tok(["the cat saw a dog .", "mary reads a very good book quickly ."], padding=True, return_tensors="pt")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("remove", [[1], [0, 3], [1, 2], [0, 1, 2]])
def test_pruned_equals_original_with_layers_skipped(arch, remove, tiny_models, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models[arch]).eval()
    inputs = _inputs(tmp_path)
    if arch in ("distilbert", "mpnet"):
        inputs.pop("token_type_ids")
    with torch.no_grad():
        full = model(**inputs).logits
        handles = [_skip(_layers(model)[i]) for i in remove]
        skipped = model(**inputs).logits
        for h in handles:
            h.remove()
        pruned = drop_layers(model, remove).eval()
        out = pruned(**inputs).logits

    torch.testing.assert_close(out, skipped, rtol=0, atol=1e-6)
    assert not torch.allclose(out, full, atol=1e-4), "removing layers must change the outputs"
    # real deletion, config updated, provenance recorded, original untouched
    assert len(_layers(pruned)) == 4 - len(remove)
    assert getattr(pruned.config, layer_spec(arch).depth_attr) == 4 - len(remove)
    assert kept_layers(pruned.config) == [i for i in range(4) if i not in remove]
    assert len(_layers(model)) == 4 and kept_layers(model.config) == [0, 1, 2, 3]
    n_params = sum(p.numel() for p in pruned.parameters())
    assert n_params < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_provenance_survives_save_load_and_further_pruning(arch, tiny_models, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models[arch]).eval()
    pruned = drop_layers(model, [2])
    pruned.save_pretrained(tmp_path / "p")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "p").eval()
    assert kept_layers(loaded.config) == [0, 1, 3]
    assert loaded.config.glp_original_num_layers == 4
    inputs = _inputs(tmp_path)
    if arch == "distilbert":
        inputs.pop("token_type_ids")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, pruned.eval()(**inputs).logits)
    # original numbering: removing layer 3 of the loaded model == keeping 0 and 1 of the original
    twice = drop_layers(loaded, [3]).eval()
    once = keep_only(model, [0, 1]).eval()
    assert kept_layers(twice.config) == [0, 1]
    with torch.no_grad():
        torch.testing.assert_close(twice(**inputs).logits, once(**inputs).logits)


@pytest.mark.parametrize(
    "layers, message",
    [([4], "not in the model's layers"), ([-1], "not in"), ([1, 1], "duplicates"), ([0, 1, 2, 3], "no encoder layer")],
)
def test_invalid_layer_sets(layers, message, tiny_models):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"])
    with pytest.raises(SurgeryError, match=message):
        drop_layers(model, layers)


def test_removed_layer_of_pruned_model_is_invalid(tiny_models):
    model = drop_layers(AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"]), [1])
    with pytest.raises(SurgeryError, match="not in the model's layers"):
        drop_layers(model, [1])


def test_unsupported_architecture():
    from transformers import AlbertConfig

    config = AlbertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    model = AutoModelForSequenceClassification.from_config(config)
    with pytest.raises(ModelError, match="unsupported architecture 'albert'"):
        drop_layers(model, [0])
