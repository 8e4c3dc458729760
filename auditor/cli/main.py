"""``auditor``: audit synthetic data from the command line.

Exit codes: 0 = done and passed (or no policy), 1 = gate failed, 2 = bad input or usage, 3 = internal error.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

# Only light modules at module level: every verb, `--help` included, pays for these imports. What needs
# torch, NumPy or scikit-learn (the pipeline, the metrics, the extractors, the report renderer) is imported
# inside the command that computes; tests/cli/test_lazy_imports.py keeps it that way.
from auditor.cli.common import Database, fmt, handle_errors, print_document, stderr, write_json
from auditor.config import get_settings
from auditor.metrics import METRICS
from auditor.metrics.warnings import AuditWarning

# Sample-size warnings are part of the result document and printed with it; Python's own warning
# output would print them a second time, with a source line.
warnings.filterwarnings("ignore", category=AuditWarning)

app = typer.Typer(
    name="auditor",
    help="Audit a synthetic dataset against real data: fidelity, diversity, collapse, memorization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

GATE_FAILED = 1
HISTORY_METRICS = ("fid", "precision", "recall", "coverage", "tail_recall", "vendi_ratio")


def _console_for(json_target: str | None) -> Console:
    # With --json -, stdout carries only the document; everything human goes to stderr.
    return stderr if json_target == "-" else Console()


def _parse_metrics(metrics: str | None) -> tuple[str, ...]:
    if not metrics:
        return tuple(METRICS)
    return tuple(m.strip() for m in metrics.split(",") if m.strip())


def _parse_pairs(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` options; values are read as YAML scalars (numbers, booleans), else kept as text."""
    import yaml

    from auditor.errors import BadInputError

    parsed: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise BadInputError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            parsed[name.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed[name.strip()] = value
    return parsed


def _write_report(
    path: Path,
    document: dict[str, Any],
    report: Any,
    trend: list[dict[str, Any]] | None,
    previews: dict[str, Any] | None = None,
) -> None:
    from auditor.report.html import render_report

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(document, report, trend=trend, previews=previews))


@app.command()
@handle_errors
def audit(
    real: Annotated[str, typer.Option("--real", help="Real dataset (path or file:// URI).")],
    synthetic: Annotated[str, typer.Option("--synthetic", help="Synthetic dataset.")],
    holdout: Annotated[
        str | None, typer.Option(help="Real holdout: gives every metric its real-vs-real noise floor.")
    ] = None,
    extractor: Annotated[
        str | None,
        typer.Option(
            help="precomputed | tabular | inception-v3-fid | dinov2-vitb14 | dinov2-vitl14 | clip-vit-b32 | "
            "text-minilm (default: inferred from the data: embeddings precomputed, tables tabular, text "
            "text-minilm; images need one named)"
        ),
    ] = None,
    key: Annotated[str | None, typer.Option(help="Array name (npz/pt) or column (parquet) to read.")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="Dataset option KEY=VALUE for every side (repeatable): max_samples=5000, seed=1, "
            "text_field=body, labels=folder, max_bad_fraction=0.01, ...",
        ),
    ] = None,
    extractor_option: Annotated[
        list[str] | None,
        typer.Option(
            "--extractor-option", help="Extractor option KEY=VALUE (repeatable): batch_size=128, ..."
        ),
    ] = None,
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metrics (default: all).")] = None,
    nearest_k: Annotated[int, typer.Option("--nearest-k", min=1)] = 5,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap replicates (0 = no intervals).")] = 200,
    spectral_bootstrap: Annotated[
        int, typer.Option(min=0, help="Replicates for fid / vendi / effective rank (O(d^3) each).")
    ] = 20,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    policy: Annotated[Path | None, typer.Option(help="Gate policy YAML.")] = None,
    project: Annotated[str, typer.Option()] = "default",
    parent: Annotated[str | None, typer.Option(help="Parent audit id (lineage).")] = None,
    generation: Annotated[
        int | None, typer.Option(min=0, help="Generation number (default: parent's + 1).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Tag (repeatable).")] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the result document (PATH or -).")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not record the audit in the database.")
    ] = False,
    previews: Annotated[
        bool,
        typer.Option(
            "--previews/--no-previews",
            help="Keep previews (thumbnails, texts, rows: real data) of the samples the report's "
            "galleries show, with the audit (AUDITOR_PREVIEWS=off: never).",
        ),
    ] = True,
) -> None:
    """Audit SYNTHETIC against REAL; exit 0 passed, 1 gate failed, 2 bad input."""
    from pydantic import ValidationError

    from auditor.cli.progress import RichProgress
    from auditor.errors import BadInputError, describe_validation_error
    from auditor.pipeline.evaluate import MetricParams
    from auditor.pipeline.run import run_audit
    from auditor.pipeline.spec import AuditSpec, DatasetRef
    from auditor.policy import Policy

    console = _console_for(json_out)
    settings = get_settings()
    options: dict[str, Any] = {"key": key} if key else {}
    options.update(_parse_pairs(option, "--option"))
    try:
        params = MetricParams(
            metrics=_parse_metrics(metrics),
            nearest_k=nearest_k,
            bootstrap=bootstrap,
            spectral_bootstrap=spectral_bootstrap,
            seed=seed,
        )
    except ValidationError as exc:
        raise BadInputError(f"invalid parameters: {describe_validation_error(exc)}") from None
    sides = {
        "real": DatasetRef(uri=real, options=options),
        "synthetic": DatasetRef(uri=synthetic, options=options),
    }
    if holdout:
        sides["holdout"] = DatasetRef(uri=holdout, options=options)
    if extractor is None:
        from auditor.extractors.inference import infer_extractor

        extractor = infer_extractor(sides, settings.data_root_paths())
    database = None if no_store else Database(settings)
    if parent and database is not None:
        from auditor.db import queries

        with database.scope() as session:  # accept a unique prefix, as `show` does
            parent = queries.get_audit(session, parent).id
    spec = AuditSpec(
        real=sides["real"],
        synthetic=sides["synthetic"],
        holdout=sides.get("holdout"),
        extractor=extractor,
        extractor_options=_parse_pairs(extractor_option, "--extractor-option"),
        params=params,
        device=device,
        policy=Policy.from_yaml(policy).model_dump(mode="json") if policy else None,
        project=project,
        parent_audit_id=parent,
        generation=generation,
        tags=tag or [],
        previews=previews,
    )
    with RichProgress(console) as progress:
        result = run_audit(spec, session_scope=database.scope if database else None, progress=progress)
    print_document(console, result.document)
    if json_out:
        write_json(result.document, json_out)
    if report:
        _write_report(report, result.document, result.report, None, result.previews)
        console.print(f"report: {report}")
    if result.passed is False:
        raise typer.Exit(GATE_FAILED)


@app.command()
@handle_errors
def history(
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the rows as JSON (PATH or -).")
    ] = None,
) -> None:
    """List recorded audits, newest first."""
    from auditor.db import queries

    database = Database(get_settings())
    rows: list[dict[str, Any]] = []
    with database.scope() as session:
        for audit in queries.list_audits(session, project=project, limit=limit):
            values = queries.audit_metrics(session, audit.id)
            rows.append(
                {
                    "audit_id": audit.id,
                    "created_at": audit.created_at.isoformat() if audit.created_at else None,
                    "project": audit.project.name,
                    "generation": audit.generation,
                    "state": audit.state,
                    "passed": audit.passed,
                    "protocol": audit.protocol_fingerprint,
                    "error": audit.error_message,
                    "metrics": {name: row.value for name, row in values.items()},
                }
            )
    if json_out:
        write_json({"audits": rows}, json_out)
        if json_out == "-":
            return
    table = Table(title=f"Audit history ({database.url.split('://')[0]})", title_justify="left")
    for column in ("audit", "created (UTC)", "project", "gen", "state", "gate", *HISTORY_METRICS):
        table.add_column(column, justify="right" if column in HISTORY_METRICS or column == "gen" else "left")
    for row in rows:
        gate = {True: "[green]pass[/]", False: "[red]fail[/]", None: "—"}[row["passed"]]
        created = (row["created_at"] or "")[:19].replace("T", " ")
        table.add_row(
            row["audit_id"][:12],
            created,
            row["project"],
            fmt(row["generation"]),
            row["state"],
            gate,
            *(fmt(row["metrics"].get(name)) for name in HISTORY_METRICS),
        )
    Console().print(table)


@app.command()
@handle_errors
def show(
    audit_id: Annotated[str, typer.Argument(help="Audit id or a unique prefix (>= 6 characters).")],
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the result document (PATH or -).")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
) -> None:
    """Show one recorded audit; exit code follows its verdict (1 = gate failed)."""
    from auditor.db import queries

    console = _console_for(json_out)
    database = Database(get_settings())
    with database.scope() as session:
        audit = queries.get_audit(session, audit_id)
        document, state, error = audit.result, audit.state, audit.error_message
        full_id = audit.id
        html: str | None = None
        if report and document is not None:
            # The same report as the API's /report: the document, its plots and the project's trend.
            from auditor.report.service import render_audit_report

            html = render_audit_report(session, audit)
    if document is None:
        console.print(
            f"audit {full_id}: state {state}" + (f", error: {error}" if error else ""), highlight=False
        )
        raise typer.Exit(GATE_FAILED if state == "failed" else 0)
    print_document(console, document)
    if json_out:
        write_json(document, json_out)
    if report and html is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(html)
        console.print(f"report: {report}")
    if document["verdict"].get("passed") is False:
        raise typer.Exit(GATE_FAILED)


@app.command()
@handle_errors
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its data and report.")] = Path(
        "auditor-demo"
    ),
    generations: Annotated[
        int, typer.Option(min=1, max=20, help="Recursive generations after the first.")
    ] = 5,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Audit a good synthetic set and a chain of collapsing generations of sklearn digits."""
    from auditor.cli.demo import run_demo

    run_demo(workdir=workdir, generations=generations, seed=seed)


def main() -> None:  # pragma: no cover - console-script entry
    app()


# --- service verbs (auditor/cli/service.py) -----------------------------------------------------------------
def _register_service_commands() -> None:
    from auditor.cli import policy, samples, service, waivers, webhooks

    app.command()(samples.samples)
    app.command()(service.serve)
    app.command()(service.worker)
    app.command()(service.submit)
    app.command()(service.wait)
    app.command()(service.gate)
    app.add_typer(service.db_app, name="db")
    app.add_typer(service.keys_app, name="keys")
    app.add_typer(policy.policy_app, name="policy")
    app.add_typer(webhooks.webhooks_app, name="webhooks")
    app.add_typer(waivers.waivers_app, name="waivers")


_register_service_commands()
