"""Without a network, a hub model id or a GLUE task without local data fails in seconds (one line), not after
the libraries' ~25 s of retries; when everything is local the hub is never probed."""

from __future__ import annotations

import socket
import time

from glp_bench.core import hub

from .conftest import assert_clean_error, build_tiny_model, run_cli

DEAD = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "", "HF_DATASETS_OFFLINE": "",
        "TRANSFORMERS_OFFLINE": ""}  # nothing listens on port 9: unreachable at once


def test_probe_reaches_a_listening_host_and_not_a_closed_port(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        hub.hub_reachable.cache_clear()
        assert hub.endpoint() == ("127.0.0.1", server.getsockname()[1]) and hub.hub_reachable()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    hub.hub_reachable.cache_clear()
    assert not hub.hub_reachable()
    hub.hub_reachable.cache_clear()
    monkeypatch.delenv("HF_ENDPOINT")
    assert hub.endpoint() == ("huggingface.co", 443)


def test_unreachable_hub_fails_fast_for_data_and_models(tmp_path):
    model = build_tiny_model("bert", tmp_path / "m", layers=2)
    t0 = time.monotonic()
    proc = run_cli("prune", "--task", "wnli", "--model", str(model), "--budget", "smoke", "--device", "cpu",
                   "--run", str(tmp_path / "run"), env=DEAD, cwd=tmp_path)
    assert_clean_error(proc, "offline (the hub is unreachable) and not in the datasets cache")
    assert "Retrying" not in proc.stderr  # huggingface_hub's back-off (1+2+4+8+8 s) never started
    proc = run_cli("prune", "--task", "cola", "--model", "no-such-org/no-such-model", "--budget", "smoke",
                   env=DEAD, cwd=tmp_path)
    assert_clean_error(proc, "cannot load model 'no-such-org/no-such-model'")
    assert "Retrying" not in proc.stderr
    assert time.monotonic() - t0 < 120  # generous for a loaded CI machine; the retries alone take ~25 s a run
