"""Deployment files against the code: Dockerfile, docker-compose, Kubernetes manifests (kustomize).

No Docker or cluster here, so these tests read the files and check what would break a deployment:
every file parses; every ``auditor`` command the containers run exists in the real Typer app, with
options it accepts and values it can convert; every ``AUDITOR_*`` variable is a field of
:class:`auditor.config.Settings` and the configured values validate; compose dependencies, GPU
reservations and volumes are well formed; kustomize references resolve; selectors match pod labels;
KEDA watches the Redis lists of the queues the workers consume; the image pins torch and runs as non-root.

The Kubernetes checks run on the base and on every overlay, rendered by :func:`render_kustomization`, a
deliberately small subset of kustomize (resources, path patches with strategic-merge-by-name for core
kinds, list replacement for custom resources, ``$patch: delete``): enough for these manifests, and it
fails loudly on anything it does not understand rather than guessing.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.util
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "deploy" / "compose" / "docker-compose.cpu.yml"
COMPOSE_ENV_EXAMPLE = ROOT / "deploy" / "compose" / "env.example"
COMPOSE_SMOKE = ROOT / "deploy" / "smoke" / "docker-compose.smoke.yml"
SMOKE_SCRIPT = ROOT / "deploy" / "smoke.sh"
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DEPLOY_README = DEPLOY / "README.md"

# Subcommands the deployment may run: (path in the Typer app).
ALLOWED_AUDITOR_COMMANDS = {("serve",), ("worker",), ("db", "upgrade"), ("keys", "create")}
# Invocations the docs tell operators to run by hand (bootstrap); checked against the app like the rest.
DOCUMENTED_INVOCATIONS = [["auditor", "keys", "create", "--admin"]]
QUEUES = {"gpu", "cpu"}
IMAGE_UID = 10001
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
AUDITOR_VAR = re.compile(r"\bAUDITOR_[A-Z0-9_]+\b")
INTERPOLATION = re.compile(r"\$\{([A-Za-z0-9_]+)(?::?-([^}]*))?\}")


# --------------------------------------------------------------------------------------------------------
# Loading


def load_docs(path: Path) -> list[Any]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def deploy_yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())


@functools.cache
def compose() -> dict[str, Any]:
    return load_docs(COMPOSE)[0]


@functools.cache
def compose_cpu_override() -> dict[str, Any]:
    return load_docs(COMPOSE_CPU)[0]


@functools.cache
def compose_smoke_override() -> dict[str, Any]:
    return load_docs(COMPOSE_SMOKE)[0]


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with an empty environment: the default (or empty)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def argv(command: Any) -> list[str]:
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(interpolate(command))
    return [interpolate(str(part)) for part in command]


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def merge_compose(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The compose merge rules these files rely on: mappings merge, `command` is replaced, profiles append."""
    merged = copy.deepcopy(base)
    for name, patch in (override.get("services") or {}).items():
        assert name in merged["services"], f"override names service {name!r} that the base file lacks"
        service = merged["services"][name]
        for key, value in patch.items():
            if key == "profiles":
                service["profiles"] = [*service.get("profiles", []), *value]
            elif isinstance(value, dict) and isinstance(service.get(key), dict):
                service[key] = {**service[key], **value}
            else:
                service[key] = copy.deepcopy(value)
    return merged


def active_services(config: dict[str, Any], profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        name: svc
        for name, svc in config["services"].items()
        if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)
    }


# --------------------------------------------------------------------------------------------------------
# A small kustomize


def is_custom_resource(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    return "." in group and not group.endswith("k8s.io")


def strategic_merge(target: Any, patch: Any, custom: bool) -> Any:
    if isinstance(target, dict) and isinstance(patch, dict):
        out = dict(target)
        for key, value in patch.items():
            out[key] = strategic_merge(target[key], value, custom) if key in target else copy.deepcopy(value)
        return out
    named = (
        not custom
        and isinstance(target, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in [*target, *patch])
    )
    if named:
        out = list(target)
        for item in patch:
            index = next((i for i, old in enumerate(out) if old["name"] == item["name"]), None)
            if index is None:
                out.append(copy.deepcopy(item))
            else:
                out[index] = strategic_merge(out[index], item, custom)
        return out
    return copy.deepcopy(patch)


def apply_patch(objects: list[dict[str, Any]], patch: dict[str, Any], target: dict[str, Any] | None) -> None:
    def matches(obj: dict[str, Any]) -> bool:
        if target is not None:
            return all(
                obj.get("kind") == v if k == "kind" else obj["metadata"].get(k) == v
                for k, v in target.items()
                if k in {"kind", "name"}
            )
        return obj["kind"] == patch["kind"] and obj["metadata"]["name"] == patch["metadata"]["name"]

    hits = [i for i, obj in enumerate(objects) if matches(obj)]
    assert hits, f"patch {patch['kind']}/{patch['metadata'].get('name')} matches no resource"
    if patch.get("$patch") == "delete":
        for index in reversed(hits):
            del objects[index]
        return
    body = {k: v for k, v in patch.items() if k not in {"apiVersion", "kind", "metadata"}}
    for index in hits:
        obj = objects[index]
        objects[index] = {**obj, **strategic_merge(obj, body, is_custom_resource(obj))}


@functools.cache
def render_kustomization(directory: Path) -> tuple[dict[str, Any], ...]:
    kust = load_docs(directory / "kustomization.yaml")[0]
    supported = {
        "apiVersion",
        "kind",
        "namespace",
        "resources",
        "patches",
        "images",
        "secretGenerator",
        "configMapGenerator",
    }
    assert set(kust) <= supported, (
        f"{directory}: kustomization fields not modelled here: {set(kust) - supported}"
    )
    objects: list[dict[str, Any]] = []
    for resource in kust.get("resources", []):
        path = (directory / resource).resolve()
        objects += copy.deepcopy(list(render_kustomization(path))) if path.is_dir() else load_docs(path)
    for entry in kust.get("patches", []):
        assert "path" in entry, f"{directory}: inline patches are not modelled here"
        for patch in load_docs(directory / entry["path"]):
            apply_patch(objects, patch, entry.get("target"))
    if "namespace" in kust:
        for obj in objects:
            if obj["kind"] != "Namespace":
                obj["metadata"]["namespace"] = kust["namespace"]
    return tuple(objects)


def kustomize_targets() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def target_id(path: Path) -> str:
    return str(path.relative_to(K8S))


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any] | None:
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"] if obj["kind"] in WORKLOAD_KINDS else obj["spec"]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def is_auditor_workload(obj: dict[str, Any]) -> bool:
    return obj["kind"] in WORKLOAD_KINDS and any(
        c["image"].split("/")[-1].startswith("synthetic-data-auditor") for c in containers(obj)
    )


def queues_of(command: list[str]) -> set[str]:
    for i, token in enumerate(command):
        if token == "--queues":
            return set(command[i + 1].split(","))
        if token.startswith("--queues="):
            return set(token.split("=", 1)[1].split(","))
    return set()


def all_k8s_objects() -> Iterator[tuple[str, dict[str, Any]]]:
    for target in kustomize_targets():
        for obj in render_kustomization(target):
            yield target_id(target), obj


# --------------------------------------------------------------------------------------------------------
# Every command a container runs


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            keyword, _, rest = current.strip().partition(" ")
            lines.append((keyword.upper(), rest.strip()))
        current = ""
    return lines


def all_commands() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for config_name, config in (
        ("docker-compose.yml", compose()),
        ("docker-compose.cpu.yml", compose_cpu_override()),
        ("docker-compose.smoke.yml", compose_smoke_override()),
    ):
        for name, service in config["services"].items():
            if service.get("command") is not None:
                found.append((f"{config_name}:{name}", argv(service["command"])))
    for target, obj in all_k8s_objects():
        if obj["kind"] in WORKLOAD_KINDS or obj["kind"] == "Pod":
            for c in containers(obj):
                command = [*c.get("command", []), *c.get("args", [])]
                if command:
                    found.append(
                        (f"{target}:{obj['metadata']['name']}/{c['name']}", [str(x) for x in command])
                    )
    for keyword, rest in dockerfile_instructions():
        if keyword == "CMD":
            found.append(("Dockerfile:CMD", json.loads(rest)))
    return found


def auditor_commands() -> list[tuple[str, list[str]]]:
    return [(where, cmd) for where, cmd in all_commands() if cmd and cmd[0] == "auditor"]


def is_group(command: Any) -> bool:
    # Duck-typed: Typer builds click objects, from click itself or from its vendored copy (typer._click).
    return isinstance(getattr(command, "commands", None), dict)


@functools.cache
def cli_root() -> Any:
    """The command tree of the console script: a click Group whose `.commands` nest (`db`, `keys`)."""
    import typer

    from auditor.cli.main import app

    command = typer.main.get_command(app)
    assert is_group(command), f"auditor.cli.main.app is not a command group: {command!r}"
    return command


def resolve(command: list[str]) -> tuple[tuple[str, ...], Any, list[str]]:
    """Walk `auditor a b ...` down the click tree: (subcommand path, command or None, remaining args)."""
    node = cli_root()
    path: list[str] = []
    rest = command[1:]
    while rest and not rest[0].startswith("-") and is_group(node):
        child = node.commands.get(rest[0])
        path.append(rest[0])
        rest = rest[1:]
        if child is None:
            return tuple(path), None, rest
        node = child
    return tuple(path), node, rest


def check_options(where: str, path: tuple[str, ...], command: Any, args: list[str]) -> None:
    """Every --option exists on the command, and the app's own parser accepts the arguments.

    ``make_context`` parses and converts every value with the option's type (an int concurrency, a
    choice of queues, ...) without running the command.
    """
    params = {opt for p in command.params for opt in p.opts if opt.startswith("-")}
    for token in args:
        if token.startswith("-"):
            name = token.partition("=")[0]
            assert name in params, (
                f"{where}: `auditor {' '.join(path)}` has no option {name} (has: {sorted(params)})"
            )
    try:
        command.make_context(" ".join(["auditor", *path]), list(args))
    except Exception as exc:  # click's UsageError / BadParameter, from click or typer's vendored copy
        pytest.fail(f"{where}: `auditor {' '.join(path)} {' '.join(args)}` is rejected by the CLI: {exc}")


# --------------------------------------------------------------------------------------------------------
# Files parse


@pytest.mark.parametrize(
    "path",
    [COMPOSE, *deploy_yaml_files()],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_yaml_file_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
    if K8S in path.parents and path.name != "kustomization.yaml":
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path}: not a Kubernetes object: {doc}"
            assert doc["metadata"].get("name"), f"{path}: object without a name"


def test_deploy_tree_has_the_expected_pieces() -> None:
    assert DOCKERFILE.is_file() and DOCKERIGNORE.is_file() and DEPLOY_README.is_file()
    assert (K8S / "base" / "kustomization.yaml").is_file()
    assert [p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file()]


# --------------------------------------------------------------------------------------------------------
# Commands and settings against the code


def test_the_service_subcommands_are_registered_in_the_typer_app() -> None:
    root = cli_root()
    missing = []
    for path in sorted(ALLOWED_AUDITOR_COMMANDS):
        resolved, command, _ = resolve(["auditor", *path])
        if command is None or resolved != path or is_group(command):
            missing.append(" ".join(path))
    assert not missing, (
        f"subcommands the deployment runs are not in auditor.cli.main.app: {missing} "
        f"(top-level commands now: {sorted(root.commands)})"
    )


def test_every_auditor_command_in_the_deployment_exists_with_its_options() -> None:
    commands = auditor_commands() + [("deploy/README.md", cmd) for cmd in DOCUMENTED_INVOCATIONS]
    assert len(commands) >= 8, commands
    for where, cmd in commands:
        path, command, rest = resolve(cmd)
        assert path in ALLOWED_AUDITOR_COMMANDS, (
            f"{where}: `{' '.join(cmd)}` is not one of the service commands"
        )
        assert command is not None, f"{where}: `auditor {' '.join(path)}` is not registered in the Typer app"
        check_options(where, path, command, rest)


def test_documented_invocations_are_in_the_docs() -> None:
    text = DEPLOY_README.read_text() + COMPOSE.read_text()
    for cmd in DOCUMENTED_INVOCATIONS:
        assert " ".join(cmd) in text


def test_the_commands_cover_every_service_role() -> None:
    paths = {resolve(cmd)[0] for _, cmd in auditor_commands()}
    assert {("serve",), ("worker",), ("db", "upgrade")} <= paths
    consumed = set().union(*(queues_of(cmd) for _, cmd in auditor_commands()))
    assert consumed == QUEUES


def test_flower_runs_the_celery_app_module() -> None:
    flower = argv(compose()["services"]["flower"]["command"])
    assert flower[:3] == ["celery", "-A", "workers.celery_app:app"] and "flower" in flower
    module = flower[2].split(":")[0]
    assert importlib.util.find_spec(module) is not None, f"Flower's Celery app module {module} does not exist"


def settings_fields() -> set[str]:
    from auditor.config import Settings

    return {f"AUDITOR_{name.upper()}" for name in Settings.model_fields}


def test_every_auditor_variable_in_the_deployment_files_is_a_settings_field() -> None:
    files = [
        DOCKERFILE,
        COMPOSE,
        COMPOSE_CPU,
        COMPOSE_ENV_EXAMPLE,
        DEPLOY_README,
        *deploy_yaml_files(),
        *DEPLOY.rglob("*.env.example"),
    ]
    used: dict[str, set[str]] = {}
    for path in files:
        for name in AUDITOR_VAR.findall(path.read_text()):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert {"AUDITOR_DATABASE_URL", "AUDITOR_BROKER_URL", "AUDITOR_ARTIFACT_ROOT"} <= set(used)
    unknown = {name: sorted(where) for name, where in used.items() if name not in settings_fields()}
    assert not unknown, f"AUDITOR_* variables that auditor.config.Settings does not read: {unknown}"


def _settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    from auditor.config import Settings

    for name in settings_fields():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if name.startswith("AUDITOR_"):
            monkeypatch.setenv(name, value)
    return Settings()


@pytest.mark.parametrize("service", ["api", "migrate", "worker-gpu", "worker-cpu", "flower"])
def test_compose_environment_validates_as_settings(monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    settings = _settings_from(monkeypatch, compose_env(compose()["services"][service]))
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.broker_url.startswith("redis://")


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_k8s_environment_validates_as_settings(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    objects = render_kustomization(target)
    config = find(objects, "ConfigMap", "auditor-config")
    secret = find(objects, "Secret", "auditor-secrets")
    assert config is not None and secret is not None
    env = {**config["data"], **secret.get("stringData", {})}
    settings = _settings_from(monkeypatch, env)
    assert str(settings.home) == "/var/lib/auditor"


# --------------------------------------------------------------------------------------------------------
# docker-compose


def test_compose_services_exist() -> None:
    services = compose()["services"]
    expected = {"postgres", "redis", "migrate", "api", "worker-gpu", "worker-cpu", "flower"}
    assert expected <= set(services)
    assert services["flower"].get("profiles") == ["flower"]
    default = set(active_services(compose()))
    assert default == expected - {"flower"}, "`docker compose up` alone must start the whole service"


def test_compose_start_order() -> None:
    services = compose()["services"]

    def deps(name: str) -> dict[str, str]:
        raw = services[name].get("depends_on") or {}
        return (
            {k: v["condition"] for k, v in raw.items()} if isinstance(raw, dict) else dict.fromkeys(raw, "")
        )

    assert deps("migrate") == {"postgres": "service_healthy"}
    assert argv(services["migrate"]["command"]) == ["auditor", "db", "upgrade"]
    assert services["migrate"].get("restart") == "no"
    for name in ("api", "worker-gpu", "worker-cpu"):
        assert deps(name).get("migrate") == "service_completed_successfully", name
        assert deps(name).get("redis") == "service_healthy", name
    for name in services:
        for dep, condition in deps(name).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if condition == "service_healthy":
                check = services[dep].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{dep} has no healthcheck to wait for"


def test_compose_healthchecks() -> None:
    services = compose()["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert any(str(p).endswith(":8000") for p in services["api"]["ports"])
    for name in ("worker-gpu", "worker-cpu", "migrate", "flower"):
        # The image's HEALTHCHECK probes the API port, which these containers do not serve.
        assert services[name]["healthcheck"] == {"disable": True}, name


def test_compose_gpu_reservation_is_well_formed() -> None:
    services = compose()["services"]
    gpu = services["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert argv(gpu["command"]) == [
        "auditor",
        "worker",
        "--queues",
        "gpu",
        "--concurrency",
        "1",
        "--pool",
        "solo",
    ]
    assert compose_env(gpu).get("AUDITOR_DEVICE") == "cuda"
    others = [n for n, s in services.items() if n != "worker-gpu" and "deploy" in s]
    assert not others, f"only the GPU worker reserves devices: {others}"


def test_compose_workers_shut_down_warm() -> None:
    for name in ("worker-gpu", "worker-cpu"):
        service = compose()["services"][name]
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM"
        grace = service["stop_grace_period"]
        assert grace.endswith("m") and int(grace[:-1]) >= 10, f"{name}: grace period {grace} < 10m"


def test_compose_worker_cpu_is_scalable() -> None:
    service = compose()["services"]["worker-cpu"]
    assert "container_name" not in service and "ports" not in service
    assert queues_of(argv(service["command"])) == {"cpu"}


def test_compose_volumes() -> None:
    config = compose()
    named = set(config["volumes"])
    for name in ("api", "worker-gpu", "worker-cpu"):
        service = config["services"][name]
        env = compose_env(service)
        mounts = {}
        for spec in service["volumes"]:
            parts = interpolate(spec).split(":")
            mounts[parts[1]] = (parts[0], parts[2:] == ["ro"])
        artifacts = mounts[env["AUDITOR_ARTIFACT_ROOT"]]
        assert artifacts == ("artifacts", False) and "artifacts" in named, name
        for root in env["AUDITOR_DATA_ROOTS"].split(":"):
            assert mounts[root][1], f"{name}: dataset root {root} must be mounted read-only"
        assert mounts[env["AUDITOR_WEIGHTS_DIR"]][1], f"{name}: weights must be mounted read-only"
    for service in config["services"].values():
        for spec in service.get("volumes", []):
            source = interpolate(spec).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in named, f"volume {source} is not declared at the top level"


def test_compose_cpu_override_runs_every_queue_without_a_gpu() -> None:
    merged = merge_compose(compose(), compose_cpu_override())
    services = active_services(merged)
    assert "worker-gpu" not in services
    reserving = [n for n, s in services.items() if "deploy" in s]
    assert not reserving, f"the CPU-only config still reserves devices: {reserving}"
    consumed = set().union(*(queues_of(argv(s.get("command"))) for s in services.values()))
    assert consumed == QUEUES
    assert {"postgres", "redis", "migrate", "api", "worker-cpu"} <= set(services)


def test_compose_builds_pin_the_dockerfile_torch() -> None:
    default = dockerfile_args()["TORCH_VERSION"]
    for name, service in compose()["services"].items():
        if "build" in service:
            assert service["build"]["args"]["TORCH_VERSION"] == default, name


# --------------------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_args() -> dict[str, str]:
    out = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            out[name] = value.strip('"')
    return out


def test_dockerfile_installs_torch_pinned_before_the_package() -> None:
    args = dockerfile_args()
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"]), args["TORCH_VERSION"]
    assert args["TORCH_VERSION"] == "2.13.0"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert {"service", "postgres"} <= set(args["EXTRAS"].split(","))
    runs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN" and "pip install" in rest]
    torch_run = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    package_run = next(i for i, r in enumerate(runs) if '".[${EXTRAS}]"' in r)
    assert torch_run < package_run
    assert '--index-url "${TORCH_INDEX_URL}"' in runs[torch_run]
    assert "-c /opt/torch-constraint.txt" in runs[package_run], (
        "the package install must keep the pinned torch"
    )
    for run in runs:
        assert run.count("pip install") == run.count("pip install --no-cache-dir"), (
            f"pip cache in a layer: {run}"
        )


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    instructions = dockerfile_instructions()
    args = dockerfile_args()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert '--uid "${UID}"' in DOCKERFILE.read_text() and int(args["UID"]) == IMAGE_UID
    last_from = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    last_user = max(i for i, (k, _) in enumerate(instructions) if k == "USER")
    assert last_user > last_from, "USER must be set in the final stage"
    health = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0] and ":8000" in health[0]
    cmd = json.loads(next(rest for keyword, rest in instructions if keyword == "CMD"))
    assert cmd[:2] == ["auditor", "serve"]
    assert "python:3.11" in args["BASE_IMAGE"]


def declared_extras() -> set[str]:
    tomllib = pytest.importorskip("tomllib")
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return set(tomllib.load(handle)["project"].get("optional-dependencies", {}))


def test_image_builds_ask_for_extras_the_package_declares() -> None:
    # pip only warns about an unknown extra and installs without it: the image would lack its dependencies.
    requested = {"Dockerfile": dockerfile_args()["EXTRAS"]}
    for name, service in compose()["services"].items():
        if "build" in service:
            requested[f"docker-compose.yml:{name}"] = interpolate(service["build"]["args"]["EXTRAS"])
    for where, extras in requested.items():
        unknown = set(extras.split(",")) - declared_extras()
        assert not unknown, f"{where}: extras {sorted(unknown)} are not in pyproject.toml"


def test_dockerignore_keeps_secrets_out_and_build_inputs_in() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for secret in (".env", ".git", ".venv", "secrets.env"):
        assert any(fnmatch.fnmatch(secret, p) for p in patterns), f"{secret} is not excluded"
    copied = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            copied += rest.split()[:-1]
    assert {"pyproject.toml", "README.md", "auditor", "workers", "migrations"} <= set(copied)
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not any(fnmatch.fnmatch(source, p) for p in patterns), (
            f"COPY {source} is excluded by .dockerignore"
        )


# --------------------------------------------------------------------------------------------------------
# Kubernetes


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_kustomization_references_exist(target: Path) -> None:
    kust = load_docs(target / "kustomization.yaml")[0]
    for resource in kust.get("resources", []):
        path = target / resource
        assert path.is_file() or (path / "kustomization.yaml").is_file(), (
            f"{target}: missing resource {resource}"
        )
    for patch in kust.get("patches", []):
        assert (target / patch["path"]).is_file(), f"{target}: missing patch {patch['path']}"
    for generator in kust.get("secretGenerator", []) + kust.get("configMapGenerator", []):
        for source in generator.get("envs", []) + generator.get("files", []):
            path = target / source
            example = path.with_name(path.name + ".example")
            # secrets.env is made by the operator from its committed .example (and never committed).
            assert path.is_file() or example.is_file(), f"{target}: neither {source} nor its .example exists"
            if not path.is_file():
                keys = {
                    line.split("=", 1)[0].lstrip("#")
                    for line in example.read_text().splitlines()
                    if "=" in line and not line.startswith("# ")
                }
                base_secret = find(render_kustomization(target), "Secret", generator["name"])
                assert base_secret is not None
                required = {k for k in base_secret["stringData"] if k.startswith(("AUDITOR_", "REDIS_"))}
                assert required <= keys, f"{example.name} lacks keys {required - keys}"
    rendered = render_kustomization(target)
    ids = [(o["kind"], o["metadata"]["name"]) for o in rendered]
    assert len(ids) == len(set(ids)), f"{target}: duplicate objects"


def test_every_k8s_yaml_file_is_used_or_standalone() -> None:
    referenced: set[Path] = set()
    for target in kustomize_targets():
        kust = load_docs(target / "kustomization.yaml")[0]
        referenced |= {(target / r).resolve() for r in kust.get("resources", [])}
        referenced |= {(target / p["path"]).resolve() for p in kust.get("patches", [])}
    for path in K8S.rglob("*.yaml"):
        if path.name == "kustomization.yaml" or path.parent.name == "tools":
            continue
        assert path.resolve() in referenced, f"{path.relative_to(ROOT)} is in no kustomization"


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_references_between_objects_resolve(target: Path) -> None:
    objects = render_kustomization(target)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}

    def need(kind: str, name: str, where: str) -> None:
        assert (kind, name) in names, f"{target_id(target)}: {where} refers to missing {kind} {name}"

    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in WORKLOAD_KINDS:
            spec = pod_spec(obj)
            if "serviceAccountName" in spec:
                need("ServiceAccount", spec["serviceAccountName"], where)
            for volume in spec.get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    need("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"], where)
            mounts = {m["name"] for c in containers(obj) for m in c.get("volumeMounts", [])}
            volumes = {v["name"] for v in spec.get("volumes", [])}
            volumes |= {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
            assert mounts <= volumes, f"{where}: mount without a volume: {mounts - volumes}"
            for c in containers(obj):
                for source in c.get("envFrom", []):
                    if "configMapRef" in source:
                        need("ConfigMap", source["configMapRef"]["name"], where)
                    if "secretRef" in source:
                        need("Secret", source["secretRef"]["name"], where)
                for var in c.get("env", []):
                    ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        need("Secret", ref["name"], where)
                        secret = find(objects, "Secret", ref["name"])
                        assert ref["key"] in secret.get("stringData", {}), f"{where}: no key {ref['key']}"
        if obj["kind"] == "ScaledObject":
            ref = obj["spec"]["scaleTargetRef"]
            need(ref.get("kind", "Deployment"), ref["name"], where)
            for trigger in obj["spec"]["triggers"]:
                need("TriggerAuthentication", trigger["authenticationRef"]["name"], where)
        if obj["kind"] == "TriggerAuthentication":
            for ref in obj["spec"]["secretTargetRef"]:
                need("Secret", ref["name"], where)
                assert ref["key"] in find(objects, "Secret", ref["name"])["stringData"], where


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_selectors_match_pod_labels(target: Path) -> None:
    objects = render_kustomization(target)
    workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS - {"Job"}]
    for workload in workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{workload['metadata']['name']}: selector misses its pods"
    for obj in objects:
        if obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
        elif obj["kind"] == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"]
            assert ("minAvailable" in obj["spec"]) != ("maxUnavailable" in obj["spec"])
        else:
            continue
        selected = [
            w["metadata"]["name"]
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, f"{obj['kind']}/{obj['metadata']['name']} selects {selected}"
        if obj["kind"] == "Service":
            workload = find(objects, "Deployment", selected[0]) or find(objects, "StatefulSet", selected[0])
            ports = {p["name"] for c in containers(workload) for p in c.get("ports", [])}
            numbers = {p["containerPort"] for c in containers(workload) for p in c.get("ports", [])}
            for port in obj["spec"]["ports"]:
                assert port["targetPort"] in ports | numbers, f"Service port {port} targets nothing"


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_deployments_have_probes_where_they_serve(target: Path) -> None:
    for obj in render_kustomization(target):
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for c in pod_spec(obj)["containers"]:
            if c.get("ports"):
                assert "livenessProbe" in c and "readinessProbe" in c, (
                    f"{obj['metadata']['name']}/{c['name']}"
                )
            else:
                assert "httpGet" not in c.get("livenessProbe", {}), (
                    "probe on a port the container does not serve"
                )
    api = find(render_kustomization(target), "Deployment", "auditor-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["http"] == 8000 and container["livenessProbe"]["httpGet"]["port"] in ("http", 8000)
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000" and annotations["prometheus.io/path"] == "/metrics"
    assert api["spec"]["replicas"] >= 2


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_migrations_run_before_the_api(target: Path) -> None:
    objects = render_kustomization(target)
    job = find(objects, "Job", "auditor-migrate")
    assert [c["command"] for c in containers(job)] == [["auditor", "db", "upgrade"]]
    for obj in objects:
        if obj["kind"] == "Deployment" and is_auditor_workload(obj):
            inits = pod_spec(obj).get("initContainers", [])
            assert [c["command"] for c in inits] == [["auditor", "db", "upgrade"]], obj["metadata"]["name"]


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_auditor_pods_are_locked_down(target: Path) -> None:
    for obj in render_kustomization(target):
        if not is_auditor_workload(obj):
            continue
        name = obj["metadata"]["name"]
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == IMAGE_UID, name
        assert spec.get("automountServiceAccountToken") is False, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(obj):
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, f"{name}/{c['name']}"
            assert context["allowPrivilegeEscalation"] is False, f"{name}/{c['name']}"
            assert context["capabilities"]["drop"] == ["ALL"], f"{name}/{c['name']}"
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], f"{name}/{c['name']}: /tmp not writable"
            assert "emptyDir" in volumes[mounts["/var/lib/auditor"]["name"]], (
                f"{name}/{c['name']}: AUDITOR_HOME"
            )
            assert c.get("resources", {}).get("requests"), f"{name}/{c['name']}: no resource requests"
            for path in ("/data", "/srv/auditor/weights"):
                if path in mounts:
                    assert mounts[path].get("readOnly") is True, (
                        f"{name}/{c['name']}: {path} must be read-only"
                    )


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_workers_and_gpu_placement(target: Path) -> None:
    objects = render_kustomization(target)
    workers = [
        o
        for o in objects
        if o["kind"] == "Deployment" and any(c["command"][:2] == ["auditor", "worker"] for c in containers(o))
    ]
    assert workers
    consumed: set[str] = set()
    for worker in workers:
        name = worker["metadata"]["name"]
        spec = pod_spec(worker)
        assert spec["terminationGracePeriodSeconds"] >= 600, f"{name}: too short for Celery's warm shutdown"
        assert "replicas" not in worker["spec"], f"{name}: KEDA owns the replica count"
        (container,) = spec["containers"]
        queues = queues_of(container["command"])
        consumed |= queues
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        if "gpu" in queues and queues == {"gpu"}:
            assert int(gpus) == 1, f"{name}: the GPU worker must limit nvidia.com/gpu to 1"
            assert int(container["resources"]["requests"].get("nvidia.com/gpu", gpus)) == int(gpus)
            command = container["command"]
            assert command[command.index("--concurrency") + 1] == "1", f"{name}: one process per GPU"
            assert command[command.index("--pool") + 1] == "solo", f"{name}: loader processes need solo"
            assert any(t["key"] == "nvidia.com/gpu" for t in spec.get("tolerations", [])), name
            assert {"name": "AUDITOR_DEVICE", "value": "cuda"} in container["env"]
            assert container["image"].split("/")[-1].split(":")[0].endswith("-cuda") or (
                container["image"].endswith("-cuda")
            ), f"{name}: the GPU worker must run the CUDA build"
        else:
            assert gpus is None, f"{name}: a CPU worker requests a GPU"
    assert consumed == QUEUES, f"{target_id(target)}: queues nobody consumes: {QUEUES - consumed}"


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_keda_watches_the_queues_the_workers_consume(target: Path) -> None:
    objects = render_kustomization(target)
    scaled = [o for o in objects if o["kind"] == "ScaledObject"]
    assert scaled
    for so in scaled:
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        spec = so["spec"]
        deployment = find(objects, "Deployment", spec["scaleTargetRef"]["name"])
        (container,) = pod_spec(deployment)["containers"]
        lists = set()
        for trigger in spec["triggers"]:
            assert trigger["type"] == "redis"
            metadata = trigger["metadata"]
            for key, value in metadata.items():
                assert isinstance(value, str), f"KEDA trigger metadata must be strings: {key}={value!r}"
            assert metadata["listName"] in QUEUES
            assert int(metadata["listLength"]) >= 1
            assert "address" not in metadata and "password" not in metadata, "Redis credentials inline"
            lists.add(metadata["listName"])
        assert lists == queues_of(container["command"]), f"{so['metadata']['name']} watches {lists}"
        low, high = spec["minReplicaCount"], spec["maxReplicaCount"]
        assert 0 <= low <= high
        if lists == {"gpu"}:
            assert low in (0, 1)
        else:
            assert low >= 1, "the CPU worker keeps at least one replica"
        broker = find(objects, "Secret", "auditor-secrets")["stringData"]["AUDITOR_BROKER_URL"]
        index = broker.rsplit("/", 1)[1] or "0"
        for trigger in spec["triggers"]:
            assert trigger["metadata"].get("databaseIndex", "0") == index, "KEDA reads another Redis database"
    auth = [o for o in objects if o["kind"] == "TriggerAuthentication"]
    assert {ref["parameter"] for a in auth for ref in a["spec"]["secretTargetRef"]} >= {"address", "password"}


@pytest.mark.parametrize("target", kustomize_targets(), ids=target_id)
def test_shared_volumes_and_settings_agree(target: Path) -> None:
    objects = render_kustomization(target)
    config = find(objects, "ConfigMap", "auditor-config")["data"]
    artifacts = find(objects, "PersistentVolumeClaim", "auditor-artifacts")
    if target.name != "dev":
        assert artifacts["spec"]["accessModes"] == ["ReadWriteMany"], "artifacts are shared across nodes"
    for obj in objects:
        if obj["kind"] != "Deployment" or not is_auditor_workload(obj):
            continue
        (container,) = pod_spec(obj)["containers"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        expected = {config["AUDITOR_ARTIFACT_ROOT"], config["AUDITOR_WEIGHTS_DIR"]}
        expected |= set(config["AUDITOR_DATA_ROOTS"].split(":"))
        assert expected <= mounts, f"{obj['metadata']['name']}: missing mounts {expected - mounts}"


def test_secret_placeholders_are_marked() -> None:
    secret = find(render_kustomization(K8S / "base"), "Secret", "auditor-secrets")
    header = (K8S / "base" / "secret.yaml").read_text().split("apiVersion")[0]
    assert "PLACEHOLDER" in header and "CHANGE-ME" in header
    for key, value in secret["stringData"].items():
        if "PASSWORD" in key or key.endswith("_URL"):
            assert "CHANGE-ME" in value, f"{key} has a value that looks real"


def test_tools_are_in_the_service_namespace() -> None:
    namespace = load_docs(K8S / "base" / "kustomization.yaml")[0]["namespace"]
    for path in (K8S / "tools").glob("*.yaml"):
        for doc in load_docs(path):
            assert doc["metadata"]["namespace"] == namespace, path


# --------------------------------------------------------------------------------------------------------
# The end-to-end smoke test (deploy/smoke.sh: too slow for the suite, it builds images and runs the stack;
# its README section records a real run). Here: the script parses, and its override is the stack it claims.


def smoke_stack() -> dict[str, Any]:
    merged = merge_compose(merge_compose(compose(), compose_cpu_override()), compose_smoke_override())
    return active_services(merged)


def test_smoke_script_parses() -> None:
    import shutil
    import subprocess

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    result = subprocess.run([bash, "-n", str(SMOKE_SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    text = SMOKE_SCRIPT.read_text()
    for file in (
        "docker-compose.yml",
        "deploy/compose/docker-compose.cpu.yml",
        "deploy/smoke/docker-compose.smoke.yml",
    ):
        assert f"-f {file}" in text, f"smoke.sh does not use {file}"
    assert "down -v" in text and "SMOKE: PASS" in text and "SMOKE: FAIL" in text


def test_smoke_stack_uses_host_networking_on_loopback_and_unusual_ports() -> None:
    services = smoke_stack()
    assert {"postgres", "redis", "migrate", "api", "worker-cpu"} <= set(services)
    for name, service in services.items():
        assert service.get("network_mode") == "host", f"{name}: the smoke stack runs on the host network"
        assert service.get("pull_policy") == "never", f"{name}: no image registry is reachable"
    api_argv = argv(services["api"]["command"])
    assert api_argv[api_argv.index("--host") + 1] == "127.0.0.1"
    port = api_argv[api_argv.index("--port") + 1]
    assert port not in {"8000", "5432", "6379"}
    assert port in " ".join(argv(services["api"]["healthcheck"]["test"])), (
        "the healthcheck probes another port"
    )
    for name in ("migrate", "api", "worker-cpu"):
        env = compose_env(services[name])
        for key in ("AUDITOR_DATABASE_URL", "AUDITOR_BROKER_URL"):
            assert "127.0.0.1:" in env[key], f"{name}: {key} must be a loopback address: {env[key]}"
            assert ":5432/" not in env[key] and ":6379/" not in env[key], f"{name}: {key} clashes"
    redis = argv(services["redis"]["command"])
    assert redis[redis.index("--port") + 1] in env["AUDITOR_BROKER_URL"]
    assert compose_env(services["postgres"])["PGPORT"] in compose_env(services["api"])["AUDITOR_DATABASE_URL"]


def test_smoke_settings_validate_with_a_short_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = smoke_stack()["worker-cpu"]
    settings = _settings_from(monkeypatch, compose_env(worker))
    assert settings.heartbeat_timeout_s <= 60 and settings.sweep_interval_s < settings.heartbeat_timeout_s
    assert queues_of(argv(worker["command"])) == QUEUES, "the single smoke worker must consume both queues"
