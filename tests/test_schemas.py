"""The versioned JSON files' schemas (tests/schemas/*.schema.json): shipped documents validate, broken ones
do not. Each stage's own end-to-end test also validates the file it writes (manifest, export, latency, report,
bundle, gate)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from glp_bench.core.rundir import RunDir, migrate

from .conftest import SCHEMAS, assert_schema

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_every_versioned_format_has_a_schema():
    assert {p.name.split(".")[0] for p in SCHEMAS.glob("*.schema.json")} == {
        "run", "export", "latency", "report", "bundle", "gate", "score_gate"}
    for p in SCHEMAS.glob("*.schema.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(p.read_text()))


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("**/manifest.json")), ids=lambda p: str(p.relative_to(GOLDEN)))
def test_checked_in_manifests_validate_before_and_after_migration(path):
    doc = assert_schema(path, "run")
    migrated = assert_schema(migrate(copy.deepcopy(doc)), "run")
    assert migrated["version"] == 7 and RunDir(path.parent).load().data["version"] == 7
    assert migrated["config"]["depth_epochs"] == "same"  # written before --depth-epochs: every depth alike
    assert migrated["config"]["student_init"] == "pretrained"  # before --student-init: finals from pre-trained
    assert migrated["config"]["pooling"] == "cls"  # before --pooling: every model read the first token
    assert migrated["config"]["reference_epochs"] is None  # before --reference-epochs: the finals' epochs


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("**/latency/*.json")), ids=lambda p: str(p.relative_to(GOLDEN)))
def test_checked_in_latency_results_validate(path):
    assert assert_schema(path, "latency")["measurements"]


def test_schemas_reject_broken_documents():
    doc = json.loads(next(GOLDEN.glob("**/manifest.json")).read_text())
    for broken in ({**doc, "format": "glp-bench-export"}, {k: v for k, v in doc.items() if k != "models"},
                   {**doc, "models": {"depth-02": {"depth": "two", "kept_layers": [0, 1]}}}):
        with pytest.raises(jsonschema.ValidationError):
            assert_schema(broken, "run")
    lat = json.loads(next(GOLDEN.glob("**/latency/*.json")).read_text())
    lat["measurements"][0]["samples_s"] = [[-1.0]]
    with pytest.raises(jsonschema.ValidationError):
        assert_schema(lat, "latency")
