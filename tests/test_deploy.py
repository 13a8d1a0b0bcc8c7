"""The deployment files under deploy/ name only things that exist in the code: the image's entrypoint
serves real app factories and real `batterytrace` commands, probes hit real routes, ports are the ones
the README documents, and every environment variable is a real setting. No Docker or cluster needed."""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from fastapi import FastAPI
from pydantic_settings import BaseSettings

from services.cli.main import app as cli_app
from services.events.settings import EventsSettings
from services.portal.settings import PortalSettings
from services.registry.settings import RegistrySettings
from shared.contract.streams import (
    TOPIC_EPCIS,
    TOPIC_LIFECYCLE,
    TOPIC_LOG_CHECKPOINTS,
    TOPIC_REGISTRY,
    TOPIC_VINS,
    TOPICS,
)
from shared.kafka import dlq_topic

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SETTINGS: dict[str, type[BaseSettings]] = {
    "registry": RegistrySettings,
    "events": EventsSettings,
    "portal": PortalSettings,
}
# Which services have an outbox to relay and which consume topics (the portal publishes nothing: no relay).
PUBLISHERS = {"registry", "events"}
CONSUMERS = {"events", "portal"}
# Named on purpose although they are not batterytrace settings.
NON_SETTINGS = {"PYTHONUNBUFFERED"}


# --- what the code defines -------------------------------------------------------------------------


def prefix(service: str) -> str:
    return str(SETTINGS[service].model_config["env_prefix"])


def setting_names(service: str) -> set[str]:
    return {prefix(service) + name.upper() for name in SETTINGS[service].model_fields}


def cli_commands() -> dict[str, Any]:
    """Every `batterytrace` command by its words, nested groups included ("migrate", "dlq list", ...)."""
    found: dict[str, Any] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        if path:
            found[" ".join(path)] = cmd
        # Duck-typed: Typer ships its own copy of click, so click.Group is not the class to test for.
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(cli_app), [])
    return found


def cli_envvars(command: str) -> set[str]:
    names: set[str] = set()
    for param in cli_commands()[command].params:
        envvar = getattr(param, "envvar", None)
        names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


def readme_ports() -> dict[str, int]:
    text = (ROOT / "README.md").read_text()
    ports = {m[1]: int(m[2]) for m in re.finditer(r"^\|\s*`services/(\w+)/`\s*\|\s*(\d+)\s*\|", text, re.M)}
    assert set(ports) == set(SETTINGS), f"README service table: {ports}"
    return ports


@cache
def build_app(factory: str) -> FastAPI:
    """What `uvicorn --factory services.x.app:app` does; building the app connects to nothing."""
    module, _, attr = factory.partition(":")
    app = getattr(importlib.import_module(module), attr)()
    assert isinstance(app, FastAPI)
    return app


def routes(factory: str) -> set[str]:
    # The OpenAPI paths: recent FastAPI keeps included routers nested instead of flattening app.routes.
    app = build_app(factory)
    return set(app.openapi()["paths"]) | {path for r in app.routes if isinstance(path := getattr(r, "path", None), str)}


def settings_from_env(cls: type[BaseSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        for key in [k for k in os.environ if k.startswith("BT_")]:
            m.delenv(key)
        for key, value in env.items():
            m.setenv(key, value)
        return cls()


# --- the entrypoint script and the Dockerfile -------------------------------------------------------


@dataclass
class Entrypoint:
    serve: dict[str, str] = field(default_factory=dict)  # verb -> uvicorn factory
    commands: dict[str, str] = field(default_factory=dict)  # verb -> `batterytrace` command
    port: int = 0

    @property
    def verbs(self) -> set[str]:
        return set(self.serve) | set(self.commands)


@cache
def entrypoint() -> Entrypoint:
    ep = Entrypoint()
    text = (DEPLOY / "entrypoint.sh").read_text()
    for pattern, body in re.findall(r"^\s*([\w|*]+)\)\s*\n(.*?);;", text, re.M | re.S):
        verbs = [v for v in pattern.split("|") if v != "*"]
        if m := re.search(r'uvicorn --factory "([^"]+)".*--port (\d+)', body):
            ep.port = int(m[2])
            ep.serve.update({v: m[1].replace("${service}", v) for v in verbs})
        elif m := re.search(r"exec batterytrace ([\w ]+?) \"\$@\"", body):
            ep.commands.update(dict.fromkeys(verbs, m[1]))
    return ep


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [ln for ln in (DEPLOY / "Dockerfile").read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in joined.splitlines() if ln.strip()]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def image_uid() -> int:
    user = [arg for op, arg in final_stage() if op == "USER"][-1]
    return int(user.split(":")[0])


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent directory matches too."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            ignored = not negate
    return ignored


def test_entrypoint_serves_each_readme_service_on_the_exposed_port() -> None:
    ep = entrypoint()
    assert set(ep.serve) == set(readme_ports())
    assert ("EXPOSE", str(ep.port)) in final_stage()


def test_entrypoint_keeps_idle_connections_open_past_a_load_balancers_idle_timeout_as_dev_does() -> None:
    """uvicorn's keep-alive above the usual 60 s of a load balancer (which then closes idle connections first),
    set where the image starts uvicorn, the same as `make dev` (devtools/dev.py service_command)."""
    from devtools.dev import service_command

    body = (DEPLOY / "entrypoint.sh").read_text()
    served = re.search(r"exec uvicorn .*--timeout-keep-alive (\d+) \"\$@\"", body)
    assert served, "the entrypoint's uvicorn sets --timeout-keep-alive, before the arguments that may override it"
    dev = service_command("registry", "127.0.0.1", 8000)
    assert int(served[1]) == int(dev[dev.index("--timeout-keep-alive") + 1]) == 75 > 60
    assert "--timeout-keep-alive 75" in (DEPLOY / "README.md").read_text()


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_entrypoint_factory_builds_the_app_with_probe_routes(service: str) -> None:
    assert {"/healthz", "/readyz"} <= routes(entrypoint().serve[service])


def test_entrypoint_commands_exist_in_the_cli() -> None:
    assert entrypoint().commands == {"migrate": "migrate", "bootstrap": "db bootstrap"}
    assert set(entrypoint().commands.values()) <= set(cli_commands())


def test_dockerfile_builds_on_python_311_slim_in_every_stage() -> None:
    bases = [arg.split()[0] for op, arg in dockerfile() if op == "FROM"]
    assert len(bases) >= 2, "multi-stage build"
    assert set(bases) == {"python:3.11-slim"}


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    assert image_uid() != 0


def test_dockerfile_entrypoint_is_the_script_and_cmd_a_verb() -> None:
    stage = final_stage()
    (entry,) = [json.loads(arg) for op, arg in stage if op == "ENTRYPOINT"]
    (cmd,) = [json.loads(arg) for op, arg in stage if op == "CMD"]
    copies = [arg.split() for op, arg in stage if op == "COPY"]
    assert any(c[-2] == "deploy/entrypoint.sh" and Path(c[-1]).name == entry[0] for c in copies)
    assert os.access(DEPLOY / "entrypoint.sh", os.X_OK)
    assert cmd[0] in entrypoint().verbs


def test_dockerfile_healthcheck_probes_healthz_on_the_served_port() -> None:
    (check,) = [arg for op, arg in final_stage() if op == "HEALTHCHECK"]
    assert f"http://127.0.0.1:{entrypoint().port}/healthz" in check


def copied_sources() -> list[str]:
    """What the Dockerfile copies from the build context."""
    sources = [
        src
        for op, arg in dockerfile()
        if op == "COPY" and "--from=" not in arg
        for src in [a for a in arg.split() if not a.startswith("--")][:-1]
    ]
    assert sources, "no COPY from the build context in deploy/Dockerfile"
    return sources


def test_dockerfile_copies_the_project_through_dockerignore() -> None:
    sources = copied_sources()
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not dockerignored(src), f"{src} is excluded by .dockerignore"
    # What the installed package and `batterytrace migrate` need (shared/migrate.py reads alembic.ini).
    assert {"pyproject.toml", "requirements.lock", "README.md", "alembic.ini", "shared", "services", "migrations"} <= {
        s.rstrip("/").removeprefix("./") for s in sources
    }
    for private in (".data/keys/jwt-private.pem", ".venv/bin/python", ".git/HEAD", "tests/conftest.py"):
        assert dockerignored(private), private


def test_dockerfile_installs_neither_devtools_nor_the_dev_extra() -> None:
    """The image runs the services: the development tooling, the embedded engines and the tests stay out."""
    copied = {s.rstrip("/").removeprefix("./").split("/")[0] for s in copied_sources()}
    assert copied & {"devtools", "tests", "bench"} == set(), copied
    for dev_only in ("devtools/embedded.py", "tests/conftest.py", "bench/stack.py"):
        assert dockerignored(dev_only), dev_only
    installs = [arg for op, arg in dockerfile() if op == "RUN" and "pip install" in arg]
    assert any("['project']['dependencies']" in arg for arg in installs), installs
    assert not any(word in arg for arg in installs for word in ("[dev]", "--extra", "optional-dependencies")), installs


# --- compose -----------------------------------------------------------------------------------------


def interpolate(value: Any) -> str:
    """Compose's `${VAR...}` with a stand-in value; `$$` is a literal dollar."""
    return re.sub(r"\$\{[^}]*\}", "x", str(value)).replace("$$", "$")


@cache
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def compose_services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def ours() -> dict[str, dict[str, Any]]:
    """Containers from deploy/Dockerfile."""
    found = {}
    for name, svc in compose_services().items():
        build = svc.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
            found[name] = svc
    assert found, "no compose.yaml container builds deploy/Dockerfile"
    return found


def served(svc: dict[str, Any]) -> str | None:
    """The service a container runs (None for one-shot commands)."""
    verb = svc["command"][0]
    assert verb in entrypoint().verbs
    return verb if verb in entrypoint().serve else None


def env_flag(env: dict[str, Any], name: str) -> bool:
    return str(env[name]).lower() == "true"


def test_compose_runs_postgres_17_and_kafka_in_kraft_mode() -> None:
    svcs = compose_services()
    assert svcs["postgres"]["image"].startswith("postgres:17")
    assert svcs["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in svcs["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]


def test_compose_long_running_containers_have_health_checks_on_real_routes() -> None:
    for name, svc in compose_services().items():
        if svc.get("restart") == "no":
            continue
        test = svc["healthcheck"]["test"]
        assert test and test[0] in {"CMD", "CMD-SHELL"}, name
        if name in ours():
            m = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", " ".join(test))
            assert m, name
            service = served(svc)
            assert service, name
            assert int(m[1]) == entrypoint().port
            assert m[2] in routes(entrypoint().serve[service]), name


def test_compose_depends_on_names_real_services_with_sound_conditions() -> None:
    svcs = compose_services()
    for name, svc in svcs.items():
        for dep, spec in svc.get("depends_on", {}).items():
            assert dep in svcs and dep != name, (name, dep)
            if spec["condition"] == "service_healthy":
                assert not svcs[dep]["healthcheck"].get("disable"), (name, dep)
            else:
                assert spec["condition"] == "service_completed_successfully"
                assert svcs[dep]["restart"] == "no", (name, dep)


def test_compose_publishes_the_readme_ports() -> None:
    published: dict[str, int] = {}
    for name, svc in ours().items():
        for mapping in svc.get("ports", []):
            host, container = str(mapping).split(":")[-2:]
            assert int(container) == entrypoint().port, name
            service = served(svc)
            assert service and service not in published, name
            published[service] = int(host)
    assert published == readme_ports()


def test_compose_environment_names_are_settings_of_the_served_service() -> None:
    for name, svc in ours().items():
        env = svc.get("environment", {})
        service = served(svc)
        allowed = setting_names(service) if service else cli_envvars(entrypoint().commands[svc["command"][0]])
        assert set(env) <= allowed | NON_SETTINGS, (name, set(env) - allowed)


def test_compose_environment_values_parse_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = compose().get("secrets", {})
    for name, svc in ours().items():
        env = {k: interpolate(v) for k, v in svc.get("environment", {}).items()}
        service = served(svc)
        if service is None:
            assert all(v.startswith("postgresql+asyncpg://") for v in env.values()), name
            continue
        settings = settings_from_env(SETTINGS[service], env, monkeypatch)
        assert settings.database_url.startswith("postgresql+asyncpg://"), name
        assert settings.kafka_bootstrap_servers == "kafka:9092", name
        if settings.jwt_public_key_file:
            secret = settings.jwt_public_key_file.name
            assert settings.jwt_public_key_file.parent == Path("/run/secrets"), name
            assert secret in svc.get("secrets", []) and secret in secrets, name


def test_compose_runs_one_relay_and_one_consumer_set_per_service() -> None:
    relays: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    verifiers: list[str] = []
    for name, svc in ours().items():
        service = served(svc)
        if service is None:
            continue
        env = svc["environment"]
        p = prefix(service)
        if env_flag(env, p + "CONSUMERS_ENABLED"):
            consumers.setdefault(service, []).append(name)
        if service in PUBLISHERS and env_flag(env, p + "RELAY_ENABLED"):
            relays.setdefault(service, []).append(name)
        if svc.get("ports"):  # HTTP containers do neither
            assert not env_flag(env, p + "CONSUMERS_ENABLED"), name
            assert service not in PUBLISHERS or not env_flag(env, p + "RELAY_ENABLED"), name
        if service == "events" and verifies(env):
            verifiers.append(name)
    assert {s: len(n) for s, n in relays.items()} == dict.fromkeys(PUBLISHERS, 1)
    assert {s: len(n) for s, n in consumers.items()} == dict.fromkeys(CONSUMERS, 1)
    assert verifiers == ["events-consumer"], "the ledger sweeps run in one worker, not in every container"


def verifies(env: dict[str, Any]) -> bool:
    """Whether an events process runs the background chain verifier (on unless switched off)."""
    return str(env.get("BT_EVENTS_VERIFIER_ENABLED", "true")).lower() == "true"


def published_by(service: str) -> set[str]:
    """The topics a service's app writes through its outbox (what create_service_app was given)."""
    return set(build_app(entrypoint().serve[service]).state.publishes)


def consumed_by(service: str) -> set[str]:
    return {t for spec in build_app(entrypoint().serve[service]).state.consumes for t in spec.topics}


def groups_of(service: str) -> set[str]:
    return {spec.group for spec in build_app(entrypoint().serve[service]).state.consumes}


def _every_topic() -> set[str]:
    """Every topic the services use: the contract's, and the dead-letter topic of each one consumed."""
    consumed = set().union(*(consumed_by(s) for s in SETTINGS))
    assert set().union(*(published_by(s) for s in SETTINGS)) == set(TOPICS), "every contract topic has a producer"
    assert {TOPIC_REGISTRY, TOPIC_LIFECYCLE, TOPIC_EPCIS, TOPIC_LOG_CHECKPOINTS} <= consumed
    return set(TOPICS) | {dlq_topic(t) for t in consumed}


def topic_script(kind: str) -> str:
    if kind == "compose":
        return " ".join(compose_services()["topics"]["command"]).replace("$$", "$")
    job = next(d for d in yaml.safe_load_all((K8S / "base" / "topics.yaml").read_text()) if d["kind"] == "Job")
    return str(job["spec"]["template"]["spec"]["containers"][0]["args"][0])


def created_topics(script: str) -> dict[str, str]:
    """Topic -> retention.ms, from the script's `create TOPIC RETENTION` lines."""
    return dict(re.findall(r"^\s*create (\S+) (-?\d+)(?:\s+\S+)?\s*$", script, re.M))


def acls(script: str) -> set[tuple[str, str, str]]:
    """(user, kind, name) from the script's `acl USER KIND NAME` lines (services only: not the `ops` loop)."""
    return set(re.findall(r"^\s*acl (\w+) (write|read|group|cluster) (\S+)\s*$", script, re.M))


@pytest.mark.parametrize("kind", ["compose", "k8s"])
def test_topics_jobs_create_every_topic_the_services_use_each_with_a_retention(kind: str) -> None:
    created = created_topics(topic_script(kind))
    assert set(created) == _every_topic(), sorted(set(created) ^ _every_topic())
    forever = {TOPIC_REGISTRY, TOPIC_LIFECYCLE, TOPIC_LOG_CHECKPOINTS}  # README "Retention"
    compacted = {TOPIC_VINS}  # no time limit either: compaction keeps each VIN's latest, an erasure's tombstone
    assert {t for t, ms in created.items() if ms == "-1"} == forever | compacted
    script = topic_script(kind)
    assert all(re.search(rf"create {re.escape(t)} -1 cleanup\.policy=compact", script) for t in compacted)
    assert all(int(ms) >= 30 * 86400_000 for t, ms in created.items() if t not in forever | compacted)


@pytest.mark.parametrize("kind", ["compose", "k8s"])
def test_acls_let_each_service_write_only_its_own_topics(kind: str) -> None:
    granted = acls(topic_script(kind))
    for service in SETTINGS:
        mine = {(kind_, name) for user, kind_, name in granted if user == service}
        consumed = consumed_by(service)
        writes = {name for k, name in mine if k == "write"}
        assert writes == published_by(service) | {dlq_topic(t) for t in consumed}, (service, writes)
        assert {name for k, name in mine if k == "read"} == consumed, service
        prefixes = {name for k, name in mine if k == "group"}
        assert all(any(g.startswith(p) for p in prefixes) for g in groups_of(service)), (service, prefixes)
        assert not any(k == "cluster" for k, _ in mine), f"{service} needs no cluster rights"
    # Nobody but the service that owns a topic may write it.
    owners = {t: s for s in SETTINGS for t in published_by(s)}
    for user, k, name in granted:
        if k == "write" and name in owners:
            assert user in (owners[name], "ops"), (user, name)


def test_compose_topics_job_creates_the_service_topics_with_their_partitions() -> None:
    script = " ".join(compose_services()["topics"]["command"])
    words = set(re.findall(r"[\w.]+", script))
    assert _every_topic() <= words, sorted(_every_topic() - words)
    partitions = int(re.search(r"--partitions (\d+)", script)[1])  # type: ignore[index]
    for svc in ours().values():
        for key, value in svc.get("environment", {}).items():
            if key.endswith("_KAFKA_PARTITIONS"):
                assert int(value) == partitions


def test_k8s_topics_job_creates_every_topic_replicated_for_production() -> None:
    job = next(d for d in yaml.safe_load_all((K8S / "base" / "topics.yaml").read_text()) if d["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0]
    created = set(re.findall(r"^\s*create (\S+) ", script, re.M))
    assert created == _every_topic()
    (create,) = re.findall(r"^\s*create\(\) \{(.*?)^\s*\}", script, re.M | re.S)
    assert "--replication-factor 3" in create and "min.insync.replicas=2" in create
    assert "retention.ms=" in create
    assert "topics.yaml" in kustomization(K8S / "base")["resources"]
    # The services never make a topic themselves in production (with this process's replication factor).
    for service in SETTINGS:
        (container,) = pod_containers(next(d for d in deployments().values() if deployment_service(d) == service))
        env = container_env(container)
        assert env[prefix(service) + "KAFKA_CREATE_TOPICS"] == "false", service
        assert env[prefix(service) + "KAFKA_REPLICATION_FACTOR"] == "3", service


def test_compose_migrate_job_runs_the_migrate_command() -> None:
    migrate = compose_services()["migrate"]
    assert entrypoint().commands[migrate["command"][0]] == "migrate"
    assert set(migrate["environment"]) <= cli_envvars("migrate")


# --- Kubernetes ----------------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def test_every_yaml_file_under_deploy_parses() -> None:
    assert len(yaml_files()) >= 6
    for path in yaml_files():
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs), path
        if path.is_relative_to(K8S):
            for doc in docs:
                assert doc["apiVersion"] and doc["kind"], path
                assert doc["kind"] == "Kustomization" or doc["metadata"]["name"], path


def kustomization(directory: Path) -> dict[str, Any]:
    doc = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def generator_env(directory: Path, entry: dict[str, Any]) -> dict[str, str]:
    """A generator's keys and values; `envs` files may exist only as their committed `.example`."""
    env = dict(lit.split("=", 1) for lit in entry.get("literals", []))
    for rel in entry.get("envs", []):
        path = directory / rel
        path = path if path.exists() else path.with_name(path.name + ".example")
        assert path.exists(), f"{directory / rel} (or its .example)"
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip()
    for rel in entry.get("files", []):
        path = directory / rel.split("=", 1)[-1]
        assert path.exists() or path.with_name(path.name + ".example").exists(), path
    return env


KUSTOMIZATIONS = {"base", "overlays/production"}


def kustomize_dirs() -> list[Path]:
    """The kustomization folders, all of them found (a wrong K8S path must not make the loops over them vacuous)."""
    found = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
    assert {d.relative_to(K8S).as_posix() for d in found} == KUSTOMIZATIONS, f"kustomizations under {K8S}: {found}"
    return found


def test_kustomizations_reference_files_that_exist() -> None:
    for directory in kustomize_dirs():
        k = kustomization(directory)
        for rel in k.get("resources", []):
            target = directory / rel
            assert target.is_file() or (target / "kustomization.yaml").is_file(), target
        for gen in ("configMapGenerator", "secretGenerator"):
            for entry in k.get(gen, []):
                generator_env(directory, entry)


def references() -> tuple[set[str], set[str]]:
    """Names of ConfigMaps/Secrets the base pods read as environment, and those they mount as files."""
    as_env: set[str] = set()
    as_files: set[str] = set()
    for obj in [*objects("Deployment").values(), *objects("Job").values()]:
        for container in pod_containers(obj):
            for source in container.get("envFrom", []):
                as_env.update(ref["name"] for ref in source.values())
            for var in container.get("env", []):  # single keys (the topics Job's Kafka passwords)
                if ref := var.get("valueFrom", {}).get("secretKeyRef"):
                    as_files.add(ref["name"])
        for volume in obj["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in volume:
                as_files.add(volume["secret"]["secretName"])
            if "configMap" in volume:
                as_files.add(volume["configMap"]["name"])
    return as_env, as_files


def test_generated_config_is_used_and_names_only_real_settings() -> None:
    allowed = set().union(*(setting_names(s) for s in SETTINGS), cli_envvars("migrate"), NON_SETTINGS)
    as_env, as_files = references()
    for directory in kustomize_dirs():
        k = kustomization(directory)
        for entry in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
            name = entry["name"]
            assert name in as_env | as_files, f"{name} is generated but nothing reads it"
            if name in as_env:
                names = set(generator_env(directory, entry))
                assert names <= allowed, (directory, name, names - allowed)


def base_objects() -> list[dict[str, Any]]:
    base = K8S / "base"
    return [doc for rel in kustomization(base)["resources"] for doc in yaml.safe_load_all((base / rel).read_text())]


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in base_objects() if o["kind"] == kind}


def generated(kind: str) -> dict[str, dict[str, Any]]:
    """Base ConfigMaps or Secrets by name: generated ones and any written out as objects."""
    base = K8S / "base"
    gen = "configMapGenerator" if kind == "ConfigMap" else "secretGenerator"
    found = {e["name"]: generator_env(base, e) for e in kustomization(base).get(gen, [])}
    for name, obj in objects(kind).items():
        found[name] = {**obj.get("data", {}), **obj.get("stringData", {})}
    return found


def pod_containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from obj["spec"]["template"]["spec"]["containers"]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if ref := source.get("configMapRef"):
            env.update(generated("ConfigMap")[ref["name"]])
        if ref := source.get("secretRef"):
            env.update(generated("Secret")[ref["name"]])
    env.update({e["name"]: str(e["value"]) for e in container.get("env", [])})  # `env` wins over envFrom
    return env


def labels_match(selector: dict[str, str], obj: dict[str, Any]) -> bool:
    labels = obj["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def deployments() -> dict[str, dict[str, Any]]:
    found = objects("Deployment")
    assert found
    return found


def deployment_service(obj: dict[str, Any]) -> str:
    (container,) = pod_containers(obj)
    verb = container["args"][0]
    assert verb in entrypoint().serve, obj["metadata"]["name"]
    return verb


def test_deployments_run_real_apps_with_probes_on_their_routes() -> None:
    image_names = {i["name"] for i in kustomization(K8S / "base")["images"]}
    for name, obj in deployments().items():
        (container,) = pod_containers(obj)
        assert "command" not in container, "the image's entrypoint picks the process"
        assert container["image"] in image_names, name
        factory = entrypoint().serve[deployment_service(obj)]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe in container:
                get = container[probe]["httpGet"]
                assert get["path"] in routes(factory), (name, probe)
                assert ports[get["port"]] == entrypoint().port, (name, probe)


def test_pods_run_as_the_image_user_with_requests_and_limits() -> None:
    for name, obj in [*deployments().items(), *objects("Job").items()]:
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        if all(c["image"] == "batterytrace" for c in pod["containers"]):
            assert pod["securityContext"]["runAsUser"] == image_uid(), name
        else:  # a third-party image (the Kafka tools of the topics job) runs as its own non-root user
            assert pod["securityContext"]["runAsUser"] > 0, name
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)


def test_deployment_environment_is_the_served_services_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, obj in deployments().items():
        service = deployment_service(obj)
        (container,) = pod_containers(obj)
        env = container_env(container)
        assert set(env) <= setting_names(service) | NON_SETTINGS, (name, set(env) - setting_names(service))
        settings = settings_from_env(SETTINGS[service], env, monkeypatch)
        assert settings.database_url.startswith("postgresql+asyncpg://"), name
        # Both switches explicit, so which process relays and which consumes is read off the manifest.
        assert {prefix(service) + "RELAY_ENABLED", prefix(service) + "CONSUMERS_ENABLED"} <= {
            e["name"] for e in container["env"]
        }, name


def test_jwt_key_file_is_mounted_from_a_secret_where_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, obj in deployments().items():
        (container,) = pod_containers(obj)
        settings = settings_from_env(SETTINGS[deployment_service(obj)], container_env(container), monkeypatch)
        key_file = settings.jwt_public_key_file
        if key_file is None:
            continue
        mounts = {m["name"]: Path(m["mountPath"]) for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
        (volume,) = [n for n, path in mounts.items() if key_file.parent == path]
        secret = volumes[volume]["secret"]
        assert key_file.name in {i["path"] for i in secret["items"]}, name
        assert secret["secretName"] in generated("Secret"), name


def test_services_expose_http_deployments_on_the_readme_ports() -> None:
    exposed: dict[str, int] = {}
    for name, svc in objects("Service").items():
        (target,) = [d for d in deployments().values() if labels_match(svc["spec"]["selector"], d)]
        assert target["metadata"]["labels"]["app.kubernetes.io/component"] == "http", name
        (container,) = pod_containers(target)
        (port,) = svc["spec"]["ports"]
        assert port["targetPort"] in {p["name"] for p in container["ports"]}, name
        exposed[deployment_service(target)] = port["port"]
    assert exposed == readme_ports()


def test_http_deployments_are_scaled_by_an_hpa_and_all_have_a_pdb() -> None:
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in objects("HorizontalPodAutoscaler").values()}
    http = {n for n, d in deployments().items() if d["metadata"]["labels"]["app.kubernetes.io/component"] == "http"}
    assert hpas == http
    for name in http:
        assert "replicas" not in deployments()[name]["spec"], f"{name}: the HPA owns replicas"
    pdbs = [p["spec"]["selector"]["matchLabels"] for p in objects("PodDisruptionBudget").values()]
    for name, obj in deployments().items():
        assert sum(labels_match(sel, obj) for sel in pdbs) == 1, name


def test_workers_split_one_relay_per_publisher_and_consumers_within_partitions() -> None:
    overlay = kustomization(K8S / "overlays" / "production")
    counts = {r["name"]: r["count"] for r in overlay.get("replicas", [])}
    partitions = [
        int(v)
        for e in overlay.get("configMapGenerator", [])
        for k, v in generator_env(K8S / "overlays" / "production", e).items()
        if k.endswith("_KAFKA_PARTITIONS")
    ]
    relays: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    verifiers: list[str] = []
    for name, obj in deployments().items():
        service = deployment_service(obj)
        (container,) = pod_containers(obj)
        env = container_env(container)
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        relay = service in PUBLISHERS and env_flag(env, prefix(service) + "RELAY_ENABLED")
        consuming = env_flag(env, prefix(service) + "CONSUMERS_ENABLED")
        if component == "http":
            assert not relay and not consuming, name
        if relay:
            relays.setdefault(service, []).append(name)
            assert obj["spec"]["replicas"] == 1 and counts.get(name, 1) == 1, f"{name}: one relay per service"
        if consuming:
            consumers.setdefault(service, []).append(name)
            assert counts.get(name, obj["spec"]["replicas"]) <= min(partitions), name
        if service == "events" and verifies(env):
            verifiers.append(name)
            assert component != "http", f"{name}: the ledger sweeps do not run in the scaled HTTP replicas"
    assert {s: len(n) for s, n in relays.items()} == dict.fromkeys(PUBLISHERS, 1)
    assert {s: len(n) for s, n in consumers.items()} == dict.fromkeys(CONSUMERS, 1)
    assert verifiers == ["events-consumer"]


def test_migrate_job_runs_the_migrate_command_with_its_database_url() -> None:
    assert set(objects("Job")) == {"migrate", "topics"}
    (container,) = pod_containers(objects("Job")["migrate"])
    command = entrypoint().commands[container["args"][0]]
    assert command == "migrate"
    env = container_env(container)
    assert set(env) <= cli_envvars(command)
    assert all(v.startswith("postgresql+asyncpg://") for v in env.values())


def test_production_overlay_pins_the_image_and_patches_existing_objects() -> None:
    directory = K8S / "overlays" / "production"
    overlay = kustomization(directory)
    base_images = {i["name"] for i in kustomization(K8S / "base")["images"]}
    (image,) = overlay["images"]
    assert image["name"] in base_images and image["newTag"] not in {"", "latest", "dev"}
    base_kinds = {o["kind"] for o in base_objects()}
    for patch in overlay.get("patches", []):
        target = patch["target"]
        assert target["kind"] in base_kinds
        if selector := target.get("labelSelector"):
            key, value = selector.split("=")
            assert any(o["metadata"].get("labels", {}).get(key) == value for o in base_objects()), selector
    for name in {r["name"] for r in overlay.get("replicas", [])}:
        assert name in deployments()
    for gen in ("configMapGenerator", "secretGenerator"):
        base_names = {e["name"] for e in kustomization(K8S / "base").get(gen, [])}
        for entry in overlay.get(gen, []):
            assert entry["name"] in base_names and entry.get("behavior") in {"merge", "replace"}


# --- cross-references --------------------------------------------------------------------------------

SERVICE_URLS = {"REGISTRY_URL", "EVENTS_URL", "SELF_URL"}


def url_settings(env: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    for key, value in env.items():
        if any(key.endswith("_" + s) for s in SERVICE_URLS):
            m = re.fullmatch(r"http://([\w-]+):(\d+)/?", str(value))
            assert m, (key, value)
            yield key, m[1], int(m[2])


def test_service_urls_point_at_running_http_services() -> None:
    http_containers = {n: served(s) for n, s in ours().items() if s.get("ports")}
    for name, svc in ours().items():
        for key, host, port in url_settings(svc.get("environment", {})):
            assert host in http_containers and port == entrypoint().port, (name, key)
            assert key.removeprefix(prefix(served(svc) or "")).removesuffix("_URL") in {
                http_containers[host].upper(),  # type: ignore[union-attr]
                "SELF",
            }, (name, key)
    service_ports = {n: s["spec"]["ports"][0]["port"] for n, s in objects("Service").items()}
    for cm in generated("ConfigMap").values():
        for key, host, port in url_settings(cm):
            assert service_ports.get(host) == port, key


def test_deploy_readme_documents_every_setting_and_process() -> None:
    text = (DEPLOY / "README.md").read_text()
    for service in SETTINGS:
        for name in SETTINGS[service].model_fields:
            assert f"`{name.upper()}`" in text, f"deploy/README.md: setting {name.upper()}"
    for name in [*deployments(), *objects("Job"), *ours()]:
        assert f"`{name}`" in text, f"deploy/README.md: process {name}"
    for port in readme_ports().values():
        assert str(port) in text


# --- secured Kafka -------------------------------------------------------------------------------------


def test_compose_services_reach_kafka_over_sasl_ssl_each_with_its_own_user(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = compose().get("secrets", {})
    kafka_env = compose_services()["kafka"]["environment"]
    assert kafka_env["KAFKA_LISTENERS"].startswith("SASL_SSL://") and "PLAINTEXT://" not in kafka_env["KAFKA_LISTENERS"]
    assert kafka_env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    for name, svc in ours().items():
        service = served(svc)
        if service is None:
            continue
        settings = settings_from_env(
            SETTINGS[service], {k: interpolate(v) for k, v in svc["environment"].items()}, monkeypatch
        )
        assert (settings.kafka_security_protocol, settings.kafka_sasl_username) == ("SASL_SSL", service), name
        assert f'user_{service}="' in kafka_env["KAFKA_LISTENER_NAME_SASL__SSL_PLAIN_SASL_JAAS_CONFIG"], name
        password = settings.kafka_sasl_password_file
        assert password is not None and password.parent == Path("/run/secrets"), name
        assert password.name in svc["secrets"] and password.name in secrets, name
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts[str(settings.kafka_ssl_cafile.parent)] == "kafka-tls-public", name  # type: ignore[union-attr]
        assert settings.kafka_create_topics is False, name


def patched_deployment(obj: dict[str, Any]) -> dict[str, Any]:
    """A Deployment with the base kustomization's JSON patches for every Deployment applied (`add` to `/-`)."""
    import copy

    out = copy.deepcopy(obj)
    for patch in kustomization(K8S / "base").get("patches", []):
        if patch["target"] != {"kind": "Deployment"}:
            continue
        for op in yaml.safe_load(patch["patch"]):
            assert op["op"] == "add" and op["path"].endswith("/-"), op
            node: Any = out
            for part in op["path"].strip("/").split("/")[:-1]:
                node = node[int(part)] if part.isdigit() else node[part]
            node.append(op["value"])
    return out


def test_k8s_services_reach_kafka_over_sasl_ssl_each_with_its_own_user(monkeypatch: pytest.MonkeyPatch) -> None:
    script = topic_script("k8s")
    assert set(re.findall(r"^\s*user (\w+) ", script, re.M)) == {*SETTINGS, "ops"}
    for name, obj in deployments().items():
        service = deployment_service(obj)
        (container,) = pod_containers(patched_deployment(obj))
        settings = settings_from_env(SETTINGS[service], container_env(container), monkeypatch)
        assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512"), name
        assert settings.kafka_sasl_username == service and settings.sasl_password(), name
        assert settings.kafka_ssl_check_hostname, name
        mounts = {Path(m["mountPath"]): m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in patched_deployment(obj)["spec"]["template"]["spec"]["volumes"]}
        ca = settings.kafka_ssl_cafile
        assert ca is not None and ca.parent in mounts, name
        secret = volumes[mounts[ca.parent]]["secret"]
        assert secret["secretName"] == "kafka-ca" and ca.name in {i["path"] for i in secret["items"]}, name
    assert "kafka-ca" in generated("Secret")


def test_the_audit_prune_cronjob_runs_the_real_command_with_at_least_five_years() -> None:
    from services.cli.audit import MIN_RETENTION_DAYS

    (cron,) = [o for o in base_objects() if o["kind"] == "CronJob"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:1] == ["batterytrace"] and " ".join(container["args"][1:]) in cli_commands()
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) <= cli_envvars("audit prune") and int(env["BT_AUDIT_RETENTION_DAYS"]) >= MIN_RETENTION_DAYS
    assert {s["secretRef"]["name"] for s in container["envFrom"]} == {"migrate-secret"}
    assert "BT_DATABASE_URL" in cli_envvars("audit prune")
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == image_uid()
    assert "`audit-prune`" in (DEPLOY / "README.md").read_text()
