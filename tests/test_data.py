"""Loading GLUE tasks: the real CoLA, and every other task's original layout on small files written here."""

from __future__ import annotations

import json
import math

import pytest

from glp_bench.core.errors import DataError
from glp_bench.data.loaders import load_task_data, resolve_task_dir, search_split
from glp_bench.data.resolve import get_task

from .conftest import SHARED_COLA


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.skipif(not SHARED_COLA.is_dir(), reason="../shared/data/glue/CoLA not present")
def test_real_cola_task_folder_and_glue_root():
    for where in (SHARED_COLA, SHARED_COLA.parent):
        data = load_task_data(get_task("cola"), where)
        assert data["train"].num_rows == 8551 and data["validation"].num_rows == 1043
        assert data["train"].column_names == ["sentence", "label"]
        assert set(data["validation"]["label"]) == {0, 1}
    first = data["train"][0]
    assert first["sentence"].startswith("Our friends won't buy this analysis") and first["label"] == 1


def test_glp_bench_data_env_sets_the_root(tmp_path, monkeypatch):
    write(tmp_path / "glue" / "SST-2" / "train.tsv", ["sentence\tlabel", "a fine film \t1", "dull\t0"])
    write(tmp_path / "glue" / "SST-2" / "dev.tsv", ["sentence\tlabel", "great\t1"])
    monkeypatch.setenv("GLP_BENCH_DATA", str(tmp_path / "glue"))
    data = load_task_data(get_task("sst2"))
    assert data["train"]["label"] == [1, 0] and data["validation"]["sentence"] == ["great"]


GLUE_FILES = {
    "mrpc": {
        "train.tsv": ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t1\t2\tHe said hi .\tHe greeted .",
                      "0\t3\t4\tA cat .\tA dog ."],
        "dev.tsv": ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t5\t6\tYes .\tIndeed ."],
    },
    "stsb": {
        "train.tsv": ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
                      "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000"],
        "dev.tsv": ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
                    "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat.\tA man wearing a hat.\t3.8"],
    },
    "qqp": {
        "train.tsv": ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "1\t1\t2\tHow?\tWhy?\t0",
                      "2\t3\t4\tmalformed row without enough fields", "3\t5\t6\tWhat is AI?\tWhat's AI?\t1"],
        "dev.tsv": ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "4\t7\t8\tWho?\tWho is it?\t1"],
    },
    "mnli": {
        "train.tsv": ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
                      "0\t1\t1e\tgov\t(x)\t(y)\t(X)\t(Y)\tA man sleeps.\tA person rests.\tentailment\tentailment",
                      "1\t2\t2c\tgov\t(x)\t(y)\t(X)\t(Y)\tA man sleeps.\tA man runs.\tcontradiction\tcontradiction"],
        "dev_matched.tsv": ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label",
                            "0\t3\t3n\tfic\t(x)\t(y)\t(X)\t(Y)\tIt rains.\tIt is cold.\tneutral\tneutral\tneutral\tneutral\tneutral\tneutral"],
        "dev_mismatched.tsv": ["index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label",
                               "0\t4\t4e\tnews\t(x)\t(y)\t(X)\t(Y)\tShe won.\tShe did well.\tentailment\tentailment\tentailment\tentailment\tentailment\tentailment"],
    },
    "qnli": {
        "train.tsv": ["index\tquestion\tsentence\tlabel", "0\tWho won?\tBob won the race.\tentailment",
                      "1\tWhere?\tIt was blue.\tnot_entailment"],
        "dev.tsv": ["index\tquestion\tsentence\tlabel", "0\tWhen?\tAt noon.\tentailment"],
    },
    "rte": {
        "train.tsv": ["index\tsentence1\tsentence2\tlabel", "0\tA \"quoted\" word.\tA word.\tentailment"],
        "dev.tsv": ["index\tsentence1\tsentence2\tlabel", "0\tDogs bark.\tCats meow.\tnot_entailment"],
    },
    "wnli": {
        "train.tsv": ["index\tsentence1\tsentence2\tlabel", "0\tI put it there.\tIt is there.\t1"],
        "dev.tsv": ["index\tsentence1\tsentence2\tlabel", "0\tHe left.\tShe left.\t0"],
    },
}
EXPECTED = {
    "mrpc": ("train", {"sentence1": "A cat .", "sentence2": "A dog .", "label": 0}, 2),
    "stsb": ("validation", {"sentence1": "A man with a hard hat.", "sentence2": "A man wearing a hat.", "label": 3.8}, 1),
    "qqp": ("train", {"question1": "What is AI?", "question2": "What's AI?", "label": 1}, 2),
    "mnli": ("validation_mismatched", {"premise": "She won.", "hypothesis": "She did well.", "label": 0}, 1),
    "qnli": ("train", {"question": "Where?", "sentence": "It was blue.", "label": 1}, 2),
    "rte": ("train", {"sentence1": 'A "quoted" word.', "sentence2": "A word.", "label": 0}, 1),
    "wnli": ("validation", {"sentence1": "He left.", "sentence2": "She left.", "label": 0}, 1),
}


@pytest.mark.parametrize("name", sorted(GLUE_FILES))
def test_glue_original_layouts(name, tmp_path):
    task = get_task(name)
    for fname, lines in GLUE_FILES[name].items():
        write(tmp_path / task.glue_dir / fname, lines)
    data = load_task_data(task, tmp_path)  # a GLUE root: the task's sub-folder is found
    assert set(data) == {"train", *task.dev_splits}
    split, row, n = EXPECTED[name]
    assert data[split].num_rows == n
    got = data[split][-1]
    assert got == pytest.approx(row) if name == "stsb" else got == row


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_with_glue_column_names(fmt, tmp_path):
    import pandas as pd

    rows = {"train": [("A b .", "A c .", "entailment"), ("D .", "E .", "not_entailment")],
            "validation": [("F .", "G .", 1)]}
    for split, items in rows.items():
        df = pd.DataFrame(items, columns=["sentence1", "sentence2", "label"])
        path = tmp_path / f"{split}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        elif fmt == "jsonl":
            path.write_text("\n".join(json.dumps(r) for r in df.to_dict("records")) + "\n")
        else:
            df.astype({"label": str}).to_parquet(path)
    data = load_task_data(get_task("rte"), tmp_path)
    assert data["train"]["label"] == [0, 1] and data["validation"]["label"] == [1]
    assert data["validation"]["sentence2"] == ["G ."]


def test_missing_and_malformed_data(tmp_path):
    task = get_task("cola")
    with pytest.raises(DataError, match="does not exist"):
        load_task_data(task, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no cola data in"):
        load_task_data(task, tmp_path / "empty")
    write(tmp_path / "CoLA" / "train.tsv", ["gj04\t1\t\tA sentence ."])
    with pytest.raises(DataError, match="no validation split"):
        load_task_data(task, tmp_path / "CoLA")
    write(tmp_path / "CoLA" / "dev.tsv", ["gj04\t7\t\tA sentence ."])
    with pytest.raises(DataError, match="not in cola's labels"):
        load_task_data(task, tmp_path / "CoLA")
    write(tmp_path / "SST" / "SST-2" / "train.tsv", ["text\tlabel", "x\t1"])
    write(tmp_path / "SST" / "SST-2" / "dev.tsv", ["text\tlabel", "x\t1"])
    with pytest.raises(DataError, match="lacks column"):
        load_task_data(get_task("sst2"), tmp_path / "SST")


def test_hub_failure_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("GLP_BENCH_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert resolve_task_dir(get_task("wnli"), None) is None
    with pytest.raises(DataError, match="pass --data-dir"):
        load_task_data(get_task("wnli"))


def test_search_split_is_seeded_85_15(cola_dir):
    train = load_task_data(get_task("cola"), cola_dir)["train"]
    fit, held = search_split(train, seed=1)
    fit2, held2 = search_split(train, seed=1)
    assert len(held) == math.ceil(0.15 * len(train)) and len(fit) + len(held) == len(train)
    assert held["sentence"] == held2["sentence"] and fit["sentence"] == fit2["sentence"]
    assert held["sentence"] != search_split(train, seed=2)[1]["sentence"]


def test_bundled_cola_is_the_default_without_data_dir_or_env(monkeypatch):
    from glp_bench.data.loaders import BUNDLED, data_source, describe_data

    monkeypatch.delenv("GLP_BENCH_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # would fail if it went to the hub
    task = get_task("cola")
    assert resolve_task_dir(task, None) == BUNDLED["cola"]
    assert data_source(task, None) == ("bundled", BUNDLED["cola"])
    assert "bundled copy of CoLA" in describe_data(task, None)
    data = load_task_data(task)
    assert data["train"].num_rows == 8551 and data["validation"].num_rows == 1043
    assert (BUNDLED["cola"] / "README.cola").read_text().startswith("CoLA")
    # only CoLA is bundled: other tasks still go to the hub
    assert data_source(get_task("sst2"), None) == ("hub", None)
    assert "hub (nyu-mll/glue/sst2)" in describe_data(get_task("sst2"), None)


def test_data_dir_and_env_win_over_the_bundled_copy(tmp_path, monkeypatch, cola_dir):
    from glp_bench.data.loaders import describe_data

    monkeypatch.setenv("GLP_BENCH_DATA", str(cola_dir.parent))
    task = get_task("cola")
    assert load_task_data(task)["train"].num_rows == 96  # the env's tiny CoLA, not the bundled one
    assert describe_data(task, None) == f"data: {cola_dir} ($GLP_BENCH_DATA)"
    write(tmp_path / "other" / "train.tsv", ["x\t1\t\tA b .", "x\t0\t*\tB a ."])
    write(tmp_path / "other" / "dev.tsv", ["x\t1\t\tA c ."])
    assert load_task_data(task, tmp_path / "other")["train"].num_rows == 2  # --data-dir beats the env
    assert describe_data(task, tmp_path / "other") == f"data: {tmp_path / 'other'} (--data-dir)"
