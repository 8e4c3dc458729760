"""Bad samples are counted, not fatal, up to a limit.

Corrupt images, empty or non-UTF-8 lines and the like are skipped and recorded in a :class:`SkipReport`
(counts per reason, a few example keys). Reports merge, so the per-worker reports of a DataLoader add up
to the dataset's; :meth:`SkipReport.enforce` raises once the skipped fraction passes ``max_bad_fraction``
(or nothing usable is left), naming the reasons and examples so the user can find the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditor.errors import DatasetFormatError, TooFewSamplesError

MAX_EXAMPLES = 5
DEFAULT_MAX_BAD_FRACTION = 0.05


@dataclass
class SkipReport:
    """``seen`` samples looked at; ``counts[reason]`` of them skipped, with up to 5 example keys each."""

    seen: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    @property
    def kept(self) -> int:
        return self.seen - self.skipped

    @property
    def bad_fraction(self) -> float:
        return self.skipped / self.seen if self.seen else 0.0

    def record_ok(self, n: int = 1) -> None:
        self.seen += n

    def record_bad(self, key: str, reason: str) -> None:
        self.seen += 1
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(key)

    def merge(self, other: SkipReport) -> SkipReport:
        """A new report holding both (examples stay capped per reason)."""
        merged = SkipReport(seen=self.seen + other.seen, counts=dict(self.counts))
        merged.examples = {reason: list(keys) for reason, keys in self.examples.items()}
        for reason, count in other.counts.items():
            merged.counts[reason] = merged.counts.get(reason, 0) + count
        for reason, keys in other.examples.items():
            shown = merged.examples.setdefault(reason, [])
            shown.extend(keys[: MAX_EXAMPLES - len(shown)])
        return merged

    def describe(self) -> str:
        return "; ".join(
            f"{reason}: {count} (e.g. {', '.join(self.examples.get(reason, []))})"
            for reason, count in sorted(self.counts.items())
        )

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "skipped": self.skipped, "counts": self.counts, "examples": self.examples}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SkipReport:
        """The report :meth:`to_dict` wrote (stored beside cached embeddings)."""
        return cls(
            seen=int(data.get("seen") or 0),
            counts={str(k): int(v) for k, v in (data.get("counts") or {}).items()},
            examples={str(k): [str(x) for x in v] for k, v in (data.get("examples") or {}).items()},
        )

    def enforce(self, max_bad_fraction: float, what: str) -> None:
        """Raise when nothing is usable (TooFewSamplesError) or too much was skipped (DatasetFormatError)."""
        if self.seen and self.kept == 0:
            raise TooFewSamplesError(
                f"{what}: all {self.seen} samples were skipped ({self.describe()})", details=self.to_dict()
            )
        if self.bad_fraction > max_bad_fraction:
            raise DatasetFormatError(
                f"{what}: {self.skipped} of {self.seen} samples ({self.bad_fraction:.1%}) were skipped, "
                f"more than max_bad_fraction={max_bad_fraction:g}: {self.describe()}",
                details=self.to_dict(),
            )


@dataclass
class LoaderSkipReport(SkipReport):
    """A dataset's skip report after a loader pass: ``loader`` is what that pass alone skipped (stored
    with the embeddings it produced), ``before_loader`` what resolving had skipped."""

    before_loader: SkipReport = field(default_factory=SkipReport)
    loader: SkipReport = field(default_factory=SkipReport)
