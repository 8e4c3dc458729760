"""What every command shares: error handling, the database, result printing."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from auditor.config import Settings
from auditor.errors import AuditorError, StorageFullError
from auditor.gates.output import rule_message
from auditor.metrics import METRICS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

P = ParamSpec("P")
R = TypeVar("R")

stderr = Console(stderr=True)


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn auditor errors into one clear line and the documented exit code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except AuditorError as exc:
            stderr.print(
                f"[bold red]error[/] {escape(f'[{exc.code}]')}: {escape(exc.message)}", highlight=False
            )
            raise typer.Exit(exc.exit_code) from None
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            stderr.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            # A full disk under the CLI's own stores (the SQLite database in AUDITOR_HOME, an output
            # file) is an operator problem, not a bug: storage_full, exit 3, naming what is full.
            full = StorageFullError.from_exception(exc)
            if full is not None:
                stderr.print(
                    f"[bold red]error[/] {escape(f'[{full.code}]')}: {escape(full.message)}", highlight=False
                )
                raise typer.Exit(full.exit_code) from None
            if os.environ.get("AUDITOR_DEBUG"):
                raise
            stderr.print(
                f"[bold red]internal error[/]: {escape(f'{type(exc).__name__}: {exc}')}\n"
                "This is a bug in the auditor; rerun with AUDITOR_DEBUG=1 for the traceback and report it.",
                highlight=False,
            )
            raise typer.Exit(3) from None

    return wrapper


class Database:
    """The configured database, migrated to head on first use."""

    def __init__(self, settings: Settings) -> None:
        from auditor.db.migrate import ensure_database
        from auditor.db.session import make_engine, make_session_factory

        self.url = settings.resolved_database_url()
        ensure_database(self.url)
        self.engine = make_engine(self.url)
        self.factory = make_session_factory(self.engine)

    @contextmanager
    def scope(self) -> Iterator[Session]:
        from auditor.db.session import session_scope

        with session_scope(self.factory) as session:
            yield session


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def metrics_table(document: dict[str, Any]) -> Table:
    confidence = document.get("params", {}).get("confidence", 0.95)
    table = Table(title="Metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column(f"{confidence:.0%} interval", justify="right")
    table.add_column("holdout baseline", justify="right")
    table.add_column("better", justify="center")
    for name, m in document["metrics"].items():
        interval = (
            f"[{fmt(m.get('ci_low'))}, {fmt(m.get('ci_high'))}]" if m.get("ci_low") is not None else "—"
        )
        better = "↑" if METRICS[name].higher_is_better else "↓"
        table.add_row(name, fmt(m["value"]), interval, fmt(m.get("baseline")), better)
    return table


def print_verdict(console: Console, verdict: dict[str, Any]) -> None:
    if verdict.get("passed") is None:
        console.print("verdict: [dim]no policy[/]")
        return
    for rule in verdict["rules"]:
        colour = {"pass": "green", "warn": "yellow", "fail": "red", "waived": "blue"}[rule["outcome"]]
        console.print(
            f"  [{colour}]{rule['outcome'].upper():4}[/] {escape(rule_message(rule))}", highlight=False
        )
    for note in verdict.get("noise_floor") or []:
        console.print(f"  [yellow]noise floor[/]: {escape(note)}", highlight=False)
    label = "[bold green]PASSED[/]" if verdict["passed"] else "[bold red]FAILED[/]"
    console.print(f"verdict: {label} ({verdict['failed']} failed, {verdict['warned']} warned)")


def print_document(console: Console, document: dict[str, Any]) -> None:
    real, synth, hold = document["real"], document["synthetic"], document.get("holdout")
    lineage = document.get("lineage") or {}
    console.print(
        f"audit [bold]{document['audit_id']}[/]  project {document['project']}  "
        f"extractor {document['extractor']['name']}  device {document.get('device')}",
        highlight=False,
    )
    sizes = f"real n={real['n']}  synthetic n={synth['n']}" + (f"  holdout n={hold['n']}" if hold else "")
    console.print(
        f"{sizes}  d={real['dim']}  protocol {document['protocol']['fingerprint']}", highlight=False
    )
    if lineage.get("generation") is not None or lineage.get("parent_audit_id"):
        console.print(f"generation {lineage.get('generation')}  parent {lineage.get('parent_audit_id')}")
    console.print(metrics_table(document))
    for warning in document.get("warnings", []):
        console.print(f"[yellow]warning[/]: {escape(warning['message'])}", highlight=False)
    print_verdict(console, document["verdict"])


def write_json(document: dict[str, Any], target: str) -> None:
    text = json.dumps(document, indent=2, sort_keys=False, default=str)
    if target == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        Path(target).write_text(text + "\n")
