"""``auditor waivers add|list|revoke``: a project's gate waivers, through the API.

Client verbs (``AUDITOR_API_URL``, ``AUDITOR_API_KEY``, like ``auditor submit``): they import nothing
heavy. A waiver for one audit (``--audit``) judges its verdict again at once, so ``auditor gate`` passes
when the waived rules were its only failures; a project's waiver judges the audits that finish later.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from auditor.cli.common import handle_errors, stderr, write_json

waivers_app = typer.Typer(
    help="Waivers: a metric's gate rules accepted, with reason and expiry.", no_args_is_help=True
)

ProjectOption = Annotated[str, typer.Option(help="The project.")]
JsonOption = Annotated[str | None, typer.Option("--json", help="Write the answer as JSON (PATH or -).")]


def _client() -> Any:
    from auditor.cli.service import _client as client

    return client()


@waivers_app.command("add")
@handle_errors
def add(
    metric: Annotated[str, typer.Argument(help="The metric whose rules are waived (e.g. mode_coverage).")],
    reason: Annotated[str, typer.Option(help="Why: shown in every verdict it waives.")],
    project: ProjectOption = "default",
    audit: Annotated[
        str | None, typer.Option(help="Only this audit (its verdict is judged again now).")
    ] = None,
    days: Annotated[float, typer.Option(min=0.001, max=365, help="How long it lasts.")] = 30.0,
    json_out: JsonOption = None,
) -> None:
    """Waive METRIC's rules for the project's audits (or one audit); prints the waiver's id."""
    with _client() as client:
        waiver = client.add_waiver(project, metric, reason, days=days, audit_id=audit)
    if json_out:
        write_json(waiver, json_out)
    typer.echo(waiver["id"])
    scope = f"audit {waiver['audit_id']}" if waiver.get("audit_id") else f"project {project}"
    stderr.print(f"{metric} waived for {scope} until {waiver['expires_at']}", highlight=False)


@waivers_app.command("list")
@handle_errors
def list_(
    project: ProjectOption = "default",
    active: Annotated[bool, typer.Option("--active", help="Only those in force.")] = False,
    json_out: JsonOption = None,
) -> None:
    """The project's waivers, newest first (the whole history unless --active)."""
    with _client() as client:
        waivers = client.waivers(project, active=active)
    if json_out:
        write_json({"waivers": waivers}, json_out)
    console = stderr if json_out == "-" else Console()
    table = Table(title=f"waivers of project {project}", title_justify="left")
    for column in ("id", "metric", "scope", "reason", "by", "expires", "state"):
        table.add_column(column)
    for waiver in waivers:
        state = "active" if waiver["active"] else ("revoked" if waiver["revoked_at"] else "expired")
        table.add_row(
            waiver["id"][:12],
            waiver["metric"],
            f"audit {waiver['audit_id'][:12]}" if waiver.get("audit_id") else "project",
            escape(waiver["reason"]),
            escape(waiver["created_by"]),
            str(waiver["expires_at"])[:19],
            state,
        )
    if json_out != "-":
        console.print(table)


@waivers_app.command("revoke")
@handle_errors
def revoke(
    waiver_id: Annotated[str, typer.Argument(help="The waiver's id.")],
    project: ProjectOption = "default",
) -> None:
    """Revoke a waiver (it stays in the history)."""
    with _client() as client:
        client.revoke_waiver(project, waiver_id)
    stderr.print(f"waiver {waiver_id} revoked", highlight=False)
