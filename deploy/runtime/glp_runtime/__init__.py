"""glp-runtime: serve a model bundle written by ``glp-bench deploy`` with only onnxruntime, tokenizers
and numpy (no torch, no transformers, no glp-bench).

    from glp_runtime import Classifier
    clf = Classifier.load("bundle/")      # refuses a bundle whose files do not match their sha256
    clf.predict(["The book was read by Mary."])

Command line: ``python -m glp_runtime {verify,predict,serve} BUNDLE`` (or ``glp-runtime`` once
installed with ``pip install deploy/runtime``).
"""

from .bundle import FORMAT, VERSION, Bundle, BundleError, InputError, load_bundle

__version__ = "0.1.0"
__all__ = ["FORMAT", "VERSION", "Bundle", "BundleError", "Classifier", "InputError", "load_bundle"]


def __getattr__(name: str):
    # numpy/onnxruntime/tokenizers are imported only when the classifier is used, so verifying a
    # bundle needs nothing beyond the standard library
    if name == "Classifier":
        from .classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'glp_runtime' has no attribute {name!r}")
