"""``auditor.audit``: one audit from Python (a notebook, a script) on arrays, tables, texts or files.

::

    import auditor

    result = auditor.audit(real, synthetic, holdout=holdout, policy="gate.yaml", bootstrap=100)
    result.metrics["fid"].value, result.metrics["recall"].ci_low, result.passed
    result                                  # in a notebook: the HTML report, inline
    result.save_report("report.html")

``real``, ``synthetic`` and ``holdout`` are each a numpy array or torch tensor (embeddings), a pandas
DataFrame (a table), a list of strings (texts), or anything ``auditor audit`` takes as a dataset
reference (a path, ``file://`` or remote URI). Without ``extractor=``, the extractor is the one the data
calls for (:mod:`auditor.extractors.inference`); images need one named.

In-memory inputs go through exactly the pipeline files go through (:func:`auditor.pipeline.run.run_audit`:
resolution, fingerprints, readers, extractor, metrics, verdict): each is written, in the format the CLI
would read, into a private temporary directory that is removed when the audit ends: arrays and tensors
as float32 ``.npy`` (the precision every embedding file is audited in, so an array and a tensor of the
same numbers are the same data, fingerprint included), DataFrames as ``.parquet`` (column dtypes
kept; the index is not a column), lists of strings as ``.jsonl`` (one JSON string a line, so a text may
hold newlines). Such a side's ``reference`` in the result document is that file's path, named after
the side and the kind (``real-ndarray.npy``); its fingerprint, a hash of the content, identifies it.

Nothing is written to the audit history unless ``project`` is given; then the audit is recorded in the
configured database (``AUDITOR_DATABASE_URL``, default a SQLite file in ``AUDITOR_HOME``) as ``auditor
audit --project`` records it, failures included.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from auditor.errors import BadInputError, UnknownNameError, describe_validation_error
from auditor.metrics import METRICS

if TYPE_CHECKING:
    import pandas as pd

    from auditor.pipeline.evaluate import MetricParams
    from auditor.pipeline.progress import ProgressReporter
    from auditor.pipeline.result import AuditResult
    from auditor.policy import Policy

# Tall enough for the verdict and the metric table; the report scrolls inside the frame for the rest.
_FRAME_HEIGHT_PX = 800


@dataclass(frozen=True)
class MetricEstimate:
    """One metric of an audit: its value, bootstrap interval and real-vs-real baseline.

    ``ci_low`` / ``ci_high`` are None without bootstrap (``bootstrap=0``; ``spectral_bootstrap=0`` for
    fid, vendi and effective_rank_ratio), ``baseline`` without a holdout. ``extra`` holds what some
    metrics add (kid: ``std``, ``subset_size``).
    """

    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    baseline: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_document(cls, name: str, entry: Mapping[str, Any]) -> MetricEstimate:
        """From a result document's ``metrics[name]`` entry."""
        known = {"value", "ci_low", "ci_high", "baseline"}
        return cls(
            name=name,
            value=entry["value"],
            ci_low=entry.get("ci_low"),
            ci_high=entry.get("ci_high"),
            baseline=entry.get("baseline"),
            extra={key: value for key, value in entry.items() if key not in known},
        )

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.name].higher_is_better

    @property
    def interval(self) -> tuple[float, float] | None:
        """``(ci_low, ci_high)``, or None when no interval was computed."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low, self.ci_high

    def __str__(self) -> str:
        text = f"{self.name} = {self.value:.4g}"
        if self.interval is not None:
            text += f" [{self.ci_low:.4g}, {self.ci_high:.4g}]"
        if self.baseline is not None:
            text += f" (holdout baseline {self.baseline:.4g})"
        return text


class AuditOutcome:
    """The outcome of :func:`audit`: metrics, verdict, the result document and the HTML report.

    Shown in a notebook, it is the audit's HTML report (the one ``save_report`` writes), inline.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> import auditor
        >>> rng = np.random.default_rng(1)
        >>> real, synthetic = rng.normal(size=(2, 300, 8)).astype(np.float32)
        >>> result = auditor.audit(real, synthetic, metrics="precision,recall,fid", bootstrap=50)
        >>> list(result.metrics)
        ['precision', 'recall', 'fid']
        >>> recall = result.metrics["recall"]
        >>> recall.ci_low <= recall.value <= recall.ci_high, recall.higher_is_better
        (True, True)
        >>> result.passed is None  # no policy, no verdict
        True
        >>> result.document["schema_version"], result.document["extractor"]["name"]
        (1, 'precomputed')
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = result.save_report(Path(folder) / "report.html")
        ...     "recall" in path.read_text()
        True
        >>> result._repr_html_().startswith("<iframe")
        True
    """

    def __init__(self, result: AuditResult, *, recorded: bool = False) -> None:
        self._result = result
        #: Whether the audit was recorded in the history database (``project`` was given).
        self.recorded = recorded
        #: ``{name: MetricEstimate}`` in the order the metrics were requested (read-only).
        self.metrics: Mapping[str, MetricEstimate] = MappingProxyType(
            {
                name: MetricEstimate.from_document(name, entry)
                for name, entry in result.document["metrics"].items()
            }
        )

    @property
    def audit_id(self) -> str:
        return self._result.audit_id

    @property
    def project(self) -> str:
        return str(self.document["project"])

    @property
    def passed(self) -> bool | None:
        """True / False by the policy's verdict; None when no policy was given."""
        return self._result.passed

    @property
    def verdict(self) -> dict[str, Any]:
        """Every policy rule with its observed value, threshold, tier and outcome (see auditor.policy)."""
        return dict(self.document["verdict"])

    @property
    def warnings(self) -> list[dict[str, str]]:
        """Sample-size caveats (N < d for the Gaussian fit, unequal set sizes, ...)."""
        return list(self.document.get("warnings", []))

    @property
    def document(self) -> dict[str, Any]:
        """The stable result document (schema_version 1, as ``--json`` writes it)."""
        return self._result.document

    def to_dict(self) -> dict[str, Any]:
        """A copy of the result document, safe to change."""
        return copy.deepcopy(self._result.document)

    def report_html(self) -> str:
        """The standalone HTML report: one page, inline CSS and SVG, nothing fetched."""
        from auditor.report.html import render_report

        return render_report(
            self._result.document, self._result.report, previews=getattr(self._result, "previews", None)
        )

    def save_report(self, path: str | os.PathLike[str]) -> Path:
        """Write the standalone HTML report to ``path`` (folders made as needed); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.report_html(), encoding="utf-8")
        return target

    def _repr_html_(self) -> str:
        # The report is a whole page with page-wide CSS: inside a sandboxed iframe's srcdoc it neither
        # restyles the notebook nor is restyled by it, and still needs no network (no scripts either).
        page = self.report_html()
        return (
            f'<iframe title="audit {escape(self.audit_id[:12])} report" sandbox="" '
            f'style="width: 100%; height: {_FRAME_HEIGHT_PX}px; border: 0" '
            f'srcdoc="{escape(page, quote=True)}"></iframe>'
        )

    def samples(self, side: str = "synthetic", flag: str | None = None) -> pd.DataFrame:
        """Per-sample diagnostics of one side as a DataFrame, one row per input sample in input order;
        with ``flag`` (``memorized``, ``off_support``, ``duplicate``, ``uncovered``, ``tail``) only the
        rows it flags, as ``auditor samples`` and the API filter them (:mod:`auditor.samples`)."""
        # getattr: the per-sample tables are new in AuditResult; a result without them says so plainly.
        tables = getattr(self._result, "samples", None)
        if not tables:
            raise NotImplementedError(
                "this audit result carries no per-sample diagnostics; result.metrics and "
                "result.document hold the aggregate metrics"
            )
        if side not in tables:
            raise BadInputError(
                f"no per-sample diagnostics for side {side!r}; this audit has them for {sorted(tables)}",
                details={"side": side, "sides": sorted(tables)},
            )
        from auditor.samples import SampleQuery, select

        return select(tables[side], SampleQuery(side=side, flag=flag)).to_pandas()

    def __repr__(self) -> str:
        verdict = {True: "passed", False: "FAILED", None: "no policy"}[self.passed]
        return (
            f"<AuditOutcome {self.audit_id[:12]} project={self.project!r} "
            f"extractor={self.document['extractor']['name']!r} {verdict}: {', '.join(self.metrics)}>"
        )


def audit(
    real: Any,
    synthetic: Any,
    holdout: Any = None,
    *,
    extractor: str | None = None,
    metrics: str | Iterable[str] | None = None,
    policy: str | os.PathLike[str] | Mapping[str, Any] | Policy | None = None,
    project: str | None = None,
    device: str = "auto",
    options: Mapping[str, Any] | None = None,
    extractor_options: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    parent: str | None = None,
    generation: int | None = None,
    progress: ProgressReporter | None = None,
    previews: bool = True,
    **params: Any,
) -> AuditOutcome:
    """Audit ``synthetic`` against ``real``: every metric with its interval and, given ``holdout``, its
    real-vs-real baseline; the verdict of ``policy``.

    Args:
        real, synthetic, holdout: a numpy array or torch tensor (samples x features), a pandas DataFrame
            (a table), a list of strings (texts), or a path / URI as ``auditor audit`` takes it.
        extractor: an extractor name (see :mod:`auditor.extractors`); default: inferred from the data
            (embeddings ``precomputed``, tables ``tabular``, texts ``text-minilm``; images need one).
        metrics: names, a list or comma-separated (default: all).
        policy: a gate policy: a YAML file's path, a dict, or an :class:`auditor.policy.Policy`.
        project: record the audit in the history database under this project (default: not recorded).
        device: ``auto`` | ``cpu`` | ``cuda[:N]``, where the metrics and networks run.
        options: dataset options for every side (``max_samples``, ``text_field``, ``key``, ...).
        extractor_options: options of the extractor (``batch_size``, ``model_dir``, ...).
        tags, parent, generation: lineage, as ``auditor audit --tag/--parent/--generation`` (``parent``
            may be a unique prefix when ``project`` is given).
        progress: a :class:`~auditor.pipeline.progress.ProgressReporter` told about each stage.
        previews: show the samples behind the numbers in the report by their previews (thumbnails,
            texts, table rows: real data; also stored with the audit when ``project`` is given);
            ``AUDITOR_PREVIEWS=off`` turns them off whatever this says.
        **params: metric parameters (:class:`auditor.pipeline.evaluate.MetricParams`): ``nearest_k``,
            ``bootstrap``, ``spectral_bootstrap``, ``seed``, ``confidence``, ``kid_subsets``, ...

    Raises:
        auditor.errors.AuditorError: its subclasses, each with a ``code``, for every input problem
            (``unknown_name`` for an unknown parameter, metric or extractor, ``extractor_required`` for
            images without an extractor, ``dataset_not_found``, ``dimension_mismatch``, ...).

    Example:
        >>> import numpy as np
        >>> import auditor
        >>> rng = np.random.default_rng(0)
        >>> real = rng.normal(size=(300, 8)).astype(np.float32)
        >>> synthetic = rng.normal(size=(300, 8)).astype(np.float32)
        >>> result = auditor.audit(
        ...     real, synthetic, metrics=["fid", "coverage"], bootstrap=50, spectral_bootstrap=0, seed=1,
        ...     policy={"rules": [{"metric": "fid", "max": 1.0}, {"metric": "coverage", "min": 0.5}]},
        ... )
        >>> result.passed, result.verdict["failed"]
        (True, 0)
        >>> fid = result.metrics["fid"]
        >>> fid.value < 1.0, fid.interval  # spectral_bootstrap=0: no interval for fid
        (True, None)
        >>> auditor.audit(real, synthetic, nearst_k=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        auditor.errors.UnknownNameError: unknown parameter 'nearst_k'; did you mean 'nearest_k'? ...
    """
    from pydantic import ValidationError

    from auditor.cli.common import Database
    from auditor.config import get_settings
    from auditor.extractors.inference import infer_extractor
    from auditor.pipeline.run import run_audit
    from auditor.pipeline.spec import AuditSpec, DatasetRef

    metric_params = _metric_params(metrics, params)
    policy_doc = _policy_document(policy)
    settings = get_settings()
    dataset_options = dict(options or {})
    with contextlib.ExitStack() as stack:
        scratch = _Scratch(stack)
        sides: dict[str, DatasetRef] = {}
        for side, data in (("real", real), ("synthetic", synthetic), ("holdout", holdout)):
            if side != "holdout" or data is not None:
                uri = _reference(side, data, scratch, dataset_options)
                sides[side] = DatasetRef(uri=uri, options=dataset_options)
        name = extractor or infer_extractor(sides, settings.data_root_paths())
        database = Database(settings) if project is not None else None
        if database is not None:
            stack.callback(database.engine.dispose)  # a notebook audits many times in one process
            if parent:
                from auditor.db import queries

                with database.scope() as session:  # a unique prefix, as the CLI accepts
                    parent = queries.get_audit(session, parent).id
        try:
            spec = AuditSpec(
                real=sides["real"],
                synthetic=sides["synthetic"],
                holdout=sides.get("holdout"),
                extractor=name,
                extractor_options=dict(extractor_options or {}),
                params=metric_params,
                device=device,
                policy=policy_doc,
                project=project if project is not None else "default",
                parent_audit_id=parent,
                generation=generation,
                tags=list(tags),
                previews=previews,
            )
        except ValidationError as exc:
            raise BadInputError(f"invalid audit: {describe_validation_error(exc)}") from None
        result = run_audit(spec, session_scope=database.scope if database else None, progress=progress)
    return AuditOutcome(result, recorded=database is not None)


def _audit_keywords() -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(audit).parameters.items()
        if parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _metric_params(metrics: str | Iterable[str] | None, params: Mapping[str, Any]) -> MetricParams:
    from pydantic import ValidationError

    from auditor.pipeline.evaluate import MetricParams

    fields = [name for name in MetricParams.model_fields if name != "metrics"]
    for name in params:
        if name not in fields:
            raise UnknownNameError(
                f"unknown parameter {name!r}{_did_you_mean(name, [*fields, *_audit_keywords()])} "
                f"(metric parameters: {', '.join(fields)})",
                details={"parameter": name, "known": fields},
            )
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics or [])
    names = [m for m in names if m]
    for metric in names:
        if metric not in METRICS:
            raise UnknownNameError(
                f"unknown metric {metric!r}{_did_you_mean(metric, METRICS)} (metrics: {', '.join(METRICS)})",
                details={"metric": metric, "known": list(METRICS)},
            )
    try:
        return MetricParams(**({"metrics": tuple(names)} if names else {}), **params)
    except ValidationError as exc:
        raise BadInputError(f"invalid parameters: {describe_validation_error(exc)}") from None


def _policy_document(
    policy: str | os.PathLike[str] | Mapping[str, Any] | Policy | None,
) -> dict[str, Any] | None:
    from auditor.policy import Policy

    if policy is None:
        return None
    if isinstance(policy, Policy):
        chosen = policy
    elif isinstance(policy, Mapping):
        chosen = Policy.from_dict(dict(policy))
    elif isinstance(policy, (str, os.PathLike)):
        chosen = Policy.from_yaml(Path(policy))
    else:
        raise BadInputError(
            "policy must be a YAML file's path, a dict or an auditor.policy.Policy, "
            f"not {type(policy).__name__}"
        )
    return chosen.model_dump(mode="json")


class _Scratch:
    """The private temporary directory in-memory inputs are written to: made on first use, removed
    with the ``ExitStack`` (when the audit ends, however it ends)."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._root: Path | None = None

    def path(self, name: str) -> Path:
        if self._root is None:
            self._root = Path(
                self._stack.enter_context(tempfile.TemporaryDirectory(prefix="auditor-notebook-"))
            )
        return self._root / name


def _reference(side: str, data: Any, scratch: _Scratch, options: Mapping[str, Any]) -> str:
    """The dataset reference for one side: the path or URI given, or a temporary file holding ``data``."""
    if isinstance(data, str):
        return data
    if isinstance(data, os.PathLike):
        return str(os.fspath(data))

    import numpy as np
    import pandas as pd
    import torch

    if isinstance(data, torch.Tensor):
        # float32: what every embedding file is audited in (auditor.datasets.readers); numpy has no bf16.
        data = data.detach().to(device="cpu", dtype=torch.float32).numpy()
        kind = "tensor"
    else:
        kind = "ndarray"
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "fiub":
            raise BadInputError(
                f"the {side} array holds {data.dtype} values; embeddings are numbers (samples x features)",
                details={"side": side, "dtype": str(data.dtype)},
            )
        path = scratch.path(f"{side}-{kind}.npy")
        # float32 before writing: the file then fingerprints exactly what is audited, whatever came in.
        np.save(path, np.ascontiguousarray(data, dtype=np.float32), allow_pickle=False)
        return str(path)
    if isinstance(data, pd.DataFrame):
        frame = data if all(isinstance(c, str) for c in data.columns) else data.rename(columns=str)
        path = scratch.path(f"{side}-dataframe.parquet")
        try:
            frame.to_parquet(path, index=False)
        except (ValueError, TypeError) as exc:  # pyarrow's ArrowInvalid / ArrowTypeError among them
            raise BadInputError(
                f"the {side} DataFrame cannot be stored as a table ({exc})", details={"side": side}
            ) from exc
        return str(path)
    if isinstance(data, (list, tuple)) and all(isinstance(item, str) for item in data):
        if not data:
            raise BadInputError(f"the {side} list of texts is empty", details={"side": side})
        text_field = str(options.get("text_field", "text"))
        path = scratch.path(f"{side}-texts.jsonl")
        with path.open("w", encoding="utf-8") as out:
            for text in data:
                out.write(json.dumps({text_field: text}, ensure_ascii=False) + "\n")
        return str(path)
    raise BadInputError(
        f"cannot audit a {type(data).__module__}.{type(data).__qualname__} as the {side} dataset: pass a "
        "numpy array or torch tensor (embeddings), a pandas DataFrame (a table), a list of strings "
        "(texts), or a path or URI",
        details={"side": side, "type": type(data).__qualname__},
    )


__all__ = ["AuditOutcome", "MetricEstimate", "audit"]
