from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type hints
import pytest
import yaml
from pydantic import BaseModel, SecretStr

from runtime.processes import PROCESSES
from runtime.settings import Settings
from runtime.stages import STAGES
from schemas.topics import TOPICS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
# The Kubernetes version the manifests are written for (kubernetes-validate's schemas).
K8S_VERSION = "1.33"
# Processes deployed ahead of the code that runs them; empty unless one is being written.
PENDING_PROCESSES: frozenset[str] = frozenset()
SINGLETONS = ("ingest-poll", "kpi")  # exactly one replica: one poll loop per shop, one collector
PROFILES = ("kafka1", "kafka3")
DATABASE_URL = "ORDERHUB_DATABASE__URL"  # a plain str field that carries a password


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def _active(profile: str) -> dict[str, dict[str, Any]]:
    """The services `docker compose --profile PROFILE up` starts."""
    return {name: svc for name, svc in _compose()["services"].items()
            if not svc.get("profiles") or profile in svc["profiles"]}


def _process_services(profile: str) -> dict[str, dict[str, Any]]:
    return {svc["command"][1]: svc for svc in _active(profile).values()
            if svc.get("command", [None])[0] == "stage"}


def _k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"]
            for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def _deployments() -> dict[str, dict[str, Any]]:
    return {d["spec"]["template"]["spec"]["containers"][0]["args"][1]: d
            for d in _k8s_documents() if d["kind"] == "Deployment"}


def _expected_processes() -> set[str]:
    return {*STAGES, *PROCESSES, *PENDING_PROCESSES}


def _kafka_env(svc: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in svc["environment"].items()}


def _brokers(profile: str) -> dict[str, dict[str, str]]:
    return {name: _kafka_env(svc) for name, svc in _active(profile).items()
            if svc.get("image", "").startswith("apache/kafka")}


def _with_defaults(value: Any) -> str:
    """A compose value as it runs with no .env: `${VAR:-default}` becomes default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def _settings_field(var: str) -> Any:
    """The pydantic field an ORDERHUB_* variable sets (KeyError if none)."""
    name = var.removeprefix("ORDERHUB_").lower()
    section, _, field = name.partition("__")
    top = Settings.model_fields[section]
    if not field:
        return top
    model = top.annotation
    assert isinstance(model, type) and issubclass(model, BaseModel), var
    return model.model_fields[field]


def _is_secret(var: str) -> bool:
    annotation = _settings_field(var).annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _secret_fields() -> set[str]:
    names = set()
    for section, info in Settings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names |= {f"ORDERHUB_{section.upper()}__{f.upper()}" for f in model.model_fields}
    return {n for n in names if _is_secret(n)}


def _deploy_texts() -> dict[str, str]:
    paths = [*DEPLOY.glob("docker-compose*.yml"), DEPLOY / "secrets.env.example",
             DEPLOY / "README.md", *K8S.glob("*.yaml"), *(DEPLOY / "prometheus").glob("*.yml"),
             *(DEPLOY / "grafana" / "dashboards").glob("*.json")]
    return {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in paths}


# --- the compose file ----------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((REPO / "tests" / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_deploys_every_process_and_nothing_else(profile: str) -> None:
    assert set(_process_services(profile)) == _expected_processes()


def test_every_process_the_code_declares_is_deployed_and_no_unknown_one() -> None:
    deployed = set(_process_services("kafka1")) | set(_deployments())
    assert {*STAGES, *PROCESSES} <= deployed
    assert deployed - {*STAGES, *PROCESSES} <= PENDING_PROCESSES


@pytest.mark.parametrize("profile", PROFILES)
def test_every_dependency_a_profile_needs_is_in_that_profile(profile: str) -> None:
    active = _active(profile)
    for name, svc in active.items():
        deps = svc.get("depends_on", {})
        deps = {d: {} for d in deps} if isinstance(deps, list) else deps
        required = {d for d, how in deps.items() if how.get("required", True)}
        assert required <= set(active), f"{name} needs {required - set(active)}"
        optional = {d for d, how in deps.items() if not how.get("required", True)}
        if optional:  # the migrate job of the profile, one of the two
            assert len(optional & set(active)) == 1, name


@pytest.mark.parametrize("profile", PROFILES)
def test_processes_start_after_the_profiles_migrate_job_completes(profile: str) -> None:
    active = _active(profile)
    for name, svc in _process_services(profile).items():
        waits = {d for d, how in svc["depends_on"].items()
                 if d in active and how["condition"] == "service_completed_successfully"}
        assert waits == {f"migrate-{profile}"}, name
    job = active[f"migrate-{profile}"]
    assert job["command"] == ["orderhub migrate && orderhub topics create"]


@pytest.mark.parametrize(("process", "replicas"),
                         [*((s, None) for s in STAGES), *((s, 1) for s in SINGLETONS)])
def test_every_process_declares_its_replicas(process: str, replicas: int | None) -> None:
    svc = _process_services("kafka1")[process]
    assert svc["deploy"]["replicas"] >= 1
    assert replicas is None or svc["deploy"]["replicas"] == replicas


def test_the_one_broker_profile_replicates_once() -> None:
    (broker,) = _brokers("kafka1").values()
    for key in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS"):
        assert broker[key] == "1", key
    assert _kafka_env(_active("kafka1")["migrate-kafka1"])[
        "ORDERHUB_KAFKA__REPLICATION_FACTOR"] == "1"


def test_the_three_broker_profile_replicates_three_times_with_two_in_sync() -> None:
    brokers = _brokers("kafka3")
    assert len(brokers) == 3
    assert {b["KAFKA_NODE_ID"] for b in brokers.values()} == {"1", "2", "3"}
    for name, b in brokers.items():
        assert b["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert b["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert b["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert b["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert b["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert b["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert b["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", name
        assert b["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", name
        voters = {v.split("@")[1].split(":")[0] for v in
                  b["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")}
        assert voters == set(brokers), name
    migrate = _kafka_env(_active("kafka3")["migrate-kafka3"])
    assert migrate["ORDERHUB_KAFKA__REPLICATION_FACTOR"] == "3"
    assert {h.split(":")[0] for h in migrate["ORDERHUB_KAFKA__BOOTSTRAP"].split(",")} == set(
        brokers)


@pytest.mark.parametrize("profile", PROFILES)
def test_the_bootstrap_address_reaches_a_broker_listener_in_each_profile(profile: str) -> None:
    brokers = {name: svc for name, svc in _active(profile).items() if name in _brokers(profile)}
    for process, svc in _process_services(profile).items():
        for address in _kafka_env(svc)["ORDERHUB_KAFKA__BOOTSTRAP"].split(","):
            host, port = address.split(":")
            serving = [b for name, b in brokers.items()
                       if host in {name, b.get("hostname"),
                                   *b.get("networks", {}).get("default", {}).get("aliases", [])}
                       and f"PLAINTEXT://:{port}" in b["environment"]["KAFKA_LISTENERS"]]
            assert serving, f"{process}: nothing listens at {address} in {profile}"


def test_prometheus_scrapes_every_process_with_a_stage_label() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"] if "dns_sd_configs" in j}
    assert set(jobs) == _expected_processes()
    services = _process_services("kafka1")
    for name, job in jobs.items():
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [name] and name in services
        assert sd["port"] == 9464 and "9464" in services[name]["command"]
        assert {"target_label": "stage", "replacement": name} in job["relabel_configs"]
    # The KPI collector's dead-letter gauge is labelled by stage itself; it must win.
    assert jobs["kpi"].get("honor_labels") is True


def test_grafana_gets_its_provisioning_and_prometheus_its_config() -> None:
    services = _compose()["services"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in (
        services["prometheus"]["volumes"])
    for mount in (*services["grafana"]["volumes"], *services["prometheus"]["volumes"]):
        source = mount.split(":")[0]
        assert not source.startswith(".") or (DEPLOY / source).exists(), source


# --- Kubernetes ----------------------------------------------------------------------------


def test_the_kustomization_lists_every_manifest_in_the_directory() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    assert kustomization["namespace"] == "orderhub"


def test_every_manifest_is_valid_for_the_stated_kubernetes_version() -> None:
    documents = _k8s_documents()
    assert {d["kind"] for d in documents} >= {"Namespace", "ConfigMap", "Secret", "Deployment",
                                              "Job", "Service"}
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at "
                        f"{list(e.absolute_path)}")


def test_there_is_one_deployment_per_process() -> None:
    deployments = _deployments()
    assert set(deployments) == _expected_processes()
    for name in SINGLETONS:
        assert deployments[name]["spec"]["replicas"] == 1
        assert deployments[name]["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("process", sorted({*STAGES, *PROCESSES, *PENDING_PROCESSES}))
def test_each_deployment_is_probed_scraped_and_bounded(process: str) -> None:
    deployment = _deployments()[process]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["stage", process, "--metrics-port", "9464"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 9464} in container["ports"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9464"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == process
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"][
        "labels"].items()
    assert container["resources"]["requests"]["memory"] == "300Mi"
    assert "memory" in container["resources"]["limits"]
    assert container["envFrom"] == [{"configMapRef": {"name": "orderhub-config"}},
                                    {"secretRef": {"name": "orderhub-secrets"}}]


def test_the_migrations_job_migrates_then_creates_the_topics() -> None:
    (job,) = [d for d in _k8s_documents() if d["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] + container["args"] == [
        "sh", "-c", "orderhub migrate && orderhub topics create"]


def test_the_ingest_http_service_selects_the_receivers_pods_and_port() -> None:
    (service,) = [d for d in _k8s_documents() if d["kind"] == "Service"]
    pod = _deployments()["ingest-http"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    config = next(d for d in _k8s_documents() if d["kind"] == "ConfigMap")["data"]
    http = next(p for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "http")
    assert str(http["containerPort"]) == config["ORDERHUB_WEBHOOKS__PORT"]


def test_the_production_configuration_replicates_topics_three_times() -> None:
    config = next(d for d in _k8s_documents() if d["kind"] == "ConfigMap")["data"]
    assert config["ORDERHUB_KAFKA__REPLICATION_FACTOR"] == "3"
    assert len(config["ORDERHUB_KAFKA__BOOTSTRAP"].split(",")) >= 3


# --- names shared with the code ------------------------------------------------------------


def test_every_orderhub_variable_named_in_deploy_is_a_settings_field() -> None:
    unknown = []
    for path, text in _deploy_texts().items():
        for var in sorted(set(re.findall(r"\bORDERHUB_[A-Z0-9_]+", text))):
            try:
                _settings_field(var)
            except KeyError:
                unknown.append(f"{path}: {var}")
    assert unknown == []


def test_the_configmap_and_compose_values_make_valid_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = next(d for d in _k8s_documents() if d["kind"] == "ConfigMap")["data"]
    for env in [config, *(svc["environment"] for p in PROFILES for svc in _active(p).values()
                          if svc.get("image") == "orderhub:local")]:
        with monkeypatch.context() as m:
            for var, value in env.items():
                m.setenv(var, _with_defaults(value))
            Settings()


def test_secrets_are_never_set_in_plain_configuration() -> None:
    config = next(d for d in _k8s_documents() if d["kind"] == "ConfigMap")["data"]
    assert [v for v in config if v == DATABASE_URL or _is_secret(v)] == []
    for profile in PROFILES:
        for name, svc in _active(profile).items():
            plain = [v for v in svc.get("environment", {}) if v.startswith("ORDERHUB_")]
            assert [v for v in plain if _is_secret(v)] == [], name


def test_the_secret_templates_hold_only_secrets_and_name_every_secret_field() -> None:
    secret = next(d for d in _k8s_documents() if d["kind"] == "Secret")
    assert set(secret["stringData"]) <= _secret_fields() | {DATABASE_URL}
    assert "REPLACE_ME" in secret["stringData"][DATABASE_URL]
    for path in (K8S / "secret.yaml", DEPLOY / "secrets.env.example"):
        named = set(re.findall(r"\bORDERHUB_[A-Z0-9_]+", path.read_text()))
        assert _secret_fields() <= named, path.name


def test_every_topic_named_in_deploy_is_in_the_registry() -> None:
    registry = {t.name for t in TOPICS}
    topic = r"\b(?:orders|inventory)\.(?!json|csv|xlsx|ya?ml)[a-z]+\b"  # not orders.json
    named = {(path, m) for path, text in _deploy_texts().items() for m in re.findall(topic, text)}
    assert named, "deploy names no topic at all: the check would prove nothing"
    assert sorted((p, t) for p, t in named if t not in registry) == []


def test_the_image_contains_every_package_the_project_installs() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.M))
    assert {"schemas", "runtime", "ingest", "normalize", "dedup", "allocate", "notify",
            "deploy/migrations"} <= copied
