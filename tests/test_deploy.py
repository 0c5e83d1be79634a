"""``glp-bench deploy`` and the standalone runtime (deploy/runtime, package glp_runtime).

The runtime always runs in a subprocess where importing torch, transformers or glp_bench raises
ImportError (a meta-path finder installed before anything else), so these tests prove it serves a
bundle with onnxruntime, tokenizers and numpy alone."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import (
    REPO,
    SHARED_COLA,
    assert_clean_error,
    assert_schema,
    build_tiny_model,
    gpu,
    run_cli,
    write_cola,
)

RUNTIME = REPO / "deploy" / "runtime"
BLOCKED = ("torch", "transformers", "glp_bench", "datasets", "sklearn", "optimum")
# Runs `python -m glp_runtime ARGS` with the heavy packages made impossible to import.
NO_TORCH = f"""
import runpy, sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"importing {{name}} is blocked: the runtime must not need it")
sys.meta_path.insert(0, _Blocker())
sys.argv = ["glp_runtime", *sys.argv[1:]]
runpy.run_module("glp_runtime", run_name="__main__", alter_sys=True)
"""


def runtime_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(RUNTIME), "PYTHONUNBUFFERED": "1"}


def run_runtime(*args: str, stdin: str | bytes | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, *args], input=data, capture_output=True,
                          env=runtime_env(), timeout=timeout)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    return proc


def assert_runtime_error(proc, fragment: str, code: int = 2) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("glp-runtime: error:")]
    assert len(lines) == 1, proc.stderr
    assert fragment.lower() in lines[0].lower(), lines[0]


def import_runtime():
    """glp_runtime (deploy/runtime, installed with glp-bench), in this (test) process."""
    import glp_runtime
    import glp_runtime.inputs
    import glp_runtime.predict

    return glp_runtime


def read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def tiny_dev(cola: Path) -> tuple[list[str], list[int]]:
    rows = [line.split("\t") for line in (cola / "dev.tsv").read_text().splitlines() if line.strip()]
    return [r[3] for r in rows], [int(r[1]) for r in rows]


def real_cola_sentences(n: int) -> list[str]:
    if not SHARED_COLA.is_dir():
        pytest.skip("../shared/data/glue/CoLA not present")
    rows = [line.split("\t") for line in (SHARED_COLA / "dev.tsv").read_text(encoding="utf-8").splitlines()]
    return [r[3] for r in rows if len(r) >= 4][:n]


# --- a tiny run that learned something, exported and measured (built once) -------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run dir, CoLA dir): a 2-layer BERT pruned to depth 1 on learnable tiny CoLA (fp32 + int8),
    latency measured on the cpu target (1 thread, batch 1, seq 32, briefly)."""
    root = tmp_path_factory.mktemp("deploy")
    cola = write_cola(root / "glue" / "CoLA", n_train=192, n_dev=96)
    model = build_tiny_model("bert", root / "m", layers=2)
    run = root / "run"
    proc = run_cli("prune-and-export", "--task", "cola", "--model", str(model), "--data-dir", str(cola),
                   "--budget", "fast", "--search-samples", "96", "--epochs", "4", "--lr", "3e-3", "--no-distill",
                   "--run", str(run), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("latency", "--run", str(run), "--device", "cpu", "--threads", "1", "--batch-sizes", "1",
                   "--seq-lengths", "32", "--rounds", "1", "--min-runs", "5", "--min-time", "0.05",
                   "--warmup", "1", "--no-torch")
    assert proc.returncode == 0, proc.stderr
    return run, cola


@pytest.fixture(scope="module")
def fp32_bundle(tiny_run, tmp_path_factory) -> Path:
    run, _ = tiny_run
    out = tmp_path_factory.mktemp("bundles") / "fp32"
    proc = run_cli("deploy", "--run", str(run), "--target", "cpu", "--depth", "1", "--variant", "fp32",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


# --- the variant rule (pure) -----------------------------------------------------------------------


def test_choose_variant_follows_the_target():
    from glp_bench.core.targets import parse_target, resolve_target
    from glp_bench.deploy.select import DeployError, choose_variant

    cpu, cuda, arm = (resolve_target(n) for n in ("cpu", "cuda", "embedded-arm64"))
    both = ["fp32", "int8"]
    assert choose_variant(cpu, both)[0] == "int8"  # not measured: expected fastest on a CPU
    assert choose_variant(cpu, both, {"fp32": 0.010, "int8": 0.012})[0] == "fp32"  # measured: the fastest
    assert choose_variant(cpu, both, {"fp32": 0.010})[0] == "fp32"
    assert choose_variant(arm, both, {"fp32": 0.001, "int8": 0.5})[0] == "int8"  # it runs int8 only
    assert choose_variant(cuda, ["fp32", "fp32-opt", "int8", "fp16"])[0] == "fp16"
    assert choose_variant(cuda, both)[0] == "fp32"  # no fp16 export: the fp32 graph on the GPU
    assert choose_variant(cpu, both, override="fp32") == ("fp32", "chosen with --variant")
    with pytest.raises(DeployError, match="no fp32-opt export"):
        choose_variant(cpu, both, override="fp32-opt")
    with pytest.raises(DeployError, match="embedded-arm64"):
        choose_variant(arm, ["fp32"])
    only_opt = parse_target({"variants": ["fp32", "fp32-opt"]}, name="board")
    assert choose_variant(only_opt, both)[0] == "fp32"  # int8 exported but the target does not list it
    same = frozenset({"int8"})  # int8 met its budget only as the fp32 graph
    assert choose_variant(cpu, both, fp32_graph=same)[0] == "fp32"
    assert choose_variant(cpu, both, {"fp32": 0.010, "int8": 0.009}, fp32_graph=same)[0] == "fp32"
    assert choose_variant(cpu, both, override="int8", fp32_graph=same)[0] == "int8"
    assert choose_variant(arm, both, fp32_graph=same)[0] == "int8"  # the only variant the target runs


def test_an_int8_that_is_the_fp32_graph_is_left_out_or_warned_about(tiny_run, tmp_path):
    """The run's int8 record says every node was kept in fp32 for the budget: deploy picks fp32 by itself and
    says why; asked for int8, it deploys it with a warning naming the fix."""
    import shutil

    from glp_bench.deploy.bundle import deploy

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    manifest = json.loads((run / "manifest.json").read_text())
    build = manifest["models"]["depth-01"]["onnx"]["int8"]["build"]
    build["quant_exclusion"] = {**build.get("quant_exclusion", {}), "status": "within budget only as fp32 (every "
                                "node excluded)", "within_budget": True, "int8_nodes_left": 0, "budget_points": 1.0}
    (run / "manifest.json").write_text(json.dumps(manifest))
    auto = deploy(run, "cpu", tmp_path / "auto", depth=1, check=False).manifest
    assert auto["model"]["variant"] == "fp32" and "int8 left out" in auto["selection"]["variant_reason"]
    forced = deploy(run, "cpu", tmp_path / "forced", depth=1, variant="int8", check=False).manifest
    assert forced["model"]["variant"] == "int8"
    assert any(w.startswith("this int8 file is the fp32 graph") for w in forced["warnings"])


def test_bundle_format_is_what_the_runtime_reads():
    rb = import_runtime().bundle
    from glp_bench.deploy import layout as bundle

    assert (bundle.FORMAT, bundle.VERSION) == (rb.FORMAT, rb.VERSION)
    assert (bundle.MANIFEST, bundle.RUNTIME, bundle.MODEL, bundle.TOKENIZER) == (rb.MANIFEST, rb.RUNTIME, rb.MODEL,
                                                                                 rb.TOKENIZER)


# --- deploy + predict --------------------------------------------------------------------------------


def test_deploy_depth_and_runtime_reproduces_the_dev_score(tiny_run, tmp_path):
    from glp_bench.core.jsonio import sha256_file
    from glp_bench.data.resolve import get_task

    run, cola = tiny_run
    out = tmp_path / "bundle"
    proc = run_cli("deploy", "--run", str(run), "--target", "cpu", "--depth", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "model.onnx", "runtime.json", "tokenizer.json"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    m = assert_schema(out / "bundle.json", "bundle")
    run_m = assert_schema(run / "manifest.json", "run")
    assert m["format"] == "glp-bench-bundle" and m["version"] == 1
    assert m["model"]["depth"] == 1 and m["model"]["original_depth"] == 2
    variant = m["model"]["variant"]
    rec = run_m["models"][m["model"]["name"]]
    assert rec["depth"] == 1
    # the variant: the faster of fp32/int8 as measured on the cpu target
    lat = json.loads((run / "latency" / "cpu.json").read_text())
    timed = {x["variant"]: x["summary_s"]["balanced_median"] for x in lat["measurements"]
             if x["model"] == m["model"]["name"] and x["summary_s"]}
    assert variant == min(timed, key=timed.get)
    assert m["latency"]["status"] == "measured"
    assert m["latency"]["headline"]["latency_ms"] == pytest.approx(timed[variant] * 1000)
    for name, f in m["files"].items():  # every file with its real size and sha256
        assert f == {"size": (out / name).stat().st_size, "sha256": sha256_file(out / name)}
    assert m["files"]["model.onnx"]["sha256"] == rec["onnx"][variant]["sha256"]
    rt = json.loads((out / "runtime.json").read_text())
    assert rt["task"]["labels"] == ["unacceptable", "acceptable"]
    assert rt["tokenizer"]["max_length"] == 128
    expected = m["expected"]["dev_score"]
    assert expected == rec["onnx"][variant]["dev_scores"]["matthews_correlation"]
    assert m["self_check"]["status"] == "ok" and m["self_check"]["dev_score"] == expected

    # the runtime, without torch, on the dev sentences as JSON lines (extra fields are ignored)
    sentences, labels = tiny_dev(cola)
    lines = "\n".join(json.dumps({"sentence": s, "label": y, "id": i}) for i, (s, y) in
                      enumerate(zip(sentences, labels, strict=True)))
    proc = run_runtime("predict", str(out), stdin=lines + "\n")
    assert proc.returncode == 0, proc.stderr
    preds = read_jsonl(proc.stdout)
    assert [p["line"] for p in preds] == list(range(1, len(sentences) + 1))
    ids = np.array([p["label_id"] for p in preds])
    assert len(set(ids)) == 2  # the model learned something: both labels occur
    got = get_task("cola").compute(np.eye(2)[ids], labels)["matthews_correlation"]
    served = m["self_check"].get("served_dev_score", expected)  # int8: served one input at a time
    assert expected != 0.0 and got == pytest.approx(served, abs=1e-12)
    for p in preds:
        assert p["label"] == ["unacceptable", "acceptable"][p["label_id"]]
        assert sum(p["scores"].values()) == pytest.approx(1.0)
        assert p["truncated"] is False


def test_blocker_really_blocks_torch():
    proc = subprocess.run([sys.executable, "-c", NO_TORCH.replace('runpy.run_module("glp_runtime", run_name="__main__", '
                                                                   'alter_sys=True)', "import torch")],
                          capture_output=True, text=True, env=runtime_env(), timeout=60)
    assert proc.returncode != 0 and "importing torch is blocked" in proc.stderr


def test_runtime_logits_equal_glp_bench_onnx_path_on_real_cola(fp32_bundle, tiny_run):
    """Same tokens and logits as glp-bench's own ONNX scoring path (transformers tokenizer), on real
    CoLA dev sentences and on over-long inputs (truncated to max_length, never an error)."""
    import datasets

    from glp_bench.data.resolve import get_task
    from glp_bench.export.validate import make_session, predict_onnx
    from glp_bench.prune.models import load_tokenizer
    from glp_bench.prune.train import tokenize

    run, _ = tiny_run
    sentences = real_cola_sentences(300)
    long = " ".join(sentences)  # far beyond 128 tokens
    texts = sentences + [long]
    proc = run_runtime("predict", str(fp32_bundle), "--format", "text", "--logits", stdin="\n".join(texts) + "\n")
    assert proc.returncode == 0, proc.stderr
    preds = read_jsonl(proc.stdout)
    got = np.array([p["logits"] for p in preds])
    assert [p["truncated"] for p in preds] == [False] * len(sentences) + [True]

    m = json.loads((fp32_bundle / "bundle.json").read_text())
    onnx_dir = run / m["model"]["source"]["file"]
    tok = load_tokenizer(str(onnx_dir.parent))
    ds = datasets.Dataset.from_dict({"sentence": texts, "label": [0] * len(texts)})
    want = predict_onnx(make_session(onnx_dir), tokenize(ds, tok, get_task("cola"), 128), tok)
    assert got.shape == want.shape == (len(texts), 2)
    assert np.abs(got - want).max() <= 1e-5


def test_predict_bad_lines_are_reported_and_the_rest_classified(fp32_bundle):
    lines = ["the cat sees the dog .", "", "{not json", '{"text": "a man reads a book ."}', "[1, 2]",
             '{"sentence": ""}', '{"other": "x"}', "word " * 5000]
    proc = run_runtime("predict", str(fp32_bundle), stdin="\n".join(lines) + "\n")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "4 of 7 line(s)" in proc.stderr
    out = read_jsonl(proc.stdout)
    assert [o["line"] for o in out] == [1, *range(3, 9)]  # the blank line 2 is not an input
    errors = {o["line"]: o["error"] for o in out if "error" in o}
    assert set(errors) == {3, 5, 6, 7}
    assert "malformed JSON" in errors[3]
    assert "got a list of 2" in errors[5]
    assert "sentence is empty" in errors[6]
    assert '"sentence"' in errors[7]
    assert out[6]["truncated"] is True and out[6]["label"] in ("unacceptable", "acceptable")
    # undecodable bytes are an error of their line, not a crash (tests/test_runtime_limits.py)
    proc = run_runtime("predict", str(fp32_bundle), stdin=b"caf\xe9 is good .\n")
    assert proc.returncode == 1 and "not UTF-8" in read_jsonl(proc.stdout)[0]["error"], proc.stderr
    assert_runtime_error(run_runtime("predict", str(fp32_bundle), stdin=""), "no input on stdin")


def test_pair_inputs_tokenize_like_transformers(fp32_bundle, tmp_path):
    """A pair task's bundle: [a, b] / field names / tab-separated lines, truncated longest-first to the
    max length exactly as transformers' ``tokenizer(a, b, truncation=True, max_length=...)``."""
    from glp_bench.core.jsonio import sha256_file

    rt_mod = import_runtime()
    keys = ["sentence1", "sentence2"]
    norm = rt_mod.inputs.normalize
    assert norm(["a", "b"], keys) == norm({"sentence1": "a", "sentence2": "b", "id": 3}, keys) == ("a", "b")
    assert norm({"text": "a", "text_pair": "b"}, keys) == ("a", "b")
    assert rt_mod.predict.parse_line("a\tb\n", "auto", 2) == ["a", "b"]
    for bad, msg in (("a", "pairs of texts"), (["a"], "got a list of 1"), ({"sentence1": "a"}, '"sentence2"'),
                     (["a", " "], "sentence2 is empty"), (None, "got NoneType")):
        with pytest.raises(rt_mod.InputError, match=re.escape(msg)):
            norm(bad, keys)
    with pytest.raises(rt_mod.InputError, match="one tab"):
        rt_mod.predict.parse_line("a b", "text", 2)

    b = Path(shutil.copytree(fp32_bundle, tmp_path / "pair"))
    rt = json.loads((b / "runtime.json").read_text())
    rt["task"]["text_keys"] = keys
    rt["tokenizer"]["max_length"] = 16
    (b / "runtime.json").write_text(json.dumps(rt))
    m = json.loads((b / "bundle.json").read_text())
    m["files"]["runtime.json"] = {"size": (b / "runtime.json").stat().st_size, "sha256": sha256_file(b / "runtime.json")}
    (b / "bundle.json").write_text(json.dumps(m))
    clf = rt_mod.Classifier.load(b)
    pairs = [("the cat sees the dog .", "a man reads a book ."),
             ("the very big red dog ran quickly to the small house of john and mary .", "it was bad ."),
             ("good .", "the child thought that the woman would give him the book but she did not .")]
    ours = clf.tokenizer.encode_batch(pairs)
    tok = load_tokenizer_for(fp32_bundle)
    firsts, seconds = [p[0] for p in pairs], [p[1] for p in pairs]
    theirs = tok(firsts, seconds, truncation=True, max_length=16)
    assert [e.ids for e in ours] == theirs["input_ids"]
    assert [e.type_ids for e in ours] == theirs["token_type_ids"]
    full = [len(x) for x in tok(firsts, seconds)["input_ids"]]
    assert full[0] <= 16 < min(full[1:])  # the first pair fits, the others are truncated
    preds = clf.predict(pairs)
    assert [p["truncated"] for p in preds] == [False, True, True]
    assert [len(e.ids) for e in ours] == [full[0], 16, 16]


def load_tokenizer_for(bundle: Path):
    from glp_bench.prune.models import load_tokenizer

    source = json.loads((bundle / "bundle.json").read_text())["model"]["source"]
    return load_tokenizer(str((Path(source["run"]) / source["file"]).parent))


# --- bundle integrity -----------------------------------------------------------------------------------


def test_tampered_or_incomplete_bundle_is_refused(fp32_bundle, tmp_path):
    def copy(name: str) -> Path:
        return Path(shutil.copytree(fp32_bundle, tmp_path / name))

    ok = run_runtime("verify", str(fp32_bundle))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True

    b = copy("flipped")
    data = bytearray((b / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    (b / "model.onnx").write_bytes(bytes(data))
    assert_runtime_error(run_runtime("predict", str(b), stdin="a b c\n"), "model.onnx does not match its sha256")

    b = copy("labels")
    rt = json.loads((b / "runtime.json").read_text())
    rt["task"]["labels"] = ["acceptable", "unacceptable"]
    (b / "runtime.json").write_text(json.dumps(rt))
    assert_runtime_error(run_runtime("verify", str(b)), "runtime.json has")  # size or sha256 differs

    b = copy("missing")
    (b / "tokenizer.json").unlink()
    assert_runtime_error(run_runtime("serve", str(b), "--port", "0"), "tokenizer.json is missing")

    b = copy("unlisted")
    m = json.loads((b / "bundle.json").read_text())
    del m["files"]["tokenizer.json"]
    (b / "bundle.json").write_text(json.dumps(m))
    assert_runtime_error(run_runtime("verify", str(b)), "does not list tokenizer.json")

    b = copy("newer")
    m["version"] = 99
    (b / "bundle.json").write_text(json.dumps(m))
    assert_runtime_error(run_runtime("verify", str(b)), "upgrade glp-runtime")

    b = copy("garbled")
    (b / "bundle.json").write_text("{ not json")
    assert_runtime_error(run_runtime("verify", str(b)), "not valid JSON")

    assert_runtime_error(run_runtime("verify", str(tmp_path / "nowhere")), "is not a folder")
    assert_runtime_error(run_runtime("verify", str(tmp_path)), "not a glp-bench bundle")


# --- selection by --max-drop and bad deploy input ------------------------------------------------------------


def test_max_drop_deploys_what_the_report_recommends(tiny_run, tmp_path):
    from glp_bench.deploy.bundle import deploy
    from glp_bench.report.stage import collect_rows, recommend

    run, _ = tiny_run
    rows = collect_rows(run, ["cpu"])
    for drop in (0.0, 100.0):
        best = recommend(rows, drop)
        res = deploy(run, "cpu", tmp_path / f"d{drop:g}", max_drop=drop, check=False)
        m = res.manifest
        assert (m["model"]["name"], m["model"]["variant"]) == (best.name, best.variant)
        assert m["selection"] == {"by": "max-drop", "max_drop_points": drop, "depth": best.depth,
                                  "model": best.name, "variant": best.variant,
                                  "variant_reason": m["selection"]["variant_reason"], "threads": 1,
                                  "threads_reason": m["selection"]["threads_reason"]}
        assert m["selection"]["threads_reason"].startswith("fastest measured on cpu")  # latency ran 1 thread only
        assert m["expected"]["delta_points"] >= -drop - 1e-9
        assert m["self_check"]["status"] == "skipped"
    # 100 points allows anything, so it is the fastest artifact measured
    fastest = min((r for r in rows if r.latency_s is not None), key=lambda r: r.latency_s)
    assert json.loads((tmp_path / "d100" / "bundle.json").read_text())["model"]["name"] == fastest.name


def test_choose_threads_takes_the_fastest_measured_or_says_it_falls_back():
    from glp_bench.core.targets import parse_target, resolve_target
    from glp_bench.deploy.select import choose_threads

    def m(threads, seconds, batch=1, seq=128, variant="int8", model="depth-02"):
        return {"model": model, "variant": variant, "batch": batch, "seq": seq, "threads": threads,
                "summary_s": {"balanced_median": seconds, "p50": seconds}}

    cpu = resolve_target("cpu")
    ms = [m(1, 0.004), m(2, 0.008), m(2, 0.001, batch=8), m(2, 0.0005, variant="fp32"), m(4, 0.0001, model="depth-03")]
    threads, why = choose_threads(cpu, ms, "depth-02", "int8")
    assert threads == 1 and "fastest measured on cpu" in why and "4.00 ms; 2: 8.00 ms" in why
    assert choose_threads(cpu, ms + [m(2, 0.004)], "depth-02", "int8")[0] == 1  # a tie: fewer threads
    only = choose_threads(cpu, [m(2, 0.008)], "depth-02", "int8")
    assert only[0] == 2 and "the only thread count measured" in only[1]
    assert choose_threads(cpu, ms, "depth-02", "int8", override=3) == (3, "chosen with --threads")
    board = parse_target({"threads": [1, 4]}, "board")
    threads, why = choose_threads(board, [], "depth-02", "int8")
    assert threads == 4 and "not measured on board" in why and "target's default" in why
    assert choose_threads(cpu, [], "depth-02", "int8")[0] == 0  # "physical": ONNX Runtime's default


def test_deploy_runs_with_the_threads_the_latency_measured_fastest(tiny_run, tmp_path):
    from glp_bench.bench import results
    from glp_bench.deploy.bundle import deploy

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs to measure 1 and 2 threads")
    run, _ = tiny_run
    board = tmp_path / "two.toml"
    board.write_text('threads = [1, 2]\nvariants = ["int8"]\nbatch_sizes = [1]\nseq_lengths = [32]\n')
    proc = run_cli("latency", "--run", str(run), "--device", str(board), "--sweep", "full", "--rounds", "1",
                   "--min-runs", "3", "--min-time", "0.02", "--warmup", "1", "--no-torch")
    assert proc.returncode == 0, proc.stderr
    lat_path = run / "latency" / "two.json"

    def deployed(out):
        res = deploy(run, str(board), out, depth=1, check=False, force=True)
        session = json.loads((out / "runtime.json").read_text())["session"]
        sel, head = res.manifest["selection"], res.manifest["latency"]["headline"]
        assert sel["threads"] == session["intra_op_threads"] == head["threads"]  # recorded where the runtime reads
        clf = import_runtime().Classifier.load(out)
        assert clf.session.get_session_options().intra_op_num_threads == sel["threads"]
        return sel, head

    def timed():
        return {x["threads"]: x["summary_s"]["balanced_median"] for x in results.load(lat_path)["measurements"]
                if x["model"] == "depth-01" and x["variant"] == "int8"}

    sel, head = deployed(tmp_path / "b1")
    t = timed()
    assert set(t) == {1, 2} and sel["threads"] == min(t, key=lambda k: (t[k], k))
    assert head["latency_ms"] == pytest.approx(t[sel["threads"]] * 1000)
    # make the chosen thread count measure 10x slower: the other one is deployed
    doc = results.load(lat_path)
    for x in doc["measurements"]:
        if x["model"] == "depth-01" and x["variant"] == "int8" and x["threads"] == sel["threads"]:
            x["summary_s"] = {k: v * 10 if isinstance(v, float) and k != "cv" else v for k, v in x["summary_s"].items()}
    results.save(lat_path, doc)
    again, _ = deployed(tmp_path / "b2")
    assert again["threads"] == 3 - sel["threads"] and "fastest measured on two" in again["threads_reason"]


def test_deploy_bad_input(tiny_run, tmp_path):
    from glp_bench.core.errors import GlpError
    from glp_bench.deploy.bundle import DeployError, deploy

    run, _ = tiny_run
    out = tmp_path / "b"
    res = deploy(run, "embedded-arm64", out, depth=2, check=False)
    assert res.manifest["model"]["variant"] == "int8"  # the board runs int8 only
    assert res.manifest["latency"]["status"] == "not measured"  # no latency/embedded-arm64.json
    assert any("arm64" in w for w in res.manifest["warnings"])  # int8 built with this CPU's preset
    assert json.loads((out / "runtime.json").read_text())["session"] == {
        "providers": ["CPUExecutionProvider"], "intra_op_threads": 1, "inter_op_threads": 1, "spinning": False,
        "memory_arena": False, "graph_optimization": "all"}

    with pytest.raises(DeployError, match="already exists"):
        deploy(run, "cpu", out, depth=2, check=False)
    deploy(run, "cpu", out, depth=2, variant="fp32", force=True, check=False)  # replaces the bundle
    assert json.loads((out / "bundle.json").read_text())["model"]["variant"] == "fp32"
    not_bundle = tmp_path / "precious"
    not_bundle.mkdir()
    (not_bundle / "keep.txt").write_text("mine")
    with pytest.raises(DeployError, match="not a bundle"):
        deploy(run, "cpu", not_bundle, depth=2, force=True, check=False)
    assert (not_bundle / "keep.txt").read_text() == "mine"
    with pytest.raises(DeployError, match="depths available: 2, 1"):
        deploy(run, "cpu", tmp_path / "x", depth=7)
    with pytest.raises(DeployError, match="no fp16 export"):
        deploy(run, "cpu", tmp_path / "x", depth=1, variant="fp16")
    with pytest.raises(GlpError, match="unknown target"):
        deploy(run, "no-such-board", tmp_path / "x", depth=1)
    with pytest.raises(DeployError, match="no latency/embedded-arm64.json"):
        deploy(run, "embedded-arm64", tmp_path / "x", max_drop=1.0)
    with pytest.raises(DeployError, match="within 0 GLUE points"):
        deploy(run, "cpu", tmp_path / "x", max_drop=0.0, variant="int8", strategy="no-such-strategy")
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    assert_clean_error(run_cli("deploy", "--run", str(run), "--target", "cpu", "--depth", "9", "--out",
                               str(tmp_path / "y")), "depths available")
    proc = run_cli("deploy", "--run", str(run), "--target", "cpu", "--out", str(tmp_path / "y"))
    assert proc.returncode == 2 and "one of the arguments --depth --max-drop is required" in proc.stderr
    assert_clean_error(run_cli("deploy", "--run", str(tmp_path / "norun"), "--target", "cpu", "--depth", "1",
                               "--out", str(tmp_path / "y")), "not a glp-bench run directory")


# --- a GPU target ---------------------------------------------------------------------------------------------


def ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def test_cuda_bundle_is_written_anywhere_and_runs_where_cuda_is(tiny_run, tmp_path):
    from glp_bench.deploy.bundle import deploy

    run, cola = tiny_run
    out = tmp_path / "gpu"
    m = deploy(run, "cuda", out, depth=1).manifest
    assert m["model"]["variant"] == "fp32"  # no fp16 export in this run: the fp32 graph, on the GPU
    rt = json.loads((out / "runtime.json").read_text())
    assert rt["session"]["providers"] == ["CUDAExecutionProvider"]
    assert m["self_check"]["status"] == "ok" and m["self_check"]["tokenization"]["mismatches"] == 0
    sentences, _ = tiny_dev(cola)
    text = "\n".join(sentences[:20]) + "\n"
    on_cpu = run_runtime("predict", str(out), "--provider", "cpu", stdin=text)
    assert on_cpu.returncode == 0, on_cpu.stderr
    if not ort_has_cuda():
        assert m["self_check"]["provider"] == "CPUExecutionProvider" and "stand-in" in m["self_check"]["note"]
        assert_runtime_error(run_runtime("predict", str(out), stdin=text), "--provider cpu")
    else:  # pragma: no cover - needs onnxruntime-gpu and a GPU
        assert m["self_check"]["provider"] == "CUDAExecutionProvider"
        assert m["self_check"]["difference"] <= 1e-6


@gpu
@pytest.mark.skipif(not ort_has_cuda(), reason="needs onnxruntime-gpu")
def test_cuda_bundle_predicts_like_the_cpu(tiny_run, tmp_path):  # pragma: no cover - needs a GPU
    from glp_bench.deploy.bundle import deploy

    run, cola = tiny_run
    out = tmp_path / "gpu"
    deploy(run, "cuda", out, depth=1, variant="fp32", check=False)
    text = "\n".join(tiny_dev(cola)[0]) + "\n"
    gpu_run = run_runtime("predict", str(out), "--logits", stdin=text)
    cpu_run = run_runtime("predict", str(out), "--logits", "--provider", "cpu", stdin=text)
    assert gpu_run.returncode == 0 and cpu_run.returncode == 0, gpu_run.stderr + cpu_run.stderr
    a = np.array([p["logits"] for p in read_jsonl(gpu_run.stdout)])
    b = np.array([p["logits"] for p in read_jsonl(cpu_run.stdout)])
    assert np.abs(a - b).max() <= 1e-3  # TF32/cuBLAS vs MKL rounding


# --- the HTTP server ---------------------------------------------------------------------------------------


class Server:
    """``glp_runtime serve`` in a torch-free subprocess on a free port of 127.0.0.1."""

    def __init__(self, bundle: Path, *extra: str):
        self.proc = subprocess.Popen([sys.executable, "-c", NO_TORCH, "serve", str(bundle), "--host", "127.0.0.1",
                                      "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=runtime_env())
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        if sel.select(timeout=60):
            line = self.proc.stdout.readline()
        match = re.search(rb"http://127\.0\.0\.1:(\d+)", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r} {self.proc.stderr.read()!r}")
        self.port = int(match.group(1))

    def request(self, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            hdrs = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body.encode() if isinstance(body, str) else body,
                         headers={**hdrs, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def raw(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)  # the client is done sending (a short body stays short)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode()


def test_server_batches_concurrent_requests_and_survives_bad_ones(fp32_bundle):
    Classifier = import_runtime().Classifier  # noqa: N806

    sentences = real_cola_sentences(48)
    reference = Classifier.load(fp32_bundle).predict(sentences)
    server = Server(fp32_bundle, "--max-wait-ms", "50", "--max-body-bytes", "4096", "--max-inputs", "8")
    try:
        status, health = server.request("GET", "/health")
        assert status == 200 and health["status"] == "ok" and health["model"]["depth"] == 1

        def one(i: int):
            if i % 3 == 0:  # a few multi-input requests among the single ones
                return i, server.request("POST", "/predict", json.dumps({"inputs": sentences[i:i + 3]}))
            return i, server.request("POST", "/predict", json.dumps({"text": sentences[i]}))

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(one, range(40)))
        for i, (status, body) in answers:
            assert status == 200, body
            want = reference[i:i + 3] if i % 3 == 0 else reference[i:i + 1]
            assert [p["label"] for p in body["predictions"]] == [w["label"] for w in want]
            for p, w in zip(body["predictions"], want, strict=True):
                assert p["scores"]["acceptable"] == pytest.approx(w["scores"]["acceptable"], abs=1e-5)
        stats = server.request("GET", "/health")[1]["stats"]
        assert stats["requests"] == 40 and stats["inputs"] == sum(3 if i % 3 == 0 else 1 for i in range(40))
        assert stats["largest_batch"] > 3 and stats["batches"] < 40  # concurrent requests were batched

        bad = [
            ("POST", "/predict", "{not json", 400, "malformed JSON"),
            ("POST", "/predict", json.dumps({"text": "   "}), 400, "empty"),
            ("POST", "/predict", json.dumps({"inputs": []}), 400, "empty"),
            ("POST", "/predict", json.dumps({"inputs": "a b"}), 400, "must be a list"),
            ("POST", "/predict", json.dumps({"inputs": ["ok .", 5]}), 400, "inputs[1]"),
            ("POST", "/predict", json.dumps({"inputs": ["a ."] * 9}), 413, "limit is 8"),
            ("POST", "/predict", json.dumps({"text": "x " * 3000}), 413, "limit is 4096"),
            ("POST", "/predict", json.dumps(["two", "texts"]), 400, "got a list of 2"),
            ("POST", "/predict", b"\xff\xfe{}", 400, "not UTF-8"),
            ("POST", "/health", "{}", 405, "POST /predict"),
            ("GET", "/predict", None, 405, "POST"),
            ("GET", "/nope", None, 404, "no such endpoint"),
        ]
        for method, path, body, code, fragment in bad:
            status, answer = server.request(method, path, body)
            assert status == code and fragment in answer["error"], (path, body, status, answer)
        no_length = server.raw(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                               b"Connection: close\r\n\r\n")
        assert no_length.startswith(b"HTTP/1.0 411")
        truncated = server.raw(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 100\r\n\r\n{\"text\": \"a")
        assert truncated.startswith(b"HTTP/1.0 400") and b"ended after" in truncated
        garbage = server.raw(b"\x00\x01 not http at all\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.0 400") and b'{"error": "Bad request' in garbage  # a status line too
        status, answer = server.request("PUT", "/predict", "{}")
        assert status == 405 and "PUT" in answer["error"]  # as the README says

        # still serving, and a long text is truncated rather than refused
        status, body = server.request("POST", "/predict", json.dumps({"text": "word " * 700}))
        assert status == 200 and body["predictions"][0]["truncated"] is True
        status, body = server.request("POST", "/predict", json.dumps({"sentence": sentences[0]}))
        assert status == 200 and body["predictions"][0]["label"] == reference[0]["label"]
        status, info = server.request("GET", "/info")
        assert status == 200 and info["labels"] == ["unacceptable", "acceptable"] and info["max_length"] == 128
        assert server.request("GET", "/health")[1]["stats"]["errors"] == 0
    finally:
        err = server.close()
    assert "Traceback" not in err, err


# --- the real model -----------------------------------------------------------------------------------------------

REAL_RUN = REPO / "runs" / "cola-all-minilm-l6-v2"


def _real_run_ready() -> bool:
    try:
        m = json.loads((REAL_RUN / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return any((r.get("onnx") or {}).get("int8", {}).get("status") == "ok" for r in m.get("models", {}).values())


@pytest.mark.slow
@pytest.mark.skipif(not _real_run_ready(), reason="runs/cola-all-minilm-l6-v2 (real CoLA run, exported) not present")
def test_real_cola_run_bundle_reproduces_its_dev_score(tmp_path):
    from glp_bench.data.resolve import get_task

    run = REAL_RUN  # deploy only reads the run directory
    before = (run / "manifest.json").stat().st_mtime_ns
    depth = min(m["depth"] for m in json.loads((run / "manifest.json").read_text())["models"].values())
    out = tmp_path / "bundle"
    proc = run_cli("deploy", "--run", str(run), "--target", "cpu", "--depth", str(depth), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (run / "manifest.json").stat().st_mtime_ns == before
    m = json.loads((out / "bundle.json").read_text())
    rows = [line.split("\t") for line in (SHARED_COLA / "dev.tsv").read_text(encoding="utf-8").splitlines()]
    proc = run_runtime("predict", str(out), "--format", "text", stdin="\n".join(r[3] for r in rows) + "\n", timeout=600)
    assert proc.returncode == 0, proc.stderr
    preds = read_jsonl(proc.stdout)
    ids = np.array([p["label_id"] for p in preds])
    mcc = get_task("cola").compute(np.eye(2)[ids], [int(r[1]) for r in rows])["matthews_correlation"]
    assert mcc == pytest.approx(m["expected"]["dev_score"], abs=1e-9)
    # and the probabilities are the model's own: those of glp-bench's ONNX path (transformers tokenizer)
    import datasets

    from glp_bench.export.validate import make_session, predict_onnx, scoring_batch_size
    from glp_bench.prune.train import tokenize

    tok = load_tokenizer_for(out)
    ds = datasets.Dataset.from_dict({"sentence": [r[3] for r in rows], "label": [int(r[1]) for r in rows]})
    want = predict_onnx(make_session(run / m["model"]["source"]["file"]), tokenize(ds, tok, get_task("cola"), 128), tok,
                        scoring_batch_size(m["model"]["variant"]))  # int8: one sentence at a time, as served
    got = np.array([p["scores"]["acceptable"] for p in preds])
    e = np.exp(want - want.max(axis=1, keepdims=True))
    assert np.abs(got - e[:, 1] / e.sum(axis=1)).max() <= 1e-5
