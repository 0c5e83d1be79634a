"""Issue 27 item 2: ``glp-runtime serve --ray`` (glp_runtime.ray_serve) answers the same JSON as the standalone
server for the same inputs, refuses the same bad requests with the same statuses and messages, keeps the
batch-invariance rule (an int8 bundle: exactly the single-input scores, however Serve batches), and its bad
input (--replicas 0, Ray missing, an unreachable --ray-address) is one clear line, exit 2.

One local Ray instance for the module (the CLI's own, 2 CPUs at most, loopback), stopped at the end; the
tests skip when Ray Serve is not installed."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_deploy import BLOCKED, NO_TORCH, assert_runtime_error, run_runtime, runtime_env

SENTENCES = ["the cat sees a good dog .", "a bad idea .", "john gave mary the book quickly and she read it .", "x",
             "word " * 400]
OPTIONS = ("--max-wait-ms", "20", "--max-body-bytes", "4096", "--max-inputs", "8")


def ray_serve_installed() -> bool:
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        return False
    return True


needs_serve = pytest.mark.skipif(not ray_serve_installed(), reason="Ray Serve not installed (pip install 'ray[serve]')")


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory) -> Path:
    """An int8 bundle of a tiny exported BERT (int8: the variant whose scores batching would change)."""
    from glp_bench.deploy.bundle import deploy
    from glp_bench.export.stage import export_run
    from tests.test_export import make_run

    root = tmp_path_factory.mktemp("ray-serve")
    run_dir = make_run(root, "bert", {4: []})
    export_run(run_dir, variants="fp32,int8").raise_for_failures()
    deploy(run_dir, "cpu", root / "b-int8", depth=4, variant="int8", check=False)
    return root / "b-int8"


class Served:
    """``glp-runtime serve BUNDLE ...`` (torch-free subprocess) on 127.0.0.1; stopped with SIGTERM."""

    def __init__(self, bundle: Path, *extra: str, timeout: float = 240):
        self.proc = subprocess.Popen([sys.executable, "-c", NO_TORCH, "serve", str(bundle), "--port", "0", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=runtime_env(), text=True)
        deadline, line = time.monotonic() + timeout, ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            line = self.proc.stdout.readline()
            if "serving" in line:
                break
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise AssertionError(f"server did not start: {line!r}")
        self.port = int(m.group(1))

    def request(self, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            hdrs = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body.encode() if isinstance(body, str) else body,
                         headers={**hdrs, **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, (json.loads(data) if data else None), {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def raw(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
            s.sendall(data)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture(scope="module")
def servers(int8_bundle):
    """(standalone, Ray Serve with 1 replica) serving the same bundle with the same limits."""
    if not ray_serve_installed():
        pytest.skip("Ray Serve not installed (pip install 'ray[serve]')")
    standalone = Served(int8_bundle, *OPTIONS)
    try:
        ray = Served(int8_bundle, "--ray", "--replicas", "1", *OPTIONS)
    except BaseException:
        standalone.stop()
        raise
    yield standalone, ray
    err = ray.stop()
    standalone.stop()
    assert ray.proc.returncode == 0, err


GOOD = [
    {"text": SENTENCES[0]},
    {"sentence": SENTENCES[1]},
    SENTENCES[2],
    [SENTENCES[3]],
    {"inputs": SENTENCES},
    {"inputs": [{"text": s, "id": i} for i, s in enumerate(SENTENCES[:3])]},
]


@needs_serve
@pytest.mark.parametrize("body", GOOD, ids=range(len(GOOD)))
def test_same_json_as_the_standalone_server(body, servers):
    a, b = (s.request("POST", "/predict", json.dumps(body)) for s in servers)
    assert a[0] == b[0] == 200, (a, b)
    assert a[1] == b[1]  # int8, one input at a time in both: identical floats


@needs_serve
def test_info_and_health_agree(servers):
    standalone, ray = servers
    assert standalone.request("GET", "/info")[:2] == ray.request("GET", "/info")[:2]
    (sa, ha, _), (sb, hb, _) = standalone.request("GET", "/health"), ray.request("GET", "/health")
    assert sa == sb == 200
    for key in ("status", "task", "provider", "model"):
        assert ha[key] == hb[key]
    assert set(ha["stats"]) == set(hb["stats"])


@needs_serve
def test_serve_batches_concurrent_requests_without_changing_a_result(servers):
    standalone, ray = servers
    reference = {s: standalone.request("POST", "/predict", json.dumps({"text": s}))[1] for s in SENTENCES}
    before = ray.request("GET", "/health")[1]["stats"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda s: (s, ray.request("POST", "/predict", json.dumps({"text": s}))), SENTENCES * 8))
    for s, (status, doc, _) in got:
        assert status == 200 and doc == reference[s], (s, doc)
    after = ray.request("GET", "/health")[1]["stats"]
    assert after["requests"] - before["requests"] == len(got)
    assert after["batches"] - before["batches"] < len(got) and after["largest_batch"] > 1  # Serve batched them


BAD = [
    ("POST", "/predict", "{not json", None),
    ("POST", "/predict", json.dumps({"text": "   "}), None),
    ("POST", "/predict", json.dumps({"inputs": []}), None),
    ("POST", "/predict", json.dumps({"inputs": "a b"}), None),
    ("POST", "/predict", json.dumps({"inputs": ["ok .", 5]}), None),
    ("POST", "/predict", json.dumps({"inputs": ["a ."] * 9}), None),
    ("POST", "/predict", json.dumps({"text": "x " * 3000}), None),
    ("POST", "/predict", json.dumps(["two", "texts"]), None),
    ("POST", "/predict", b"\xff\xfe{}", None),
    ("POST", "/predict", b'{"text": "\\ud800"}', None),
    ("POST", "/predict", b"[" * 40 + b"]" * 40, None),
    ("POST", "/predict", json.dumps({"text": "a ."}), {"Content-Type": "text/plain"}),
    ("POST", "/predict", json.dumps({"text": "a ."}), {"Host": "evil.example"}),
    ("GET", "/health", None, {"Host": "evil.example"}),
    ("POST", "/health", "{}", None),
    ("GET", "/predict", None, None),
    ("GET", "/nope", None, None),
    ("POST", "/nope", "{}", None),
    ("PUT", "/predict", "{}", None),
    ("DELETE", "/health", None, None),
]


@needs_serve
@pytest.mark.parametrize("method, path, body, headers", BAD, ids=range(len(BAD)))
def test_same_refusals_as_the_standalone_server(method, path, body, headers, servers):
    def ask(server):  # messages that name the server's port compare without it
        status, doc, hdrs = server.request(method, path, body, headers)
        return status, json.loads(json.dumps(doc).replace(f":{server.port}", ":PORT")), hdrs

    a, b = (ask(s) for s in servers)
    assert 400 <= a[0] < 500 and a[:2] == b[:2], (a, b)
    assert a[2].get("allow") == b[2].get("allow")
    assert servers[1].request("POST", "/predict", json.dumps({"text": "a ."}))[0] == 200


@needs_serve
def test_no_content_length_is_411_on_both(servers):
    req = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    for s in servers:
        reply = s.raw(req)
        assert re.match(rb"HTTP/1\.[01] 411 ", reply), reply[:200]
        assert b"Content-Length header is required" in reply


# --- bad input of the command (no Ray started) ---------------------------------------------------------------
def test_bad_ray_options_are_refused(int8_bundle):
    proc = run_runtime("serve", str(int8_bundle), "--ray", "--replicas", "0")
    assert proc.returncode == 2 and "argument --replicas" in proc.stderr and "Traceback" not in proc.stderr
    assert_runtime_error(run_runtime("serve", str(int8_bundle), "--replicas", "2"), "needs --ray")
    assert_runtime_error(run_runtime("serve", str(int8_bundle), "--ray-address", "127.0.0.1:6379"), "needs --ray")


def test_ray_not_installed_is_one_clear_line(int8_bundle):
    no_ray = NO_TORCH.replace(repr(BLOCKED), repr((*BLOCKED, "ray")))
    proc = subprocess.run([sys.executable, "-c", no_ray, "serve", str(int8_bundle), "--ray"], capture_output=True,
                          text=True, env=runtime_env(), timeout=120)
    assert_runtime_error(proc, "pip install 'glp-runtime[ray]'")


@needs_serve
@pytest.mark.parametrize("address", ["closed", "not-an-address"])
def test_unreachable_ray_address_is_one_clear_line(address, int8_bundle):
    if address == "closed":
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"
    t0 = time.monotonic()
    proc = run_runtime("serve", str(int8_bundle), "--ray", "--ray-address", address, timeout=120)
    assert_runtime_error(proc, "cannot reach the Ray cluster" if address.startswith("127") else "is not HOST:PORT")
    assert time.monotonic() - t0 < 60
