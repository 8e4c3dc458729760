"""Where a dataset reference may point: schemes, data roots, brace patterns and archive member names.

A reference is a local path, a ``file://`` URI, or a remote URI (``s3://``, ``gs://``, ``http(s)://``,
``memory://`` for tests) read through fsspec, an optional extra. Local references are always allowed;
a remote scheme only when the caller enables it (``allowed_schemes``, from its settings), so a server
never fetches URLs its operator did not ask for. Local paths can be confined to data roots
(``data_roots``; None means unrestricted, as the local CLI runs): ``..`` components are refused and the
real path (symlinks resolved) must lie under a root. An ``http(s)://`` URL is fetched only from public
addresses unless the operator allows internal ones (:mod:`auditor.datasets.netguard`).

Errors raised here (all :class:`~auditor.errors.BadInputError`)::

    DatasetFormatError
    └── UnsupportedSchemeError   (422) a scheme the auditor cannot read at all
    SchemeNotAllowedError        (403) a scheme this deployment has not enabled
    PathNotAllowedError          (403) a path outside the data roots, or an unsafe archive member name
    MissingExtraError            (501) the optional packages for a remote scheme are not installed
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from auditor.datasets.netguard import HostPolicy, guarded_client
from auditor.errors import BadInputError, DatasetFormatError

LOCAL_SCHEMES = frozenset({"", "file"})
# Remote scheme -> the module fsspec needs for it (beside fsspec itself).
REMOTE_SCHEMES: dict[str, str | None] = {
    "s3": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "http": "aiohttp",
    "https": "aiohttp",
    "memory": None,
}
REMOTE_EXTRA_INSTALL = 'pip install "synthetic-data-auditor[remote]"'

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:([\\/]|$)")
# The most names one brace pattern may expand to (a WebDataset of 100k shards is already unusual):
# ``{0..999999999}`` must not build a billion strings.
MAX_BRACE_EXPANSION = 100_000
HTTP_SCHEMES = frozenset({"http", "https"})


class UnsupportedSchemeError(DatasetFormatError):
    code = "unsupported_scheme"


class SchemeNotAllowedError(BadInputError):
    code = "scheme_not_allowed"
    http_status = 403


class PathNotAllowedError(BadInputError):
    code = "path_not_allowed"
    http_status = 403


class MissingExtraError(BadInputError):
    """An optional dependency is missing: the message carries the install command."""

    code = "missing_extra"
    http_status = 501


@dataclass(frozen=True)
class ParsedUri:
    """``scheme`` is ``"file"`` for local paths; ``path`` is the filesystem path or the full remote URL."""

    uri: str
    scheme: str
    path: str

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"


def parse_uri(uri: str) -> ParsedUri:
    """Split a reference into scheme and path; Windows drive letters are local paths, not schemes."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        return ParsedUri(uri, "file", unquote(parsed.path))
    if scheme == "" or _WINDOWS_DRIVE.match(uri):
        return ParsedUri(uri, "file", uri)
    return ParsedUri(uri, scheme, uri)


def check_scheme(parsed: ParsedUri, allowed_schemes: Collection[str]) -> None:
    """Local references always pass; a remote scheme must be known and enabled by the caller."""
    if parsed.is_local:
        return
    if parsed.scheme not in REMOTE_SCHEMES:
        raise UnsupportedSchemeError(
            f"unsupported scheme {parsed.scheme!r} in {parsed.uri!r}: supported are local paths, file://, "
            f"{', '.join(s + '://' for s in sorted(REMOTE_SCHEMES))}",
            details={"uri": parsed.uri, "scheme": parsed.scheme},
        )
    if parsed.scheme not in {s.lower() for s in allowed_schemes}:
        enabled = ", ".join(sorted(allowed_schemes)) or "none"
        raise SchemeNotAllowedError(
            f"scheme {parsed.scheme!r} is not enabled here ({parsed.uri}); enabled remote schemes: {enabled}",
            details={"uri": parsed.uri, "scheme": parsed.scheme, "allowed": sorted(allowed_schemes)},
        )


def remote_filesystem(scheme: str, hosts: HostPolicy | None = None) -> Any:
    """The fsspec filesystem for ``scheme``; a :class:`MissingExtraError` naming the extra when absent.

    For ``http(s)`` every connection is vetted against ``hosts`` (None: public addresses only); see
    :mod:`auditor.datasets.netguard`.
    """
    needed = ["fsspec"]
    extra_module = REMOTE_SCHEMES.get(scheme)
    if extra_module:
        needed.append(extra_module)
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"reading {scheme}:// datasets needs {', '.join(missing)}: {REMOTE_EXTRA_INSTALL}",
            details={"scheme": scheme, "missing": missing, "install": REMOTE_EXTRA_INSTALL},
        )
    import fsspec

    try:
        if scheme in HTTP_SCHEMES:
            # A module-level function and a frozen policy: the filesystem still pickles by its arguments.
            return fsspec.filesystem(
                scheme, get_client=functools.partial(guarded_client, hosts or HostPolicy())
            )
        return fsspec.filesystem(scheme)
    except ImportError as exc:  # a transitive dependency of the protocol package
        raise MissingExtraError(
            f"reading {scheme}:// datasets failed to import a dependency ({exc}): {REMOTE_EXTRA_INSTALL}",
            details={"scheme": scheme, "install": REMOTE_EXTRA_INSTALL},
        ) from exc


def is_within(path: Path, roots: Sequence[Path]) -> bool:
    """Whether the real ``path`` lies under one of the (real) ``roots``."""
    real = Path(os.path.realpath(path))
    return any(real == root or root in real.parents for root in _real_roots(roots))


def _real_roots(roots: Sequence[Path]) -> list[Path]:
    return [Path(os.path.realpath(Path(root).expanduser())) for root in roots]


def confine_local_path(
    raw: str,
    data_roots: Sequence[Path] | None,
    *,
    what: str = "dataset paths",
    roots_name: str = "data roots",
) -> Path:
    """The local path for ``raw``, refused when it escapes ``data_roots``.

    With roots, ``..`` components are refused outright, a relative path is looked up under each root in
    order, and the real path (every symlink resolved) must lie under a root; the real path is returned
    so later reads cannot be redirected. Without roots the expanded path is returned as given. The
    refusal reads the same whether or not the path exists. ``what`` and ``roots_name`` word the errors.
    """
    path = Path(raw).expanduser()
    if data_roots is None:
        return path
    if ".." in path.parts:
        raise PathNotAllowedError(
            f"{raw!r}: '..' is not allowed in {what}", details={"path": raw, "reason": "traversal"}
        )
    roots = _real_roots(data_roots)
    candidates = [path] if path.is_absolute() else [root / path for root in roots]
    chosen = next((c for c in candidates if c.exists() or c.is_symlink()), candidates[0])
    real = Path(os.path.realpath(chosen))
    if not any(real == root or root in real.parents for root in roots):
        raise PathNotAllowedError(
            f"{raw!r} resolves outside the allowed {roots_name} ({', '.join(str(r) for r in roots)})",
            details={"path": raw, "reason": "outside_data_roots"},
        )
    return real


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion, as WebDataset shard lists use it.

    ``shard-{000..002}.tar`` gives ``shard-000.tar``, ``shard-001.tar``, ``shard-002.tar`` (the width of
    the wider bound is kept); ``{a,b}`` gives each alternative; several groups multiply, left to right.
    More than :data:`MAX_BRACE_EXPANSION` names is a :class:`DatasetFormatError`, raised before any is built.
    """
    count = 1
    for group in _BRACE.finditer(pattern):
        count *= _choice_count(group.group(1))
        if count > MAX_BRACE_EXPANSION:
            raise DatasetFormatError(
                f"{pattern!r} expands to more than {MAX_BRACE_EXPANSION} names",
                details={"pattern": pattern, "max_names": MAX_BRACE_EXPANSION},
            )
    return _expand(pattern)


def _choice_count(body: str) -> int:
    numeric = _RANGE.match(body)
    if numeric is None:
        return body.count(",") + 1
    start, stop = (int(g) for g in numeric.groups())
    return abs(stop - start) + 1


def _expand(pattern: str) -> list[str]:
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [head + choice + rest for choice in _brace_choices(match.group(1)) for rest in _expand(tail)]


def _brace_choices(body: str) -> list[str]:
    numeric = _RANGE.match(body)
    if numeric is None:
        if "," not in body:
            raise DatasetFormatError(f"cannot expand {{{body}}}: expected {{a,b}} or {{000..009}}")
        return body.split(",")
    start, stop = (int(g) for g in numeric.groups())
    width = max(len(g.lstrip("-")) for g in numeric.groups())
    step = 1 if stop >= start else -1
    return [str(i).zfill(width) for i in range(start, stop + step, step)]


def has_braces(uri: str) -> bool:
    return _BRACE.search(uri) is not None


def safe_member_key(name: str, container: str) -> str:
    """An archive member name as a clean relative key; absolute names and ``..`` refuse the archive.

    Nothing is ever extracted to disk, but keys become sample ids and labels, so they must not pretend
    to live elsewhere. Backslashes count as separators (zip files written on Windows).
    """
    normalised = name.replace("\\", "/")
    parts = [p for p in PurePosixPath(normalised).parts if p not in ("", ".")]
    if normalised.startswith("/") or _WINDOWS_DRIVE.match(normalised) or ".." in parts or "\0" in name:
        raise PathNotAllowedError(
            f"{container}: unsafe member name {name!r} (absolute paths and '..' are not allowed in archives)",
            details={"container": container, "member": name, "reason": "unsafe_member_name"},
        )
    return "/".join(parts)
