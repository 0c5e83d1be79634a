"""Fine-tuning only the embedding rows the examples use (``glp_bench.prune.used_rows``) ends with the weights that
training every row gives, bit for bit, in every architecture; paused fine-tunes resume with their rows; gradient
clipping skips only multiplications by 1.0."""

from __future__ import annotations

import pytest
import torch

from glp_bench.data.loaders import load_task_data
from glp_bench.data.resolve import get_task
from glp_bench.prune import used_rows
from glp_bench.prune.models import load_classifier, load_tokenizer
from glp_bench.prune.train import TrainConfig, fine_tune, tokenize

from .conftest import ARCHS, tiny_config


def _setup(model_dir, cola_dir):
    task = get_task("cola")
    tok = load_tokenizer(str(model_dir))
    enc = {k: tokenize(v, tok, task) for k, v in load_task_data(task, cola_dir).items()}
    return task, tok, enc


def _train(model_dir, task, tok, enc, cfg, monkeypatch, every_row: bool, **kwargs):
    model = load_classifier(str(model_dir), task, seed=cfg.seed)
    with monkeypatch.context() as m:
        if every_row:
            m.setattr(used_rows, "applies", lambda *a: False)
        stats = fine_tune(model, enc["train"], tok, cfg, **kwargs)
    return model, stats


def assert_same_weights(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("arch", ARCHS)
def test_training_the_used_rows_gives_the_weights_of_training_every_row(arch, tiny_models, cola_dir, monkeypatch):
    task, tok, enc = _setup(tiny_models[arch], cola_dir)
    ids = {int(i) for x in enc["train"]["input_ids"] for i in x}
    model = load_classifier(str(tiny_models[arch]), task, seed=1)
    start = model.get_input_embeddings().weight.detach().clone()
    assert used_rows.applies(model, 0.0, "cpu") and len(ids) < start.shape[0]  # a real subset is trained
    clipped = []
    real_clip = torch.nn.utils.clip_grads_with_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grads_with_norm_", lambda *a: clipped.append(1) or real_clip(*a))
    cfg = TrainConfig(epochs=2, lr=3e-3, batch_size=8, seed=1, warmup_ratio=0.1)
    subset, stats = _train(tiny_models[arch], task, tok, enc, cfg, monkeypatch, every_row=False)
    assert 0 < len(clipped) < stats["steps"]  # both branches of the clipping ran
    full, _ = _train(tiny_models[arch], task, tok, enc, cfg, monkeypatch, every_row=True)
    assert_same_weights(subset, full)
    after = subset.get_input_embeddings()
    assert type(after) is torch.nn.Embedding  # the model's own embedding again
    unused = [i for i in range(start.shape[0]) if i not in ids]
    assert torch.equal(after.weight[unused], start[unused])
    assert not torch.equal(after.weight[sorted(ids)], start[sorted(ids)])


def test_the_same_weights_in_bf16(tiny_models, cola_dir, monkeypatch):
    task, tok, enc = _setup(tiny_models["bert"], cola_dir)
    cfg = TrainConfig(epochs=1, lr=2e-3, batch_size=8, seed=2, precision="bf16")
    a, _ = _train(tiny_models["bert"], task, tok, enc, cfg, monkeypatch, every_row=False)
    b, _ = _train(tiny_models["bert"], task, tok, enc, cfg, monkeypatch, every_row=True)
    assert_same_weights(a, b)


def test_a_paused_fine_tune_resumes_with_the_rows_it_trained(tiny_models, cola_dir, monkeypatch, tmp_path):
    """The checkpoint carries its rows (a saved file loads with ``weights_only``); one without them (every row
    trained, as before this change) resumes training every row: both end as the uninterrupted fine-tune."""
    task, tok, enc = _setup(tiny_models["bert"], cola_dir)
    cfg = TrainConfig(epochs=2, lr=1e-3, batch_size=8, seed=4)
    whole, _ = _train(tiny_models["bert"], task, tok, enc, cfg, monkeypatch, every_row=False)
    for every_row in (False, True):
        _, part = _train(tiny_models["bert"], task, tok, enc, cfg, monkeypatch, every_row=every_row, pause_at=0.5)
        ckpt = part["checkpoint"]
        assert (ckpt["embedding_rows"] is None) == every_row
        torch.save(ckpt, tmp_path / "state.pt")
        ckpt = torch.load(tmp_path / "state.pt", weights_only=True)
        rest, _ = _train(tiny_models["bert"], task, tok, enc, cfg, monkeypatch, every_row=False, resume=ckpt)
        assert_same_weights(whole, rest)


def test_when_it_does_not_apply():
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(tiny_config("bert"))
    assert used_rows.applies(model, 0.0, "cpu")
    assert not used_rows.applies(model, 0.01, "cpu")  # weight decay moves unused rows too
    assert not used_rows.applies(model, 0.0, "cuda")
    tied = AutoModelForMaskedLM.from_config(tiny_config("bert"))  # the output layer shares the embedding
    assert not used_rows.applies(tied, 0.0, "cpu")


def test_an_id_outside_the_rows_is_an_error_not_another_row():
    full = torch.nn.Embedding(10, 4, padding_idx=0)
    sub = used_rows.RowSubsetEmbedding(full, torch.tensor([0, 3, 7]))
    assert torch.equal(sub(torch.tensor([[7, 0, 3]])), full(torch.tensor([[7, 0, 3]])))
    with pytest.raises(IndexError):
        sub(torch.tensor([[7, 5]]))
    assert used_rows.RowSubsetEmbedding(full, torch.tensor([3, 7])).padding_idx is None  # MPNet's is 1, unused
