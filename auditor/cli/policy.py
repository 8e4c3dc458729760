"""``auditor policy``: help with gate policies (``suggest``: a starting policy from an audit)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from auditor.cli.common import handle_errors, stderr
from auditor.config import get_settings
from auditor.errors import BadInputError

policy_app = typer.Typer(help="Gate policies.", no_args_is_help=True)


def _document(audit_id: str, server: bool) -> dict[str, Any]:
    if server:
        from auditor.cli.service import _client

        with _client() as client:
            audit = client.get(audit_id)
        document, state = audit.get("result"), audit["state"]
    else:
        from auditor.cli.common import Database
        from auditor.db import queries

        with Database(get_settings()).scope() as session:
            row = queries.get_audit(session, audit_id)
            document, state = row.result, row.state
    if not document:
        raise BadInputError(f"audit {audit_id} is {state}: a policy is suggested from a finished audit")
    return dict(document)


@policy_app.command("suggest")
@handle_errors
def suggest(
    from_audit: Annotated[
        str, typer.Option("--from", help="An audit with a real holdout (its id or a unique prefix).")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the policy here instead of stdout.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The policy's name.")] = None,
    server: Annotated[
        bool, typer.Option("--server", help="Ask the API at AUDITOR_API_URL, not the local database.")
    ] = False,
) -> None:
    """Write a starting policy: per metric, the holdout's value moved by the metric's interval width."""
    from auditor.gates.suggest import suggest_policy_yaml

    text = suggest_policy_yaml(_document(from_audit, server), name=name)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        stderr.print(f"policy written to {output}", highlight=False)
