"""One error tree for the whole service.

Every error a user can cause carries a machine-readable ``code``, the HTTP status the API answers
with and the exit code the CLI exits with, so the API, the workers and the CLI report it the same way::

    AuditorError                      (500, exit 3) unexpected failure inside the auditor
    ├── BadInputError                 (422, exit 2) the caller's input cannot be audited
    │   ├── DatasetNotFoundError      (404, exit 2) a dataset reference points at nothing
    │   ├── DatasetFormatError        (422, exit 2) unreadable / unsupported / malformed data
    │   │   └── ArchiveTooLargeError  (422, exit 2) an archive decompressing past AUDITOR_MAX_ARCHIVE_BYTES
    │   ├── HostNotAllowedError       (403, exit 2) a remote URL whose host is internal (SSRF guard)
    │   ├── HostNotFoundError         (404, exit 2) a webhook URL whose host does not resolve
    │   ├── WebhookUrlError           (422, exit 2) a webhook URL that is not an http(s) URL to send to
    │   ├── DownloadTooLargeError     (413, exit 2) a remote file above AUDITOR_MAX_DOWNLOAD_BYTES
    │   ├── LimitExceededError        (422, exit 2) a dataset option above the operator's maximum
    │   ├── DimensionMismatchError    (422, exit 2) the two sides do not share a feature space
    │   ├── TooFewSamplesError        (422, exit 2) not enough samples for the requested metric
    │   ├── SchemaMismatchError       (422, exit 2) tables with different columns
    │   ├── UnknownNameError          (422, exit 2) unknown extractor / metric / device / parameter
    │   ├── ExtractorRequiredError    (422, exit 2) data whose extractor must be chosen (images)
    │   ├── PolicyError               (422, exit 2) a gate policy that cannot be applied
    │   ├── InvalidFilterError        (422, exit 2) a samples filter or order the side does not have
    │   └── InvalidCursorError        (422, exit 2) a page cursor that is not one the server issued
    ├── NotFoundError                 (404, exit 2) an audit / project id that does not exist
    │   └── NoDiagnosticsError        (404, exit 2) a succeeded audit without per-sample diagnostics
    ├── ConflictError                 (409, exit 2) the request conflicts with the audit's state
    │   ├── NotComputedError          (409, exit 2) a diagnostic the audit's metrics did not compute
    │   └── TooManyWebhooksError      (409, exit 2) a project already at AUDITOR_MAX_WEBHOOKS_PER_PROJECT
    ├── AuthError                     (401, exit 2) missing or unknown API key
    │   └── ForbiddenError            (403, exit 2) the key may not touch this project / action
    └── ServiceUnavailableError       (503, exit 3) a dependency (database, broker, store) is down
        └── StorageFullError          (503, exit 3) a store (artifacts, database) has no space left
"""

from __future__ import annotations

import errno
from typing import Any

from pydantic import ValidationError


class AuditorError(Exception):
    code = "internal_error"
    http_status = 500
    exit_code = 3

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The wire shape shared by the API and ``--json`` error output."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadInputError(AuditorError):
    code = "bad_input"
    http_status = 422
    exit_code = 2


class DatasetNotFoundError(BadInputError):
    code = "dataset_not_found"
    http_status = 404


class DatasetFormatError(BadInputError):
    code = "dataset_format"


class ArchiveTooLargeError(DatasetFormatError):
    code = "archive_too_large"


class HostNotAllowedError(BadInputError):
    code = "host_not_allowed"
    http_status = 403


class HostNotFoundError(BadInputError):
    """A webhook URL whose host name does not resolve (checked when the subscription is created)."""

    code = "host_not_found"
    http_status = 404


class WebhookUrlError(BadInputError):
    code = "invalid_webhook_url"


class DownloadTooLargeError(BadInputError):
    code = "download_too_large"
    http_status = 413


class LimitExceededError(BadInputError):
    code = "limit_exceeded"


class DimensionMismatchError(BadInputError):
    code = "dimension_mismatch"


class TooFewSamplesError(BadInputError):
    code = "too_few_samples"


class SchemaMismatchError(BadInputError):
    code = "schema_mismatch"


class UnknownNameError(BadInputError):
    code = "unknown_name"


class ExtractorRequiredError(BadInputError):
    """The extractor was left to be inferred, but the data does not decide it: images have several
    extractors, none neutral. ``details["extractors"]`` lists the candidates, recommended first."""

    code = "extractor_required"


class PolicyError(BadInputError):
    code = "invalid_policy"


class InvalidFilterError(BadInputError):
    code = "invalid_filter"


class InvalidCursorError(BadInputError):
    code = "invalid_cursor"


class NotFoundError(AuditorError):
    code = "not_found"
    http_status = 404
    exit_code = 2


class NoDiagnosticsError(NotFoundError):
    """The audit succeeded but stored no per-sample tables (recorded before they existed, over
    ``AUDITOR_MAX_ARTIFACT_MB``, no neighbour or mode metric requested, or no holdout side)."""

    code = "no_diagnostics"


class ConflictError(AuditorError):
    code = "conflict"
    http_status = 409
    exit_code = 2


class NotComputedError(ConflictError):
    """A samples filter or order on a column the audit did not compute (e.g. ``flag=memorized`` when
    no neighbour metric was requested)."""

    code = "not_computed"


class TooManyWebhooksError(ConflictError):
    """The project has as many webhook subscriptions as the operator allows; remove one first."""

    code = "too_many_webhooks"


class AuthError(AuditorError):
    code = "unauthorized"
    http_status = 401
    exit_code = 2


class ForbiddenError(AuthError):
    code = "forbidden"
    http_status = 403


class ServiceUnavailableError(AuditorError):
    code = "service_unavailable"
    http_status = 503


class StorageFullError(ServiceUnavailableError):
    """A store ran out of space (ENOSPC, a quota, a file size limit, SQLite's "disk is full").

    An operator problem, not the caller's: 503 and exit 3, like any unavailable dependency. Unlike a
    dropped connection it is not retried (space rarely comes back within a retry's backoff): the audit
    fails at once with ``storage_full`` and a message naming the store, so the operator knows what to
    free. The artifact store never leaves a partial entry behind (see :mod:`auditor.artifacts`).
    """

    code = "storage_full"

    #: errno values that mean "no space": ENOSPC, EDQUOT (quota), EFBIG (file size limit, RLIMIT_FSIZE).
    ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

    @classmethod
    def from_exception(cls, exc: BaseException) -> StorageFullError | None:
        """The storage-full error behind ``exc`` (itself, its causes and contexts, a DB-API error's
        ``orig``), or None when it is not one: OSError with a no-space errno, SQLite's SQLITE_FULL,
        PostgreSQL's disk_full (SQLSTATE 53100)."""
        seen: set[int] = set()
        pending: list[BaseException | None] = [exc]
        while pending:
            error = pending.pop()
            if error is None or id(error) in seen:
                continue
            seen.add(id(error))
            if isinstance(error, cls):
                return error
            if isinstance(error, OSError) and error.errno in cls.ERRNOS:
                where = f" writing {error.filename}" if error.filename else ""
                return cls(
                    f"storage full{where}: {error.strerror or error}; free space on that volume",
                    details={"store": "file", "path": str(error.filename or ""), "errno": error.errno},
                )
            # sqlite3's errors carry sqlite_errorcode from Python 3.11 on; before, only the text says it.
            sqlite = type(error).__module__ == "sqlite3"
            if sqlite and (getattr(error, "sqlite_errorcode", None) == 13 or "disk is full" in str(error)):
                return cls(
                    f"the SQLite database is full ({error}); free space where it lives (AUDITOR_HOME or "
                    "AUDITOR_DATABASE_URL)",
                    details={"store": "database"},
                )
            if getattr(error, "sqlstate", None) == "53100":
                return cls(
                    f"the PostgreSQL database is full ({error}); free space on its server",
                    details={"store": "database"},
                )
            pending.extend((getattr(error, "orig", None), error.__cause__, error.__context__))
        return None


def describe_validation_error(exc: ValidationError, *, root: str = "value") -> str:
    """One line naming each invalid field and why (pydantic's own text ends in a documentation URL)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or root}: {err['msg']}" for err in exc.errors()
    )
