"""Progress in a log: one plain line per finished unit with elapsed time and ETA, nothing per fine-tune step."""

from __future__ import annotations

import io

from glp_bench.core.progress import LogProgress, fmt_seconds, make_progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_one_line_per_unit_with_elapsed_and_eta_nested_steps_silent():
    out, clock = io.StringIO(), Clock()
    with LogProgress(out, clock) as p:
        overall = p.add_task("glp-bench prune", total=4)
        p.update(overall, completed=0)  # the run's starting count: no line
        for unit in range(4):
            steps = p.add_task(f"  candidate {unit}", total=50, steps=True)  # a fine-tune inside the unit
            for _ in range(50):
                clock.t += 1.0
                p.advance(steps)
            p.remove_task(steps)
            p.update(overall, completed=unit + 1, description=f"GLP step {unit + 1}")
    lines = out.getvalue().splitlines()
    assert lines == [
        "GLP step 1: 1/4 done, elapsed 50s, ETA 2m30s",
        "GLP step 2: 2/4 done, elapsed 1m40s, ETA 1m40s",
        "GLP step 3: 3/4 done, elapsed 2m30s, ETA 50s",
        "GLP step 4: 4/4 done, elapsed 3m20s, ETA 0s",
    ]


def test_resumed_count_is_not_a_line_and_eta_counts_this_session_only():
    out, clock = io.StringIO(), Clock()
    p = LogProgress(out, clock)
    bar = p.add_task("prune", total=10)
    p.update(bar, completed=6)  # done before a resume
    clock.t += 30
    p.update(bar, completed=7)
    assert out.getvalue().splitlines() == ["prune: 7/10 done, elapsed 30s, ETA 1m30s"]


def test_standalone_steps_print_at_most_one_line_per_interval_and_the_last():
    out, clock = io.StringIO(), Clock()
    p = LogProgress(out, clock, step_interval=30)
    bar = p.add_task("cola", total=100, steps=True)
    for _ in range(100):
        clock.t += 1.0
        p.advance(bar)
    lines = out.getvalue().splitlines()
    assert [line.split(':')[1].split('/')[0].strip() for line in lines] == ['1', '31', '61', '91', '100']
    assert lines[0] == "cola: 1/100 done, elapsed 1s, ETA 1m39s" and lines[-1].startswith("cola: 100/100 done")


def test_advance_without_total_and_formatting():
    out, clock = io.StringIO(), Clock()
    p = LogProgress(out, clock)
    bar = p.add_task("deploy", total=None)
    p.update(bar, description="copying")  # no unit finished: no line
    clock.t += 2
    p.advance(bar)
    assert out.getvalue() == "copying: 1 done, elapsed 2s\n"
    assert (fmt_seconds(59.4), fmt_seconds(61), fmt_seconds(3725)) == ("59s", "1m01s", "1h02m")


def test_make_progress_is_plain_when_stderr_is_not_a_terminal():
    assert isinstance(make_progress(), LogProgress)  # pytest captures stderr: not a terminal


def test_work_weighted_eta_counts_cost_not_units():
    """A final fine-tune costs several candidates: with ``work`` the ETA follows the cost left, not the count."""
    out, clock = io.StringIO(), Clock()
    p = LogProgress(out, clock)
    bar = p.add_task("glp-bench prune", total=3)
    p.update(bar, completed=0, work=(0, 10))
    clock.t += 10
    p.update(bar, completed=1, work=(1, 10))  # a cheap unit: 10 s per unit of work, 9 left
    clock.t += 80
    p.update(bar, completed=2, work=(9, 10))  # the expensive one
    assert out.getvalue().splitlines() == ["glp-bench prune: 1/3 done, elapsed 10s, ETA 1m30s",
                                           "glp-bench prune: 2/3 done, elapsed 1m30s, ETA 10s"]


def test_work_eta_on_the_terminal_column(monkeypatch):
    from rich.console import Console

    import glp_bench.core.progress as progress_mod

    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    p = progress_mod.WorkProgress(progress_mod.WorkRemainingColumn(), console=Console(file=io.StringIO()))
    bar = p.add_task("prune", total=4)
    p.update(bar, completed=1, work=(100, 400))  # done before a resume: the baseline
    column = progress_mod.WorkRemainingColumn()
    assert column.render(p.tasks[0]).plain == "-:--:--"
    clock.t += 60
    p.update(bar, completed=2, work=(200, 400))
    assert column.render(p.tasks[0]).plain == "2m00s"  # 60 s per 100 units, 200 left
    assert progress_mod.work_eta(None, 5.0, 1, 2) is None and progress_mod.work_eta((0.0, 0.0), 5.0, 1, 2) == 5.0
