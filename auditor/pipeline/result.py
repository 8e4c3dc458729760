"""The stable result document (``--json``, the API, the ``audits.result`` column).

Shape (``schema_version`` 1; documented in README "Result document")::

    {
      "schema_version": 1,
      "audit_id": "7f0c...",                       # uuid4 hex
      "project": "default",
      "created_at": "2026-11-23T20:00:00+00:00",   # ISO 8601 UTC
      "real":      {"reference": str, "n": int, "dim": int, "fingerprint": str, "format": str},
      "synthetic": {... same ...},
      "holdout":   {... same ...} | null,
      "extractor": {"name": str, "version": str, "dim": int, "weights_sha256": str | null,
                    "preprocessing": {...}},
      "params":    {MetricParams fields: nearest_k, bootstrap, seed, confidence, ...},
      "protocol":  {"fingerprint": str, ...everything hashed into it...},
      "lineage":   {"parent_audit_id": str | null, "generation": int | null},
      "metrics":   {"<name>": {"value": float, "ci_low": float | null, "ci_high": float | null,
                               "baseline": float | null, ...extra e.g. kid "std"}},
      "warnings":  [{"category": str, "message": str}],
      "details":   {"copy_threshold_tau": float, "num_modes": int, ...},
      "timings":   {"load_s": float, "embed_s": float, "score_s": float, "total_s": float},
      "device":    "cpu" | "cuda:0",
      "verdict":   {"passed": bool | null, "rules": [rule outcome, see auditor.policy]},
      "diagnostics": {"rows": {"synthetic": int, "real": int, "holdout": int},   # per-sample tables
                      "computed": {"knn": bool, "modes": bool},
                      "artifacts": ["samples/synthetic.parquet", ...],  # stored with the audit
                      "bytes": int, "omitted": str | null,              # why none are stored
                      "previews": {"count": int, "failed": int, "capped": int,  # the report's previews
                                   "omitted": str | null}}                      # why none are stored
    }
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from auditor.metrics import METRICS
from auditor.pipeline.report_data import ReportData

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 1


def protocol_fingerprint(
    *, extractor: dict[str, Any], params: dict[str, Any], n_real: int, n_synthetic: int, n_holdout: int | None
) -> dict[str, Any]:
    """Everything that makes two audits' numbers comparable, and its hash.

    N of each side is part of it: kNN radii, FID bias and Vendi all move with N.
    """
    protocol: dict[str, Any] = {
        "extractor": extractor["name"],
        "extractor_version": extractor["version"],
        "weights_sha256": extractor.get("weights_sha256"),
        "preprocessing": extractor.get("preprocessing", {}),
        "n_real": n_real,
        "n_synthetic": n_synthetic,
        "n_holdout": n_holdout,
        "params": {k: v for k, v in params.items() if k != "memory_budget_mb"},
        "metric_versions": {name: METRICS[name].version for name in params["metrics"]},
    }
    canonical = json.dumps(protocol, sort_keys=True, separators=(",", ":"), default=str)
    protocol["fingerprint"] = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return protocol


@dataclass(frozen=True)
class Artifact:
    """A file stored with an audit, in its own table (``audit_artifacts``), written with the result."""

    name: str  # e.g. samples/synthetic.parquet
    media_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass
class AuditResult:
    """The document, the report's arrays, and the per-sample tables.

    ``samples``: one Arrow table per side (:mod:`auditor.samples`), always, for in-process callers;
    ``artifacts``: what is stored with the audit (the same tables as parquet; empty when they are over
    ``AUDITOR_MAX_ARTIFACT_MB``, see ``document["diagnostics"]["omitted"]``; and the previews of the
    report's galleries, ``report/previews.json``); ``previews``: those previews, side -> row -> preview
    (:mod:`auditor.pipeline.previews`; empty when switched off).
    """

    document: dict[str, Any]
    report: ReportData
    samples: dict[str, pa.Table] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    previews: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def audit_id(self) -> str:
        return str(self.document["audit_id"])

    @property
    def passed(self) -> bool | None:
        verdict = self.document.get("verdict") or {}
        return verdict.get("passed")
