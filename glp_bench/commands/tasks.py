"""glp-bench tasks: the GLUE task registry as a table, and how to define a custom task."""

from __future__ import annotations

HOW_TO = """\
A custom task (your own labelled texts) is a TOML file, passed as --task my-task.toml:

{example}

or the same as flags: --task tickets --train train.csv --dev dev.csv --text-column text --label-column label
--labels billing,bug,other --metrics accuracy,f1 --main-metric f1 (a pair task: --text-column question,answer;
a number to predict: --regression). Every stage takes it like a GLUE task; the run directory keeps the
definition, and a deployed bundle answers with your label names."""


def add_parser(sub):
    return sub.add_parser("tasks", help="list the GLUE tasks and show how to define your own",
                          description="List the GLUE tasks glp-bench knows (inputs, labels, metrics, dev splits, "
                          "where the data comes from) and show how to define a custom task.")


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..data.loaders import bundled_dir
    from ..data.task_def import EXAMPLE
    from ..data.tasks import TASKS

    table = Table(title="GLUE tasks")
    for col in ("task", "GLUE folder", "inputs", "labels", "main metric", "dev split(s)", "data without --data-dir"):
        table.add_column(col)
    for t in TASKS.values():
        labels = "regression (0-5)" if t.is_regression else ", ".join(t.label_names)
        source = "bundled" if bundled_dir(t) is not None else "hub (nyu-mll/glue)"
        table.add_row(t.name, t.glue_dir, " + ".join(t.text_keys), labels, t.main_metric, ", ".join(t.dev_splits),
                      source)
    console = Console()
    console.print(table)
    console.print(HOW_TO.format(example=EXAMPLE), markup=False, highlight=False)
    return 0
