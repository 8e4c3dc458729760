"""Text datasets: ``.txt`` one sample per line, ``.jsonl`` with a named text field and labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.datasets.refs import require_modality, resolve_dataset
from auditor.datasets.text import read_jsonl, read_txt
from auditor.errors import DatasetFormatError, TooFewSamplesError

CORPUS = [
    ("The quick brown fox jumps over the lazy dog.", "animals"),
    ("A stitch in time saves nine.", "proverbs"),
    ("Grüße aus Köln — naïve café.", "greetings"),
    ("Pack my box with five dozen liquor jugs.", "pangrams"),
    ("Where there's smoke, there's fire.", "proverbs"),
    ("  leading and trailing spaces are kept  ", "misc"),
    ("東京は日本の首都です。", "geography"),
    ("The early bird catches the worm.", "proverbs"),
]


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def corpus_txt(path: Path, n: int) -> Path:
    return write_lines(path, [f"{CORPUS[i % len(CORPUS)][0]} #{i}".encode() for i in range(n)])


def test_txt_keeps_each_line_verbatim_and_skips_empty_and_non_utf8(tmp_path: Path) -> None:
    lines = [text.encode() for text, _ in CORPUS]
    lines[2:2] = [b"", b"   \t", b"caf\xe9 in latin-1"]
    samples = read_txt(write_lines(tmp_path / "c.txt", lines))
    assert samples.texts == [text for text, _ in CORPUS]
    assert samples.keys[:3] == ["line 1", "line 2", "line 6"]
    assert samples.skipped.counts == {"empty_line": 2, "not_utf8": 1}
    assert samples.skipped.examples == {"empty_line": ["line 3", "line 4"], "not_utf8": ["line 5"]}
    assert samples.skipped.seen == len(lines)


def test_txt_handles_crlf_a_bom_and_a_missing_final_newline(tmp_path: Path) -> None:
    (tmp_path / "w.txt").write_bytes("\ufefffirst\r\nsecond\r\nthird".encode())
    assert read_txt(tmp_path / "w.txt").texts == ["first", "second", "third"]


def test_resolved_text_dataset_reports_sizes_and_passes_the_text_modality_check(tmp_path: Path) -> None:
    path = corpus_txt(tmp_path / "corpus.txt", 40)
    resolved = resolve_dataset(str(path))
    assert (resolved.format, resolved.modality) == ("txt", "text")
    assert resolved.n_total == resolved.n_samples == 40
    assert resolved.n_bytes == path.stat().st_size
    assert resolved.texts()[3] == f"{CORPUS[3][0]} #3"
    require_modality(resolved, {"text"}, "minilm")
    with pytest.raises(DatasetFormatError, match=r"extractor 'inception' reads image data.*text data"):
        require_modality(resolved, {"image"}, "inception")


def test_too_many_bad_lines_fail_and_the_threshold_is_configurable(tmp_path: Path) -> None:
    lines = [text.encode() for text, _ in CORPUS] * 2 + [b"", b"\xff\xfe"]  # 2 bad of 18 = 11%
    path = write_lines(tmp_path / "bad.txt", lines)
    with pytest.raises(DatasetFormatError, match=r"2 of 18 samples \(11.1%\).*empty_line: 1.*not_utf8: 1"):
        resolve_dataset(str(path))
    resolved = resolve_dataset(str(path), options={"max_bad_fraction": 0.2})
    assert resolved.n_samples == 16
    assert resolved.skipped.skipped == 2


def test_empty_and_all_blank_files_are_too_few_samples(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(TooFewSamplesError, match="empty"):
        resolve_dataset(str(tmp_path / "empty.txt"))
    write_lines(tmp_path / "blank.txt", [b"", b" ", b""])
    with pytest.raises(TooFewSamplesError, match="all 3 samples were skipped"):
        resolve_dataset(str(tmp_path / "blank.txt"))


def write_jsonl(path: Path, records: list[object]) -> Path:
    return write_lines(path, [json.dumps(record).encode() for record in records])


def test_jsonl_reads_the_named_field_with_labels(tmp_path: Path) -> None:
    records = [{"body": text, "topic": topic, "id": i} for i, (text, topic) in enumerate(CORPUS)]
    path = write_jsonl(tmp_path / "c.jsonl", records)
    resolved = resolve_dataset(str(path), options={"text_field": "body", "label_field": "topic"})
    assert (resolved.format, resolved.modality, resolved.has_labels) == ("jsonl", "text", True)
    assert resolved.texts() == [text for text, _ in CORPUS]
    assert resolved.labels() == [topic for _, topic in CORPUS]
    numeric = read_jsonl(path, "body", "id")
    assert numeric.labels == [str(i) for i in range(len(CORPUS))]


def test_jsonl_bad_records_are_counted_by_reason(tmp_path: Path) -> None:
    records: list[object] = [{"text": text} for text, _ in CORPUS]
    records += [{"title": "no text"}, {"text": 42}, {"text": "   "}, ["a", "list"]]
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    with path.open("ab") as handle:
        handle.write(b"{not json\n")
    samples = read_jsonl(path)
    assert len(samples.texts) == len(CORPUS)
    assert samples.skipped.counts == {"missing_text_field": 2, "empty_text": 1, "bad_json": 2}
    assert samples.skipped.examples["bad_json"] == ["line 12", "line 13"]
    assert samples.labels is None


def test_text_field_enters_the_fingerprint_but_not_the_content_fingerprint(tmp_path: Path) -> None:
    records = [{"a": text, "b": text.upper()} for text, _ in CORPUS]
    path = write_jsonl(tmp_path / "two.jsonl", records)
    by_a = resolve_dataset(str(path), options={"text_field": "a"})
    by_b = resolve_dataset(str(path), options={"text_field": "b"})
    assert by_a.content_fingerprint == by_b.content_fingerprint
    assert by_a.fingerprint != by_b.fingerprint


def test_text_max_samples_is_a_reproducible_subset_in_file_order(tmp_path: Path) -> None:
    path = corpus_txt(tmp_path / "big.txt", 200)
    first = resolve_dataset(str(path), options={"max_samples": 20, "seed": 11})
    again = resolve_dataset(str(path), options={"max_samples": 20, "seed": 11})
    other = resolve_dataset(str(path), options={"max_samples": 20, "seed": 12})
    numbers = [int(key.split()[1]) for key in first.sample_keys()]
    assert first.texts() == again.texts() and len(first.texts()) == 20
    assert numbers == sorted(numbers)
    assert other.texts() != first.texts()
    assert (first.n_total, first.n_samples) == (200, 20)
    assert first.fingerprint != resolve_dataset(str(path)).fingerprint
    assert first.content_fingerprint == resolve_dataset(str(path)).content_fingerprint
