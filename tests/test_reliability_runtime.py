"""Issue 17, the runtime (deploy/runtime, glp_runtime): client errors are 4xx (nesting depth, lone
surrogates, methods, malformed request lines) and the server keeps serving correct predictions after them;
command-line options are validated; a bundle with an unlisted file is refused; and an input's result does
not depend on what else is in its batch (int8 bundles run inputs one at a time)."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .test_deploy import assert_runtime_error, import_runtime, run_runtime, runtime_env

SENTENCES = ["the cat sees a good dog .", "a bad idea .", "john gave mary the book quickly and she read it .", "x"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """{variant: bundle folder} of a tiny exported BERT (fp32 and int8), deployed in-process."""
    from glp_bench.deploy.bundle import deploy
    from glp_bench.export.stage import export_run
    from tests.test_export import make_run

    root = tmp_path_factory.mktemp("rt")
    run_dir = make_run(root, "bert", {4: []})
    export_run(run_dir, variants="fp32,int8").raise_for_failures()
    out = {}
    for variant in ("fp32", "int8"):
        out[variant] = root / f"b-{variant}"
        deploy(run_dir, "cpu", out[variant], depth=4, variant=variant, check=True)
    return out


# --- the bundle ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["extra.txt", ".hidden", "model.onnx.bak"])
def test_bundle_with_an_unlisted_file_is_refused(name, bundles, tmp_path):
    b = Path(shutil.copytree(bundles["fp32"], tmp_path / "b"))
    (b / name).write_text("not from glp-bench deploy")
    assert_runtime_error(run_runtime("verify", str(b)), f"holds {name}, which bundle.json does not list")
    assert run_runtime("verify", str(bundles["fp32"])).returncode == 0


# --- batch invariance ----------------------------------------------------------------------------------
def test_int8_results_do_not_depend_on_the_batch(bundles):
    rt = import_runtime()
    clf = rt.Classifier.load(bundles["int8"])
    assert clf.batch_invariant is False and rt.Classifier.load(bundles["fp32"]).batch_invariant is True
    alone = [clf.logits([s])[0] for s in SENTENCES]
    together = clf.logits(SENTENCES)
    reversed_ = clf.logits(SENTENCES[::-1])[::-1]
    for i, row in enumerate(alone):
        assert (together[i] == row).all() and (reversed_[i] == row).all(), (i, row, together[i])
    # the deploy self-check scored the export's batches and recorded the score served one input at a time
    chk = json.loads((bundles["int8"] / "bundle.json").read_text())["self_check"]
    assert chk["status"] == "ok" and chk["batch_invariant"] is False and "served_dev_score" in chk


def test_fp32_batches_agree_with_single_inputs(bundles):
    rt = import_runtime()
    clf = rt.Classifier.load(bundles["fp32"])
    alone = [clf.logits([s])[0] for s in SENTENCES]
    together = clf.logits(SENTENCES)
    for i, row in enumerate(alone):
        assert abs(together[i] - row).max() < 1e-5


# --- serve options -------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt, value", [("--port", "-1"), ("--port", "65536"), ("--port", "http"),
                                        ("--threads", "-1"), ("--max-wait-ms", "nan"), ("--max-wait-ms", "inf"),
                                        ("--max-wait-ms", "-1"), ("--max-batch", "0")])
def test_bad_serve_options_are_refused(opt, value, bundles):
    proc = run_runtime("serve", str(bundles["fp32"]), opt, value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"error: argument {opt}" in proc.stderr


# --- the server ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["fp32", "int8"])
def server(request, bundles):
    """(host, port, variant) of a running glp_runtime server on a free port."""
    proc = subprocess.Popen([sys.executable, "-m", "glp_runtime", "serve", str(bundles[request.param]), "--port", "0",
                             "--max-wait-ms", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=runtime_env())
    line = proc.stdout.readline()
    m = re.search(r"http://([\d.]+):(\d+)", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
    yield m.group(1), int(m.group(2)), request.param
    proc.terminate()
    proc.wait(timeout=10)


def raw(server, data: bytes) -> bytes:
    host, port, _ = server
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def request(server, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, dict]:
    host, port, _ = server
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body is not None else {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), (json.loads(data) if data else {})


def predict(server, obj) -> tuple[int, dict]:
    status, _, doc = request(server, "POST", "/predict", json.dumps(obj).encode())
    return status, doc


CLIENT_ERRORS = [
    ("deep list", b"[" * 100_000 + b"]" * 100_000, 400, "nested deeper"),
    ("deep object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400, "nested deeper"),
    ("nested inputs", json.dumps({"inputs": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}).encode(),
     400, "nested deeper"),
    ("lone surrogate", b'{"text": "\\ud800"}', 400, "lone surrogate"),
    ("lone surrogate in a list", b'{"inputs": ["fine", "a \\udfff b"]}', 400, "inputs[1]"),
    ("surrogate key", b'{"\\ud800": "x"}', 400, "needs"),
    ("bad JSON", b'{"text": ', 400, "malformed JSON"),
    ("not UTF-8", b'{"text": "\xff\xfe"}', 400, "not UTF-8"),
]


@pytest.mark.parametrize("name, body, status, fragment", CLIENT_ERRORS, ids=[c[0] for c in CLIENT_ERRORS])
def test_client_errors_are_4xx_and_the_server_goes_on(name, body, status, fragment, server):
    got, _, doc = request(server, "POST", "/predict", body)
    assert got == status and fragment in doc["error"], (got, doc)
    assert predict(server, {"text": SENTENCES[0]})[0] == 200


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/predict", "/health", "/nowhere"])
def test_other_methods_get_405_with_allow(method, path, server):
    status, headers, doc = request(server, method, path, b"{}" if method != "OPTIONS" else None)
    assert status == 405 and headers.get("Allow") == "GET, POST", (status, headers, doc)
    assert method in doc["error"]


@pytest.mark.parametrize("line", [b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n", b"GET /health\r\n",
                                  b"GET /health HTTP/9.9\r\n\r\n", b"GET  HTTP/1.1 extra words\r\n\r\n"])
def test_malformed_request_line_gets_a_status_line(line, server):
    reply = raw(server, line)
    head = reply.split(b"\r\n", 1)[0]
    assert re.match(rb"HTTP/1\.[01] (400|505) ", head), reply[:200]
    assert predict(server, {"text": SENTENCES[0]})[0] == 200


def test_predictions_after_the_bad_requests_are_correct_and_batch_invariant(server, bundles):
    rt = import_runtime()
    clf = rt.Classifier.load(bundles[server[2]])
    expected = [clf.predict([s])[0] for s in SENTENCES]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # concurrent requests are batched together
        got = list(pool.map(lambda s: predict(server, {"text": s}), SENTENCES * 6))
    for i, (status, doc) in enumerate(got):
        assert status == 200, doc
        want = expected[i % len(SENTENCES)]
        (pred,) = doc["predictions"]
        assert pred["label"] == want["label"]
        if server[2] == "int8":  # one input at a time: exactly the single-input scores
            assert pred["scores"] == want["scores"]
        else:
            assert all(abs(pred["scores"][k] - v) < 1e-6 for k, v in want["scores"].items())
