"""glp-bench tasks: the GLUE task registry as a table."""

from __future__ import annotations


def add_parser(sub):
    return sub.add_parser("tasks", help="list the GLUE tasks, their inputs, labels and metrics",
                          description="List the GLUE tasks glp-bench knows: inputs, labels, metrics, dev splits.")


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..tasks import TASKS

    table = Table(title="GLUE tasks")
    for col in ("task", "GLUE folder", "inputs", "labels", "main metric", "dev split(s)"):
        table.add_column(col)
    for t in TASKS.values():
        labels = "regression (0-5)" if t.is_regression else ", ".join(t.label_names)
        table.add_row(t.name, t.glue_dir, " + ".join(t.text_keys), labels, t.main_metric, ", ".join(t.dev_splits))
    Console().print(table)
    return 0
