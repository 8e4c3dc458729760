"""Request and response bodies, named by role (``AuditCreate``, ``AuditPublic``, ``AuditsPage``).

The request models are the API's contract: every bound, length, pattern and enum the server enforces on
one field is in them, so the OpenAPI document says what the server accepts (``tests/api/test_contract.py``
checks both ways with schemathesis). Numbers are bounded by what they are stored in (``SQL_INT_MAX`` for
the INTEGER columns) or by the pipeline's own bounds (:class:`MetricParams`). What JSON Schema cannot say
(rules between fields: a policy's metrics must be computed, extractor options depend on the extractor)
is in the field descriptions, and refused with 422 and its own error code.
"""

from __future__ import annotations

import re
from copy import copy
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from auditor.datasets.options import DatasetOptions
from auditor.datasets.refs import FORMAT_MODALITIES
from auditor.datasets.uri import REMOTE_SCHEMES, check_scheme, parse_uri
from auditor.db.models import PROJECT_NAME_MAX, SQL_INT_MAX, WAIVER_REASON_MAX
from auditor.db.waivers import MAX_WAIVER_DAYS
from auditor.errors import PolicyError, describe_validation_error
from auditor.extractors import EXTRACTORS
from auditor.metrics import METRICS
from auditor.pipeline.evaluate import MetricParams
from auditor.pipeline.spec import AuditSpec, DatasetRef
from auditor.policy import Policy, Rule
from auditor.webhooks import EVENTS, SECRET_MAX, SECRET_MIN, SECRET_PATTERN, URL_MAX, URL_PATTERN

# --- text and numbers callers send ------------------------------------------------------------------------

# No control characters: PostgreSQL refuses NUL in text, and none belongs in a name, tag or path.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
# A name that is also a path segment (/v1/projects/{project}, .../policies/{name}): no "/" either.
NAME_PATTERN = r"^[^\x00-\x1f\x7f/]+$"
NAME_MAX = 200
ProjectName = Annotated[
    str,
    Field(min_length=1, max_length=PROJECT_NAME_MAX, pattern=NAME_PATTERN, description="A project name."),
]
PolicyName = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
Label = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=TEXT_PATTERN)]
Tag = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=TEXT_PATTERN)]
AUDIT_ID_PATTERN = r"^[0-9a-f]{32}$"
# A full id or a unique prefix of at least six characters (see auditor.db.queries.get_audit).
AUDIT_ID_OR_PREFIX_PATTERN = r"^[0-9A-Fa-f]{6,32}$"
# Protocol fingerprints are hex digests (16 characters today; the column holds 64).
PROTOCOL_PATTERN = r"^[0-9a-f]{1,64}$"
# Idempotency-Key: visible ASCII, as header values are.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,200}$"
URI_MAX = 4096
# A reference the service can parse: no control characters and either no URI scheme (a local path; a
# Windows drive letter counts as one) or a scheme it reads (auditor.datasets.uri.REMOTE_SCHEMES, file).
# Spelled without look-ahead so every regex engine (pydantic's, ECMA's, Python's) reads it the same; it
# follows urllib's rule that a scheme is an ASCII letter, then letters, digits, "+", "-" or "." up to ":".
_SCHEME_CHARS = r"A-Za-z0-9+.\-"
_REST = r"[^\x00-\x1f\x7f]*"
URI_PATTERN = (
    r"^(?:"
    rf"[^A-Za-z\x00-\x20\x7f]{_REST}"  # starts with neither a letter nor a blank: no scheme
    rf"|[A-Za-z][{_SCHEME_CHARS}]*"  # letters and scheme characters only: a relative path
    rf"|[A-Za-z][{_SCHEME_CHARS}]*[^{_SCHEME_CHARS}:\x00-\x1f\x7f]{_REST}"  # no ":" before a non-scheme char
    rf"|[A-Za-z]:(?:[\\/]{_REST})?"  # a Windows drive
    rf"|(?:[Ff][Ii][Ll][Ee]|[Ss]3|[Gg][Cc]?[Ss]|[Hh][Tt][Tt][Pp][Ss]?|[Mm][Ee][Mm][Oo][Rr][Yy]):{_REST}"
    r")$"
)

MetricName = Annotated[str, Field(json_schema_extra={"enum": list(METRICS)})]


def _is_number(annotation: Any) -> bool:
    return annotation in (int, float, bool) or any(
        member in (int, float, bool) for member in get_args(annotation) if member is not type(None)
    )


def json_number(value: Any) -> Any:
    """JSON numbers only (``5`` and ``5.0`` for an integer): pydantic's lax mode would also read ``"5"``
    and ``true`` as numbers, which the schema does not allow."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError("expected a number")
    return value


JsonNumber = BeforeValidator(json_number)


def _metric_params_create() -> type[MetricParams]:
    """The pipeline's :class:`MetricParams` (its bounds, defaults and checks) as the API reads it: the
    metric names as an enum, and numbers only from JSON numbers (:func:`json_number`). Built from its
    fields, so the two never drift apart."""
    fields: dict[str, Any] = {"metrics": (tuple[MetricName, ...], copy(MetricParams.model_fields["metrics"]))}
    for name, info in MetricParams.model_fields.items():
        if _is_number(info.annotation):
            fields[name] = (Annotated[info.annotation, JsonNumber], copy(info))
    return create_model("MetricParamsCreate", __base__=MetricParams, __doc__=MetricParams.__doc__, **fields)


if TYPE_CHECKING:
    MetricParamsCreate = MetricParams
else:
    MetricParamsCreate = _metric_params_create()


def check_uri(uri: str) -> str:
    """What :data:`URI_PATTERN` says, with the dataset layer's own errors: no control characters, and a
    scheme the auditor can read (else 422 ``unsupported_scheme``, as at the worker)."""
    if _CONTROL.search(uri):
        raise ValueError("a dataset reference must not contain control characters")
    try:
        parsed = parse_uri(uri)
    except ValueError:  # urllib's own refusals ("//[x": an IPv6 host); submit answers 404 for them
        return uri
    check_scheme(parsed, REMOTE_SCHEMES)  # UnsupportedSchemeError: not a ValueError, it reaches the API
    return uri


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DatasetRefCreate(DatasetRef):
    uri: Annotated[str, AfterValidator(check_uri)] = Field(
        min_length=1,
        max_length=URI_MAX,
        json_schema_extra={"pattern": URI_PATTERN},
        description="A path under the service's data roots, a file:// URI, or a remote URI whose scheme "
        "the service enables (s3, gs, gcs, http, https, memory).",
    )
    format: str | None = Field(
        None,
        json_schema_extra={"enum": [*sorted(FORMAT_MODALITIES), None]},
        description="The format; default: from the file's suffix (a directory is an image folder).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        max_length=50,
        json_schema_extra=lambda schema: _dataset_options_schema(schema),
        description="Dataset options (auditor.datasets.options); readers take others (key, column).",
    )


def _dataset_options_schema(schema: dict[str, Any]) -> None:
    """The options the dataset layer checks (:class:`DatasetOptions`), in the schema of the free-form
    ``options`` object (other keys pass through to the readers)."""
    schema["properties"] = {
        name: {key: value for key, value in prop.items() if key != "title"}
        for name, prop in DatasetOptions.model_json_schema()["properties"].items()
    }


# --- gate policies -----------------------------------------------------------------------------------------


LIMIT_PATTERN = r"^[0-9]+(\.[0-9]+)?%$"
RelativeLimit = (
    Annotated[float, Field(ge=0, allow_inf_nan=False), JsonNumber]
    | Annotated[str, Field(pattern=LIMIT_PATTERN, max_length=20)]
    | None
)


def _finite_number(description: str) -> Any:
    return Field(None, allow_inf_nan=False, description=description)


_NULL: dict[str, Any] = {"type": "null"}
BASELINE_PATTERN = "^(parent|last_passed|holdout|audit:[0-9a-fA-F]{6,32})$"
# Rule's own cross-field checks, as a schema: an absolute rule (min and/or max, as numbers, and no
# baseline fields) or a baseline rule (a baseline, no min/max, on: value, and at least one of
# max_increase, max_decrease, beyond).
_ABSOLUTE_RULE: dict[str, Any] = {
    "properties": {name: _NULL for name in ("baseline", "max_increase", "max_decrease", "beyond")},
    "anyOf": [
        {"required": ["min"], "properties": {"min": {"type": "number"}}},
        {"required": ["max"], "properties": {"max": {"type": "number"}}},
    ],
}
_BASELINE_RULE: dict[str, Any] = {
    "required": ["baseline"],
    "properties": {
        "baseline": {"type": "string", "pattern": BASELINE_PATTERN},
        "min": _NULL,
        "max": _NULL,
        "on": {"enum": ["value"]},
    },
    "anyOf": [
        {"required": [name], "properties": {name: {"not": _NULL}}}
        for name in ("max_increase", "max_decrease", "beyond")
    ],
}


class RuleCreate(Rule):
    model_config = ConfigDict(json_schema_extra={"anyOf": [_ABSOLUTE_RULE, _BASELINE_RULE]})

    metric: MetricName
    min: Annotated[float | None, JsonNumber] = _finite_number("Fail (or warn) when the metric is below this.")
    max: Annotated[float | None, JsonNumber] = _finite_number("Fail (or warn) when the metric is above this.")
    message: str | None = Field(None, max_length=1000)
    baseline: str | None = Field(
        None,
        max_length=40,
        pattern=BASELINE_PATTERN,
        description="Compare with parent, last_passed, holdout or audit:<id> (same project) instead of "
        "min/max.",
    )
    max_increase: RelativeLimit = Field(
        None, description="With baseline: the largest allowed increase, absolute (>= 0) or like '10%'."
    )
    max_decrease: RelativeLimit = Field(
        None, description="With baseline: the largest allowed decrease, absolute (>= 0) or like '10%'."
    )


class PolicyBody(Policy):
    """A gate policy (the shape of the YAML file). Audited by :meth:`Policy.check_applicable` at submit:
    every rule's metric must be among the audit's metrics, and a rule ``on`` an interval needs bootstrap."""

    name: str | None = Field(None, max_length=NAME_MAX)
    rules: list[RuleCreate] = Field(min_length=1, max_length=100)  # type: ignore[assignment]


def _policy_or_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """An invalid policy is a 422 ``invalid_policy`` with the reasons, inline or stored (a PolicyError
    is not a ValueError: pydantic lets it through to the API's error handler as it is)."""
    try:
        return handler(value)
    except ValidationError as exc:
        raise PolicyError(
            f"invalid policy: {describe_validation_error(exc, root='policy')}",
            details={"errors": exc.errors(include_url=False, include_context=False)},
        ) from None


def policy_document(policy: Policy) -> dict[str, Any]:
    """The policy as its author wrote it (defaults left out), for the spec and the policy store."""
    return policy.model_dump(mode="json", exclude_unset=True)


# --- timestamps in query strings -------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def parse_date_time(value: Any) -> Any:
    """An RFC 3339 date-time (JSON Schema's ``date-time``: a time zone is required) as an aware UTC
    datetime; instants outside what Python represents are clamped to its earliest/latest (a filter on
    them means "everything" / "nothing" either way)."""
    if not isinstance(value, str):
        return value
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError("expected an RFC 3339 date-time with a time zone, e.g. 2026-11-23T00:00:00Z")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    micros = int((match.group(7) or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if match.group(9) is not None:
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            raise ValueError(f"invalid time zone offset in {value!r}")
        offset = timedelta(hours=offset_hours, minutes=offset_minutes)
        offset = -offset if match.group(9) == "-" else offset
    leap = second == 60  # 23:59:60 is one second after 23:59:59
    if year == 0:  # RFC 3339 has a year 0; Python's datetimes start at year 1
        return _EARLIEST
    try:
        moment = datetime(year, month, day, hour, minute, 59 if leap else second, micros, timezone(offset))
    except ValueError as exc:
        raise ValueError(f"invalid date-time {value!r}: {exc}") from None
    try:
        moment = moment.astimezone(timezone.utc) + timedelta(seconds=1 if leap else 0)
    except OverflowError:
        return _EARLIEST if year < 2 else _LATEST
    return moment


DateTimeQuery = Annotated[datetime, BeforeValidator(parse_date_time)]


# --- errors ------------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. dataset_not_found.")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """The one error shape of every non-2xx answer."""

    error: ErrorDetail


ERROR_DESCRIPTIONS: dict[int, str] = {
    401: "Missing, malformed, unknown or revoked API key (code unauthorized).",
    403: "The key may not access this project or action (code forbidden); a path outside the data roots "
    "(path_not_allowed), a remote scheme not enabled here (scheme_not_allowed), or a webhook host that is "
    "internal (host_not_allowed).",
    404: "Unknown audit, project, policy, key, webhook or dataset (not_found, dataset_not_found); a webhook "
    "host that does not resolve (host_not_found).",
    409: "Conflicts with the audit's state (code conflict); a project at its webhook limit "
    "(too_many_webhooks).",
    413: "Request body too large (code request_too_large).",
    422: "Invalid request (invalid_request: each field and why, or a body that is not JSON); an unknown "
    "name (unknown_name), an invalid or inapplicable policy (invalid_policy), an ambiguous id prefix "
    "(bad_input), ...",
    500: "Unexpected server error (code internal_error); the server log has the details.",
    503: "The database (or another dependency) is unavailable (code service_unavailable); retry after "
    "Retry-After seconds.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def error_responses(*statuses: int, json_route: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer, each with the error envelope.

    ``json_route=False`` for routes whose success is not JSON (the HTML report): FastAPI would otherwise
    document their errors under the success's media type.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"description": ERROR_DESCRIPTIONS[status]}
        if json_route:
            entry["model"] = ErrorBody
        else:
            entry["content"] = {"application/json": {"schema": ERROR_REF}}
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        responses[status] = entry
    return responses


# Every /v1 route: a key is checked (401), the database answers (503), and anything can fail (500).
V1_ERRORS = (401, 422, 500, 503)


# --- projects ----------------------------------------------------------------------------------------------


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=PROJECT_NAME_MAX, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ProjectPublic(BaseModel):
    name: str
    created_at: datetime


# --- audits ------------------------------------------------------------------------------------------------


def _options_schema(model: type[BaseModel], **changes: dict[str, Any]) -> dict[str, Any]:
    """An extractor options model as JSON Schema (``changes``: properties replaced or added)."""
    schema = model.model_json_schema()
    properties = {
        name: {key: value for key, value in prop.items() if key != "title"}
        for name, prop in schema["properties"].items()
    }
    # prepare() sets the option to the audit's device, whatever the caller sent.
    properties["device"] = {"description": "Ignored: the extractor runs on the audit's device."}
    properties.update(changes)
    return {"type": "object", "properties": properties, "additionalProperties": False}


def extractor_options_conditions() -> list[dict[str, Any]]:
    """``if extractor is X then extractor_options is X's options``, for the extractors that check theirs
    (the network extractors refuse unknown options; precomputed and tabular take any)."""
    from auditor.extractors.clip import ClipVitB32Extractor
    from auditor.extractors.images import ImageExtractorOptions, ImageNetworkExtractor
    from auditor.extractors.text import MiniLMTextExtractor, TextExtractorOptions

    conditions = []
    for name, factory in sorted(EXTRACTORS.items()):
        if isinstance(factory, type) and issubclass(factory, ImageNetworkExtractor):
            changes: dict[str, Any] = {}
            if not factory.preprocessing.decodes_on_gpu:  # resized by Pillow in the loader workers
                changes["decoder"] = {"type": "string", "enum": ["pillow"], "default": "pillow"}
            if issubclass(factory, ClipVitB32Extractor):
                changes["weights_sha256"] = {
                    "anyOf": [{"type": "string", "pattern": "^[0-9a-f]{64}$"}, {"type": "null"}],
                    "description": "Pin the digest of the weights file the operator verified.",
                }
            options = _options_schema(ImageExtractorOptions, **changes)
        elif factory is MiniLMTextExtractor:
            options = _options_schema(TextExtractorOptions)
        else:
            continue
        conditions.append(
            {
                "if": {"properties": {"extractor": {"const": name}}, "required": ["extractor"]},
                "then": {"properties": {"extractor_options": options}},
            }
        )
    return conditions


class AuditCreate(AuditSpec):
    """An audit job: what to compare, how, the gate, and where it sits in a lineage.

    The pipeline's :class:`AuditSpec` with the API's bounds, plus a stored policy by name (resolved to
    its body at submit, so the recorded spec holds the exact rules).
    """

    model_config = ConfigDict(
        json_schema_extra=lambda schema: schema.update(allOf=extractor_options_conditions())
    )

    real: DatasetRefCreate
    synthetic: DatasetRefCreate
    holdout: DatasetRefCreate | None = None
    extractor: str = Field("precomputed", json_schema_extra={"enum": list[JsonValue](sorted(EXTRACTORS))})
    extractor_options: dict[str, Any] = Field(
        default_factory=dict,
        max_length=50,
        description="Options of the extractor, checked by it (422 invalid_extractor_option): the network "
        "extractors take only their own (see allOf), precomputed and tabular any.",
    )
    params: MetricParamsCreate = Field(default_factory=MetricParamsCreate)
    project: ProjectName = "default"
    policy: PolicyBody | None = Field(  # type: ignore[assignment]
        None,
        description="An inline gate policy (same shape as the YAML). Its metrics must be among the "
        "audit's metrics and a rule on an interval needs bootstrap > 0 (else 422 invalid_policy).",
    )
    policy_name: PolicyName | None = Field(None, description="A stored policy of the project, by name.")
    policy_version: Annotated[int | None, JsonNumber] = Field(
        None, ge=1, le=SQL_INT_MAX, description="With policy_name; default: the latest."
    )
    parent_audit_id: str | None = Field(
        None, pattern=AUDIT_ID_PATTERN, description="The audit of the previous generation (same project)."
    )
    generation: Annotated[int | None, JsonNumber] = Field(None, ge=0, le=SQL_INT_MAX)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    # Resolved by the service from the audit history (auditor.gates.baselines), never sent: a caller
    # cannot hand the gate its own baseline numbers (max_length 0; hidden from the schema).
    baselines: SkipJsonSchema[dict[str, dict[str, Any]]] = Field(default_factory=dict, max_length=0)

    @field_validator("policy", mode="wrap")
    @classmethod
    def _valid_policy(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _policy_or_error(value, handler)


class AuditPublic(BaseModel):
    id: str
    project: str
    state: str
    extractor: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    heartbeat_at: datetime | None
    attempts: int
    cancel_requested: bool
    progress: dict[str, Any]
    parent_audit_id: str | None
    generation: int | None
    tags: list[str]
    passed: bool | None
    error: ErrorDetail | None
    result: dict[str, Any] | None = Field(None, description="The result document, once succeeded.")
    events: list[dict[str, Any]] = Field(default_factory=list)


# <created_at as microseconds since 1970>.<audit id>: every string of this shape is a valid position.
CURSOR_PATTERN = r"^[0-9]{1,16}\.[0-9a-f]{32}$"


class AuditsPage(BaseModel):
    items: list[AuditPublic]
    next_cursor: str | None = Field(
        None, pattern=CURSOR_PATTERN, description="Pass as ?cursor= for the next page; null at the end."
    )


class SamplePublic(BaseModel):
    """One sample's evidence (README "Per-sample evidence"). A synthetic or holdout row has the
    ``nearest_real_*``, ``real_ball_count``, ``in_real_support``, ``authentic``, ``memorized``,
    ``nearest_synthetic_*`` and ``duplicate`` fields (for a holdout row "synthetic" means the holdout
    set); a real row has ``covered``, ``in_synthetic_manifold``, ``nearest_synthetic_distance``,
    ``knn_radius`` and ``tail``. The other side's fields are absent; a field the audit did not compute
    is null (every k-NN field when no k-NN metric was requested; ``mode`` is -1 without a mode metric),
    and so is a non-finite distance or ratio (the parquet download keeps ``inf`` / ``NaN``)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="Row of the sample in its dataset as given (input order, from 0).")
    key: str | None = Field(description="The sample's key (file key, 'line N', row number); null if unknown.")
    nearest_real_index: int | None = None
    nearest_real_key: str | None = None
    nearest_real_distance: float | None = None
    nearest_real_ratio: float | None = Field(
        None, description="nearest_real_distance / that real sample's own nearest-real distance."
    )
    real_ball_count: int | None = Field(None, description="How many real k-NN balls hold the sample.")
    in_real_support: bool | None = Field(None, description="Inside some real k-NN ball (precision).")
    authentic: bool | None = None
    memorized: bool | None = Field(None, description="Within tau of a real sample (memorization_rate).")
    nearest_synthetic_index: int | None = None
    nearest_synthetic_key: str | None = None
    nearest_synthetic_distance: float | None = None
    duplicate: bool | None = Field(None, description="Within tau of another sample of its set.")
    covered: bool | None = Field(None, description="Its k-NN ball holds a synthetic sample (coverage).")
    in_synthetic_manifold: bool | None = Field(None, description="Inside a synthetic k-NN ball (recall).")
    knn_radius: float | None = None
    tail: bool | None = Field(None, description="Among the sparsest real samples (tail_recall).")
    mode: int = Field(description="Mode (k-means cluster of the real data); -1 when not computed.")
    mode_distance: float | None = Field(
        None, description="Real rows: distance to its mode's centroid (smallest: the mode's typical samples)."
    )


# Opaque keyset position (URL-safe base64, no padding); a malformed one is 422 invalid_cursor.
SAMPLES_CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,400}$"


class SamplesPage(BaseModel):
    audit_id: str
    side: str = Field(description="synthetic | real | holdout")
    total: int = Field(description="Samples matching the filters (on every page).")
    items: list[SamplePublic]
    next_cursor: str | None = Field(
        None,
        pattern=SAMPLES_CURSOR_PATTERN,
        description="Pass as ?cursor= for the next page; null at the end.",
    )


class TrendPointPublic(BaseModel):
    audit_id: str
    created_at: datetime
    generation: int | None
    value: float | None
    ci_low: float | None
    ci_high: float | None
    baseline: float | None


class TrendSeries(BaseModel):
    """One metric's series under one protocol (values under different protocols never mix)."""

    protocol_fingerprint: str | None
    points: list[TrendPointPublic]


class TrendsPublic(BaseModel):
    project: str
    metric: str
    series: list[TrendSeries]


# --- policies and keys -------------------------------------------------------------------------------------


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PolicyName
    body: PolicyBody = Field(description="The policy (same shape as the YAML file).")

    @field_validator("body", mode="wrap")
    @classmethod
    def _valid_policy(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _policy_or_error(value, handler)


class PolicyPublic(BaseModel):
    project: str
    name: str
    version: int
    body: dict[str, Any]
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Label
    project: ProjectName | None = Field(None, description="Scope; omit (admin only) for another admin key.")


class KeyCreated(BaseModel):
    key: str = Field(description="The secret: shown once, never again.")
    prefix: str
    is_admin: bool
    project: str | None


# Key prefixes look like sda_0123abcd (auditor.db.access).
KEY_PREFIX_PATTERN = r"^[a-z]{1,8}_[0-9a-f]{8}$"


# --- health ------------------------------------------------------------------------------------------------


class HealthPublic(BaseModel):
    status: str
    version: str


class ReadinessPublic(BaseModel):
    status: str = Field(description="ready | not_ready")
    checks: dict[str, str] = Field(description="Each dependency: ok, or why it is unavailable.")


# --- webhooks ----------------------------------------------------------------------------------------------

WebhookEvent = Literal["audit.succeeded", "audit.failed", "gate.failed"]
assert get_args(WebhookEvent) == EVENTS  # one list of events (auditor.webhooks)
WEBHOOK_ID_PATTERN = r"^[0-9a-f]{32}$"


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=URL_MAX,
        pattern=URL_PATTERN,
        description="Where the events are POSTed: https (http only where the operator allows it), a host "
        "that resolves to public addresses (or one the operator allows: AUDITOR_WEBHOOK_ALLOW_HOSTS), "
        "else 403 scheme_not_allowed / host_not_allowed, 404 host_not_found. Checked again at every "
        "delivery; redirects are not followed.",
    )
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(get_args(WebhookEvent)),
        min_length=1,
        max_length=len(EVENTS),
        description="The events to send (default: all). gate.failed: the audit succeeded and its gate "
        "failed (sent beside audit.succeeded).",
    )
    secret: str | None = Field(
        None,
        min_length=SECRET_MIN,
        max_length=SECRET_MAX,
        pattern=SECRET_PATTERN,
        description="The signing secret (visible ASCII); omit for a generated one. Returned once, in this "
        "answer, never again.",
    )

    @field_validator("events")
    @classmethod
    def _unique_events(cls, events: list[str]) -> list[str]:
        return [event for event in EVENTS if event in events]


class WebhookPublic(BaseModel):
    id: str = Field(pattern=WEBHOOK_ID_PATTERN)
    project: str
    url: str
    events: list[str]
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="The signing secret: shown once, never again.")


class WebhookAttemptPublic(BaseModel):
    number: int
    sender: str = Field(description="The process that made the attempt (host:pid).")
    started_at: datetime
    finished_at: datetime | None = Field(description="Null while the attempt is in flight.")
    duration_s: float | None
    status_code: int | None = Field(description="The receiver's HTTP status; null when none came.")
    error_code: str | None = Field(
        description="http_status, timeout, connection_error, host_not_found, host_not_allowed, "
        "scheme_not_allowed, interrupted (its sender stopped mid-attempt), ...; null when delivered."
    )
    error: str | None


class WebhookDeliveryPublic(BaseModel):
    id: str = Field(description="The X-Auditor-Delivery header: the same on every attempt.")
    webhook_id: str
    audit_id: str
    event: str
    state: str = Field(description="pending | delivered | failed (every attempt made, or refused)")
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="Pending: when it is next tried.")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempts: list[WebhookAttemptPublic]


# --- waivers ---------------------------------------------------------------------------------------------

WAIVER_ID_PATTERN = r"^[0-9a-f]{32}$"


class WaiverCreate(BaseModel):
    """Waive a metric's rules for the project's audits from now on, or for one audit (its stored
    verdict is judged again at once)."""

    model_config = ConfigDict(extra="forbid")

    metric: MetricName
    reason: str = Field(
        min_length=1, max_length=WAIVER_REASON_MAX, description="Why: shown in every verdict."
    )
    days: Annotated[float, JsonNumber] = Field(
        30.0, gt=0, le=MAX_WAIVER_DAYS, allow_inf_nan=False, description="How long it lasts (at most a year)."
    )
    audit_id: str | None = Field(
        None, pattern=AUDIT_ID_PATTERN, description="One audit of the project; omitted: the project's audits."
    )


class WaiverPublic(BaseModel):
    id: str
    project: str
    metric: str
    reason: str
    audit_id: str | None
    created_by: str = Field(description="The API key's prefix that created it (cli: the local CLI).")
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    active: bool = Field(description="Neither revoked nor expired.")
