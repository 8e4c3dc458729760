"""``auditor demo``: the README's main job, end to end on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from auditor.cli.common import Database, fmt, print_verdict, write_json
from auditor.cli.progress import RichProgress
from auditor.config import get_settings
from auditor.demo import DEMO_POLICY, build_demo_data
from auditor.metrics import METRICS
from auditor.pipeline.result import AuditResult
from auditor.pipeline.spec import AuditSpec, DatasetRef

DEMO_PROJECT = "digits-demo"
TREND_METRICS = (
    "fid",
    "precision",
    "recall",
    "coverage",
    "tail_recall",
    "vendi_ratio",
    "mode_jsd",
    "memorization_rate",
)


def _trend_rows(results: list[AuditResult]) -> list[dict[str, Any]]:
    return [
        {
            "audit_id": r.audit_id,
            "generation": r.document["lineage"]["generation"],
            "metrics": r.document["metrics"],
            "passed": r.passed,
        }
        for r in results
    ]


def run_demo(
    *, workdir: Path, generations: int, seed: int, console: Console | None = None
) -> list[AuditResult]:
    from auditor.pipeline.run import run_audit

    console = console or Console()
    settings = get_settings()
    database = Database(settings)
    console.print(f"[bold]auditor demo[/]: sklearn digits, {generations} recursive generations -> {workdir}/")
    data = build_demo_data(workdir, generations=generations, seed=seed)
    results: list[AuditResult] = []
    parent: str | None = None
    for t, synthetic in enumerate(data.generations):
        spec = AuditSpec(
            real=DatasetRef(uri=str(data.real)),
            synthetic=DatasetRef(uri=str(synthetic)),
            holdout=DatasetRef(uri=str(data.holdout)),
            policy=DEMO_POLICY,
            project=DEMO_PROJECT,
            parent_audit_id=parent,
            generation=t,
            tags=["demo"],
        )
        with RichProgress(console, prefix=f"generation {t}: ") as progress:
            result = run_audit(spec, session_scope=database.scope, progress=progress)
        write_json(result.document, str(workdir / f"generation_{t}.json"))
        results.append(result)
        parent = result.audit_id
        gate = {True: "[green]passed[/]", False: "[red]FAILED[/]", None: "—"}[result.passed]
        values = result.document["metrics"]
        console.print(
            f"generation {t}: audit {result.audit_id[:12]}  fid {fmt(values['fid']['value'])}  "
            f"recall {fmt(values['recall']['value'])}  gate {gate}",
            highlight=False,
        )

    table = Table(title="Model collapse across generations", title_justify="left")
    table.add_column("metric")
    table.add_column("", justify="center")
    for r in results:
        table.add_column(f"gen {r.document['lineage']['generation']}", justify="right")
    table.add_column("holdout", justify="right", style="dim")
    for name in TREND_METRICS:
        arrow = "↑" if METRICS[name].higher_is_better else "↓"
        values = [fmt(r.document["metrics"][name]["value"]) for r in results]
        table.add_row(name, arrow, *values, fmt(results[0].document["metrics"][name].get("baseline")))
    gates = [{True: "[green]pass[/]", False: "[red]fail[/]", None: "—"}[r.passed] for r in results]
    table.add_row("gate", "", *gates, "")
    console.print(table)
    console.print("[dim]95% intervals: in the report and in generation_<t>.json[/]")
    console.print(f"last generation's gate ({DEMO_POLICY['name']}):")
    print_verdict(console, results[-1].document["verdict"])

    from auditor.report.html import render_report

    report_path = workdir / "report.html"
    report_path.write_text(
        render_report(results[-1].document, results[-1].report, trend=_trend_rows(results))
    )
    console.print(f"\nHTML report: {report_path}   history: auditor history --project {DEMO_PROJECT}")
    console.print(f"database: {database.url}")
    return results
