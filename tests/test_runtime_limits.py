"""Issues 31 and 32, the runtime (deploy/runtime, glp_runtime): a bundle whose max length exceeds the model's
positions is refused when it loads; undecodable and blank stdin lines; thread counts bounded by the machine;
megabyte texts cut before tokenizing; a bounded number of requests in progress (503); clients that leave
early cost no traceback; the Host and Content-Type checks; the console script."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from .conftest import REPO
from .test_deploy import NO_TORCH, assert_runtime_error, import_runtime, read_jsonl, run_runtime, runtime_env

GOOD = "the cat sees a good dog ."


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """{variant: bundle folder} of a tiny exported BERT (160 positions, max length 128), fp32 and int8."""
    from glp_bench.deploy.bundle import deploy
    from glp_bench.export.stage import export_run
    from tests.test_export import make_run

    root = tmp_path_factory.mktemp("limits")
    run_dir = make_run(root, "bert", {4: []})
    export_run(run_dir, variants="fp32,int8").raise_for_failures()
    out = {}
    for variant in ("fp32", "int8"):
        out[variant] = root / f"b-{variant}"
        deploy(run_dir, "cpu", out[variant], depth=4, variant=variant, check=False)
    return out


def edit_runtime(bundle: Path, dest: Path, change) -> Path:
    """A copy of ``bundle`` whose runtime.json ``change(rt)`` edited, re-hashed in bundle.json so it verifies."""
    b = Path(shutil.copytree(bundle, dest))
    rt = json.loads((b / "runtime.json").read_text())
    change(rt)
    data = json.dumps(rt, indent=2).encode()
    (b / "runtime.json").write_bytes(data)
    manifest = json.loads((b / "bundle.json").read_text())
    manifest["files"]["runtime.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (b / "bundle.json").write_text(json.dumps(manifest, indent=2))
    return b


# --- issue 31 item 4: max_length against the model's position embeddings ---------------------------------
def test_model_limits_are_read_from_the_graph(bundles):
    from glp_runtime.limits import embedding_limits

    for variant in ("fp32", "int8"):  # int8 holds the table as "<name>_quantized"
        assert embedding_limits(bundles[variant] / "model.onnx") == {"positions": 160, "vocab": 83}


@pytest.mark.parametrize("max_length", [161, 1000, 100_000])
def test_max_length_beyond_the_positions_is_refused_when_loading(max_length, bundles, tmp_path):
    b = edit_runtime(bundles["fp32"], tmp_path / "b", lambda rt: rt["tokenizer"].update(max_length=max_length))
    assert run_runtime("verify", str(b)).returncode == 0  # the checksums match: only the model can tell
    proc = run_runtime("predict", str(b), stdin="word " * 400 + "\n")
    assert_runtime_error(proc, f"max_length {max_length} exceeds the 160 positions")
    assert proc.stdout == ""
    with pytest.raises(import_runtime().BundleError, match="exceeds the 160 positions"):
        import_runtime().Classifier.load(b)


def test_max_length_at_the_positions_serves_long_texts(bundles, tmp_path):
    b = edit_runtime(bundles["fp32"], tmp_path / "b", lambda rt: rt["tokenizer"].update(max_length=160))
    proc = run_runtime("predict", str(b), stdin="word " * 400 + "\n")
    assert proc.returncode == 0, proc.stderr
    assert read_jsonl(proc.stdout)[0]["truncated"] is True


# --- issue 31 item 8 and issue 32 item 13: undecodable and blank lines --------------------------------------
def test_undecodable_lines_are_errors_and_the_rest_is_classified(bundles):
    data = b"\xef\xbb\xbf" + GOOD.encode() + b"\ncaf\xe9 is good .\n\xff\xfe\x00\x01\n" + "caf\u00e9 is good .\n".encode()
    proc = run_runtime("predict", str(bundles["fp32"]), stdin=data)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "2 of 4 line(s) could not be classified" in proc.stderr
    out = read_jsonl(proc.stdout)
    assert [o["line"] for o in out] == [1, 2, 3, 4]
    assert "not UTF-8" in out[1]["error"] and "0xe9" in out[1]["error"]
    assert "not UTF-8" in out[2]["error"] and "0xff" in out[2]["error"]
    clf = import_runtime().Classifier.load(bundles["fp32"])
    assert out[0]["label"] == clf.predict([GOOD])[0]["label"]  # the BOM is not part of the text
    assert out[3]["scores"] == pytest.approx(clf.predict(["caf\u00e9 is good ."])[0]["scores"])


@pytest.mark.parametrize("stdin", [GOOD + "\n\n", GOOD + "\n \n\t\n", GOOD + "\r\n\r\n"])
def test_trailing_blank_lines_are_not_inputs(stdin, bundles):
    proc = run_runtime("predict", str(bundles["fp32"]), stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    assert [o["line"] for o in read_jsonl(proc.stdout)] == [1]


def test_blank_lines_are_skipped_and_lines_keep_their_numbers(bundles):
    proc = run_runtime("predict", str(bundles["fp32"]), stdin=f"\n{GOOD}\n\n   \n{{\"text\": \"a bad idea .\"}}\n")
    assert proc.returncode == 0, proc.stderr
    assert [o["line"] for o in read_jsonl(proc.stdout)] == [2, 5]
    assert_runtime_error(run_runtime("predict", str(bundles["fp32"]), stdin="\n \n"), "no input on stdin")


# --- issue 32 item 6: thread counts bounded by the machine -------------------------------------------------
def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_threads_beyond_the_cpus_are_refused(command, bundles):
    t0 = time.monotonic()
    proc = run_runtime(command, str(bundles["fp32"]), "--threads", "100000", stdin=GOOD, timeout=60)
    assert_runtime_error(proc, f"exceeds the {cpus()} CPU(s)")
    assert "--threads" in proc.stderr and time.monotonic() - t0 < 30
    proc = run_runtime("predict", str(bundles["fp32"]), "--threads", str(cpus()), stdin=GOOD)
    assert proc.returncode == 0, proc.stderr


def test_bundle_threads_beyond_the_cpus_are_lowered_with_a_warning(bundles, tmp_path):
    b = edit_runtime(bundles["fp32"], tmp_path / "b",
                     lambda rt: rt["session"].update(intra_op_threads=100_000, inter_op_threads=5000))
    proc = run_runtime("predict", str(b), stdin=GOOD + "\n", timeout=60)
    assert proc.returncode == 0, proc.stderr
    warnings = [x for x in proc.stderr.splitlines() if x.startswith("glp-runtime: warning:")]
    assert len(warnings) == 2 and all(f"using {cpus()}" in w for w in warnings), proc.stderr
    assert read_jsonl(proc.stdout)[0]["label"] in ("unacceptable", "acceptable")


# --- issue 32 item 7: long texts, bounded requests, clients that leave ---------------------------------------
def test_megabyte_texts_are_cut_before_tokenizing_without_changing_results(bundles):
    clf = import_runtime().Classifier.load(bundles["fp32"])
    assert clf.max_chars == 128 * 32
    huge, long = "word " * 200_000, "word " * 1000  # 1 MB; both far over 128 tokens
    calls = []
    encode = clf.tokenizer.encode_batch
    clf.tokenizer = type("T", (), {"encode_batch": lambda self, xs: calls.append(xs) or encode(xs)})()
    a, b = clf.predict([huge, long])
    assert max(len(t) for t in calls[0]) == clf.max_chars  # the tokenizer never saw the megabyte
    assert a["truncated"] is True and a["scores"] == b["scores"]
    # a text cut by characters is reported truncated even when its first characters fit
    (c,) = clf.predict(["x" * (clf.max_chars + 1)])
    assert c["truncated"] is True


class Server:
    """``glp_runtime serve`` (torch-free subprocess) on a free loopback port; stderr kept for inspection."""

    def __init__(self, bundle: Path, *extra: str):
        self.proc = subprocess.Popen([sys.executable, "-c", NO_TORCH, "serve", str(bundle), "--port", "0", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=runtime_env())
        line = self.proc.stdout.readline().decode()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r} {self.proc.stderr.read()!r}")
        self.port = int(m.group(1))

    def request(self, method, path, body=None, headers=None, host=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            hdrs = {"Content-Type": "application/json"} if body is not None else {}
            hdrs.update(headers or {})
            if host is not None:
                conn.putrequest(method, path, skip_host=True)
                conn.putheader("Host", host)
                for k, v in hdrs.items():
                    conn.putheader(k, v)
                data = body.encode() if isinstance(body, str) else body
                if data is not None:
                    conn.putheader("Content-Length", str(len(data)))
                conn.endheaders(data)
            else:
                conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.getheaders())
        finally:
            conn.close()

    def predict(self, text=GOOD, **kw):
        return self.request("POST", "/predict", json.dumps({"text": text}), **kw)

    def close(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode()


@pytest.fixture(scope="module")
def server(bundles):
    s = Server(bundles["fp32"], "--max-pending", "2", "--max-body-bytes", "65536")
    yield s
    s.close()


def test_requests_beyond_max_pending_get_503_and_the_server_recovers(server):
    held = []
    for _ in range(2):  # two requests whose bodies have not arrived yet: both slots taken
        s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        body = json.dumps({"text": GOOD}).encode()
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
        held.append((s, body))
    deadline = time.monotonic() + 20
    while True:  # the held requests are admitted asynchronously
        status, doc, headers = server.predict()
        if status == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 503 and "--max-pending" in doc["error"] and headers.get("Retry-After") == "1", doc
    for s, body in held:  # the held requests complete normally
        s.sendall(body[5:])
        reply = b""
        while b"predictions" not in reply and (chunk := s.recv(65536)):
            reply += chunk
        s.close()
        assert reply.startswith(b"HTTP/1.0 200"), reply[:200]
    assert server.predict()[0] == 200


def test_clients_that_leave_before_the_answer_leave_no_traceback(bundles):
    s = Server(bundles["fp32"], "--max-body-bytes", "1024")
    try:
        requests = [b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000000\r\n\r\n",  # 413, too large to drain
                    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 5000\r\n\r\n" + b"x" * 5000,  # 413 after draining
                    b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"]
        for i in range(30):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
            c.sendall(requests[i % len(requests)])
            c.close()
        time.sleep(0.5)
        assert s.predict()[0] == 200
    finally:
        err = s.close()
    assert "Traceback" not in err and len(err) < 2000, err


# --- issue 32 item 8: Host, Content-Type, non-loopback warning -----------------------------------------------
def test_host_header_must_name_this_server(server):
    for host in ("127.0.0.1", f"127.0.0.1:{server.port}", f"localhost:{server.port}", "LOCALHOST",
                 f"[::1]:{server.port}"):
        assert server.predict(host=host)[0] == 200, host
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1:1", "10.0.0.1"):
        status, doc, _ = server.predict(host=host)
        assert status == 421 and "--allowed-host" in doc["error"], (host, status, doc)
        assert server.request("GET", "/health", host=host)[0] == 421
    assert server.request("GET", "/health", host="127.0.0.1:x")[0] == 400


def test_allowed_host_option(bundles):
    s = Server(bundles["fp32"], "--allowed-host", "model.internal")
    try:
        assert s.predict(host=f"model.internal:{s.port}")[0] == 200
        assert s.predict(host="other.internal")[0] == 421
    finally:
        s.close()
    s = Server(bundles["fp32"], "--allowed-host", "*")
    try:
        assert s.predict(host="anything.example")[0] == 200
    finally:
        s.close()


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/jsonx"])
def test_predict_requires_json_content_type(ctype, server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"text": GOOD}).encode()
    conn.putrequest("POST", "/predict")
    if ctype:
        conn.putheader("Content-Type", ctype)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status == 415 and "application/json" in doc["error"], doc
    status, doc, _ = server.predict(headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200 and doc["predictions"][0]["label"] in ("unacceptable", "acceptable")


def test_non_loopback_hosts_are_warned_about():
    from glp_runtime import api

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert api.not_loopback_warning(host) is None
    for host in ("0.0.0.0", "::", "10.1.2.3", "myhost.example"):
        assert "--allowed-host" in api.not_loopback_warning(host)


# --- issue 32 item 11: the console script ------------------------------------------------------------------
def test_glp_runtime_console_script_ships_with_both_distributions():
    bench = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = tomllib.loads((REPO / "deploy" / "runtime" / "pyproject.toml").read_text())
    assert bench["project"]["scripts"]["glp-runtime"] == runtime["project"]["scripts"]["glp-runtime"]
    module, func = bench["project"]["scripts"]["glp-runtime"].split(":")
    proc = subprocess.run([sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}(['--version']))"],
                          capture_output=True, text=True, env=runtime_env(), timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("glp-runtime "), proc.stderr
    hint = (REPO / "glp_bench" / "commands" / "deploy.py").read_text()
    assert "glp-runtime serve" in hint and "PYTHONPATH=deploy/runtime" not in hint
