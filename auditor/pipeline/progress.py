"""Progress as a callback protocol: the CLI adapts it to rich, workers to DB rows, tests to a recorder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class ProgressReporter(Protocol):
    def start(self, stage: str, total: int | None = None) -> None: ...

    def advance(self, stage: str, amount: int = 1) -> None: ...

    def finish(self, stage: str) -> None: ...


class NullProgress:
    def start(self, stage: str, total: int | None = None) -> None:
        pass

    def advance(self, stage: str, amount: int = 1) -> None:
        pass

    def finish(self, stage: str) -> None:
        pass


@dataclass
class RecordingProgress:
    """Keeps every event; used by tests to check that long work reports progress."""

    events: list[tuple[str, str, int | None]] = field(default_factory=list)

    def start(self, stage: str, total: int | None = None) -> None:
        self.events.append(("start", stage, total))

    def advance(self, stage: str, amount: int = 1) -> None:
        self.events.append(("advance", stage, amount))

    def finish(self, stage: str) -> None:
        self.events.append(("finish", stage, None))

    @property
    def stages(self) -> list[str]:
        return [stage for kind, stage, _ in self.events if kind == "start"]
