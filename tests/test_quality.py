"""Scores worth trading: the recipe sweep, distillation, the bootstrap noise of a GLP step, seeds, precision."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from glp_bench.core.errors import DeviceError
from glp_bench.data.loaders import load_task_data
from glp_bench.data.resolve import get_task
from glp_bench.prune.distill import distill_loss
from glp_bench.prune.models import load_classifier, load_saved_classifier, load_tokenizer
from glp_bench.prune.noise import assess, draw_scores
from glp_bench.prune.precision import choose_precision
from glp_bench.prune.search import greedy_search, merge_records
from glp_bench.prune.surgery import drop_layers
from glp_bench.prune.train import TrainConfig, fine_tune, predict, tokenize

from .conftest import assert_clean_error, build_tiny_model, run_cli, write_cola


@pytest.fixture(scope="module")
def tiny6(tmp_path_factory):
    return build_tiny_model("bert", tmp_path_factory.mktemp("q") / "bert6", layers=6)


# --- distillation -----------------------------------------------------------------------------------------

def test_distill_loss_equals_a_hand_computation():
    s = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    t = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    alpha, temp = 0.3, 2.0

    def softmax(v):
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]

    ce = -sum(math.log(softmax(row.tolist())[int(lab)]) for row, lab in zip(s, y, strict=True)) / 2
    kl = 0.0
    for srow, trow in zip(s, t, strict=True):
        p, q = softmax((trow / temp).tolist()), softmax((srow / temp).tolist())
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    want = (1 - alpha) * ce + alpha * temp * temp * kl / 2
    got = distill_loss(s, y, t, alpha, temp, regression=False).item()
    assert got == pytest.approx(want, rel=1e-5)
    # regression: MSE to the labels and to the teacher
    sr, tr, yr = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [2.0]]), torch.tensor([0.0, 4.0])
    want_r = (1 - alpha) * ((1 + 1) / 2) + alpha * ((1 + 1) / 2)
    assert distill_loss(sr, yr, tr, alpha, temp, regression=True).item() == pytest.approx(want_r)


def _setup(model_dir, cola):
    task = get_task("cola")
    data = load_task_data(task, cola)
    tok = load_tokenizer(str(model_dir))
    return task, tok, {k: tokenize(v, tok, task) for k, v in data.items()}


def test_a_distilled_model_moves_toward_its_teachers_outputs(tiny6, tmp_path):
    """Soft targets only (alpha 1): the student's train logits get closer to the teacher's than the same
    fine-tune on the labels alone gets them."""
    task, tok, enc = _setup(tiny6, write_cola(tmp_path / "CoLA", n_train=128))
    teacher = load_classifier(str(tiny6), task, seed=0)
    fine_tune(teacher, enc["train"], tok, TrainConfig(epochs=4, lr=2e-3, batch_size=16, seed=0))
    t_logits = predict(teacher, enc["train"], tok)
    t_probs = torch.softmax(torch.tensor(t_logits), -1).numpy()

    def probs(m):
        return torch.softmax(torch.tensor(predict(m, enc["train"], tok)), -1).numpy()

    def student(alpha=None):
        m = drop_layers(load_classifier(str(tiny6), task, seed=1), [3, 4, 5])
        if alpha is not None:
            cfg = TrainConfig(epochs=4, lr=2e-3, batch_size=16, seed=1, distill_alpha=alpha, distill_temperature=1.0)
            fine_tune(m, enc["train"], tok, cfg, teacher_logits=t_logits if alpha else None)
        return probs(m)

    gap = {name: float(np.abs(p - t_probs).mean()) for name, p in
           (("before", student()), ("labels", student(0.0)), ("distilled", student(1.0)))}
    assert gap["distilled"] < gap["before"] and gap["distilled"] < gap["labels"], gap


def test_distillation_needs_one_teacher_row_per_example(tiny6, tmp_path):
    task, tok, enc = _setup(tiny6, write_cola(tmp_path / "CoLA"))
    m = load_classifier(str(tiny6), task, seed=0)
    with pytest.raises(ValueError, match="one row of teacher logits"):
        fine_tune(m, enc["train"], tok, TrainConfig(distill_alpha=0.5), teacher_logits=np.zeros((3, 2)))


# --- precision ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("requested,caps,want", [
    ("auto", {"kind": "cpu", "bf16": True}, "bf16"),
    ("auto", {"kind": "cpu", "bf16": False}, "fp32"),
    ("auto", {"kind": "cuda", "bf16": True}, "bf16"),
    ("auto", {"kind": "cuda", "bf16": False}, "fp16"),
    ("fp32", {"kind": "cuda", "bf16": True}, "fp32"),
    ("fp16", {"kind": "cuda", "bf16": False}, "fp16"),
    ("bf16", {"kind": "cpu", "bf16": True}, "bf16"),
])
def test_precision_choice_on_capability_reports(requested, caps, want):
    assert choose_precision(requested, caps) == want


@pytest.mark.parametrize("requested,caps,fragment", [
    ("bf16", {"kind": "cpu", "bf16": False, "name": "AVX2"}, "has no bf16 support"),
    ("bf16", {"kind": "cuda", "bf16": False, "name": "T4"}, "has no bf16 support"),
    ("fp16", {"kind": "cpu", "bf16": True}, "needs a CUDA GPU"),
    ("int4", {"kind": "cpu", "bf16": True}, "unknown precision"),
])
def test_precision_refusals(requested, caps, fragment):
    with pytest.raises(DeviceError, match=fragment):
        choose_precision(requested, caps)


@pytest.mark.skipif(not torch.cpu._is_avx512_bf16_supported() and not torch.cpu._is_amx_tile_supported(),
                    reason="this CPU has no bf16 support")
def test_a_bf16_fine_tune_trains(tiny6, tmp_path):
    task, tok, enc = _setup(tiny6, write_cola(tmp_path / "CoLA", n_train=128))
    m = load_classifier(str(tiny6), task, seed=0)
    loss_before = task.loss(predict(m, enc["train"], tok), enc["train"]["labels"])
    stats = fine_tune(m, enc["train"], tok, TrainConfig(epochs=4, lr=2e-3, batch_size=16, seed=0, precision="bf16"))
    logits = predict(m, enc["train"], tok)
    assert stats["precision"] == "bf16" and logits.dtype == np.float32  # scores are computed in fp32
    assert task.loss(logits, enc["train"]["labels"]) < loss_before


# --- noise: the paired bootstrap --------------------------------------------------------------------------

def _acc(p, y):
    return float(np.mean(p == y))


def test_bootstrap_separates_a_clear_winner_from_a_coin_toss():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    perfect = y.copy()
    coin = np.where(rng.random(400) < 0.5, y, 1 - y)
    near = perfect.copy()
    near[:2] = 1 - near[:2]  # two mistakes out of 400: indistinguishable from perfect at this size
    draws = draw_scores({0: perfect, 1: coin, 2: near}, y, _acc, draws=500, seed=1)
    lo, hi = np.percentile(draws[1], [2.5, 97.5])
    assert lo < 0.5 < hi and hi - lo < 0.15  # accuracy of a coin on 400 examples: 0.5 +- ~0.05
    noisy = assess(draws, 0, [0, 2, 1])
    assert noisy["within_noise"] and noisy["runner_up"] == 2
    clear = assess({k: draws[k] for k in (0, 1)}, 0, [0, 1])
    assert not clear["within_noise"] and clear["p_best"] == 1.0
    assert clear["intervals"]["0"] == [1.0, 1.0]


def test_ties_at_the_top_are_noise():
    y = np.array([0, 1, 0, 1, 1, 0])
    same = {0: np.zeros(6, int), 1: np.zeros(6, int)}
    rec = assess(draw_scores(same, y, _acc, draws=200), 0, [0, 1])
    assert rec["within_noise"] and rec["p_best"] == pytest.approx(0.5)


def test_bootstrap_uses_the_mean_over_seeds():
    y = np.array([1, 0] * 50)
    two_seeds = np.stack([y, 1 - y])  # one perfect seed, one always wrong: mean accuracy 0.5 on every draw
    d = draw_scores({0: two_seeds}, y, _acc, draws=50)
    assert np.allclose(d[0], 0.5)



@pytest.mark.parametrize("key", ["matthews_correlation", "accuracy"])
@pytest.mark.parametrize("classes", [2, 3])
def test_all_draws_at_once_score_exactly_as_scikit_learn_per_draw(key, classes):
    from sklearn.metrics import accuracy_score, matthews_corrcoef

    from glp_bench.prune.noise import main_metric

    one = {"matthews_correlation": matthews_corrcoef, "accuracy": accuracy_score}[key]

    class Task:
        main_metric, is_regression = key, False

        @staticmethod
        def metric_fn(p, y):
            return {key: float(one(y, p))}

    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 300)
    preds = {0: np.where(rng.random(300) < 0.7, y, rng.integers(0, classes, 300)),  # a decent model
             1: np.zeros(300, int),  # the majority-class model: MCC 0.0, sklearn's undefined case
             2: rng.integers(0, classes, (3, 300))}  # three seeds: their mean per draw
    fast = draw_scores(preds, y, main_metric(Task), draws=200, seed=4)
    slow = draw_scores(preds, y, lambda p, t: float(one(t, p)), draws=200, seed=4)
    for c in preds:
        assert np.array_equal(fast[c], slow[c]), c
    assert np.all(fast[1] == 0.0) if key == "matthews_correlation" else fast[0].std() > 0


def test_rank_form_roc_auc_matches_scikit_learn_with_ties_and_one_class_draws():
    from sklearn.metrics import roc_auc_score

    from glp_bench.prune.noise import roc_auc

    rng = np.random.default_rng(2)
    y = (rng.random(250) < 0.3).astype(int)
    margins = {0: np.round(y + rng.normal(size=250), 1), 1: rng.normal(size=250), 2: np.zeros(250)}
    fast = draw_scores(margins, y, roc_auc, draws=150, seed=3)
    idx = np.random.default_rng(3).integers(0, 250, size=(150, 250))
    for c, m in margins.items():
        want = np.array([roc_auc_score(y[i], m[i]) for i in idx])
        assert np.allclose(fast[c], want, rtol=0, atol=1e-12), c
    assert np.all(fast[2] == 0.5) and fast[0].mean() > 0.7
    one_class = roc_auc.on_draws(np.arange(4.0), np.array([0, 1, 1, 1]), np.array([[1, 2, 3, 1], [0, 1, 0, 3]]))
    assert one_class[0] == 0.5 and one_class[1] == 1.0

# --- the search with seeds and re-scoring (fake scores) ---------------------------------------------------

def test_rescore_close_rescores_the_k_best_of_a_noisy_step_and_chooses_by_the_mean():
    first = {0: 0.50, 1: 0.51, 2: 0.10}  # 1 wins by a hair on one seed
    extra = {0: 0.60, 1: 0.40, 2: 0.0}  # ... and loses on the extra seeds
    calls = []

    def rec(score, seed):
        return {"score": score, "loss": 1 - score, "seeds": {str(seed): {"score": score, "loss": 1 - score}}}

    def score_many(removed, cands):
        for c in cands:
            yield c, rec(first.get(c, 0.0), 42)

    def rescore_many(removed, cands):
        calls.append(list(cands))
        for c in cands:
            yield c, rec(extra.get(c, 0.0), 43)

    def fake_assess(step, pool, chosen, ranking):
        gap = pool[ranking[0]]["score"] - pool[ranking[1]]["score"]
        return {"within_noise": gap < 0.05, "p_best": 0.5}

    log = []
    order = greedy_search([0, 1, 2], 2, score_many, log, assess=fake_assess, rescore_close=2, rescore_many=rescore_many)
    assert calls == [[1, 0]] and order == [0]  # mean 0.55 for layer 0 beats 0.455 for layer 1
    assert log[0]["rescore"]["layers"] == [1, 0] and log[0]["noise"]["within_noise"] is False
    merged = merge_records(rec(0.5, 42), rec(0.6, 43))
    assert merged["score"] == pytest.approx(0.55) and set(merged["seeds"]) == {"42", "43"}
    # a clear step is not re-scored
    log2 = []
    greedy_search([0, 1, 2], 2, lambda r, c: ((x, rec({0: 0.9, 1: 0.1, 2: 0.0}[x], 42)) for x in c), log2,
                  assess=fake_assess, rescore_close=2, rescore_many=rescore_many)
    assert log2[0]["rescore"]["layers"] == [] and calls == [[1, 0]]


# --- the recipe sweep ------------------------------------------------------------------------------------

def test_sweep_picks_the_best_lr_from_fake_scores_and_records_every_point(tmp_path):
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.plan import make_plan, with_recipe
    from glp_bench.prune.sweep import run_sweep

    plan = make_plan("cola", "m", None, ["glp"])
    assert plan.recipe == "auto" and plan.sweep["lrs"] == [2e-5, 5e-5, 1e-4, 2e-4]
    fake = {2e-5: 0.0, 5e-5: 0.1, 1e-4: 0.3, 2e-4: 0.2}
    seen = []

    def scores(jobs):
        for lr, kw in jobs:
            assert kw["candidate"] is None and kw["removed"] == ()
            seen.append(lr)
            yield lr, {"score": fake[lr], "loss": 0.5, "preds": {"42": np.zeros(3)}}

    run = RunDir(tmp_path / "r").create(plan.config(6))
    assert run_sweep(run, plan, scores, run.save) == 1e-4
    assert seen == [5e-5, 1e-4, 2e-4]  # 2e-5 is not tried: 5e-5, the lowest tried, did not win
    rec = json.loads((tmp_path / "r" / "manifest.json").read_text())["recipe"]
    assert set(rec["points"]) == {"5e-05", "0.0001", "0.0002"} and rec["chosen"]["lr"] == 1e-4
    assert rec["skipped"] == [2e-5] and rec["chosen"]["decided_by"] == "score"
    assert "preds" not in rec["points"]["0.0001"]
    tuned = with_recipe(plan, 1e-4)
    assert tuned.search.lr == tuned.final.lr == 1e-4 and tuned.final.warmup_ratio == 0.1
    # resume: the finished points are not scored again
    seen.clear()
    run.data["recipe"]["chosen"] = None
    del run.data["recipe"]["points"]["0.0002"]
    assert run_sweep(run, plan, scores, run.save) == 1e-4 and seen == [2e-4]


@pytest.mark.parametrize("fake, tried, best", [
    ({2e-5: 0.2, 5e-5: 0.3, 1e-4: 0.1, 2e-4: 0.0}, [5e-5, 1e-4, 2e-4, 2e-5], 5e-5),  # lowest wins: go lower, stop
    ({2e-5: 0.4, 5e-5: 0.3, 1e-4: 0.1, 2e-4: 0.0}, [5e-5, 1e-4, 2e-4, 2e-5], 2e-5),  # and the lower one wins
    ({2e-5: 0.9, 5e-5: 0.0, 1e-4: 0.0, 2e-4: 0.0}, [5e-5, 1e-4, 2e-4], 2e-4),  # a full tie: the highest, no lower
])
def test_sweep_tries_a_lower_lr_only_while_the_lowest_tried_wins(tmp_path, fake, tried, best):
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.plan import make_plan
    from glp_bench.prune.sweep import run_sweep

    plan = make_plan("cola", "m", None, ["glp"])
    seen = []

    def scores(jobs):
        for lr, _ in jobs:
            seen.append(lr)
            yield lr, {"score": fake[lr], "loss": 0.5}

    run = RunDir(tmp_path / "r").create(plan.config(6))
    assert run_sweep(run, plan, scores, run.save) == best and seen == tried
    assert run.data["recipe"]["skipped"] == sorted(set(fake) - set(tried))
    # a killed run resumes the second wave without scoring the first again
    if len(tried) == 4:
        seen.clear()
        run.data["recipe"]["chosen"] = None
        del run.data["recipe"]["points"]["2e-05"]
        assert run_sweep(run, plan, scores, run.save) == best and seen == [2e-5]


def test_presets_recipes_and_overrides():
    from glp_bench.prune.plan import make_plan

    paper = make_plan("cola", "m", None, ["glp"], "paper")
    assert (paper.recipe, paper.sweep, paper.final.distill_alpha, paper.final.warmup_ratio) == ("paper", None, 0.0, 0.0)
    fast = make_plan("cola", "m", None, ["glp"], student_init="pretrained")
    assert fast.final.distill_alpha == 0.5 and fast.final.distill_temperature == 2.0 and fast.search.distill_alpha == 0
    # students cut from the teacher (the default) are not distilled unless asked: it did not help them
    assert make_plan("cola", "m", None, ["glp"]).final.distill_alpha == 0.0
    assert make_plan("cola", "m", None, ["glp"], distill=True).final.distill_alpha == 0.5
    fixed = make_plan("cola", "m", None, ["glp"], lr=1e-4, warmup=0.2, distill=False)
    assert fixed.sweep is None and fixed.final.lr == 1e-4 and fixed.final.warmup_ratio == 0.2
    assert fixed.final.distill_alpha == 0.0
    search_only = make_plan("cola", "m", None, ["glp"], search_lr=3e-5)
    assert search_only.sweep["search_lr_fixed"] and search_only.search.lr == 3e-5


def test_depth_epochs_give_every_pruned_final_the_full_models_compute(tiny6, tmp_path):
    """``scaled`` (the default for students started from the pre-trained model): a final of d of 6 layers trains
    epochs * 6 / d epochs, so depth 3 takes twice the full model's optimizer steps; ``same`` (the paper budget's,
    and the default for students started from the teacher): every depth alike."""
    from glp_bench.core.errors import GlpError
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.plan import make_plan
    from glp_bench.prune.stage import Pruner
    from glp_bench.prune.work import depth_scaled_epochs

    assert make_plan("cola", "m", None, ["glp"]).depth_epochs == "same"
    assert make_plan("cola", "m", None, ["glp"], student_init="pretrained").depth_epochs == "scaled"
    assert make_plan("cola", "m", None, ["glp"], "paper").depth_epochs == "same"
    assert depth_scaled_epochs(3.0, 6, 5) == 3.6 and depth_scaled_epochs(3.0, 6, 4) == 4.5
    with pytest.raises(GlpError, match="unknown --depth-epochs 'double'; choose from scaled, same"):
        make_plan("cola", "m", None, ["glp"], depth_epochs="double")
    cola = str(write_cola(tmp_path / "CoLA"))
    steps = {}
    for rule in ("scaled", "same"):
        plan = make_plan("cola", str(tiny6), cola, ["glp"], "smoke", device="cpu", lr=1e-3, distill=False,
                         depth_epochs=rule, student_init="pretrained")
        work = Pruner(plan, RunDir(tmp_path / rule)).work
        for removed in ([], [1, 3, 5]):
            rec = work.final(removed)
            steps[rule, len(removed)] = (rec["recipe"]["epochs"], rec["train"]["steps"])
    assert steps["scaled", 0] == steps["same", 0] == steps["same", 3] == (1.0, 2)  # 64 examples, batch 32
    assert steps["scaled", 3] == (2.0, 4)


def test_reference_epochs_train_the_full_depth_model_alone_longer(tiny6, tmp_path):
    """The fast budget trains the full-depth final 5 epochs and every pruned final 3 (chosen on the 85/15
    split); ``--epochs`` alone sets every final again, ``--reference-epochs`` the full-depth one."""
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.plan import make_plan
    from glp_bench.prune.stage import Pruner

    fast = make_plan("cola", "m", None, ["glp"])
    assert (fast.final.epochs, fast.reference_epochs, fast.config(6)["reference_epochs"]) == (3.0, 5.0, 5.0)
    assert make_plan("cola", "m", None, ["glp"], epochs=2).reference_epochs is None
    assert make_plan("cola", "m", None, ["glp"], epochs=2, reference_epochs=4).reference_epochs == 4
    assert make_plan("cola", "m", None, ["glp"], reference_epochs=3).reference_epochs is None  # = the finals'
    assert make_plan("cola", "m", None, ["glp"], "paper").reference_epochs is None
    assert make_plan("cola", "m", None, ["glp"], "smoke").reference_epochs is None
    plan = make_plan("cola", str(tiny6), str(write_cola(tmp_path / "CoLA")), ["glp"], "smoke", device="cpu",
                     lr=1e-3, distill=False, student_init="pretrained", depth_epochs="same", reference_epochs=2)
    work = Pruner(plan, RunDir(tmp_path / "r")).work
    full, pruned = work.final([]), work.final([1, 3, 5])
    assert (full["recipe"]["epochs"], full["train"]["steps"]) == (2.0, 4)  # 64 examples, batch 32
    assert (pruned["recipe"]["epochs"], pruned["train"]["steps"]) == (1.0, 2)


def test_a_pruned_student_starts_from_the_fine_tuned_teacher(tiny6, tmp_path):
    """``--student-init teacher`` (the default): a pruned final starts as the run's fine-tuned full model with
    the layers cut out (its kept layers and head, so its first outputs are the cut teacher's), not as the
    pre-trained model with a fresh head; without the teacher loaded it is one clear error."""
    from glp_bench.core.errors import GlpError
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.plan import make_plan
    from glp_bench.prune.stage import Pruner

    plan = make_plan("cola", str(tiny6), str(write_cola(tmp_path / "CoLA")), ["glp"], "smoke", device="cpu",
                     lr=1e-3, distill=False)
    assert (plan.student_init, make_plan("cola", "m", None, ["glp"], "paper").student_init) == ("teacher", "pretrained")
    work = Pruner(plan, RunDir(tmp_path / "r")).work
    with pytest.raises(GlpError, match="--student-init teacher.*not loaded.*--student-init pretrained"):
        work.final([1, 3, 5])
    assert work.final([], out_dir=tmp_path / "ref")["init"] == "pretrained"
    teacher = load_saved_classifier(tmp_path / "ref")
    work.init_state = teacher.state_dict()
    student = work.student_without([1, 3, 5])
    assert student.config.glp_kept_layers == [0, 2, 4]
    held = work.held
    cut = predict(drop_layers(teacher, [1, 3, 5]), held, work.tokenizer)
    assert np.allclose(predict(student, held, work.tokenizer), cut, atol=1e-6)
    assert not np.allclose(predict(work.model_without([1, 3, 5]), held, work.tokenizer), cut, atol=1e-3)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert not torch.equal(work.base.classifier.weight, teacher.classifier.weight)  # the base was not touched
    rec = work.final([1, 3, 5])
    assert rec["init"] == "teacher" and rec["recipe"]["epochs"] == 1.0  # depth_epochs "same" with a teacher start


def test_the_sweep_never_touches_dev(tiny6, tmp_path):
    """Workload.score (candidates and sweep points) reads the 85/15 split only: a dev split that explodes on
    any use does not stop it."""
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.plan import make_plan
    from glp_bench.prune.stage import Pruner

    plan = make_plan("cola", str(tiny6), str(write_cola(tmp_path / "CoLA")), ["glp"], "smoke", device="cpu")
    pruner = Pruner(plan, RunDir(tmp_path / "r"))

    class Explodes(dict):
        def __getitem__(self, k):
            raise AssertionError("the dev split was used")

        def items(self):
            raise AssertionError("the dev split was used")

    pruner.work.dev = Explodes()
    rec = pruner.work.score((), None, seeds=[42, 43], lr=1e-3, warmup=0.1)
    assert set(rec["seeds"]) == {"42", "43"} and rec["preds"]["42"].shape == (len(pruner.work.held),)
    assert rec["score"] == pytest.approx(np.mean([r["score"] for r in rec["seeds"].values()]))


# --- end to end: the CLI, resume, seeds, migration -------------------------------------------------------

def _args(model, data, run_dir, *extra):
    return ["prune", "--task", "cola", "--model", str(model), "--data-dir", str(data), "--budget", "smoke",
            "--run", str(run_dir), "--device", "cpu", "--min-depth", "4", *extra]


def _m(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def test_auto_recipe_distillation_and_final_seeds_end_to_end(tiny6, tmp_path):
    cola = write_cola(tmp_path / "CoLA")
    run_dir = tmp_path / "run"
    proc = run_cli(*_args(tiny6, cola, run_dir, "--distill", "--final-seeds", "2", "--search-seeds", "2", "--rescore-close", "2"))
    assert proc.returncode == 0, proc.stderr
    m = _m(run_dir)
    rec = m["recipe"]
    assert rec["chosen"]["lr"] in rec["lrs"] and len(rec["points"]) + len(rec["skipped"]) == 4
    assert {p["lr"] for p in rec["points"].values()} >= {5e-5, 1e-4, 2e-4}  # the first wave, always tried
    assert "recipe auto: lr" in proc.stderr and "distillation alpha 0.5" in " ".join(proc.stderr.split())
    lr = m["recipe"]["chosen"]["lr"]
    ref, pruned = m["models"]["depth-06"], m["models"]["depth-05"]
    assert ref["distill"] is None and pruned["distill"] == {"alpha": 0.5, "temperature": 2.0}
    assert (ref["init"], pruned["init"], m["config"]["student_init"]) == ("pretrained", "teacher", "teacher")
    assert ref["recipe"]["lr"] == pruned["recipe"]["lr"] == lr
    assert (ref["recipe"]["epochs"], pruned["recipe"]["epochs"]) == (1.0, 1.0)  # from the teacher: --depth-epochs same
    assert set(pruned["seeds"]) == {"42", "43"} and pruned["dev_scores"] == pruned["seeds"]["42"]["dev_scores"]
    teacher = np.load(run_dir / m["teacher"]["path"])
    assert teacher.shape == (96, 2) and m["teacher"]["model"] == "depth-06"
    for step in m["strategies"]["glp"]["steps"]:
        assert "within_noise" in step["noise"] and len(next(iter(step["candidates"].values()))["seeds"]) == 2
        for layer in step["candidates"]:
            assert (run_dir / "search" / f"step-{m['strategies']['glp']['steps'].index(step) + 1:02d}"
                    / f"layer-{int(layer):02d}.seed-42.npy").is_file()
    err = " ".join(proc.stderr.split())  # rich wraps long lines
    assert "within noise: P(best)" in err or "clear: P(best)" in err
    # the report shows distillation, seeds (mean and std) and each step's bootstrap verdict
    md = run_cli("report", "--run", str(run_dir), "--format", "markdown")
    assert md.returncode == 0, md.stderr
    assert "### Training: start, distillation and seeds" in md.stdout and "### GLP steps" in md.stdout
    row5 = next(line for line in md.stdout.splitlines() if line.startswith("| 5 | depth-05"))
    mean = np.mean([v["dev_scores"]["matthews_correlation"] for v in pruned["seeds"].values()]) * 100
    assert "| full model | alpha 0.5, T 2" in row5 and "| 1 |" in row5 and f"| {mean:.2f} |" in row5 and row5.rstrip().endswith("| 42 |")
    js = json.loads(run_cli("report", "--run", str(run_dir), "--format", "json").stdout)
    assert [s["step"] for s in js["sections"][0]["glp_steps"]] == [1, 2]
    # --final-seeds changed on an existing run: refused, nothing lost
    before = (run_dir / "manifest.json").read_text()
    assert_clean_error(run_cli(*_args(tiny6, cola, run_dir, "--distill", "--final-seeds", "3", "--search-seeds", "2",
                                      "--rescore-close", "2")), "final_seeds")
    assert_clean_error(run_cli(*_args(tiny6, cola, run_dir, "--distill", "--final-seeds", "2", "--search-seeds", "2",
                                      "--rescore-close", "2", "--student-init", "pretrained")), "student_init")
    assert_clean_error(run_cli(*_args(tiny6, cola, run_dir, "--distill", "--final-seeds", "2", "--search-seeds", "2",
                                      "--rescore-close", "2", "--reference-epochs", "2")), "reference_epochs")
    assert (run_dir / "manifest.json").read_text() == before


def test_resume_mid_sweep_and_mid_distillation_equals_an_uninterrupted_run(tiny6, tmp_path):
    cola = write_cola(tmp_path / "CoLA")
    full = tmp_path / "full"
    assert run_cli(*_args(tiny6, cola, full, "--strategy", "top", "--distill")).returncode == 0
    part = tmp_path / "part"
    assert run_cli(*_args(tiny6, cola, part, "--strategy", "top", "--distill")).returncode == 0
    m = _m(part)
    # cut the run back to: two sweep points done, no finals, no teacher (as if killed in the sweep)
    for lr in list(m["recipe"]["points"])[2:]:
        del m["recipe"]["points"][lr]
    m["recipe"]["chosen"] = None
    for rec in m["models"].values():
        rec["dev_scores"] = None
    (part / "manifest.json").write_text(json.dumps(m))
    assert run_cli(*_args(tiny6, cola, part, "--strategy", "top", "--distill")).returncode == 0
    # ... and as if killed after the reference and one distilled model (the other is still to do)
    m = _m(part)
    m["models"]["depth-04"]["dev_scores"] = None
    del m["models"]["depth-04"]["seeds"]
    (part / "manifest.json").write_text(json.dumps(m))
    assert run_cli(*_args(tiny6, cola, part, "--strategy", "top", "--distill")).returncode == 0
    a, b = _m(full), _m(part)
    def numbers(points):
        return {k: (v["score"], v["loss"]) for k, v in points.items()}

    assert numbers(a["recipe"]["points"]) == numbers(b["recipe"]["points"])
    assert a["recipe"]["chosen"] == b["recipe"]["chosen"]
    for name in ("depth-06", "depth-05", "depth-04"):
        assert a["models"][name]["dev_scores"] == b["models"][name]["dev_scores"], name
        assert a["models"][name]["files"]["model.safetensors"] == b["models"][name]["files"]["model.safetensors"]


def test_a_version_1_run_directory_still_loads_and_migrates(tmp_path):
    from glp_bench.core.rundir import RunDir

    old = {"format": "glp-bench-run", "version": 1, "config": {
        "task": "cola", "model": "m", "seed": 42, "min_depth": 3, "budget": "fast",
        "search": TrainConfig(lr=5e-5).to_dict() | {"distill_alpha": None},
        "final": {k: v for k, v in TrainConfig().to_dict().items() if not k.startswith(("distill", "precision"))}},
        "strategies": {}, "models": {"depth-06": {"depth": 6, "kept_layers": [0, 1, 2, 3, 4, 5], "strategies": ["glp"],
                                                   "dev_scores": {"matthews_correlation": 0.1}}}}
    del old["config"]["search"]["distill_alpha"]
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    run = RunDir(tmp_path).load()
    assert run.data["version"] == 7 and run.config["recipe"] == "paper" and run.config["final_seeds"] == 1
    assert run.config["depth_epochs"] == "same" and run.config["student_init"] == "pretrained"
    assert run.config["pooling"] == "cls" and run.config["reference_epochs"] is None
    assert run.config["final"]["distill_alpha"] == 0.0 and run.models["depth-06"]["distill"] is None
    assert run.models["depth-06"]["seed"] == 42


def test_distillation_without_the_full_depth_model_is_one_clear_error(tmp_path):
    from glp_bench.core.errors import GlpError
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.finals import ensure_teacher, teacher_state

    run = RunDir(tmp_path).create({"task": "cola"})
    run.models["depth-06"] = {"depth": 6, "kept_layers": list(range(6)), "dev_scores": None}
    with pytest.raises(GlpError, match="needs the run's full-depth model depth-06, which is missing or failed"):
        ensure_teacher(run, None, "depth-06")
    with pytest.raises(GlpError, match="--student-init teacher needs the run's full-depth model depth-06.*"
                                       "or use --student-init pretrained"):
        teacher_state(run, "depth-06")


@pytest.mark.parametrize("extra,fragment", [
    (["--recipe", "best"], "invalid choice: 'best'"),
    (["--distill-alpha", "0"], "--distill-alpha: expected a number above 0, at most 1"),
    (["--distill-alpha", "-1"], "--distill-alpha"),
    (["--distill-temperature", "0"], "--distill-temperature: expected a positive number"),
    (["--distill-temperature", "nan"], "--distill-temperature"),
    (["--final-seeds", "0"], "--final-seeds: expected a number of seeds"),
    (["--search-seeds", "-2"], "--search-seeds"),
    (["--rescore-close", "-1"], "--rescore-close"),
    (["--warmup", "1.5"], "--warmup"),
    (["--precision", "fp16"], "--precision fp16 needs a CUDA GPU"),
    (["--precision", "int4"], "invalid choice: 'int4'"),
    (["--depth-epochs", "double"], "invalid choice: 'double'"),
    (["--student-init", "scratch"], "invalid choice: 'scratch'"),
    (["--reference-epochs", "0"], "--reference-epochs: expected a number of epochs"),
])
def test_bad_quality_options_are_refused_before_work(tiny6, tmp_path, extra, fragment):
    run_dir = tmp_path / "r"
    assert_clean_error(run_cli(*_args(tiny6, write_cola(tmp_path / "CoLA"), run_dir, *extra)), fragment)
    assert not (run_dir / "manifest.json").exists()


@pytest.mark.parametrize("extra,fragment", [
    (["--precision", "fp16"], "--precision fp16 needs a CUDA GPU"),
    (["--warmup", "-0.1"], "--warmup"),
])
def test_finetune_refuses_bad_precision_before_work(tiny6, tmp_path, extra, fragment):
    out = tmp_path / "ft"
    proc = run_cli("finetune", "--task", "cola", "--model", str(tiny6), "--data-dir", str(write_cola(tmp_path / "CoLA")),
                   "--device", "cpu", "--out", str(out), *extra)
    assert_clean_error(proc, fragment)
    assert not out.exists()
