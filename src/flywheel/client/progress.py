"""The push display: one bar per path in flight, a total bar with bytes and MiB/s, and a
line per finished path (lines stay in logs where bars cannot)."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from flywheel.api.upload import UploadPathResult
from flywheel.client.plan import PushPlan
from flywheel.client.summary import MIB, human_bytes


class MibPerSecond(ProgressColumn):
    """Binary units, like the summary line (rich's own speed column is decimal)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- MiB/s" if speed is None else f"{speed / MIB:.1f} MiB/s",
                    style="progress.data.speed")


def short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


class RichReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}", table_column=None),
            BarColumn(bar_width=30), DownloadColumn(binary_units=True), MibPerSecond(),
            TimeRemainingColumn(), console=console, transient=True)
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}
        self._total: TaskID | None = None
        self._done = 0
        self._count = 0

    def _total_description(self) -> str:
        return f"[bold]total[/] {self._done}/{self._count} paths"

    def start(self, plan: PushPlan) -> None:
        self._count = len(plan.order)
        if plan.upstream:
            self.console.print(f"skipping {len(plan.upstream)} paths signed by an upstream "
                               "cache's key (--ignore-upstream-filter pushes them)")
        if not plan.order:
            return
        self.console.print(f"pushing {self._count} paths ({human_bytes(plan.upload_bytes)}) "
                           f"to {plan.cache}")
        self.progress.start()
        self._total = self.progress.add_task(self._total_description(),
                                             total=plan.upload_bytes)

    def begin(self, path: str, size: int) -> None:
        with self._lock:
            self._tasks[path] = self.progress.add_task(f"  {short(path)}", total=size)

    def advance(self, path: str, n: int) -> None:
        task = self._tasks.get(path)
        if task is not None:
            self.progress.advance(task, n)
        if self._total is not None:
            self.progress.advance(self._total, n)

    def _finish(self, path: str) -> None:
        with self._lock:
            task = self._tasks.pop(path, None)
            if task is not None:
                self.progress.remove_task(task)
            self._done += 1
            if self._total is not None:
                self.progress.update(self._total, description=self._total_description())

    def retry(self, path: str, attempt: int, error: str, delay: float) -> None:
        with self._lock:
            task = self._tasks.get(path)
            if task is not None:
                self.progress.reset(task)
        self.console.print(f"[yellow]retrying[/] {short(path)} in {delay:.0f}s "
                           f"(attempt {attempt} failed: {error})", highlight=False)

    def done(self, path: str, result: UploadPathResult) -> None:
        self._finish(path)
        verb = "uploaded" if result.kind == "Uploaded" else "deduplicated"
        self.console.print(f"[green]{verb}[/] {short(path)}", highlight=False)

    def failed(self, path: str, error: str) -> None:
        if path in self._tasks:
            self._finish(path)
        else:
            with self._lock:
                self._done += 1
        self.console.print(f"[red]failed[/] {short(path)}: {error}", highlight=False)

    def stop(self) -> None:
        self.progress.stop()
