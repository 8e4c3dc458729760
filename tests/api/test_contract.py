"""The OpenAPI document is the API's contract: schemathesis checks the live server against it, both ways.

The server (uvicorn on loopback, PostgreSQL: the backend with the strictest types) is tested the way
``st run --checks all`` would, through schemathesis's engine: the examples, coverage, fuzzing and
stateful phases (the stateful phase follows the document's links: a created project, policy, key or
audit is read back, and a revoked key is gone), with every check: no server error, documented status
codes, content types, headers and bodies, schema-violating requests refused, schema-valid ones accepted,
method handling (405 with ``Allow``), authentication enforced, resources available after creation and
gone after deletion. Once with an admin key and once with a project key (most of whose requests are
refused with 403: those answers must be documented too).

Generation is deterministic (``generation.deterministic``: hypothesis's derandomize; schemathesis runs
hypothesis with no deadline), so CI tests the same requests on every run; ``max-examples`` bounds each
operation's fuzzing, which keeps the whole test at about a minute on two cores.

What no schema can say about a submit, and the ``filter_failure`` hook below forgives (only these, each
after checking the reason against the request): a policy's rules must read metrics the audit computes,
and rules on intervals need bootstrap (422 ``invalid_policy``, a rule across fields); and a reference
that names something on the server the extractor cannot read, e.g. a directory (of images) for the
tabular extractor (422 ``wrong_modality`` / ``dataset_format``): like the 404 for a reference that names
nothing, it depends on the server's files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helpers.databases import PostgresServer
from helpers.services import ApiServer

from auditor.config import Settings
from auditor.db import access
from auditor.db.migrate import upgrade_database
from auditor.service.context import ServiceContext
from auditor.service.dispatch import InProcessDispatcher

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.engine import events  # noqa: E402  (after the importorskip)
from schemathesis.engine import from_schema as engine_for  # noqa: E402

SEED = 20_241_123
# Fuzzed requests per operation and per phase; with the coverage and stateful phases, about 2,500
# requests per identity.
MAX_EXAMPLES = 100
STATEFUL_MAX_STEPS = 20
STATEFUL_MAX_EXAMPLES = 40


@dataclass
class ContractServer:
    url: str
    keys: dict[str, str]


@pytest.fixture(scope="module")
def contract_server(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContractServer]:
    from auditor.api import create_app

    home = tmp_path_factory.mktemp("contract")
    url = postgres_server.create_database("auditor_contract")
    upgrade_database(url)
    # Every IPv4 address allowed for webhooks: the generated hosts are numbers (0, 1.2, ...) or names this
    # machine cannot resolve, and without an allowed one no subscription is ever made, so the stateful
    # phase could not read back or delete one. (No sender runs here: nothing is ever sent.)
    settings = Settings(
        database_url=url, home=home / "home", data_roots=str(home), webhook_allow_hosts="0.0.0.0/0"
    )
    context = ServiceContext.from_settings(settings, migrate=False)
    dispatcher = InProcessDispatcher(context)
    context.dispatcher = dispatcher
    with context.session() as session:
        keys = {
            "admin": access.create_api_key(session, name="contract admin", is_admin=True).secret,
            "project": access.create_api_key(session, name="contract project", project="alpha").secret,
        }
    try:
        with ApiServer(create_app(context)) as server:
            yield ContractServer(url=server.url, keys=keys)
    finally:
        dispatcher.close()
        context.engine.dispose()
        postgres_server.drop_database(url)


def _forgive_state_dependent(_: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but the two refusals of a schema-valid submit the module docstring lists."""
    if case.operation.label != "POST /v1/audits" or failure.code != "ST202" or response.status_code != 422:
        return True
    error = json.loads(response.content).get("error", {})
    body = case.body if isinstance(case.body, dict) else {}
    details = error.get("details", {})
    if error.get("code") in ("wrong_modality", "dataset_format"):
        uris = {side["uri"] for side in (body.get(name) for name in ("real", "synthetic", "holdout")) if side}
        return details.get("uri") not in uris and details.get("path") is None
    if error.get("code") != "invalid_policy":
        return True
    params = body.get("params") or {}
    policy = body.get("policy")
    if policy is None:  # a stored policy (policy_name): its rules are the server's state
        return body.get("policy_name") is None
    rules = policy.get("rules", [])
    if "missing_metrics" in details:
        asked = set(params.get("metrics") or [])
        return sorted({rule["metric"] for rule in rules} - asked) != details["missing_metrics"]
    no_bootstrap = params.get("bootstrap", 1) == 0 and params.get("spectral_bootstrap", 1) == 0
    on_intervals = any(rule.get("on", "value") != "value" for rule in rules)
    return not (no_bootstrap and on_intervals)


def run_contract(server: ContractServer, identity: str) -> tuple[int, list[str]]:
    """Every phase against the server as ``identity``: (requests generated, failures and errors)."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {server.keys[identity]}"},
            "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {
                "stateful": {
                    "max-steps": STATEFUL_MAX_STEPS,
                    "generation": {"max-examples": STATEFUL_MAX_EXAMPLES},
                }
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
    schema.hook("filter_failure")(_forgive_state_dependent)
    problems: list[str] = []
    generated = 0
    for event in engine_for(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            generated += len(event.recorder.cases)
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        problems.append(
                            f"{event.label} [{failure.code} {node.name}] {failure.title}: {failure.message}\n"
                            f"    {node.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: error {event.value!r}")
        elif isinstance(event, events.FatalError):
            problems.append(f"fatal error {event.exception!r}")
    return generated, sorted(set(problems))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("identity", ["admin", "project"])
def test_the_server_does_what_its_openapi_document_says(
    contract_server: ContractServer, identity: str
) -> None:
    generated, problems = run_contract(contract_server, identity)
    assert generated > 500, f"only {generated} requests generated"
    assert not problems, f"{len(problems)} contract failures:\n" + "\n".join(problems)
