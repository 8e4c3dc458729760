"""``auditor webhooks add|list|remove|deliveries``: a project's webhooks, through the API.

Client verbs (``AUDITOR_API_URL``, ``AUDITOR_API_KEY``, like ``auditor submit``): they import nothing
heavy. The signing secret is printed once, by ``add``, when the server generated it; pass your own with
``--secret-file`` (``-`` reads stdin) to keep it off the terminal and out of the process list.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from auditor.cli.common import handle_errors, stderr, write_json
from auditor.errors import BadInputError

webhooks_app = typer.Typer(help="Webhooks: audit events POSTed to your URL, signed.", no_args_is_help=True)

ProjectOption = Annotated[str, typer.Option(help="The project.")]
JsonOption = Annotated[str | None, typer.Option("--json", help="Write the answer as JSON (PATH or -).")]


def _client() -> Any:
    from auditor.cli.service import _client as client

    return client()


def _read_secret(path: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise BadInputError(f"cannot read the secret file {path}: {exc.strerror or exc}") from None
    secret = text.strip()
    if not secret:
        raise BadInputError(f"the secret file {path} is empty")
    return secret


@webhooks_app.command("add")
@handle_errors
def add(
    url: Annotated[str, typer.Argument(help="Where to POST the events (https://...).")],
    project: ProjectOption = "default",
    event: Annotated[
        list[str] | None,
        typer.Option(help="audit.succeeded, audit.failed or gate.failed (repeatable; default: all)."),
    ] = None,
    secret_file: Annotated[
        str | None, typer.Option(help="Read the signing secret from this file (- for stdin).")
    ] = None,
    json_out: JsonOption = None,
) -> None:
    """Subscribe URL to the project's audit events; prints the webhook's id (and a generated secret)."""
    secret = _read_secret(secret_file) if secret_file is not None else None
    with _client() as client:
        webhook = client.add_webhook(project, url, events=event or None, secret=secret)
    if json_out:
        write_json(webhook, json_out)
        return
    typer.echo(webhook["id"])
    stderr.print(
        f"webhook {webhook['id']} of project {webhook['project']!r}: {', '.join(webhook['events'])} -> "
        f"{webhook['url']}",
        highlight=False,
        markup=False,
    )
    if secret is None:
        stderr.print("signing secret (shown once, store it now):", highlight=False)
        typer.echo(webhook["secret"])


@webhooks_app.command("list")
@handle_errors
def list_(project: ProjectOption = "default", json_out: JsonOption = None) -> None:
    """The project's webhooks (without their secrets)."""
    with _client() as client:
        webhooks = client.webhooks(project)
    if json_out:
        write_json({"webhooks": webhooks}, json_out)
        return
    table = Table(title=f"Webhooks of {project}", title_justify="left")
    for column in ("id", "url", "events", "created"):
        table.add_column(column)
    for webhook in webhooks:
        table.add_row(
            webhook["id"],
            escape(webhook["url"]),
            ", ".join(webhook["events"]),
            str(webhook["created_at"])[:19].replace("T", " "),
        )
    Console().print(table)


@webhooks_app.command("remove")
@handle_errors
def remove(
    webhook_id: Annotated[str, typer.Argument(help="The webhook's id.")], project: ProjectOption = "default"
) -> None:
    """Unsubscribe: nothing more is sent (pending deliveries included)."""
    with _client() as client:
        client.remove_webhook(project, webhook_id)
    stderr.print(f"webhook {webhook_id} removed", highlight=False)


def _attempts(delivery: dict[str, Any]) -> str:
    return ", ".join(
        str(attempt["status_code"] or attempt["error_code"] or "in flight")
        for attempt in delivery["attempts"]
    )


@webhooks_app.command("deliveries")
@handle_errors
def deliveries(
    webhook_id: Annotated[str, typer.Argument(help="The webhook's id.")],
    project: ProjectOption = "default",
    state: Annotated[str | None, typer.Option(help="pending | delivered | failed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    json_out: JsonOption = None,
) -> None:
    """The webhook's deliveries, newest first, with every attempt's outcome."""
    with _client() as client:
        rows = client.webhook_deliveries(project, webhook_id, state=state, limit=limit)
    if json_out:
        write_json({"deliveries": rows}, json_out)
        return
    table = Table(title=f"Deliveries of webhook {webhook_id}", title_justify="left")
    for column in ("delivery", "event", "audit", "state", "attempts", "last error", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"],
            row["event"],
            row["audit_id"][:12],
            row["state"],
            escape(_attempts(row)),
            escape(row["last_error"] or ""),
            str(row["created_at"])[:19].replace("T", " "),
        )
    Console().print(table)
