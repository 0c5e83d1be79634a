"""The bundle's self-check: loaded with glp_runtime (checksums verified), its tokenization compared with
transformers' and the dev split(s) classified and scored against what export recorded. A failed check writes
no bundle (``glp_bench.deploy.bundle``)."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import DeployError
from .layout import BATCH_SIZE

SCORE_TOLERANCE = 1e-6  # the runtime must reproduce the recorded dev score (same model, same batches)


def long_text(texts: list[str], min_words: int) -> str:
    """A text of at least ``min_words`` words made of real ones (exercises truncation)."""
    words = " ".join(texts).split() or ["text"]
    return " ".join((words * (min_words // len(words) + 1))[:min_words])


def self_check(bundle_dir: Path, task, tokenizer, data, max_length: int, expected: dict, provider: str) -> dict:
    """Load ``bundle_dir`` with glp_runtime (checksums verified), compare its tokenization with
    transformers' (ids and token types, on dev texts and one text far over the max length), classify
    the dev split(s) and score them against the expected dev scores.

    When the target's provider (CUDA) is missing here, the model runs on the CPU as a stand-in: the
    tokenization must still match, the score is recorded but not held to the tolerance."""
    import glp_runtime as rt  # installed with glp-bench (deploy/runtime)

    from ..data.tasks import flatten_scores
    from ..export.validate import CPU, available_providers
    stand_in = provider not in available_providers()
    try:
        clf = rt.Classifier.load(bundle_dir, provider=CPU if stand_in else None)
    except rt.BundleError as e:
        if stand_in:
            return {"status": "skipped", "reason": f"{provider} is not available here and the model does not load "
                    f"on the CPU ({e}); check the bundle on the target with 'glp-runtime verify'"}
        raise DeployError(f"the new bundle does not load in glp_runtime: {e}") from None
    if data is None:
        return {"status": "skipped", "reason": "no dev data (pass --data-dir)"}
    per_split, served_split, examples, mismatches, checked = {}, {}, 0, 0, 0
    invariant = getattr(clf, "batch_invariant", True)
    for split in task.dev_splits:
        ds = data[split]
        items = list(zip(*(ds[k] for k in task.text_keys), strict=True))
        try:
            # as the export scored it (glp_bench.export.validate.scoring_batch_size): batches of BATCH_SIZE, or one
            # input at a time for a variant that is not batch-invariant (int8), which is also how it is served
            logits = clf.logits(items, batch_size=BATCH_SIZE if invariant else 1)
            served = logits
        except rt.InputError as e:
            return {"status": "skipped", "reason": f"the {split} split has an input the runtime refuses ({e})"}
        per_split[split] = task.compute(logits, ds["label"])
        served_split[split] = task.compute(served, ds["label"])
        examples += len(items)
        sample = items[:256] + [tuple(long_text(list(t), 4 * max_length) for t in items[0])]
        ours = clf.tokenizer.encode_batch([t[0] if len(t) == 1 else t for t in sample])
        theirs = tokenizer(*[list(col) for col in zip(*sample, strict=True)], truncation=True, max_length=max_length)
        for i, enc in enumerate(ours):
            checked += 1
            types = theirs.get("token_type_ids")
            if enc.ids != theirs["input_ids"][i] or (types is not None and enc.type_ids != types[i]):
                mismatches += 1
    scores = flatten_scores(task, per_split)
    want, got = expected.get("dev_score"), scores.get(expected["main_key"])
    diff = None if want is None or got is None else abs(got - want)
    ok = mismatches == 0 and (stand_in or (diff is not None and diff <= SCORE_TOLERANCE))
    result = {"status": "ok" if ok else "failed", "provider": clf.provider, "examples": examples,
              "tokenization": {"checked": checked, "mismatches": mismatches, "truncation_tested": True},
              "dev_scores": scores, "dev_score": got, "expected": want, "difference": diff,
              "tolerance": None if stand_in else SCORE_TOLERANCE, "batch_invariant": invariant}
    if not invariant:
        result["served_dev_score"] = flatten_scores(task, served_split).get(expected["main_key"])
    if stand_in:
        result["note"] = (f"{provider} is not available here: the model ran on the CPU as a stand-in, so the score "
                          "is not held to the tolerance")
    return result
