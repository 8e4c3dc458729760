"""Text samples: ``.txt`` (one sample per line) and ``.jsonl`` (one JSON object per line).

Lines are split on ``\\n`` (a trailing ``\\r`` is dropped) and decoded as UTF-8 one at a time, so one bad
line costs one sample, not the file. Skipped lines are counted by reason with example keys
(``line 17``): ``empty_line`` (blank or whitespace only), ``not_utf8``, and for JSONL ``bad_json`` (not
a JSON object), ``missing_text_field`` (absent or not a string) and ``empty_text``. Labels
(``label_field`` of each JSONL record) are kept as strings aligned with the samples, None where absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.datasets.skips import SkipReport

_BOM = "\ufeff"


@dataclass
class TextSamples:
    """Kept samples in file order: ``keys[i]`` (``line N``), ``texts[i]``, ``labels[i]`` if requested."""

    keys: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[str | None] | None = None
    skipped: SkipReport = field(default_factory=SkipReport)

    def select(self, indices: list[int]) -> TextSamples:
        """The samples at ``indices`` (the skip report stays that of the whole file)."""
        return TextSamples(
            keys=[self.keys[i] for i in indices],
            texts=[self.texts[i] for i in indices],
            labels=None if self.labels is None else [self.labels[i] for i in indices],
            skipped=self.skipped,
        )


def _decoded_lines(path: Path, report: SkipReport) -> Iterator[tuple[str, str]]:
    """``(key, line)`` for each non-blank UTF-8 line; the others go to ``report``."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            key = f"line {number}"
            try:
                line = raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8")
            except UnicodeDecodeError:
                report.record_bad(key, "not_utf8")
                continue
            if number == 1:
                line = line.removeprefix(_BOM)
            if not line.strip():
                report.record_bad(key, "empty_line")
                continue
            yield key, line


def read_txt(path: Path) -> TextSamples:
    """One sample per line, kept verbatim (leading/trailing spaces included)."""
    samples = TextSamples()
    for key, line in _decoded_lines(path, samples.skipped):
        samples.skipped.record_ok()
        samples.keys.append(key)
        samples.texts.append(line)
    return samples


def read_jsonl(path: Path, text_field: str = "text", label_field: str | None = None) -> TextSamples:
    """The ``text_field`` string of each JSON object per line, with ``label_field`` values if asked."""
    samples = TextSamples(labels=[] if label_field else None)
    for key, line in _decoded_lines(path, samples.skipped):
        text, reason, record = _jsonl_text(line, text_field)
        if reason is not None:
            samples.skipped.record_bad(key, reason)
            continue
        samples.skipped.record_ok()
        samples.keys.append(key)
        samples.texts.append(text)
        if samples.labels is not None and label_field is not None:
            value = record.get(label_field)
            samples.labels.append(None if value is None else str(value))
    return samples


def _jsonl_text(line: str, text_field: str) -> tuple[str, str | None, dict[str, Any]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return "", "bad_json", {}
    if not isinstance(record, dict):
        return "", "bad_json", {}
    text = record.get(text_field)
    if not isinstance(text, str):
        return "", "missing_text_field", record
    if not text.strip():
        return "", "empty_text", record
    return text, None, record
