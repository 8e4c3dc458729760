"""CLI verbs of the service: run it (``serve``, ``worker``, ``db upgrade``, ``keys create``) and use it
from pipelines (``submit``, ``wait``, ``gate``: exit 0 passed, 1 gate failed, 2 error)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from auditor.cli.common import handle_errors, print_document, stderr, write_json
from auditor.config import Settings, get_settings
from auditor.errors import AuditorError, BadInputError, ServiceUnavailableError

GATE_PASSED, GATE_FAILED, GATE_ERROR = 0, 1, 2

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


# --- running the service ---------------------------------------------------------------------------------


@contextmanager
def reachable_database(url: str) -> Iterator[None]:
    """Turn "cannot connect to the database" into one clear error (exit 3), not an internal error."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        where = make_url(url).render_as_string(hide_password=True)
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        raise ServiceUnavailableError(
            f"cannot use the database at {where}: {reason}. Start it, or point AUDITOR_DATABASE_URL at "
            "one that is reachable.",
            details={"database": where},
        ) from None


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600) from the first byte: a new file
    next to it, created 0600, then renamed over it (never a moment world-readable, never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _ensure_embedded_admin_key(settings: Settings, console: Console) -> None:
    """Embedded mode: make sure the local user has an admin key (written to AUDITOR_HOME/api.key)."""
    from auditor.db import access
    from auditor.service.context import ServiceContext

    path = settings.api_key_file()
    context = ServiceContext.from_settings(settings)
    try:
        with context.session() as session:
            if path.is_file() and access.count_admin_keys(session) > 0:
                try:
                    access.authenticate(session, path.read_text().strip())
                    return
                except AuditorError:
                    pass
            key = access.create_api_key(session, name="embedded admin", is_admin=True)
    finally:
        context.engine.dispose()
    write_private_file(path, key.secret + "\n")
    console.print(f"admin API key written to {path} (the client reads it from there)", highlight=False)


@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="API processes (with a broker only).")] = 1,
) -> None:
    """Run the HTTP API. Without AUDITOR_BROKER_URL audits run in this process (embedded mode)."""
    import uvicorn

    from auditor.api import create_app
    from auditor.db.migrate import ensure_database
    from auditor.service.context import ServiceContext
    from auditor.service.dispatch import CeleryDispatcher, InProcessDispatcher, Sweeper

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    console = Console(stderr=True)
    if settings.broker_url is None and workers > 1:
        raise BadInputError(
            "--workers > 1 needs AUDITOR_BROKER_URL: the embedded mode runs audits in-process"
        )
    url = settings.resolved_database_url()
    with reachable_database(url):
        if settings.broker_url is None and settings.auth_required:
            _ensure_embedded_admin_key(settings, console)
        # Migrate (and so reach the database) before listening: a server without its database would
        # only answer 503s.
        ensure_database(url)
    if workers > 1:
        # One process per worker, each with its own context (auditor.api.server.build_app).
        uvicorn.run(
            "auditor.api.server:build_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=False,
        )
        return
    context = ServiceContext.from_settings(settings, migrate=False)  # migrated above
    sweeper = sender = None
    if settings.broker_url is None:
        from auditor.service.webhooks import WebhookSender

        context.dispatcher = InProcessDispatcher(context)
        sweeper = Sweeper(context, settings.sweep_interval_s).start()
        sender = WebhookSender(context).start()  # with a broker, the workers send the webhooks
        console.print(f"embedded mode: in-process worker, database {settings.resolved_database_url()}")
    else:
        from workers.celery_app import app as celery_app

        context.dispatcher = CeleryDispatcher(celery_app)
    try:
        uvicorn.run(create_app(context), host=host, port=port, log_level="info", access_log=False)
    finally:
        if sweeper is not None:
            sweeper.stop()
        if sender is not None:
            sender.stop()


@handle_errors
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues: gpu, cpu.")] = "cpu",
    concurrency: Annotated[int, typer.Option(min=1, help="Processes (use 1 per GPU).")] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork | solo | threads.")] = "prefork",
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Run a Celery worker consuming QUEUES (needs AUDITOR_BROKER_URL)."""
    settings = get_settings()
    if settings.broker_url is None:
        raise BadInputError("auditor worker needs AUDITOR_BROKER_URL (e.g. redis://localhost:6379/0)")
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - {"gpu", "cpu"})
    if unknown or not names:
        raise BadInputError(f"unknown queue(s) {unknown or queues!r}; the queues are gpu and cpu")
    from workers.celery_app import app as celery_app

    celery_app.worker_main(
        [
            "worker",
            f"--queues={','.join(names)}",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--loglevel={loglevel}",
            f"--hostname={'-'.join(names)}@%h-{os.getpid()}",
        ]
    )


@db_app.command("upgrade")
@handle_errors
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the migrations (idempotent; safe to run from several processes at once)."""
    from auditor.db.migrate import current_revisions, upgrade_database

    url = get_settings().resolved_database_url()
    with reachable_database(url):
        upgrade_database(url, revision)
    typer.echo(f"database at {', '.join(current_revisions(url)) or 'base'}")


@keys_app.command("create")
@handle_errors
def keys_create(
    admin: Annotated[bool, typer.Option("--admin", help="An admin key (every project).")] = False,
    project: Annotated[str | None, typer.Option(help="Scope the key to this project.")] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from auditor.cli.common import Database
    from auditor.db import access

    if admin == (project is not None):
        raise BadInputError("give exactly one of --admin or --project NAME")
    settings = get_settings()
    with reachable_database(settings.resolved_database_url()), Database(settings).scope() as session:
        key = access.create_api_key(session, name=name, is_admin=admin, project=project)
    stderr.print(
        f"{'admin' if admin else f'project {project!r}'} key {key.prefix} (shown once):", highlight=False
    )
    typer.echo(key.secret)


@keys_app.command("revoke")
@handle_errors
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (sda_xxxxxxxx), as `keys create` printed.")],
) -> None:
    """Revoke an API key: refused by every API process within about a second."""
    from auditor.cli.common import Database
    from auditor.db import access

    settings = get_settings()
    with reachable_database(settings.resolved_database_url()), Database(settings).scope() as session:
        access.revoke_api_key(session, prefix)
    stderr.print(f"key {prefix} revoked", highlight=False)


# --- using the service from pipelines -------------------------------------------------------------------


def _client() -> Any:
    from auditor.client import AuditorClient

    settings = get_settings()
    return AuditorClient(settings.api_url, api_key=settings.resolved_api_key())


def _exit_for(audit: dict[str, Any]) -> int:
    if audit["state"] != "succeeded":
        return GATE_ERROR
    return GATE_FAILED if audit.get("passed") is False else GATE_PASSED


def _report_final(audit: dict[str, Any], json_out: str | None) -> int:
    console = stderr if json_out == "-" else Console()
    if audit["state"] == "succeeded" and audit.get("result"):
        print_document(console, audit["result"])
    else:
        error = audit.get("error") or {}
        stderr.print(
            f"audit {audit['id']} {audit['state']}"
            + (f": [{error.get('code')}] {error.get('message')}" if error else ""),
            highlight=False,
            markup=False,
        )
    if json_out:
        write_json(audit.get("result") or audit, json_out)
    return _exit_for(audit)


def _show_progress(audit: dict[str, Any], last: dict[str, Any]) -> None:
    stages = ", ".join(
        f"{stage} {value.get('done')}/{value.get('total') if value.get('total') is not None else '?'}"
        for stage, value in (audit.get("progress") or {}).items()
    )
    line = f"{audit['state']}" + (f" ({stages})" if stages else "")
    if line != last.get("line"):
        stderr.print(f"audit {audit['id'][:12]}: {line}", highlight=False, markup=False)
        last["line"] = line


def _wait(audit_id: str, timeout: float | None, poll: float) -> dict[str, Any]:
    last: dict[str, Any] = {}
    with _client() as client:
        return dict(
            client.wait(audit_id, timeout=timeout, poll_s=poll, on_update=lambda a: _show_progress(a, last))
        )


@handle_errors
def submit(
    real: Annotated[str, typer.Option("--real", help="Real dataset reference (as the service sees it).")],
    synthetic: Annotated[str, typer.Option("--synthetic", help="Synthetic dataset reference.")],
    holdout: Annotated[str | None, typer.Option(help="Real holdout reference.")] = None,
    extractor: Annotated[str, typer.Option()] = "precomputed",
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metrics (default: all).")] = None,
    nearest_k: Annotated[int, typer.Option("--nearest-k", min=1)] = 5,
    bootstrap: Annotated[int, typer.Option(min=0)] = 200,
    seed: Annotated[int, typer.Option()] = 0,
    policy: Annotated[Path | None, typer.Option(help="Gate policy YAML, sent inline.")] = None,
    policy_name: Annotated[str | None, typer.Option(help="A stored policy of the project.")] = None,
    project: Annotated[str, typer.Option()] = "default",
    parent: Annotated[str | None, typer.Option(help="Parent audit id (lineage).")] = None,
    generation: Annotated[int | None, typer.Option(min=0)] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Tag (repeatable).")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Retrying with the same key returns the same audit.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the verdict; exit 0/1/2 as `gate`.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after this many seconds.")
    ] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="With --wait: write the document.")] = None,
    previews: Annotated[
        bool,
        typer.Option(
            "--previews/--no-previews",
            help="Keep previews of the report's gallery samples (real data) with the audit.",
        ),
    ] = True,
) -> None:
    """Submit an audit to the API; prints its id on stdout (for `ID=$(auditor submit ...)`)."""
    from auditor.policy import Policy

    params: dict[str, Any] = {"nearest_k": nearest_k, "bootstrap": bootstrap, "seed": seed}
    if metrics:
        params["metrics"] = [m.strip() for m in metrics.split(",") if m.strip()]
    body: dict[str, Any] = {
        "project": project,
        "real": {"uri": real},
        "synthetic": {"uri": synthetic},
        "holdout": {"uri": holdout} if holdout else None,
        "extractor": extractor,
        "params": params,
        "policy": Policy.from_yaml(policy).model_dump(mode="json") if policy else None,
        "policy_name": policy_name,
        "parent_audit_id": parent,
        "generation": generation,
        "tags": tag or [],
        "previews": previews,
    }
    with _client() as client:
        audit = client.submit(body, idempotency_key=idempotency_key)
    typer.echo(audit["id"])
    if wait:
        raise typer.Exit(_report_final(_wait(audit["id"], timeout, 1.0), json_out))


@handle_errors
def wait(
    audit_id: Annotated[str, typer.Argument(help="Audit id.")],
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 3).")] = None,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 1.0,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the result document (PATH or -).")
    ] = None,
) -> None:
    """Wait for an audit to finish; exit 0 passed, 1 gate failed, 2 failed or cancelled."""
    raise typer.Exit(_report_final(_wait(audit_id, timeout, poll), json_out))


@handle_errors
def gate(
    audit_id: Annotated[str, typer.Argument(help="Audit id.")],
    timeout: Annotated[
        float | None, typer.Option(help="Wait at most this long (exit 3 when exceeded).")
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Do not wait: an unfinished audit exits 2.")
    ] = False,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="text (a table), json, junit (JUnit XML: Jenkins, GitLab), markdown (PR comments), "
            "github (annotations; Markdown appended to $GITHUB_STEP_SUMMARY).",
        ),
    ] = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here instead of stdout.")
    ] = None,
) -> None:
    """The verdict as an exit code for pipelines: 0 pass, 1 fail, 2 error (failed, cancelled, unknown)."""
    from auditor.gates.output import FORMATS, GateOutcome, append_step_summary, render

    if output_format not in FORMATS:
        raise BadInputError(f"unknown --format {output_format!r}; one of {', '.join(FORMATS)}")
    if no_wait:
        with _client() as client:
            audit = client.get(audit_id)
    else:
        audit = _wait(audit_id, timeout, 1.0)
    outcome = GateOutcome.from_audit(audit)
    text = render(outcome, output_format)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        stderr.print(
            f"{outcome.audit_id} {outcome.state} gate={outcome.verdict} -> {output}", highlight=False
        )
    if output_format == "github":
        append_step_summary(outcome)
    raise typer.Exit(outcome.exit_code)
