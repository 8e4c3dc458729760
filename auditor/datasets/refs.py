"""Resolving a :class:`~auditor.pipeline.spec.DatasetRef` to a local file and a format."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from auditor.errors import DatasetFormatError, DatasetNotFoundError

EMBEDDING_FORMATS = {".npy": "npy", ".npz": "npz", ".pt": "pt", ".pth": "pt"}
TABLE_FORMATS = {".csv": "csv"}
# parquet is either: a table, or embeddings in a list/array column; the extractor decides.
AMBIGUOUS_FORMATS = {".parquet": "parquet", ".pq": "parquet"}
KNOWN_FORMATS = {**EMBEDDING_FORMATS, **TABLE_FORMATS, **AMBIGUOUS_FORMATS}


def resolve_local_path(uri: str) -> Path:
    """A local path or ``file://`` URI; other schemes arrive with the dataset-references issue."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(parsed.path)
    elif parsed.scheme in ("", None) or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        path = Path(uri)
    else:
        raise DatasetFormatError(
            f"unsupported scheme {parsed.scheme!r} in {uri!r}: only local paths and file:// are supported",
            details={"uri": uri, "scheme": parsed.scheme},
        )
    path = path.expanduser()
    if not path.exists():
        raise DatasetNotFoundError(f"dataset not found: {uri} (no such file)", details={"uri": uri})
    if path.is_dir():
        raise DatasetFormatError(
            f"{uri} is a directory; expected a file ({', '.join(sorted(KNOWN_FORMATS))})",
            details={"uri": uri},
        )
    return path


def detect_format(path: Path, explicit: str | None = None) -> str:
    if explicit:
        fmt = explicit.lower().lstrip(".")
        if fmt not in set(KNOWN_FORMATS.values()):
            raise DatasetFormatError(
                f"unknown format {explicit!r}; known: {sorted(set(KNOWN_FORMATS.values()))}",
                details={"format": explicit},
            )
        return fmt
    suffix = path.suffix.lower()
    if suffix not in KNOWN_FORMATS:
        raise DatasetFormatError(
            f"cannot tell the format of {path.name!r} from its suffix; supported: "
            f"{', '.join(sorted(KNOWN_FORMATS))} (or pass the format explicitly)",
            details={"path": str(path)},
        )
    return KNOWN_FORMATS[suffix]
