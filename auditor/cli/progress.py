"""The rich adapter of the progress protocol."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class RichProgress:
    def __init__(self, console: Console, *, prefix: str = "") -> None:
        self.prefix = prefix
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def start(self, stage: str, total: int | None = None) -> None:
        self._tasks[stage] = self._progress.add_task(f"{self.prefix}{stage}", total=total)

    def advance(self, stage: str, amount: int = 1) -> None:
        if stage in self._tasks:
            self._progress.advance(self._tasks[stage], amount)

    def finish(self, stage: str) -> None:
        task = self._tasks.pop(stage, None)
        if task is not None:
            self._progress.remove_task(task)
