"""The deployment files for engines that cannot run here (Docker, Compose, Kubernetes) are
documentation, so nothing runs them; this checks, without any network, that they parse
and agree with each other, with the code and with the contract's environment names: the
same code location name and module everywhere, the gRPC port the code server listens on
is the one the workspace dials, every variable they set is one the pipeline or Dagster
reads, the worker command is the README's, the Celery config is the executor's.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashtam_pipeline.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"
LOCATION = "dashtam_pipeline"
#: Variables Dagster's own processes read (deploy/dagster.yaml's env references and HOME).
DAGSTER_VARIABLES = {"DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER",
                     "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"}


def _yaml(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Scaling out")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _known(name: str) -> bool:
    return name in DAGSTER_VARIABLES or name.lower() in Settings.model_fields


def test_every_deployment_file_parses() -> None:
    for name in ("docker-compose.yaml", "workspace.grpc.yaml", "helm-values.yaml",
                 "celery.yaml", "dagster.yaml"):
        assert isinstance(_yaml(name), dict), name
    assert (DEPLOY / "Dockerfile").read_text().startswith("#")


def test_the_code_location_is_the_same_everywhere() -> None:
    module = _pyproject()["tool"]["dagster"]["module_name"]
    assert _pyproject()["tool"]["dagster"]["code_location_name"] == LOCATION
    (entry,) = _yaml("workspace.grpc.yaml")["load_from"]
    grpc = entry["grpc_server"]
    assert grpc["location_name"] == LOCATION
    compose = _yaml("docker-compose.yaml")["services"]
    code_command = compose["code"]["command"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    docker_cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert docker_cmd is not None
    assert yaml.safe_load(docker_cmd.group(1)) == code_command
    for args in (code_command,
                 _yaml("helm-values.yaml")["dagster-user-deployments"]["deployments"][0][
                     "dagsterApiGrpcArgs"]):
        assert args[args.index("-m") + 1] == module
        assert args[args.index("--location-name") + 1] == LOCATION
    # the workspace dials the code server's service name and port
    assert grpc["host"] == "code"
    assert str(grpc["port"]) == code_command[code_command.index("-p") + 1]
    assert f"EXPOSE {grpc['port']}" in dockerfile
    assert str(grpc["port"]) in [str(p) for p in compose["code"]["expose"]]
    helm_port = _yaml("helm-values.yaml")["dagster-user-deployments"]["deployments"][0]["port"]
    assert helm_port == grpc["port"]


def test_compose_runs_every_process_on_shared_storage() -> None:
    compose = _yaml("docker-compose.yaml")
    services = compose["services"]
    assert {"postgres", "redis", "code", "daemon", "webserver", "worker"} <= set(services)
    for name in ("daemon", "webserver"):
        assert "deploy/workspace.grpc.yaml" in " ".join(services[name]["command"])
    assert "dagster-daemon run -w deploy/workspace.grpc.yaml" in services["daemon"]["command"][-1]
    for name in ("code", "daemon", "webserver", "worker"):
        service = services[name]
        env = service["environment"]
        assert "data:/data" in service["volumes"], name
        assert env["DASHTAM_DATA_DIR"] == "/data"
        assert env["DASHTAM_STATE_URL"].startswith("postgresql://")
        assert env["DASHTAM_SECRET_KEY"].startswith("${DASHTAM_SECRET_KEY:?"), (
            "a shared state store needs one key everywhere"
        )
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert env["DASHTAM_EXECUTOR"] == "celery"
        for variable in (env["DASHTAM_CELERY_BROKER"], env["DASHTAM_CELERY_BACKEND"]):
            assert variable.startswith("redis://redis:6379/")
        unknown = sorted(n for n in env if not _known(n))
        assert not unknown, f"{name} sets variables nothing reads: {unknown}"
    # the instance's env references are exactly what the containers set
    referenced = set(re.findall(r"\{env: (\w+)\}", (DEPLOY / "dagster.yaml").read_text()))
    assert referenced <= set(services["daemon"]["environment"])


def test_the_worker_command_is_the_readmes() -> None:
    command = _yaml("docker-compose.yaml")["services"]["worker"]["command"]
    text = " ".join(command)
    assert text.startswith("dagster-celery worker start -A dashtam_pipeline.celery_app --name ")
    readme = _readme_section()
    assert "dagster-celery worker start -A dashtam_pipeline.celery_app --name" in readme
    for doc in ("deploy/Dockerfile", "deploy/docker-compose.yaml", "deploy/helm-values.yaml",
                "deploy/celery.yaml", "deploy/workspace.grpc.yaml"):
        assert doc in readme, f"README 'Scaling out' does not name {doc}"


def test_helm_uses_the_k8s_run_launcher_and_known_variables() -> None:
    values = _yaml("helm-values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    deployment = values["dagster-user-deployments"]["deployments"][0]
    names = [e["name"] for e in deployment["env"]]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    names += [v.split("=", 1)[0] for v in launcher["envVars"]]
    assert names and all(_known(n) for n in names), names
    # run pods see the lake where the code server does
    assert launcher["volumeMounts"] == deployment["volumeMounts"]
    assert values["computeLogManager"]["type"] != "LocalComputeLogManager"


def test_celery_yaml_is_what_the_executor_builds(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    from dashtam_pipeline.executors import celery_config

    monkeypatch.setenv("DASHTAM_DATA_DIR", str(tmp_path))
    config = _yaml("celery.yaml")["execution"]["config"]
    assert config["broker"] == {"env": "DASHTAM_CELERY_BROKER"}
    assert config["backend"] == {"env": "DASHTAM_CELERY_BACKEND"}
    built = celery_config(load_settings(dashtam_executor="celery",
                                        dashtam_celery_broker="redis://redis:6379/0"))
    assert config["include"] == built["include"]
    assert config["config_source"] == built["config_source"]


def test_pyproject_has_the_celery_extra() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    for extra in ("celery", "dev"):
        names = " ".join(extras[extra])
        assert "dagster-celery>=0.29,<0.30" in names and "redis>=5,<7" in names
    assert ".[celery]" in (DEPLOY / "Dockerfile").read_text()


@pytest.mark.skipif(not CONTRACT.exists(), reason="../shared/CONTRACT.md not beside the clone")
def test_the_files_use_the_contracts_variable_names() -> None:
    environment = CONTRACT.read_text().split("## Environment")[1].split("\n## ")[0]
    contract = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", environment))
    compose_env = _yaml("docker-compose.yaml")["services"]["daemon"]["environment"]
    for name in ("DASHTAM_DATA_DIR", "DASHTAM_STATE_URL", "DASHTAM_SECRET_KEY", "DAGSTER_HOME",
                 "DASHTAM_SANDBOX"):
        assert name in contract and name in compose_env, name
    deployment = CONTRACT.read_text().split("## Deployment")[1]
    for name in DAGSTER_VARIABLES - {"DAGSTER_HOME"}:
        assert name in deployment and name in compose_env, name
