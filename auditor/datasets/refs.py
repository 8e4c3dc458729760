"""Resolving a dataset reference (URI + format + options) to a :class:`ResolvedDataset`.

Everything a user can get wrong is checked here, before any heavy work: the scheme (enabled?), the
location (inside the data roots?), the format and modality (known? what the extractor reads?), and
emptiness. The result knows its content fingerprint and size and gives the extractors their samples:
image samples to decode in DataLoader workers, texts, or a local file for the embedding/table readers.

Formats (told from the name unless given): ``npy``, ``npz``, ``pt`` (embeddings), ``csv`` (table),
``parquet`` (embeddings if it has a list column, else a table), ``txt`` and ``jsonl`` (text), and for
images: ``image_folder`` (a directory, recursive), ``zip``, ``tar`` (``.tar``, ``.tar.gz``/``.tgz``,
``.tar.bz2``, ``.tar.xz``) and ``webdataset`` (a brace pattern such as ``shard-{000..009}.tar``, or a tar
whose members include ``.cls`` labels; ``format="tar"`` reads such a tar as plain images).

Typical use (the pipeline passes its settings)::

    resolved = resolve_dataset(ref.uri, format=ref.format, options=ref.options,
                               allowed_schemes=settings_schemes, data_roots=settings_roots,
                               limits=DatasetLimits.from_settings(settings))
    require_modality(resolved, {"image"}, "inception")
    samples = resolved.image_samples()          # Sequence[ImageSample], picklable

Downloads (remote single files, archives, shards) go to a private directory per resolution under
``download_dir``, owned by the :class:`ResolvedDataset`: deleted by :meth:`ResolvedDataset.close`, at
the end of a :func:`dataset_scope` block (each pipeline stage runs in one), when resolution fails, or
at the latest when the dataset is garbage-collected.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import shutil
import tempfile
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from auditor.datasets.fingerprint import collection_fingerprint, file_fingerprint, selection_fingerprint
from auditor.datasets.images import (
    ImageSample,
    StoredMember,
    has_webdataset_labels,
    images_from_members,
    webdataset_samples,
)
from auditor.datasets.netguard import check_url_host, find_host_refusal
from auditor.datasets.options import DatasetLimits, DatasetOptions
from auditor.datasets.sampling import choose_indices
from auditor.datasets.skips import LoaderSkipReport, SkipReport
from auditor.datasets.sources import (
    LocalFolderStore,
    Member,
    MemberTooLargeError,
    RemoteFolderStore,
    SampleStore,
    ZipStore,
    download_remote_file,
    list_remote_folder,
    list_tar,
    list_zip,
    walk_local_folder,
)
from auditor.datasets.text import TextSamples, read_jsonl, read_txt
from auditor.datasets.uri import (
    HTTP_SCHEMES,
    ParsedUri,
    UnsupportedSchemeError,
    check_scheme,
    confine_local_path,
    expand_braces,
    has_braces,
    parse_uri,
    remote_filesystem,
)
from auditor.errors import DatasetFormatError, DatasetNotFoundError, HostNotAllowedError, TooFewSamplesError

EMBEDDING_FORMATS = {".npy": "npy", ".npz": "npz", ".pt": "pt", ".pth": "pt"}
TABLE_FORMATS = {".csv": "csv"}
# parquet is either: a table, or embeddings in a list/array column; its schema decides.
AMBIGUOUS_FORMATS = {".parquet": "parquet", ".pq": "parquet"}
TEXT_FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ARCHIVE_FORMATS = {
    ".zip": "zip",
    ".tar": "tar",
    ".tgz": "tar",
    ".tar.gz": "tar",
    ".tar.bz2": "tar",
    ".tar.xz": "tar",
}
KNOWN_FORMATS = {**EMBEDDING_FORMATS, **TABLE_FORMATS, **AMBIGUOUS_FORMATS, **TEXT_FORMATS, **ARCHIVE_FORMATS}

FORMAT_MODALITIES: dict[str, tuple[str, ...]] = {
    "npy": ("embeddings",),
    "npz": ("embeddings",),
    "pt": ("embeddings",),
    "csv": ("table",),
    "parquet": ("embeddings", "table"),
    "txt": ("text",),
    "jsonl": ("text",),
    "image_folder": ("image",),
    "zip": ("image",),
    "tar": ("image",),
    "webdataset": ("image",),
}
SINGLE_FILE_FORMATS = frozenset({"npy", "npz", "pt", "csv", "parquet", "txt", "jsonl"})
_FORMAT_ALIASES = {
    "pth": "pt",
    "pq": "parquet",
    "ndjson": "jsonl",
    "tgz": "tar",
    "tar.gz": "tar",
    "folder": "image_folder",
    "wds": "webdataset",
}
DEFAULT_DOWNLOAD_DIR = Path(tempfile.gettempdir()) / "auditor-downloads"
# What a member over max_member_bytes contributes to a collection fingerprint instead of its SHA-256:
# it is skipped whenever it is read, so its bytes never matter (and are never hashed).
TOO_LARGE_DIGEST = "too-large"


class WrongModalityError(DatasetFormatError):
    code = "wrong_modality"


def _remove_tree(path: Path, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # never from a forked DataLoader worker's copy
        shutil.rmtree(path, ignore_errors=True)


class _DownloadArea:
    """A private directory under ``parent`` for one resolution's downloads, made on first use.

    Removed by :meth:`remove`, or when the object is garbage-collected, only ever by the process that
    made it. A pickled copy does not own the directory.
    """

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self._path: Path | None = None
        self._finalizer: weakref.finalize[[Path, int], _DownloadArea] | None = None

    def path(self) -> Path:
        if self._path is None:
            self.parent.mkdir(parents=True, exist_ok=True)
            self._path = Path(tempfile.mkdtemp(prefix="resolve-", dir=self.parent))
            self._finalizer = weakref.finalize(self, _remove_tree, self._path, os.getpid())
        return self._path

    def remove(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_finalizer": None}


_SCOPE: contextvars.ContextVar[list[ResolvedDataset] | None] = contextvars.ContextVar(
    "auditor_dataset_scope", default=None
)


@contextmanager
def dataset_scope() -> Iterator[None]:
    """Close every dataset resolved inside the block when it ends, however it ends: archive handles
    closed, downloaded files deleted. Each pipeline stage (and ``run_audit``) runs in one."""
    opened: list[ResolvedDataset] = []
    token = _SCOPE.set(opened)
    try:
        yield
    finally:
        _SCOPE.reset(token)
        for dataset in opened:
            dataset.close()


# -- formats ------------------------------------------------------------------------------------------------


def normalise_format(explicit: str) -> str:
    """A known format name for an explicit ``format`` (``.tgz`` -> ``tar``); unknown ones are an error."""
    fmt = explicit.lower().lstrip(".")
    fmt = _FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in FORMAT_MODALITIES:
        raise DatasetFormatError(
            f"unknown format {explicit!r}; known: {sorted(FORMAT_MODALITIES)}", details={"format": explicit}
        )
    return fmt


def format_from_name(name: str) -> str | None:
    """The format a file name's suffix says (the longest matching suffix wins), or None."""
    lowered = name.lower()
    matches = [suffix for suffix in KNOWN_FORMATS if lowered.endswith(suffix)]
    return KNOWN_FORMATS[max(matches, key=len)] if matches else None


def detect_format(path: Path, explicit: str | None = None) -> str:
    """The format of a local path: explicit if given, ``image_folder`` for a directory, else its suffix."""
    if explicit:
        return normalise_format(explicit)
    if path.is_dir():
        return "image_folder"
    fmt = format_from_name(path.name)
    if fmt is None:
        raise DatasetFormatError(
            f"cannot tell the format of {path.name!r} from its suffix; supported: "
            f"{', '.join(sorted(KNOWN_FORMATS))} or a directory of images (or pass the format explicitly)",
            details={"path": str(path)},
        )
    return fmt


def peek_modality(
    uri: str,
    *,
    format: str | None = None,
    options: Mapping[str, Any] | None = None,
    data_roots: Sequence[Path] | None = None,
) -> tuple[str, str] | None:
    """``(format, modality)`` of a reference told without reading its samples, or None when telling
    takes more (a remote parquet file, a local path with no known suffix that is not a directory).

    The same rules as resolution, minus the I/O: the ``modality`` option, the explicit format or the
    name's suffix; a brace pattern is WebDataset; a local directory, or a remote name without a suffix,
    is images; a local parquet file is told by its schema (its footer only). Nothing is hashed or
    downloaded. Bad options and formats raise as they would on resolution.
    """
    opts = DatasetOptions.parse(options)
    parsed = parse_uri(uri)
    explicit = normalise_format(format) if format else None
    if explicit is None and has_braces(parsed.path):
        fmt = "webdataset"
    elif explicit is not None:
        fmt = explicit
    elif parsed.is_local:
        path = confine_local_path(parsed.path, data_roots)
        guessed = format_from_name(path.name)
        if guessed is None and not path.is_dir():
            return None
        fmt = guessed or "image_folder"
    else:
        name = urlparse(parsed.path).path.rstrip("/").rsplit("/", 1)[-1]
        fmt = format_from_name(name) or "image_folder"
    local: Path | None = None
    if fmt == "parquet" and opts.modality is None:
        if not parsed.is_local:
            return None
        local = confine_local_path(parsed.path, data_roots)
        if not local.is_file():
            return None
    return fmt, _choose_modality(fmt, opts, local)


def resolve_local_path(
    uri: str, data_roots: Sequence[Path] | None = None, *, allow_directory: bool = False
) -> Path:
    """A local path or ``file://`` URI to an existing file (or directory if allowed), inside the roots."""
    parsed = parse_uri(uri)
    if not parsed.is_local:
        raise UnsupportedSchemeError(
            f"unsupported scheme {parsed.scheme!r} in {uri!r} here: only local paths and file:// are "
            "read directly (remote references go through resolve_dataset)",
            details={"uri": uri, "scheme": parsed.scheme},
        )
    path = confine_local_path(parsed.path, data_roots)
    if not path.exists():
        raise DatasetNotFoundError(f"dataset not found: {uri} (no such file)", details={"uri": uri})
    if path.is_dir() and not allow_directory:
        raise DatasetFormatError(
            f"{uri} is a directory; expected a file ({', '.join(sorted(KNOWN_FORMATS))})",
            details={"uri": uri},
        )
    return path


# -- the resolved dataset -----------------------------------------------------------------------------------


@dataclass
class ResolvedDataset:
    """A dataset reference checked and listed; samples are read lazily.

    ``fingerprint`` identifies what is audited: the ``content_fingerprint`` (see
    :mod:`auditor.datasets.fingerprint`), combined with ``max_samples``/``seed`` when they drop samples
    and with ``text_field`` for JSONL. ``n_total``: samples in the dataset (None where not cheap to know:
    csv, npz, pt); ``n_samples``: after ``max_samples``; ``n_bytes``: bytes of the file, or of the
    collection's sample files. ``skipped``: samples dropped while resolving (text lines); image decoding
    failures are counted later, by the extractor's loader, into a report merged with this one.
    """

    uri: str
    scheme: str
    format: str
    modality: str
    content_fingerprint: str
    fingerprint: str
    n_total: int | None
    n_samples: int | None
    n_bytes: int
    has_labels: bool
    options: DatasetOptions
    local_path: Path | None = None
    ignored_files: int = 0
    skipped: SkipReport = field(default_factory=SkipReport)
    # A shard (see :meth:`shard`) counts its bad samples but leaves ``max_bad_fraction`` to the whole
    # side: one shard's bad run must not fail a dataset that is within the limit overall.
    defer_skip_limit: bool = False
    _images: list[ImageSample] | None = None
    _texts: TextSamples | None = None
    _row_labels: list[str | None] | None = None
    _stores: list[SampleStore] = field(default_factory=list)
    _downloads: _DownloadArea | None = None

    def image_samples(self) -> list[ImageSample]:
        """The selected image samples, sorted by key; index ``i`` is what a loader worker decodes."""
        if self._images is None:
            raise WrongModalityError(f"{self.uri} holds {self.modality} data, not images")
        return self._images

    def texts(self) -> list[str]:
        """The selected texts, in file order."""
        if self._texts is None:
            raise WrongModalityError(f"{self.uri} holds {self.modality} data, not text")
        return self._texts.texts

    def sample_keys(self) -> list[str]:
        """Sample keys aligned with the samples (image keys, ``line N``, or row numbers)."""
        if self._images is not None:
            return [sample.key for sample in self._images]
        if self._texts is not None:
            return self._texts.keys
        return [str(i) for i in self.selected_rows(self.n_total)] if self.n_total is not None else []

    def labels(self) -> list[str | None] | None:
        """Labels aligned with the selected samples, or None without labels."""
        if not self.has_labels:
            return None
        if self._images is not None:
            return [sample.label for sample in self._images]
        if self._texts is not None:
            return self._texts.labels
        rows = self._row_labels or []
        return [rows[i] for i in self.selected_rows(len(rows))]

    def selected_rows(self, n_rows: int) -> list[int]:
        """For embeddings and tables, read elsewhere: the row indices ``max_samples``/``seed`` keep."""
        return choose_indices([str(i) for i in range(n_rows)], self.options.max_samples, self.options.seed)

    def shard(self, index: int, count: int) -> ResolvedDataset:
        """The ``index``-th of ``count`` contiguous slices of the samples (images or texts), for
        embedding one shard per task; the slices partition the samples in order."""
        total = len(self._images) if self._images is not None else len(self._texts.keys) if self._texts else 0
        if self._images is None and self._texts is None:
            raise WrongModalityError(
                f"{self.uri} holds {self.modality} data, which is read whole, not sharded"
            )
        start, stop = total * index // count, total * (index + 1) // count
        images = self._images[start:stop] if self._images is not None else None
        texts = self._texts.select(list(range(start, stop))) if self._texts is not None else None
        return dataclasses.replace(
            self, n_samples=stop - start, _images=images, _texts=texts, defer_skip_limit=True
        )

    def enforce_skips(self, *reports: SkipReport) -> SkipReport:
        """Merge the loaders' per-worker reports with this one and raise past ``max_bad_fraction``."""
        merged = self.skipped
        for report in reports:
            merged = merged.merge(report)
        if not self.defer_skip_limit:
            merged.enforce(self.options.max_bad_fraction, self.uri)
        return merged

    def record_loader_skips(self, loader_report: SkipReport) -> LoaderSkipReport:
        """Record what a loader pass skipped (image decoding) and enforce ``max_bad_fraction``.

        A second pass over the same dataset (a retry, another extractor, a report read back from the
        embedding cache) replaces the previous pass's counts instead of adding to them: every sample is
        seen once per pass.
        """
        current = self.skipped
        base = current.before_loader if isinstance(current, LoaderSkipReport) else current
        self.skipped = base
        merged = self.enforce_skips(loader_report)
        self.skipped = LoaderSkipReport(
            seen=merged.seen,
            counts=merged.counts,
            examples=merged.examples,
            before_loader=base,
            loader=loader_report,
        )
        return self.skipped

    def loader_skips(self) -> SkipReport | None:
        """What the last loader pass skipped, or None when no loader pass ran in this process."""
        return self.skipped.loader if isinstance(self.skipped, LoaderSkipReport) else None

    def describe(self) -> dict[str, Any]:
        """What a result document records about this side."""
        return {
            "reference": self.uri,
            "scheme": self.scheme,
            "format": self.format,
            "modality": self.modality,
            "fingerprint": self.fingerprint,
            "content_fingerprint": self.content_fingerprint,
            "n_total": self.n_total,
            "n_samples": self.n_samples,
            "n_bytes": self.n_bytes,
            "has_labels": self.has_labels,
            "ignored_files": self.ignored_files,
            "skipped": self.skipped.to_dict(),
        }

    def close(self) -> None:
        """Close archive handles opened in this process and delete this dataset's downloads (shards made
        by :meth:`shard` share them)."""
        for store in self._stores:
            store.close()
        if self._downloads is not None:
            self._downloads.remove()


def require_modality(resolved: ResolvedDataset, allowed: Collection[str], extractor_name: str) -> None:
    """Refuse, before any heavy work, a dataset whose modality the extractor does not read."""
    if resolved.modality not in allowed:
        raise WrongModalityError(
            f"extractor {extractor_name!r} reads {' or '.join(sorted(allowed))} data, but {resolved.uri} is "
            f"{resolved.modality} data (format {resolved.format}); pick an extractor for "
            f"{resolved.modality} or another dataset",
            details={"uri": resolved.uri, "modality": resolved.modality, "allowed": sorted(allowed)},
        )


# -- resolution ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """A parsed reference with what it takes to reach it."""

    parsed: ParsedUri
    data_roots: Sequence[Path] | None
    downloads: _DownloadArea
    limits: DatasetLimits
    fs: Any = None  # fsspec filesystem for remote schemes

    def local_file(self, path_or_uri: str) -> Path:
        """A local path to one file: confined if local, downloaded (within the limits) if remote."""
        if self.fs is None:
            return resolve_local_path(path_or_uri, self.data_roots)
        return download_remote_file(
            self.fs, path_or_uri, path_or_uri, self.downloads.path(), self.limits.max_download_bytes
        )


def resolve_dataset(
    uri: str,
    *,
    format: str | None = None,
    options: Mapping[str, Any] | None = None,
    allowed_schemes: Collection[str] = (),
    data_roots: Sequence[Path] | None = None,
    download_dir: Path | None = None,
    limits: DatasetLimits | None = None,
) -> ResolvedDataset:
    """Check, list and fingerprint the dataset at ``uri``.

    Args:
        uri: a local path, ``file://``, or a remote URI whose scheme is in ``allowed_schemes``; a brace
            pattern (``shards-{000..009}.tar``) names WebDataset shards.
        format: explicit format (see the module docstring); detected when None.
        options: ``DatasetRef.options`` (see :mod:`auditor.datasets.options`).
        allowed_schemes: remote schemes this caller enables (``s3``, ``gs``, ``http``, ``https``,
            ``memory``); local paths are always allowed.
        data_roots: directories local paths must stay in; None means unrestricted (the local CLI).
        download_dir: where remote single files and archives are fetched to (default: a temp folder);
            each resolution downloads into a private directory under it (see the module docstring).
        limits: the operator's limits (default: the settings' defaults, which fetch ``http(s)`` only
            from public addresses); the pipeline passes ``DatasetLimits.from_settings(settings)``.
    """
    limits = limits or DatasetLimits()
    parsed = parse_uri(uri)
    opts = check_reference(parsed, options, allowed_schemes, limits)
    fs = None if parsed.is_local else remote_filesystem(parsed.scheme, limits.remote_hosts)
    downloads = _DownloadArea(download_dir or DEFAULT_DOWNLOAD_DIR)
    where = _Where(parsed, data_roots, downloads, limits, fs)
    try:
        resolved = _resolve(where, format, opts)
    except Exception as exc:
        downloads.remove()
        refusal = find_host_refusal(exc) if fs is not None else None
        if refusal is not None and (refusal is not exc or uri not in refusal.message):
            # fsspec reports a refused connection as "not found" (or worse), and the client knows only
            # the host it refused (maybe a redirect's): say what happened, to which reference.
            message = (
                refusal.message if uri in refusal.message else f"{uri}: while fetching, {refusal.message}"
            )
            raise HostNotAllowedError(message, details={**refusal.details, "uri": uri}) from exc
        raise
    resolved._downloads = downloads
    scope = _SCOPE.get()
    if scope is not None:
        scope.append(resolved)
    return resolved


def check_reference(
    parsed: ParsedUri,
    options: Mapping[str, Any] | None,
    allowed_schemes: Collection[str],
    limits: DatasetLimits,
) -> DatasetOptions:
    """The cheap checks a reference passes before anything is read (the API runs them at submit): its
    options are valid and within the operator's limits, its scheme is enabled, and an ``http(s)`` URL's
    host is allowed (:func:`~auditor.datasets.netguard.check_url_host`). Returns the options, limits
    applied."""
    opts = limits.apply(DatasetOptions.parse(options))
    check_scheme(parsed, allowed_schemes)
    if parsed.scheme in HTTP_SCHEMES:
        check_url_host(parsed.path, limits.remote_hosts)
    return opts


def _resolve(where: _Where, format: str | None, opts: DatasetOptions) -> ResolvedDataset:
    explicit = normalise_format(format) if format else None
    if explicit == "webdataset" or (explicit is None and has_braces(where.parsed.path)):
        return _resolve_webdataset(where, opts)
    fmt = explicit or _detect(where)
    if fmt in SINGLE_FILE_FORMATS:
        return _resolve_single_file(where, fmt, opts)
    if fmt == "image_folder":
        return _resolve_folder(where, opts)
    return _resolve_archive(where, fmt, explicit, opts)


def _detect(where: _Where) -> str:
    if where.fs is None:
        return detect_format(resolve_local_path(where.parsed.path, where.data_roots, allow_directory=True))
    # The URL's path alone: a query string (?token=...) must not hide the suffix.
    name = urlparse(where.parsed.path).path.rstrip("/").rsplit("/", 1)[-1]
    fmt = format_from_name(name)
    if fmt is not None:
        return fmt
    if where.fs.isdir(where.parsed.path):
        return "image_folder"
    if where.fs.exists(where.parsed.path):
        raise DatasetFormatError(
            f"cannot tell the format of {name!r} from its suffix; supported: "
            f"{', '.join(sorted(KNOWN_FORMATS))} or a folder of images (or pass the format explicitly)",
            details={"uri": where.parsed.uri},
        )
    raise DatasetNotFoundError(f"dataset not found: {where.parsed.uri}", details={"uri": where.parsed.uri})


def _choose_modality(fmt: str, opts: DatasetOptions, local_path: Path | None) -> str:
    candidates = FORMAT_MODALITIES[fmt]
    if opts.modality is not None:
        if opts.modality not in candidates:
            raise WrongModalityError(
                f"format {fmt} holds {' or '.join(candidates)} data, not {opts.modality}",
                details={"format": fmt, "modality": opts.modality},
            )
        return opts.modality
    if fmt == "parquet" and local_path is not None:
        return _parquet_modality(local_path)
    return candidates[0]


def _parquet_modality(path: Path) -> str:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetFormatError(f"{path.name}: not a readable parquet file ({exc})") from exc
    has_array_column = any(
        pa.types.is_list(f.type) or pa.types.is_large_list(f.type) or pa.types.is_fixed_size_list(f.type)
        for f in schema
    )
    return "embeddings" if has_array_column else "table"


def _resolve_single_file(where: _Where, fmt: str, opts: DatasetOptions) -> ResolvedDataset:
    path = where.local_file(where.parsed.path)
    modality = _choose_modality(fmt, opts, path)
    content = file_fingerprint(path)
    common: dict[str, Any] = {
        "uri": where.parsed.uri,
        "scheme": where.parsed.scheme,
        "format": fmt,
        "modality": modality,
        "content_fingerprint": content,
        "n_bytes": path.stat().st_size,
        "options": opts,
        "local_path": path,
    }
    if modality == "text":
        return _text_dataset(path, fmt, opts, common)
    row_labels = _row_labels(path, fmt, opts.label_field) if opts.label_field else None
    n_total = len(row_labels) if row_labels is not None else _cheap_row_count(path, fmt)
    n_samples = None if n_total is None else min(n_total, opts.max_samples or n_total)
    return ResolvedDataset(
        **common,
        fingerprint=selection_fingerprint(content, _selection(opts, n_total)),
        n_total=n_total,
        n_samples=n_samples,
        has_labels=row_labels is not None,
        _row_labels=row_labels,
    )


def _selection(opts: DatasetOptions, n_total: int | None) -> dict[str, object]:
    """What, beyond the bytes, decides which samples are audited (empty when all of them are)."""
    if opts.max_samples is None or (n_total is not None and opts.max_samples >= n_total):
        return {}
    return {"max_samples": opts.max_samples, "seed": opts.seed}


def _text_dataset(path: Path, fmt: str, opts: DatasetOptions, common: dict[str, Any]) -> ResolvedDataset:
    samples = read_jsonl(path, opts.text_field, opts.label_field) if fmt == "jsonl" else read_txt(path)
    if samples.skipped.seen == 0:
        raise TooFewSamplesError(f"{path.name} is empty: no lines to read", details={"uri": common["uri"]})
    samples.skipped.enforce(opts.max_bad_fraction, path.name)
    chosen = samples.select(choose_indices(samples.keys, opts.max_samples, opts.seed))
    selection = _selection(opts, len(samples.keys))
    if fmt == "jsonl":
        selection["text_field"] = opts.text_field
    return ResolvedDataset(
        **common,
        fingerprint=selection_fingerprint(common["content_fingerprint"], selection),
        n_total=len(samples.keys),
        n_samples=len(chosen.keys),
        has_labels=chosen.labels is not None,
        skipped=samples.skipped,
        _texts=chosen,
    )


def _cheap_row_count(path: Path, fmt: str) -> int | None:
    """Rows of an npy (its header, memory-mapped) or parquet (its footer); None for the rest."""
    try:
        if fmt == "npy":
            return int(np.load(path, mmap_mode="r").shape[0])
        if fmt == "parquet":
            return int(pq.read_metadata(path).num_rows)
    except (ValueError, OSError, IndexError, pa.ArrowInvalid):
        return None  # the reader reports what is wrong with the file, with context
    return None


def _row_labels(path: Path, fmt: str, label_field: str) -> list[str | None]:
    """The ``label_field`` column of a table or parquet file, as strings (None for missing values)."""
    try:
        if fmt == "csv":
            values = pd.read_csv(path, usecols=[label_field])[label_field].tolist()
        elif fmt == "parquet":
            values = pq.read_table(path, columns=[label_field]).column(label_field).to_pylist()
        else:
            raise DatasetFormatError(f"label_field is not supported for {fmt} files", details={"format": fmt})
    except (ValueError, KeyError, pa.ArrowInvalid) as exc:
        raise DatasetFormatError(
            f"{path.name}: cannot read label column {label_field!r} ({exc})",
            details={"label_field": label_field},
        ) from exc
    return [
        None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
        for value in values
    ]


def _resolve_folder(where: _Where, opts: DatasetOptions) -> ResolvedDataset:
    store: SampleStore
    if where.fs is None:
        root = resolve_local_path(where.parsed.path, where.data_roots, allow_directory=True)
        members, hidden = walk_local_folder(root, where.data_roots)
        store = LocalFolderStore(root, opts.max_member_bytes)
    else:
        members, hidden = list_remote_folder(where.fs, where.parsed.path)
        store = RemoteFolderStore(where.fs, where.parsed.path, opts.max_member_bytes)
    samples, used, other = images_from_members(members, store, opts.labels)
    return _image_dataset(where, "image_folder", opts, samples, used, hidden + other, [store])


def _resolve_archive(where: _Where, fmt: str, explicit: str | None, opts: DatasetOptions) -> ResolvedDataset:
    path = where.local_file(where.parsed.path)
    if fmt == "zip":
        members, hidden = list_zip(path, where.limits.max_archive_bytes)
        store: SampleStore = ZipStore(path, opts.max_member_bytes)
        samples, used, other = images_from_members(members, store, opts.labels)
        return _image_dataset(where, "zip", opts, samples, used, hidden + other, [store])
    tar_store, members, hidden = list_tar(path, opts.max_member_bytes, where.limits.max_archive_bytes)
    if explicit is None and has_webdataset_labels(members):
        samples, used, other = webdataset_samples([(tar_store, members)])
        return _image_dataset(where, "webdataset", opts, samples, used, hidden + other, [tar_store])
    samples, used, other = images_from_members(members, tar_store, opts.labels)
    return _image_dataset(where, "tar", opts, samples, used, hidden + other, [tar_store])


def _resolve_webdataset(where: _Where, opts: DatasetOptions) -> ResolvedDataset:
    shard_names = expand_braces(where.parsed.path)
    shards: list[tuple[SampleStore, Sequence[Member]]] = []
    hidden = 0
    for shard_name in shard_names:
        store, members, ignored = list_tar(
            where.local_file(shard_name), opts.max_member_bytes, where.limits.max_archive_bytes
        )
        shards.append((store, members))
        hidden += ignored
    samples, used, other = webdataset_samples(shards)
    return _image_dataset(where, "webdataset", opts, samples, used, hidden + other, [s for s, _ in shards])


def _image_dataset(
    where: _Where,
    fmt: str,
    opts: DatasetOptions,
    samples: list[ImageSample],
    used: list[StoredMember],
    ignored: int,
    stores: list[SampleStore],
) -> ResolvedDataset:
    modality = _choose_modality(fmt, opts, None)
    if not samples:
        raise TooFewSamplesError(
            f"{where.parsed.uri}: no images found (PNG, JPEG or WebP; {ignored} other files ignored)",
            details={"uri": where.parsed.uri, "ignored_files": ignored},
        )
    readers = {member.key: (store, member.locator) for store, member in used}

    def content_sha256(key: str) -> str:
        store, locator = readers[key]
        try:
            return store.sha256(locator)
        except MemberTooLargeError:
            return TOO_LARGE_DIGEST  # skipped when read: its bytes never matter, so they are not hashed

    content = collection_fingerprint([(member.key, member.size) for _, member in used], content_sha256)
    chosen = [samples[i] for i in choose_indices([s.key for s in samples], opts.max_samples, opts.seed)]
    return ResolvedDataset(
        uri=where.parsed.uri,
        scheme=where.parsed.scheme,
        format=fmt,
        modality=modality,
        content_fingerprint=content,
        fingerprint=selection_fingerprint(content, _selection(opts, len(samples))),
        n_total=len(samples),
        n_samples=len(chosen),
        n_bytes=sum(member.size for _, member in used),
        has_labels=any(sample.label is not None for sample in chosen),
        options=opts,
        ignored_files=ignored,
        _images=chosen,
        _stores=stores,
    )
