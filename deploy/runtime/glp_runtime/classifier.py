"""The Python API: load a bundle, classify text. Needs only numpy, onnxruntime and tokenizers.

    from glp_runtime import Classifier

    clf = Classifier.load("bundles/cola-d4-cpu")          # verifies every file's sha256 first
    clf.predict(["The cat sat on the mat.", "Cat the mat on sat."])
    # [{"label": "acceptable", "label_id": 1, "scores": {"unacceptable": 0.08, "acceptable": 0.92},
    #   "truncated": False}, ...]
    clf.logits(["..."])                                    # raw model outputs, shape (n, num_labels)

Tokenization is the one the model was trained and scored with: the bundle's ``tokenizer.json`` with
special tokens, truncation to the bundle's max length (``longest_first`` for pairs, as transformers'
``truncation=True``) and padding with the tokenizer's pad id. Inputs are sorted by length and run in
batches of ``batch_size`` (64: the batches ``glp-bench export`` scored the dev set with), each padded
to its longest member, and results come back in input order. A text over ``max_length x CHARS_PER_TOKEN``
(32) characters is cut to that length first (``truncated`` is then true): megabyte texts cost no more
than the model can read. With the same batches the logits equal
the ones behind the bundle's expected dev score. Loading refuses a bundle whose max length exceeds the
model's position embeddings, and lowers thread counts above this machine's CPUs (see ``warnings``).

Batch invariance: an input's result never depends on the other inputs it is classified with. The
dynamically quantized int8 variant scales its activations over the whole batch, so its bundles run each
input alone (``batch_invariant`` is False) unless ``run``/``predict`` get an explicit ``batch_size``;
fp32, fp32-opt and fp16 run in batches (padding is masked; results agree to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .bundle import MODEL, TOKENIZER, Bundle, BundleError, load_bundle
from .inputs import normalize
from .limits import available_cpus, embedding_limits
from .session import CUDA, TENSORRT, SessionError, SessionSettings, build_session

DEFAULT_BATCH_SIZE = 64
# ONNX graph input -> field of a tokenizers.Encoding
INPUT_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
# A text longer than max_length x CHARS_PER_TOKEN characters is cut to that many before tokenizing: the
# model reads at most max_length tokens, and a WordPiece/BPE token is rarely over a dozen characters, so
# the cut changes nothing but the work spent on (and the memory of) megabyte texts.
CHARS_PER_TOKEN = 32


def make_session(model_path: Path, settings: dict, provider: str | None = None, threads: int | None = None):
    """An ONNX Runtime session with the bundle's settings, on exactly the asked provider
    (``glp_runtime.session``: the builder glp-bench measured it with)."""
    import onnxruntime as ort

    s = SessionSettings.from_runtime(settings, provider, threads)
    try:
        return build_session(model_path, s)
    except SessionError as e:
        if e.kind == "provider":
            hint = (" (install onnxruntime-gpu instead of onnxruntime and make sure a GPU is visible,"
                    " or run it on the CPU with --provider cpu)") if s.provider in (CUDA, TENSORRT) else ""
            raise BundleError(f"this bundle runs on {s.provider}, which this onnxruntime {ort.__version__} lacks "
                              f"(available: {', '.join(e.providers)}){hint}") from None
        if e.kind == "fallback":
            raise BundleError(f"onnxruntime could not start {s.provider} for {model_path} (got {e.providers})") from None
        raise BundleError(f"{model_path} cannot be loaded by onnxruntime {ort.__version__} ({e.detail or e}); "
                          "upgrade onnxruntime or re-deploy the model") from None


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Classifier:
    """A verified bundle ready to classify: its tokenizer and its ONNX Runtime session."""

    def __init__(self, bundle: Bundle, provider: str | None = None, threads: int | None = None,
                 batch_size: int | None = None):
        from tokenizers import Tokenizer

        self.bundle = bundle
        rt = bundle.runtime
        tok = rt["tokenizer"]
        try:
            self.tokenizer = Tokenizer.from_file(str(bundle.file(TOKENIZER)))
        except Exception as e:  # noqa: BLE001 - the Rust side raises plain Exception
            raise BundleError(f"{bundle.file(TOKENIZER)} is not a loadable tokenizer ({e}); re-deploy the model") from None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(bundle.max_length, strategy=tok.get("truncation_strategy", "longest_first"),
                                         direction=tok.get("truncation_side", "right"))
        self.pad_id = int(tok["pad_id"])
        self.pad_type_id = int(tok["pad_type_id"])
        self.pad_left = tok.get("padding_side", "right") == "left"
        self.batch_size = int(batch_size or rt.get("batch_size") or DEFAULT_BATCH_SIZE)
        if self.batch_size < 1:
            raise BundleError(f"batch size must be >= 1, got {self.batch_size}")
        self.warnings: list[str] = []  # what was adjusted to this machine (the CLI prints them)
        settings = self._bound_threads(dict(rt.get("session", {})), threads)
        threads = settings.pop("_threads")
        self.session = make_session(bundle.file(MODEL), settings, provider, threads)
        self._check_limits()
        self.max_chars = bundle.max_length * CHARS_PER_TOKEN
        self.inputs: list[tuple[str, str, type]] = []
        for inp in self.session.get_inputs():
            if inp.name not in INPUT_FIELDS or inp.type not in DTYPES:
                raise BundleError(f"{bundle.file(MODEL)} wants input {inp.name!r} ({inp.type}), which this runtime "
                                  f"cannot produce (it feeds {', '.join(INPUT_FIELDS)} as int64/int32)")
            self.inputs.append((inp.name, INPUT_FIELDS[inp.name], DTYPES[inp.type]))
        out = self.session.get_outputs()[0]
        self.output = out.name
        width = len(bundle.labels) or 1
        if isinstance(out.shape[-1], int) and out.shape[-1] != width:
            raise BundleError(f"{bundle.file(MODEL)} outputs {out.shape[-1]} scores but the bundle names "
                              f"{width} label(s); the bundle is inconsistent: re-deploy it")

    def _bound_threads(self, settings: dict, threads: int | None) -> dict:
        """The session settings with thread counts above this machine's CPUs lowered to it (a warning each)."""
        cpus = available_cpus()
        intra = threads if threads is not None else settings.get("intra_op_threads", 0)
        for key, value, what in (("_threads", intra, "intra-op threads" if threads is None else "--threads"),
                                 ("inter_op_threads", settings.get("inter_op_threads", 0), "inter-op threads")):
            value = int(value or 0)
            if value > cpus:
                src = "" if what == "--threads" else " of the bundle"
                self.warnings.append(f"{value} {what}{src} exceed the {cpus} CPU(s) this process may use; using {cpus}")
                value = cpus
            settings[key] = value
        return settings

    def _check_limits(self) -> None:
        """The tokenizer can only produce what the model holds: max_length within the position embeddings,
        token ids within the word embeddings (``glp_runtime.limits``)."""
        model = self.bundle.file(MODEL)
        try:
            limits = embedding_limits(model, self.pad_id)
        except Exception as e:  # noqa: BLE001 - onnx's parse errors share no base class; the session loaded
            raise BundleError(f"{model} cannot be read by onnx ({e}); re-deploy the model") from None
        fix = "the bundle is inconsistent: re-deploy it with 'glp-bench deploy'"
        positions, ml = limits["positions"], self.bundle.max_length
        if positions is not None and ml > positions:
            raise BundleError(f"{self.bundle.file('runtime.json')}: max_length {ml} exceeds the {positions} positions "
                              f"of {model}'s position embeddings; {fix}")
        vocab, size = limits["vocab"], self.tokenizer.get_vocab_size(with_added_tokens=True)
        if vocab is not None and size > vocab:
            raise BundleError(f"{self.bundle.file(TOKENIZER)} has {size} tokens but {model}'s word embeddings hold "
                              f"{vocab}; {fix}")

    @classmethod
    def load(cls, path: str | Path, provider: str | None = None, threads: int | None = None,
             batch_size: int | None = None, verify: bool = True) -> Classifier:
        """Verify the bundle at ``path`` (every file's sha256) and load it."""
        return cls(load_bundle(path, verify=verify), provider=provider, threads=threads, batch_size=batch_size)

    # --- properties -------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return self.bundle.labels

    @property
    def text_keys(self) -> list[str]:
        return self.bundle.text_keys

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    @property
    def batch_invariant(self) -> bool:
        """Whether batching leaves each input's logits unchanged (False: dynamic int8 quantization, whose
        activation scales span the whole batch). runtime.json's ``batch_invariant`` wins when present."""
        rt = self.bundle.runtime
        if isinstance(rt.get("batch_invariant"), bool):
            return rt["batch_invariant"]
        variant = (rt.get("model") or {}).get("variant") or (self.bundle.manifest.get("model") or {}).get("variant")
        return variant != "int8"

    def normalize(self, item: object) -> tuple[str, ...]:
        """One input as this model's tuple of texts (InputError when it cannot be classified)."""
        return normalize(item, self.text_keys)

    # --- running ----------------------------------------------------------------------------
    def _pad(self, encodings) -> dict[str, np.ndarray]:
        n, width = len(encodings), max(len(e.ids) for e in encodings)
        fill = {"ids": self.pad_id, "attention_mask": 0, "type_ids": self.pad_type_id}
        feed = {}
        for name, field, dtype in self.inputs:
            arr = np.full((n, width), fill[field], dtype=dtype)
            for row, enc in enumerate(encodings):
                values = getattr(enc, field)
                k = len(values)
                if self.pad_left:
                    arr[row, width - k:] = values
                else:
                    arr[row, :k] = values
            feed[name] = arr
        return feed

    def run(self, items: Sequence[object], batch_size: int | None = None) -> tuple[np.ndarray, list[bool]]:
        """(logits of shape (n, num_labels) in input order, whether each input was truncated)."""
        texts = [self.normalize(x) for x in items]
        cut = [any(len(t) > self.max_chars for t in tt) for tt in texts]
        texts = [tuple(t[:self.max_chars] for t in tt) if c else tt for tt, c in zip(texts, cut, strict=True)]
        width = len(self.labels) or 1
        if not texts:
            return np.zeros((0, width), dtype=np.float32), []
        encodings = self.tokenizer.encode_batch([t[0] if len(t) == 1 else t for t in texts])
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        size = batch_size or (self.batch_size if self.batch_invariant else 1)  # see batch_invariant
        logits = np.empty((len(texts), width), dtype=np.float32)
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            out = self.session.run([self.output], self._pad([encodings[i] for i in idx]))[0]
            logits[idx] = np.asarray(out, dtype=np.float32).reshape(len(idx), width)
        return logits, [c or len(e.overflowing) > 0 for e, c in zip(encodings, cut, strict=True)]

    def logits(self, items: Sequence[object], batch_size: int | None = None) -> np.ndarray:
        return self.run(items, batch_size)[0]

    def predict(self, items: Sequence[object], batch_size: int | None = None,
                return_logits: bool = False) -> list[dict]:
        """One dict per input: ``label``, ``label_id``, ``scores`` (softmax per label) and ``truncated``
        (the text was longer than the max length); ``score`` instead for regression tasks (STS-B)."""
        logits, truncated = self.run(items, batch_size)
        out = []
        if not self.labels:
            for row, cut in zip(logits, truncated, strict=True):
                out.append({"score": float(row[0]), "truncated": cut})
        else:
            probs = softmax(logits.astype(np.float64))
            for row, p, cut in zip(logits, probs, truncated, strict=True):
                k = int(np.argmax(row))
                out.append({"label": self.labels[k], "label_id": k,
                            "scores": {name: float(v) for name, v in zip(self.labels, p, strict=True)},
                            "truncated": cut})
        if return_logits:
            for rec, row in zip(out, logits, strict=True):
                rec["logits"] = [float(v) for v in row]
        return out
