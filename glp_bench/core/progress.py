"""One progress display for all long work (fine-tuning epochs, search steps, exports, benchmarks).

On a terminal: rich's live bars on stderr. When stderr is not a terminal (a log file, CI), live bars never
render, so ``make_progress`` returns a ``LogProgress`` instead: one plain line per finished unit of the
outermost bar (a candidate, a final fine-tune, an export variant, a latency configuration) with elapsed
time and ETA. Bars opened inside another one (the steps of each fine-tune) print nothing; a bar of
steps (``add_task(..., steps=True)``) that stands alone (``glp-bench finetune``) prints at most one line every ``STEP_INTERVAL_S``.

Units of unequal cost (a final fine-tune costs several candidates): ``update(..., work=(done, total))`` in any
unit of cost (``glp_bench.prune.work``) makes the ETA the time per unit of work done in this process times the
work left, on both displays; without it the ETA counts units.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)
STEP_INTERVAL_S = 30.0


def make_progress(transient: bool = False):
    """Live bars (description, bar, done/total, elapsed, ETA) on a terminal; else a ``LogProgress``."""
    if not console.is_terminal:
        return LogProgress()
    return WorkProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        WorkRemainingColumn(),
        console=console,
        transient=transient,
    )


def work_eta(first: tuple[float, float] | None, now: float, done: float, total: float) -> float | None:
    """Seconds left: time per unit of work since ``first`` = (clock, work done then) times the work left; None
    before any work was done in this process."""
    if first is None or done <= first[1]:
        return None
    return (now - first[0]) / (done - first[1]) * max(total - done, 0.0)


class WorkProgress(Progress):
    """rich's ``Progress`` that also takes ``update(..., work=(done, total))`` (see the module docstring)."""

    def update(self, task_id, *, work: tuple[float, float] | None = None, **kwargs) -> None:
        if work is not None:
            task = self._tasks.get(task_id)
            first = (task.fields.get("work_first") if task else None) or (time.monotonic(), float(work[0]))
            kwargs.update(work=(float(work[0]), float(work[1])), work_first=first)
        super().update(task_id, **kwargs)


class WorkRemainingColumn(ProgressColumn):
    """The ETA from ``work`` where a bar has it, else rich's own estimate."""

    def __init__(self):
        super().__init__()
        self.fallback = TimeRemainingColumn()

    def render(self, task) -> Text:
        work = task.fields.get("work")
        if work is None:
            return self.fallback.render(task)
        eta = work_eta(task.fields.get("work_first"), time.monotonic(), *work)
        return Text("-:--:--" if eta is None else fmt_seconds(eta), style="progress.remaining")


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class _Bar:
    description: str
    total: float | None
    nested: bool  # opened while another bar was live
    steps: bool = False  # a fine-tune's optimizer steps (add_task(..., steps=True))
    completed: float = 0.0
    start: float = field(default_factory=time.monotonic)
    first: float | None = None  # completed count when this process started counting (resumed runs)
    last_line: float = 0.0
    counted: bool = False  # an absolute count (update(completed=...)) was seen
    work: tuple[float, float] | None = None  # (done, total) in units of cost, when the caller knows them
    work_first: tuple[float, float] | None = None  # (clock, work done) at the first report in this process


class LogProgress:
    """The subset of ``rich.progress.Progress`` glp-bench uses (add_task, update, advance, remove_task, a
    context manager), printing plain lines to ``stream`` (stderr) instead of live bars."""

    def __init__(self, stream=None, clock=time.monotonic, step_interval: float = STEP_INTERVAL_S):
        self.stream, self.clock, self.step_interval = stream, clock, step_interval
        self._bars: dict[int, _Bar] = {}
        self._next = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = 100.0, completed: float = 0, steps: bool = False,
                 **_fields) -> int:
        self._next += 1
        self._bars[self._next] = _Bar(description, total, nested=bool(self._bars), steps=steps, completed=completed,
                                      start=self.clock(), first=completed)
        return self._next

    def remove_task(self, task_id: int) -> None:
        self._bars.pop(task_id, None)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None,
               work: tuple[float, float] | None = None, **_fields) -> None:
        bar = self._bars.get(task_id)
        if bar is None:
            return
        if work is not None:
            bar.work = (float(work[0]), float(work[1]))
            if bar.work_first is None:
                bar.work_first = (self.clock(), bar.work[0])
        if description is not None:
            bar.description = description
        if total is not None:
            bar.total = total
        before = bar.completed
        if completed is not None:
            bar.completed = completed
            if not bar.counted:  # the first absolute count is work done before (a resumed run): no line
                bar.counted, bar.first = True, completed
                return
        if advance:
            bar.completed += advance
        if int(bar.completed) > int(before):
            self._finished_unit(bar)

    def _finished_unit(self, bar: _Bar) -> None:
        now = self.clock()
        is_last = bar.total is not None and bar.completed >= bar.total
        if bar.nested:
            return
        if bar.steps and not is_last and now - bar.last_line < self.step_interval:
            return  # a stand-alone fine-tune's steps: one line per interval
        bar.last_line = now
        print(self.line(bar, now), file=self.stream or sys.stderr, flush=True)

    @staticmethod
    def line(bar: _Bar, now: float) -> str:
        elapsed = now - bar.start
        done = bar.completed - (bar.first or 0)
        total = f"/{bar.total:g}" if bar.total is not None else ""
        text = f"{bar.description.strip()}: {bar.completed:g}{total} done, elapsed {fmt_seconds(elapsed)}"
        eta = work_eta(bar.work_first, now, *bar.work) if bar.work is not None else None
        if eta is None and bar.total is not None and done > 0:
            eta = elapsed / done * max(bar.total - bar.completed, 0)
        if eta is not None:
            text += f", ETA {fmt_seconds(eta)}"
        return text
