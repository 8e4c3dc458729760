"""The request models' documented patterns are the checks the server runs, character for character."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from auditor.api.schemas import URI_PATTERN, check_uri, parse_date_time
from auditor.errors import AuditorError

URI = re.compile(URI_PATTERN)
# Characters where the URI rules change: scheme characters, the colon, separators, blanks and controls.
uri_text = st.text(
    alphabet=st.sampled_from("aZs3:+.-/\\\\ \\x00\\x1f\\x7fé[%") | st.characters(), max_size=12
)
schemes = st.sampled_from(
    ["", "file:", "FILE:", "s3:", "gs:", "gcs:", "http:", "HTTPS:", "memory:", "ftp:", "c:", "a+b:"]
)


def server_accepts(uri: str) -> bool:
    try:
        check_uri(uri)
    except (ValueError, AuditorError):
        return False
    return True


@given(st.builds(str.__add__, schemes, uri_text))
@example("C:")
@example("C:/data")
@example("c:x")
@example(" s3x:y")
@example("0:x")
@example("é:x")
@example("data\x00.npy")
@example("//[x")
def test_the_uri_pattern_is_the_servers_rule(uri: str) -> None:
    assume(uri)  # the empty reference is min_length's
    # fullmatch: JSON Schema's (ECMA's) "$" ends the text; Python's also matches before a final newline.
    assert bool(URI.fullmatch(uri)) == server_accepts(uri), uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T00:00:00Z", datetime(2026, 11, 23, tzinfo=timezone.utc)),
        ("2026-11-23t01:30:00.1234567+01:30", datetime(2026, 11, 23, 0, 0, 0, 123456, tzinfo=timezone.utc)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=timezone.utc)),
        ("0000-01-01T00:00:00Z", datetime.min.replace(tzinfo=timezone.utc)),
        ("0001-01-01T00:00:00+05:00", datetime.min.replace(tzinfo=timezone.utc)),
        ("9999-12-31T23:00:00-05:00", datetime.max.replace(tzinfo=timezone.utc)),
    ],
)
def test_rfc3339_date_times(text: str, expected: datetime) -> None:
    parsed = parse_date_time(text)
    assert parsed == expected and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    ["0.5", "1700000000", "2026-11-23", "2026-11-23T00:00:00", "2026-02-30T00:00:00Z", "2026-11-23T00:00Z",
     "2026-11-23T24:00:00Z", "2026-11-23T00:00:00+24:00", "2026-11-23 00:00:00Z"],
)  # fmt: skip
def test_what_is_not_an_rfc3339_date_time(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date_time(text)
