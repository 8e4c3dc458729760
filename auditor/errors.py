"""One error tree for the whole service.

Every error a user can cause carries a machine-readable ``code``, the HTTP status the API answers
with and the exit code the CLI exits with, so the API, the workers and the CLI report it the same way::

    AuditorError                      (500, exit 3) unexpected failure inside the auditor
    ├── BadInputError                 (422, exit 2) the caller's input cannot be audited
    │   ├── DatasetNotFoundError      (404, exit 2) a dataset reference points at nothing
    │   ├── DatasetFormatError        (422, exit 2) unreadable / unsupported / malformed data
    │   ├── LimitExceededError        (422, exit 2) a parameter above the operator's maximum
    │   ├── DimensionMismatchError    (422, exit 2) the two sides do not share a feature space
    │   ├── TooFewSamplesError        (422, exit 2) not enough samples for the requested metric
    │   ├── SchemaMismatchError       (422, exit 2) tables with different columns
    │   ├── UnknownNameError          (422, exit 2) unknown extractor / metric / device
    │   └── PolicyError               (422, exit 2) a gate policy that cannot be applied
    ├── NotFoundError                 (404, exit 2) an audit / project id that does not exist
    ├── ConflictError                 (409, exit 2) the request conflicts with the audit's state
    ├── AuthError                     (401, exit 2) missing or unknown API key
    │   └── ForbiddenError            (403, exit 2) the key may not touch this project / action
    └── ServiceUnavailableError       (503, exit 3) a dependency (database, broker, store) is down
"""

from __future__ import annotations

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


class PolicyError(BadInputError):
    code = "invalid_policy"


class NotFoundError(AuditorError):
    code = "not_found"
    http_status = 404
    exit_code = 2


class ConflictError(AuditorError):
    code = "conflict"
    http_status = 409
    exit_code = 2


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


def describe_validation_error(exc: ValidationError, *, root: str = "value") -> str:
    """One line naming each invalid field and why (pydantic's own text ends in a documentation URL)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or root}: {err['msg']}" for err in exc.errors()
    )
