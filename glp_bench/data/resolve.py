"""Which task a command or a run means: a GLUE name, a ``.toml`` task file, a custom task's flags, or a run's
stored definition. Joins the GLUE registry (``tasks``) and custom definitions (``task_def``)."""

from __future__ import annotations

from collections.abc import Mapping

from ..core.errors import TaskError
from .task_def import _FLAGS, build, from_flags, normalize, read_toml
from .tasks import TASKS, Task


def get_task(name) -> Task:
    """A task from a GLUE name, a ``.toml`` task file, a custom task's definition (dict), or a Task."""
    if isinstance(name, Task):
        return name
    if isinstance(name, Mapping):
        return build(normalize(name, "the run's task definition", check_files=False))
    if name is None:
        raise TaskError("no task given: pass --task (a GLUE task or a .toml task file)")
    if str(name).lower().endswith(".toml"):
        return build(read_toml(name))
    key = str(name).lower().replace("-", "").replace("_", "")
    if key in TASKS:
        return TASKS[key]
    raise TaskError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}, or a task file "
                    "(--task my-task.toml; see 'glp-bench tasks')")


def task_of_run(config: Mapping) -> Task:
    """The task of a run from its manifest config: the stored custom definition, else the GLUE name."""
    return get_task(config.get("task_def") or config.get("task"))


def task_from_args(args):
    """The task of a command's arguments: a GLUE name, a TOML file, or (with --train) the custom-task flags."""
    if getattr(args, "train", None):
        return build(from_flags(args.task, args.train, args.dev, args.text_column, args.label_column, args.labels,
                                args.regression, args.metrics, args.main_metric))
    given = [f for f in _FLAGS if getattr(args, f, None)] + (["regression"] if getattr(args, "regression", False) else [])
    if given:
        raise TaskError(f"--{given[0].replace('_', '-')} defines a custom task and needs --train (and --dev)")
    return get_task(args.task)
