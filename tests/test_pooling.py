"""--pooling: the classifier reads the masked mean of the tokens (sentence encoders) or the first token, in
PyTorch, after save/load and in the exported ONNX graph."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from .conftest import ARCHS, assert_clean_error, build_tiny_model, run_cli, write_cola


def _batch(model_dir, texts):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return tok(texts, padding=True, return_tensors="pt")


def _logits(model, batch):
    import torch

    from glp_bench.prune.train import model_input_names

    with torch.inference_mode():
        return model(**{k: v for k, v in batch.items() if k in model_input_names(model)}).logits.numpy()


def _loaded(model_dir, pooling):
    from transformers import AutoModelForSequenceClassification

    from glp_bench.prune.pooling import set_pooling

    return set_pooling(AutoModelForSequenceClassification.from_pretrained(model_dir).eval(), pooling)


def test_masked_mean_equals_a_hand_computation():
    import torch

    from glp_bench.prune.pooling import masked_mean

    h = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    got = masked_mean(h, mask).numpy()
    np.testing.assert_allclose(got, [[(0 + 2) / 2, (1 + 3) / 2], [(6 + 8 + 10) / 3, (7 + 9 + 11) / 3]])
    np.testing.assert_allclose(masked_mean(h, None).numpy(), h.mean(1).numpy())


def test_a_mean_pooled_bert_reads_the_masked_mean_through_its_pooler(tiny_models):
    """Hand computation: classifier(tanh(dense(mean of the unpadded tokens' last hidden states)))."""
    import torch

    model = _loaded(tiny_models["bert"], "mean")
    batch = _batch(tiny_models["bert"], ["the cat sees a dog .", "john ran ."])
    assert int(batch["attention_mask"].sum()) < batch["attention_mask"].numel()  # really padded
    with torch.inference_mode():
        hidden = _loaded(tiny_models["bert"], "cls").bert(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * m).sum(1) / m.sum(1)
        expected = model.classifier(model.bert.pooler.activation(model.bert.pooler.dense(mean))).numpy()
    np.testing.assert_allclose(_logits(model, batch), expected, atol=1e-5)
    assert not np.allclose(_logits(_loaded(tiny_models["bert"], "cls"), batch), expected, atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_mean_pooling_ignores_padding_and_survives_save_load_and_surgery(arch, tiny_models, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from glp_bench.prune.models import load_saved_classifier
    from glp_bench.prune.surgery import drop_layers

    model = _loaded(tiny_models[arch], "mean")
    texts = ["the cat sees a dog that likes the big red car .", "john ran ."]
    both = _logits(model, _batch(tiny_models[arch], texts))
    alone = _logits(model, _batch(tiny_models[arch], texts[1:]))
    np.testing.assert_allclose(both[1], alone[0], atol=1e-5)  # the pads of the short sentence are not averaged
    assert not np.allclose(both, _logits(_loaded(tiny_models[arch], "cls"), _batch(tiny_models[arch], texts)), atol=1e-4)

    pruned = drop_layers(model, [1])  # a copy keeps the pooling
    assert pruned.config.glp_pooling == "mean"
    pruned.save_pretrained(tmp_path / "m")
    shutil.copy(tiny_models[arch] / "vocab.txt", tmp_path / "m")
    batch = _batch(tiny_models[arch], texts)
    reloaded = load_saved_classifier(tmp_path / "m")
    np.testing.assert_allclose(_logits(reloaded, batch), _logits(pruned, batch), atol=1e-6)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()  # the documented caveat
    assert not np.allclose(_logits(plain, batch), _logits(pruned, batch), atol=1e-4)
    # back to cls removes the hook
    from glp_bench.prune.pooling import set_pooling

    np.testing.assert_allclose(_logits(set_pooling(reloaded, "cls"), batch), _logits(plain, batch), atol=1e-6)


def test_auto_pooling_is_the_sentence_transformers_pooling_of_the_folder(tiny_models, tmp_path):
    from glp_bench.prune.pooling import pooling_from_st_config, pretrained_pooling, resolve_pooling

    assert pooling_from_st_config({"pooling_mode_mean_tokens": True}) == "mean"
    assert pooling_from_st_config({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}) == "cls"
    assert pooling_from_st_config({"pooling_mode_cls_token": True}) == "cls"
    folder = shutil.copytree(tiny_models["bert"], tmp_path / "st")
    assert pretrained_pooling(str(folder)) == "cls"  # a plain checkpoint
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert resolve_pooling("auto", str(folder)) == "mean" and resolve_pooling("cls", str(folder)) == "cls"
    (folder / "1_Pooling" / "config.json").write_text("{not json")
    assert pretrained_pooling(str(folder)) == "cls"


def test_the_plan_resolves_pooling_and_a_run_refuses_another(tiny_models, tmp_path):
    from glp_bench.core.errors import GlpError, RunDirError
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.plan import RESUME_KEYS, make_plan

    folder = shutil.copytree(tiny_models["bert"], tmp_path / "st")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert make_plan("cola", str(folder), None, ["glp"]).pooling == "mean"
    assert make_plan("cola", str(folder), None, ["glp"], budget="paper").pooling == "cls"  # the paper's heads
    assert make_plan("cola", str(folder), None, ["glp"], pooling="cls").pooling == "cls"
    assert make_plan("cola", str(tiny_models["bert"]), None, ["glp"]).pooling == "cls"
    with pytest.raises(GlpError, match="unknown --pooling 'max'; choose from auto, cls, mean"):
        make_plan("cola", str(folder), None, ["glp"], pooling="max")
    plan = make_plan("cola", str(folder), None, ["glp"])
    run = RunDir(tmp_path / "run").create(make_plan("cola", str(folder), None, ["glp"], pooling="cls").config(4))
    with pytest.raises(RunDirError, match="pooling: run has 'cls', asked 'mean'"):
        run.check_compatible(plan.config(4), RESUME_KEYS)


def test_a_mean_pooled_run_exports_graphs_that_pool_the_same_way(tmp_path):
    """prune-and-export (smoke) with --pooling mean: every saved depth records it, and every ONNX graph gives
    the logits of the mean-pooled PyTorch model, not those of the first-token head."""
    import onnxruntime as ort
    from transformers import BertForSequenceClassification

    from glp_bench.prune.custom_code import MODELING_FILE
    from glp_bench.prune.models import load_saved_classifier

    model = build_tiny_model("bert", tmp_path / "m", layers=4)
    data = write_cola(tmp_path / "glue" / "CoLA", n_train=48, n_dev=24)
    run_dir = tmp_path / "run"
    proc = run_cli("prune-and-export", "--task", "cola", "--model", str(model), "--data-dir", str(data),
                   "--budget", "smoke", "--lr", "1e-3", "--run", str(run_dir), "--device", "cpu", "--pooling", "mean",
                   "--variants", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert "mean pooling" in proc.stdout + proc.stderr  # the plan line says it
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["config"]["pooling"] == "mean"
    texts = ["the cat sees a dog that likes the big red car .", "john ran ."]
    for name, rec in m["models"].items():
        folder = run_dir / rec["path"]
        config = json.loads((folder / "config.json").read_text())
        assert config["glp_pooling"] == "mean" and config["model_type"] == "glp-mean-bert"
        assert {MODELING_FILE, "README.md"} <= set(rec["files"])  # the custom code is recorded with the weights
        onnx_config = json.loads((run_dir / rec["onnx"]["fp32"]["path"]).with_name("config.json").read_text())
        assert onnx_config["model_type"] == "bert" and "auto_map" not in onnx_config  # the graph needs no code
        batch = _batch(folder, texts)
        expected = _logits(load_saved_classifier(folder), batch)
        sess = ort.InferenceSession(str(run_dir / rec["onnx"]["fp32"]["path"]), providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        got = sess.run(None, {k: v.numpy().astype(np.int64) for k, v in batch.items() if k in names})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4)
        first_token = _logits(BertForSequenceClassification.from_pretrained(folder).eval(), batch)  # no hook
        assert not np.allclose(got, first_token, atol=1e-3), name
    report = run_cli("report", "--run", str(run_dir))
    assert report.returncode == 0, report.stderr
    assert "read the mean of the tokens (--pooling mean)" in (run_dir / "report.md").read_text()


def test_an_unknown_pooling_is_one_clear_error(tiny_models, cola_dir, tmp_path):
    proc = run_cli("prune", "--task", "cola", "--model", str(tiny_models["bert"]), "--data-dir", str(cola_dir),
                   "--budget", "smoke", "--run", str(tmp_path / "r"), "--pooling", "max")
    assert_clean_error(proc, "argument --pooling: invalid choice: 'max'")
    assert not (tmp_path / "r").exists()


def test_finetune_with_mean_pooling_saves_a_model_that_records_it(tiny_models, cola_dir, tmp_path):
    out = tmp_path / "ft"
    proc = run_cli("finetune", "--task", "cola", "--model", str(tiny_models["bert"]), "--data-dir", str(cola_dir),
                   "--epochs", "1", "--max-samples", "16", "--out", str(out), "--device", "cpu", "--pooling", "mean")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "model" / "config.json").read_text())["glp_pooling"] == "mean"
    assert (out / "model" / "modeling_glp.py").is_file() and (out / "model" / "README.md").is_file()
    assert json.loads((out / "scores.json").read_text())["pooling"] == "mean"
