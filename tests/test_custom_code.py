"""A saved mean-pooling model loads right in plain transformers (trust_remote_code=True, its modeling_glp.py),
is refused without it, and glp-bench reads it as before without running the folder's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ARCHS

TEXTS = ["the cat sees a dog that likes the big red car .", "john ran ."]

# Run in a fresh interpreter, from a folder outside the repository, with no PYTHONPATH: plain transformers only.
# glp-bench is installed in the venv (editable), so ``sys.modules["glp_bench"] = None`` makes every import of it
# fail (Python's documented import blocker); the script checks that it does.
PLAIN = r"""
import inspect, json, sys
sys.modules["glp_bench"] = None
try:
    import glp_bench  # noqa: F401
    raise SystemExit("glp_bench is importable")
except ImportError:
    pass
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

out, texts, folders = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
result = {}
for folder in folders:
    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok(texts, padding=True, return_tensors="pt")
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    names = set(inspect.signature(model.forward).parameters)
    logits = model(**{k: v for k, v in batch.items() if k in names}).logits.tolist()
    try:
        AutoModelForSequenceClassification.from_pretrained(folder)
        refused = None
    except ValueError as e:
        refused = str(e)
    base = getattr(transformers, model.config.architectures[0].removeprefix("GlpMean"))
    direct = base.from_pretrained(folder).eval()  # the plain class named directly: reads the first token
    result[folder] = {"class": type(model).__name__, "module": type(model).__module__, "logits": logits,
                      "refused": refused, "direct": direct(**{k: v for k, v in batch.items() if k in names}).logits.tolist(),
                      "glp_modules": [m for m in sys.modules if m.startswith("glp_bench") and sys.modules[m] is not None]}
    if folder == folders[0]:  # saved again by plain transformers: the code travels with it
        model.save_pretrained(out + ".resaved")
        again = AutoModelForSequenceClassification.from_pretrained(out + ".resaved", trust_remote_code=True).eval()
        result["resaved"] = again(**{k: v for k, v in batch.items() if k in names}).logits.tolist()
with open(out, "w") as f:
    json.dump(result, f)
"""


def _glp_logits(folder):
    import torch
    from transformers import AutoTokenizer

    from glp_bench.prune.models import load_saved_classifier
    from glp_bench.prune.train import model_input_names

    model = load_saved_classifier(folder)
    batch = AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**{k: v for k, v in batch.items() if k in model_input_names(model)}).logits.numpy()


def _save_mean_model(arch, src, out):
    """A pruned mean-pooling model of ``arch`` saved by glp-bench into ``out`` (a folder named ``model``, as in
    a run: every such folder gives transformers the same dynamic module name)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from glp_bench.prune.models import save_classifier
    from glp_bench.prune.pooling import set_pooling
    from glp_bench.prune.surgery import drop_layers

    model = set_pooling(AutoModelForSequenceClassification.from_pretrained(src), "mean")
    save_classifier(drop_layers(model, [1]), AutoTokenizer.from_pretrained(src), out)
    return out


@pytest.fixture(scope="module")
def saved(tiny_models, tmp_path_factory):
    """{arch: folder} of saved mean models and what a plain-transformers process made of them."""
    root = tmp_path_factory.mktemp("custom-code")
    folders = {arch: _save_mean_model(arch, tiny_models[arch], root / arch / "model") for arch in ARCHS}
    out = root / "plain.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(root / "hf-modules"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(out), json.dumps(TEXTS), *map(str, folders.values())],
                          cwd=root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folders, json.loads(out.read_text())


@pytest.mark.parametrize("arch", ARCHS)
def test_plain_transformers_with_trust_remote_code_gives_glp_benchs_logits(arch, saved):
    folders, plain = saved
    got = plain[str(folders[arch])]
    stem = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert", "electra": "Electra", "mpnet": "MPNet"}
    assert got["class"] == f"GlpMean{stem[arch]}ForSequenceClassification"
    assert got["module"].endswith(".modeling_glp") and got["glp_modules"] == []  # the folder's copy, not glp-bench
    expected = _glp_logits(folders[arch])
    np.testing.assert_allclose(got["logits"], expected, atol=1e-5)
    assert not np.allclose(got["direct"], expected, atol=1e-3)  # the first token's logits differ: the hook matters


@pytest.mark.parametrize("arch", ARCHS)
def test_a_plain_load_without_trust_remote_code_fails_loudly(arch, saved):
    folders, plain = saved
    refused = plain[str(folders[arch])]["refused"]
    assert refused is not None, "AutoModelForSequenceClassification loaded a mean model without its code"
    assert "contains custom code" in refused and "trust_remote_code=True" in refused


def test_a_model_saved_again_by_plain_transformers_keeps_its_pooling(saved):
    folders, plain = saved
    np.testing.assert_allclose(plain["resaved"], _glp_logits(folders[ARCHS[0]]), atol=1e-5)


def test_the_folder_holds_the_code_the_config_names_and_a_model_card(saved):
    from glp_bench.prune.custom_code import SOURCE

    folder = saved[0]["roberta"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "glp-mean-roberta" and config["glp_pooling"] == "mean"
    assert config["architectures"] == ["GlpMeanRobertaForSequenceClassification"]
    assert config["auto_map"] == {"AutoConfig": "modeling_glp.GlpMeanRobertaConfig",
                                  "AutoModelForSequenceClassification": "modeling_glp.GlpMeanRobertaForSequenceClassification"}
    assert (folder / "modeling_glp.py").read_text() == SOURCE.read_text()
    card = (folder / "README.md").read_text()
    assert "trust_remote_code=True" in card and "modeling_glp.py" in card and "Read it before you trust it" in card
    assert "RobertaForSequenceClassification" in card and f"layers {config['glp_kept_layers']}" in card


def test_glp_bench_reads_the_folder_as_its_base_architecture_without_running_its_code(saved, tmp_path):
    import shutil

    from transformers import BertConfig, BertForSequenceClassification

    from glp_bench.data.resolve import get_task
    from glp_bench.prune.custom_code import load_config
    from glp_bench.prune.models import load_classifier, load_saved_classifier

    folder = shutil.copytree(saved[0]["bert"], tmp_path / "model")
    expected = _glp_logits(folder)
    (folder / "modeling_glp.py").write_text("raise RuntimeError('the folder code ran')\n")
    config = load_config(folder)
    assert type(config) is BertConfig and config.model_type == "bert" and not hasattr(config, "auto_map")
    assert config.architectures == ["BertForSequenceClassification"] and config.glp_pooling == "mean"
    np.testing.assert_allclose(_glp_logits(folder), expected, atol=1e-6)
    assert type(load_saved_classifier(folder)) is BertForSequenceClassification
    # a saved model as --model of a new fine-tune: its kwargs applied, its pooling kept
    model = load_classifier(str(folder), get_task("cola"), seed=0)
    assert model.config.id2label == {0: "unacceptable", 1: "acceptable"}
    assert model.config.glp_pooling == "mean"


def test_cls_models_stay_plain(tiny_models, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from glp_bench.prune.models import save_classifier

    src = tiny_models["bert"]
    save_classifier(AutoModelForSequenceClassification.from_pretrained(src), AutoTokenizer.from_pretrained(src),
                    tmp_path / "model")
    assert not (tmp_path / "model" / "modeling_glp.py").exists() and not (tmp_path / "model" / "README.md").exists()
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == "bert"


def test_every_supported_architecture_has_its_classes_in_the_modeling_file():
    import transformers

    from glp_bench.prune import modeling_glp
    from glp_bench.prune.custom_code import custom_config
    from glp_bench.prune.models import LAYER_SPECS

    for model_type in LAYER_SPECS:
        config = custom_config({"model_type": model_type})
        config_cls = getattr(modeling_glp, config["auto_map"]["AutoConfig"].split(".")[1])
        model_cls = getattr(modeling_glp, config["auto_map"]["AutoModelForSequenceClassification"].split(".")[1])
        assert config_cls.model_type == config["model_type"] == f"glp-mean-{model_type}"
        assert model_cls.config_class is config_cls
        assert issubclass(config_cls, transformers.CONFIG_MAPPING[model_type])
        assert issubclass(model_cls, transformers.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[
            transformers.CONFIG_MAPPING[model_type]])


def test_an_unknown_glp_model_type_is_a_clear_model_error(saved, tmp_path):
    import shutil

    from glp_bench.core.errors import ModelError
    from glp_bench.prune.models import load_saved_classifier

    folder = shutil.copytree(saved[0]["bert"], tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "glp-mean-gpt9"}))
    with pytest.raises(ModelError, match="model_type 'glp-mean-gpt9', of no architecture transformers knows"):
        load_saved_classifier(folder)
