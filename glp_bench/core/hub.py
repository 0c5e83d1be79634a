"""Failing fast without a network: the Hugging Face libraries retry an unreachable hub for about 25 s (five
retries with back-off) before they fall back to their cache or fail. glp-bench touches the hub only for a
hub model id or a GLUE task without local data; just before that, ``offline_if_unreachable`` tries one
TCP connection to the hub (a few seconds at most) and, when it fails, puts huggingface_hub, transformers
and datasets in offline mode for this process: what is cached is used at once, the rest fails at once
(the caller turns that into one ``glp-bench: error:`` line). ``HF_HUB_OFFLINE=1`` set by the user is
respected as it is; when everything is local (the bundled model and CoLA) nothing here runs.
"""

from __future__ import annotations

import os
import socket
import sys
from functools import lru_cache
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the hub's host (name resolution included), at most ``timeout`` seconds each."""
    host, port = endpoint()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def user_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def set_offline() -> None:
    """Offline mode for this process, in the environment and in the libraries already imported (they read
    the variables once, at import)."""
    for var in _OFFLINE_ENV:
        os.environ[var] = "1"
    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
    if "transformers" in sys.modules:
        import transformers.utils.hub as tf_hub

        tf_hub._is_offline_mode = True
    if "datasets" in sys.modules:
        import datasets.config as ds_config

        ds_config.HF_HUB_OFFLINE = True
        if hasattr(ds_config, "HF_DATASETS_OFFLINE"):
            ds_config.HF_DATASETS_OFFLINE = True


def offline_if_unreachable() -> bool:
    """True when the process is (now) offline: the user said so, or the hub did not answer the probe."""
    if user_offline():
        return True
    if hub_reachable():
        return False
    set_offline()
    return True
