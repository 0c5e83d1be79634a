"""Fine-tuning: learns a learnable task, is deterministic on CPU, pads dynamically, runs every architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glp_bench.core.errors import DeviceError
from glp_bench.data.loaders import load_task_data
from glp_bench.data.resolve import get_task
from glp_bench.prune.models import load_classifier, load_tokenizer
from glp_bench.prune.train import TrainConfig, _loader, evaluate, fine_tune, predict, resolve_device, tokenize

from .conftest import ARCHS, cuda_available, gpu, write_cola


def _setup(model_dir, cola_dir):
    task = get_task("cola")
    data = load_task_data(task, cola_dir)
    tok = load_tokenizer(str(model_dir))
    enc = {k: tokenize(v, tok, task) for k, v in data.items()}
    return task, tok, enc


@pytest.mark.parametrize("arch", ARCHS)
def test_fine_tuning_learns_a_learnable_task(arch, tiny_models, tmp_path):
    task, tok, enc = _setup(tiny_models[arch], write_cola(tmp_path / "CoLA", n_train=256))
    model = load_classifier(str(tiny_models[arch]), task, seed=0)
    before = evaluate(model, {"validation": enc["validation"]}, tok, task)["validation"]
    fine_tune(model, enc["train"], tok, TrainConfig(epochs=6, lr=2e-3, batch_size=16, seed=0))
    after = evaluate(model, {"validation": enc["validation"]}, tok, task)["validation"]
    # the label is 'good' vs 'bad' in the sentence: a trained model separates it
    assert after["matthews_correlation"] > 0.7 > before["matthews_correlation"]


def test_deterministic_on_cpu(tiny_models, cola_dir):
    task, tok, enc = _setup(tiny_models["bert"], cola_dir)
    runs = []
    for _ in range(2):
        model = load_classifier(str(tiny_models["bert"]), task, seed=3)
        fine_tune(model, enc["train"], tok, TrainConfig(epochs=1, lr=1e-3, batch_size=8, seed=3))
        runs.append(predict(model, enc["validation"], tok))
    np.testing.assert_array_equal(runs[0], runs[1])
    model = load_classifier(str(tiny_models["bert"]), task, seed=4)
    fine_tune(model, enc["train"], tok, TrainConfig(epochs=1, lr=1e-3, batch_size=8, seed=4))
    assert not np.array_equal(runs[0], predict(model, enc["validation"], tok))


def test_dynamic_padding_and_length_grouping(tiny_models, cola_dir):
    task, tok, enc = _setup(tiny_models["bert"], cola_dir)
    cfg = TrainConfig(batch_size=8, seed=0)
    shapes = [b["input_ids"].shape for b in _loader(enc["train"], tok, cfg, shuffle=True, seed=0)]
    assert max(s[1] for s in shapes) < 128 and len({s[1] for s in shapes}) > 1
    padded = [b["input_ids"].shape for b in _loader(enc["train"], tok, TrainConfig(batch_size=8, pad_to_max=True), True, 0)]
    assert {s[1] for s in padded} == {128}
    # length grouping: batches are far more uniform in length than random batches would be
    lengths = np.array([len(x) for x in enc["train"]["input_ids"]])
    waste = sum(int((b["attention_mask"] == 0).sum()) for b in _loader(enc["train"], tok, cfg, True, 0))
    rng = np.random.default_rng(0)
    random_waste = sum(int(len(c) * c.max() - c.sum()) for c in np.array_split(rng.permutation(lengths), len(lengths) // 8))
    assert waste < random_waste


def test_predict_keeps_order(tiny_models, cola_dir):
    task, tok, enc = _setup(tiny_models["bert"], cola_dir)
    model = load_classifier(str(tiny_models["bert"]), task, seed=0)
    logits = predict(model, enc["validation"], tok, batch_size=7)
    one = enc["validation"].select([5]).with_format(None)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(one["input_ids"]), attention_mask=torch.tensor(one["attention_mask"]),
                    token_type_ids=torch.tensor(one["token_type_ids"])).logits.numpy()
    np.testing.assert_allclose(logits[5:6], ref, atol=1e-5)


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if cuda_available() else "cpu")
    if not cuda_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")


@gpu
def test_fine_tune_on_gpu_matches_cpu_closely(tiny_models, cola_dir):
    task, tok, enc = _setup(tiny_models["bert"], cola_dir)
    out = {}
    for device in ("cpu", "cuda"):
        model = load_classifier(str(tiny_models["bert"]), task, seed=0)
        fine_tune(model, enc["train"], tok, TrainConfig(epochs=1, lr=1e-3, batch_size=8, seed=0), device)
        out[device] = predict(model, enc["validation"], tok, device)
    np.testing.assert_allclose(out["cpu"], out["cuda"], atol=1e-2)


def test_fine_tunes_use_the_fused_adamw_which_makes_the_same_updates(tiny_models):
    """The fused AdamW (one kernel for all parameters) is what fine_tune builds on the CPU, and it takes the
    same steps as torch's per-parameter AdamW: same start, same gradients -> the same weights."""
    from glp_bench.prune.train import adamw

    task = get_task("cola")
    models = [load_classifier(str(tiny_models["bert"]), task, seed=0) for _ in range(2)]
    fused = adamw(models[0].parameters(), 1e-3, "cpu")
    plain = torch.optim.AdamW(models[1].parameters(), lr=1e-3)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    ids = torch.randint(5, models[0].config.vocab_size, (4, 12))
    for model, opt in ((models[0], fused), (models[1], plain)):
        for step in range(3):
            torch.manual_seed(step)  # the same dropout masks
            model.train()(input_ids=ids, labels=torch.tensor([0, 1, 1, 0])).loss.backward()
            opt.step()
            opt.zero_grad()
    # compared through the outputs: the attention key biases get a gradient of pure rounding noise (softmax
    # ignores a shift of every score), which Adam normalizes into steps that differ between the two kernels
    start = load_classifier(str(tiny_models["bert"]), task, seed=0)
    with torch.no_grad():
        a, b, s = (m.eval()(input_ids=ids).logits for m in (*models, start))
    assert (a - b).abs().max().item() < 1e-5 < (a - s).abs().max().item()
    assert adamw([torch.nn.Parameter(torch.zeros(2))], 1e-3, "mps").defaults["fused"] is None


@pytest.mark.parametrize("pause", [0.5, 1 / 3])  # mid-epoch (epochs 1.5 -> 2.25 of 3: skipped batches) and on a boundary
def test_a_paused_and_resumed_fine_tune_ends_bit_for_bit_where_an_uninterrupted_one_does(pause, tiny_models, cola_dir):
    task, tok, enc = _setup(tiny_models["bert"], cola_dir)
    cfg = TrainConfig(epochs=3, lr=1e-3, batch_size=8, seed=5, warmup_ratio=0.1)
    whole = load_classifier(str(tiny_models["bert"]), task, seed=5)
    stats = fine_tune(whole, enc["train"], tok, cfg)
    assert "checkpoint" not in stats
    first = load_classifier(str(tiny_models["bert"]), task, seed=5)
    part = fine_tune(first, enc["train"], tok, cfg, pause_at=pause)
    ckpt = part["checkpoint"]
    assert 0 < part["steps"] == ckpt["step"] < stats["steps"]
    halfway = predict(first, enc["validation"], tok)
    second = load_classifier(str(tiny_models["bert"]), task, seed=5)  # a fresh copy: the weights come from the checkpoint
    rest = fine_tune(second, enc["train"], tok, cfg, resume=ckpt)
    assert rest["steps"] == stats["steps"] and rest["examples"] == stats["examples"]
    for (name, a), b in zip(whole.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(predict(whole, enc["validation"], tok), predict(second, enc["validation"], tok))
    assert not np.array_equal(halfway, predict(second, enc["validation"], tok))  # the second part did train
