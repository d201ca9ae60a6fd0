"""deploy/ stays in step with the code: schemas, config keys, ports, commands and images.

Kubernetes manifests: kubernetes-validate's bundled (offline) strict schemas. docker-compose.yml:
the compose-spec schema vendored in check-jsonschema. Metric names: test_deploy_metrics.py.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from services.gateway.auth import load_access
from shared.config import Config, ConfigError, StartRefused, load_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.33.0"
SERVICES = ("gateway", "router", "cache", "embedder", "ledger")
DEFAULTS = Config()
PORTS = {name: getattr(DEFAULTS, name).port for name in SERVICES}
BACKING_PORTS = {"redis": 6379, "qdrant": 6333, "model": 8090, "postgres": 5432}
# What compose refuses to start without (${VAR:?message}): the ledger database's two passwords.
REQUIRED_SHELL = {"POSTGRES_PASSWORD": "pg-test-password", "LEDGER_READER_PASSWORD": "reader-test-password"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "docker-compose.yml")


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_docs() if doc["kind"] == kind}


def k8s_config(tmp_path: Path) -> Config:
    configmap = k8s_objects("ConfigMap")["draftgate-config"]
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    return load_config(path, env={})


# Config keys and environment variables

CONFIG_ENV = {f"DRAFTGATE_{section.upper()}_{f.name.upper()}"
              for section, cls in typing.get_type_hints(Config).items() for f in dataclasses.fields(cls)}
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def test_every_draftgate_variable_in_deploy_files_names_a_real_config_key():
    assert "DRAFTGATE_CONFIG" in (REPO / "shared" / "config.py").read_text()
    files = [REPO / "Dockerfile", *(p for p in DEPLOY.rglob("*") if p.is_file())]
    used = {(p.name, name) for p in files for name in re.findall(r"DRAFTGATE_[A-Z0-9_]*[A-Z0-9]", p.read_text())}
    assert len(used) > 10
    assert sorted(pair for pair in used if pair[1] not in CONFIG_ENV | {"DRAFTGATE_CONFIG"}) == []


def env_file(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


class MissingVariable(LookupError):
    """${VAR:?message} with VAR unset or empty: compose refuses to start."""


def service_env(service: dict[str, Any], shell: dict[str, str]) -> dict[str, str]:
    """A compose service's environment after ${VAR:-default} / ${VAR:?error} interpolation from `shell`."""
    def substitute(match: re.Match[str]) -> str:
        name, operator, word = match[1], match[2] or "", match[3] or ""
        if operator.endswith("?") and not shell.get(name):
            raise MissingVariable(f"{name}: {word}")
        if operator.endswith("?"):
            return shell[name]
        return shell.get(name) or word

    return {key: INTERPOLATION.sub(substitute, str(value)) for key, value in service.get("environment", {}).items()}


@pytest.mark.parametrize("shell_env", ["none", "openai", "local-model.env"])
def test_compose_environments_load_as_a_valid_config(shell_env: str):
    shells = {"none": {}, "openai": {"OPENAI_API_KEY": "sk-test"}}
    shell = {**REQUIRED_SHELL, **(shells[shell_env] if shell_env in shells else env_file(DEPLOY / shell_env))}
    for name in SERVICES:
        env = service_env(compose()["services"][name], shell)
        config = load_config(REPO / "config.yaml", env=env)
        assert config.redis.url == "redis://redis:6379/0"
        assert config.logging.json
    gateway = load_config(REPO / "config.yaml", env=service_env(compose()["services"]["gateway"], shell))
    if shell_env == "local-model.env":
        assert gateway.drafter.base_url == "http://model:8090/v1" and gateway.heavyweight.model == "smollm2"
    assert gateway.ledger.enabled and gateway.gateway.ledger_url == "http://ledger:8085"
    ledger = load_config(REPO / "config.yaml", env=service_env(compose()["services"]["ledger"], shell)).ledger
    assert ledger.database_url.startswith("postgresql+asyncpg://")


def test_k8s_configmap_is_a_valid_config_with_cluster_addresses(tmp_path: Path):
    config = k8s_config(tmp_path)
    assert {name: getattr(config, name).port for name in SERVICES} == PORTS
    assert config.router.shutdown_grace_s == DEFAULTS.router.shutdown_grace_s
    services = {name: doc["spec"]["ports"][0]["port"] for name, doc in k8s_objects("Service").items()}
    urls = (config.redis.url, config.gateway.cache_url, config.cache.embedder_url, config.cache.qdrant_url,
            config.gateway.ledger_url, config.ledger.database_url)
    for url in urls:
        assert url is not None
        parts = urlsplit(url)
        assert services.get(parts.hostname) == parts.port, url
    assert config.ledger.enabled and config.ledger.port == PORTS["ledger"]


def test_k8s_configmap_sets_every_config_section(tmp_path: Path):
    """A section added to shared/config.py shows up in the cluster's config, where operators look for it."""
    configmap = k8s_objects("ConfigMap")["draftgate-config"]
    sections = set(yaml.safe_load(configmap["data"]["config.yaml"]))
    assert sections == set(typing.get_type_hints(Config))


# docker-compose.yml


def healthcheck_url(service: dict[str, Any]) -> str:
    match = re.search(r"https?://[^'\" ]+", " ".join(service["healthcheck"]["test"]))
    assert match, service["healthcheck"]
    return match[0]


def test_compose_file_matches_the_compose_spec_schema():
    validator = jsonschema.Draft202012Validator(get_builtin_schema("vendor.compose-spec"),
                                                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []


@pytest.mark.parametrize("name", SERVICES)
def test_compose_runs_each_service_module_with_a_health_check_on_its_port(name: str):
    service = compose()["services"][name]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert (REPO / "services" / name / "__main__.py").is_file()
    url = urlsplit(healthcheck_url(service))
    assert (url.port, url.path) == (PORTS[name], "/health")
    assert all(dep.get("condition") for dep in service.get("depends_on", {}).values())


def test_compose_service_urls_point_at_services_on_their_ports():
    services = compose()["services"]
    listening = {**PORTS, **BACKING_PORTS}
    values = [v for s in services.values() for v in service_env(s, REQUIRED_SHELL).values()]
    values += list(env_file(DEPLOY / "local-model.env").values())
    urls = [urlsplit(v) for v in values if re.match(r"(https?|redis|postgresql\+asyncpg)://", v)]
    assert len(urls) >= 6
    for url in urls:
        assert url.hostname in services and listening[url.hostname] == url.port, url.geturl()
    assert urlsplit(healthcheck_url(services["model"])).port == BACKING_PORTS["model"]


def test_compose_router_scales_and_outlives_its_shutdown_grace():
    router = compose()["services"]["router"]
    assert "container_name" not in router and "ports" not in router
    grace = re.fullmatch(r"(\d+)s", router["stop_grace_period"])
    assert grace and int(grace[1]) > DEFAULTS.router.shutdown_grace_s


def test_compose_publishes_the_gateway_and_mounts_existing_files():
    services = compose()["services"]
    assert f"{PORTS['gateway']}:{PORTS['gateway']}" in services["gateway"]["ports"]
    assert "OPENAI_API_KEY" in services["router"]["environment"]
    mounts = [v.split(":") for s in services.values() for v in s.get("volumes", []) if v.startswith(".")]
    assert ["../config.yaml", "/app/config.yaml", "ro"] in mounts
    for source, *_ in mounts:
        assert (DEPLOY / source).exists(), source


def dockerfile_stages() -> set[str]:
    return set(re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE))


def test_dockerfile_copies_files_that_exist_and_are_not_docker_ignored():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copies = re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    sources = [source for line in copies for source in line.split()]
    assert {"requirements.txt", "requirements-ml.txt", "shared", "services", "config.yaml"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists() and source not in ignored, source


def test_dockerfile_model_stage_uses_what_scripts_local_model_provides():
    import scripts.local_model

    command = re.search(r"from scripts\.local_model import ([\w, ]+);", (REPO / "Dockerfile").read_text())
    assert command, "the model stage's CMD builds its command line with scripts.local_model"
    missing = [name for name in command[1].replace(" ", "").split(",") if not hasattr(scripts.local_model, name)]
    assert missing == []


def test_compose_builds_dockerfile_stages_and_k8s_runs_the_compose_images():
    services = compose()["services"]
    targets = {s["build"]["target"] for s in services.values() if "build" in s}
    assert targets <= dockerfile_stages() and {"core", "embedder"} <= targets
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements-ml.txt" in dockerfile.split("AS embedder", 1)[1].split("FROM", 1)[0]
    assert "requirements-ml.txt" not in dockerfile.split("AS core", 1)[1]
    images = {s["image"] for s in services.values() if "build" in s}
    k8s_images = {c["image"] for doc in k8s_objects("Deployment").values()
                  for c in doc["spec"]["template"]["spec"]["containers"] if c["image"].startswith("draftgate")}
    assert k8s_images and k8s_images <= images


# Kubernetes manifests


@pytest.mark.parametrize(("filename", "doc"), k8s_docs(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_k8s_manifest_matches_the_kubernetes_schema(filename: str, doc: dict[str, Any]):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{filename} {doc['kind']}/{doc['metadata']['name']}: "
                    f"{'.'.join(map(str, exc.path))}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(exc.message)
    assert doc["metadata"].get("namespace", "draftgate") == "draftgate"


def test_kustomization_lists_every_manifest_but_the_example_secret():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == "draftgate"
    secrets = k8s_objects("Secret")
    assert {"draftgate-upstream", "draftgate-gateway-keys"} <= secrets.keys()
    for secret in secrets.values():
        assert all("REPLACE-ME" in value for value in secret["stringData"].values())


def pod_spec(component: str) -> dict[str, Any]:
    workloads = {**k8s_objects("Deployment"), **k8s_objects("StatefulSet")}
    return workloads[component]["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", SERVICES)
def test_k8s_deployment_runs_the_service_on_its_config_port(name: str):
    deployment = k8s_objects("Deployment")[name]
    template = deployment["spec"]["template"]
    [container] = template["spec"]["containers"]
    assert container["command"] == ["python", "-m", f"services.{name}"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": PORTS[name]}
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(PORTS[name])
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == name
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(env["DRAFTGATE_CONFIG"]).parent == Path(mounts["config"])
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "draftgate-config"
    service = k8s_objects("Service")[name]
    assert service["spec"]["ports"][0]["port"] == PORTS[name] and service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()


# The services whose /ready says more than /health (Redis and their supervised loops; the ledger's database).
SERVICES_WITH_READY = {"gateway", "router", "cache", "ledger"}


def test_k8s_readiness_uses_ready_where_a_service_has_it_and_liveness_health():
    for name in SERVICES:
        [container] = pod_spec(name)["containers"]
        ready = "/ready" if name in SERVICES_WITH_READY else "/health"
        assert container["readinessProbe"]["httpGet"] == {"path": ready, "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_k8s_containers_have_requests_and_limits():
    for workload in [*k8s_objects("Deployment").values(), *k8s_objects("StatefulSet").values()]:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()


def test_k8s_routers_scale_and_outlive_their_shutdown_grace(tmp_path: Path):
    router = k8s_objects("Deployment")["router"]
    labels = router["spec"]["template"]["metadata"]["labels"]
    assert router["spec"]["replicas"] >= 2
    grace = router["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > k8s_config(tmp_path).router.shutdown_grace_s
    hpa = k8s_objects("HorizontalPodAutoscaler")["router"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "router" and hpa["minReplicas"] >= 2
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    pdb = k8s_objects("PodDisruptionBudget")["router"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_qdrant_is_a_statefulset_with_a_volume_claim():
    qdrant = k8s_objects("StatefulSet")["qdrant"]["spec"]
    assert qdrant["volumeClaimTemplates"][0]["metadata"]["name"] == "storage"
    assert k8s_objects("Service")[qdrant["serviceName"]]["spec"]["clusterIP"] == "None"


# Prometheus


def test_prometheus_scrapes_every_service_on_its_port():
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(SERVICES) <= jobs.keys()
    for name in SERVICES:
        if name == "router":
            [sd] = jobs[name]["dns_sd_configs"]
            assert sd["names"] == ["router"] and sd["port"] == PORTS["router"] and sd["type"] == "A"
            continue
        [static] = jobs[name]["static_configs"]
        assert static["targets"] == [f"{name}:{PORTS[name]}"]
    mounted = [v.split(":")[1] for v in compose()["services"]["prometheus"]["volumes"]]
    assert set(config["rule_files"]) <= set(mounted)


def test_kubernetes_scrape_config_names_jobs_after_the_component_label():
    [job] = load_yaml(DEPLOY / "prometheus" / "kubernetes-scrape.yml")["scrape_configs"]
    relabels = {r.get("target_label"): r for r in job["relabel_configs"]}
    assert relabels["job"]["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
    annotated = {doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                 for doc in [*k8s_objects("Deployment").values(), *k8s_objects("StatefulSet").values()]
                 if doc["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true"}
    jobs = {job["job_name"] for job in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]}
    assert annotated == jobs


def test_grafana_provider_loads_the_mounted_dashboards_folder():
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "draftgate.yml")["providers"][0]
    mounts = dict(v.split(":")[:2] for v in compose()["services"]["grafana"]["volumes"] if v.startswith("."))
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


# Secure by default: who listens where, who needs keys, who may connect


def container_env(component: str) -> dict[str, str]:
    [container] = pod_spec(component)["containers"]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def dockerfile_stage_env(stage: str) -> dict[str, str]:
    """The ENV lines of one Dockerfile stage (continuation lines joined)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    body = text.split(f" AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
    pairs = [pair for line in body.splitlines() if line.startswith("ENV ") for pair in line[4:].split()]
    return dict(pair.split("=", 1) for pair in pairs)


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_told_to_listen_on_the_pod_network(name: str, tmp_path: Path):
    """Services default to 127.0.0.1; where other containers must reach them the host is set explicitly."""
    assert getattr(DEFAULTS, name).host == "127.0.0.1"
    key = f"DRAFTGATE_{name.upper()}_HOST"
    assert service_env(compose()["services"][name], REQUIRED_SHELL)[key] == "0.0.0.0"
    assert container_env(name)[key] == "0.0.0.0"
    image = "embedder" if name == "embedder" else "core"
    assert dockerfile_stage_env(image)[key] == "0.0.0.0"
    # The ConfigMap leaves host alone, so the Deployment's env is the one place that decides it.
    assert getattr(k8s_config(tmp_path), name).host == "127.0.0.1"


def test_compose_gateway_refuses_to_start_without_client_keys():
    def access(shell: dict[str, str]):
        env = service_env(compose()["services"]["gateway"], shell)
        return load_access(load_config(REPO / "config.yaml", env=env).gateway, env)

    with pytest.raises(ConfigError, match=r"gateway\.api_keys_env: the environment variable GATEWAY_API_KEYS"):
        access({})
    assert access({"GATEWAY_API_KEYS": "key-one,key-two"}).client_keys == {"key-one", "key-two"}
    admin = access({"GATEWAY_API_KEYS": "key-one", "GATEWAY_ADMIN_KEYS": "ops-key",
                    "DRAFTGATE_GATEWAY_ADMIN_KEYS_ENV": "GATEWAY_ADMIN_KEYS"})
    assert admin.admin_keys == {"ops-key"}
    with pytest.raises(StartRefused):
        access({"DRAFTGATE_GATEWAY_API_KEYS_ENV": "null"})
    anonymous = access({"DRAFTGATE_GATEWAY_API_KEYS_ENV": "null", "DRAFTGATE_GATEWAY_ALLOW_ANONYMOUS": "true"})
    assert not anonymous.client_keys and not anonymous.operators_open


def test_k8s_gateway_reads_its_keys_from_a_secret_only_it_mounts(tmp_path: Path):
    config = k8s_config(tmp_path).gateway
    env = container_env("gateway")
    with pytest.raises(ConfigError, match="GATEWAY_API_KEYS is not set"):
        load_access(dataclasses.replace(config, host=env["DRAFTGATE_GATEWAY_HOST"]), env)
    example = {k: v for doc in k8s_objects("Secret").values() for k, v in doc["stringData"].items()}
    access = load_access(dataclasses.replace(config, host=env["DRAFTGATE_GATEWAY_HOST"]), {**env, **example})
    assert access.client_keys and access.admin_keys
    mounted = {name: {ref["secretRef"]["name"] for ref in pod_spec(name)["containers"][0].get("envFrom", [])}
               for name in SERVICES}
    assert "draftgate-gateway-keys" in mounted["gateway"]
    assert all("draftgate-gateway-keys" not in refs for name, refs in mounted.items() if name != "gateway")


# NetworkPolicy: component -> the components whose pods may connect (None: anyone, the edge).
ALLOWED_PEERS: dict[str, set[str] | None] = {
    "gateway": None, "cache": {"gateway"}, "embedder": {"cache"}, "router": set(),
    "redis": {"gateway", "router", "cache", "ledger"}, "qdrant": {"cache"},
    "ledger": {"gateway"}, "postgres": {"ledger"},
}
PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}


def workload_labels() -> dict[str, dict[str, str]]:
    workloads = {**k8s_objects("Deployment"), **k8s_objects("StatefulSet")}
    return {name: doc["spec"]["template"]["metadata"]["labels"] for name, doc in workloads.items()}


def selected(selector: dict[str, Any]) -> set[str]:
    labels = selector.get("matchLabels", {})
    assert "matchExpressions" not in selector
    return {name for name, pod in workload_labels().items() if labels.items() <= pod.items()}


def container_ports(component: str) -> set[int]:
    return {p["containerPort"] for c in pod_spec(component)["containers"] for p in c.get("ports", [])}


def test_k8s_denies_all_ingress_unless_a_policy_allows_it():
    policies = k8s_objects("NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    covered = [component for name, doc in policies.items() if name != "default-deny-ingress"
               for component in selected(doc["spec"]["podSelector"])]
    assert sorted(covered) == sorted(workload_labels())  # every workload has exactly one policy


@pytest.mark.parametrize("component", sorted(ALLOWED_PEERS))
def test_k8s_network_policy_admits_only_the_expected_peers_on_real_ports(component: str):
    [policy] = [doc["spec"] for doc in k8s_objects("NetworkPolicy").values()
                if doc["spec"]["podSelector"] and selected(doc["spec"]["podSelector"]) == {component}]
    assert policy["policyTypes"] == ["Ingress"]
    peers: set[str] = set()
    open_to_all = False
    scraped_ports: set[int] = set()
    for rule in policy["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        assert ports and ports <= container_ports(component), (component, ports)
        if "from" not in rule:
            open_to_all = True
            scraped_ports |= ports
        for peer in rule.get("from", []):
            if peer == PROMETHEUS:
                scraped_ports |= ports
            else:
                assert peer.keys() == {"podSelector"}, peer  # same-namespace pods only
                peers |= selected(peer["podSelector"])
    expected = ALLOWED_PEERS[component]
    assert open_to_all == (expected is None)
    assert peers == (expected or set())
    # Prometheus keeps scraping every annotated pod on its metrics port.
    template = {**k8s_objects("Deployment"), **k8s_objects("StatefulSet")}[component]["spec"]["template"]
    annotations = template["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") == "true":
        assert int(annotations["prometheus.io/port"]) in scraped_ports


def test_k8s_network_policies_admit_every_in_cluster_connection_the_config_makes(tmp_path: Path):
    config = k8s_config(tmp_path)
    connections = {("gateway", config.gateway.cache_url), ("cache", config.cache.embedder_url),
                   ("cache", config.cache.qdrant_url), ("gateway", config.gateway.ledger_url),
                   ("ledger", config.ledger.database_url),
                   *((name, config.redis.url) for name in ("gateway", "router", "cache", "ledger"))}
    for client, url in connections:
        server = urlsplit(url).hostname
        allowed = ALLOWED_PEERS[server]
        assert allowed is None or client in allowed, (client, url)


def test_services_with_ready_serve_it():
    from services.cache.app import create_app as cache_app
    from services.gateway.app import create_app as gateway_app
    from services.ledger.app import create_app as ledger_app
    from services.router.app import create_app as router_app
    from shared.config import load_config

    config = load_config(env={})
    apps = {"gateway": gateway_app(config, env={}), "router": router_app(config, env={}), "cache": cache_app(config),
            "ledger": ledger_app(config)}
    assert apps.keys() == SERVICES_WITH_READY
    for name, app in apps.items():
        paths = {resource.canonical for resource in app.router.resources()}
        assert "/ready" in paths, name


# The request ledger and its PostgreSQL: passwords only from the environment or a Secret


INITDB = DEPLOY / "postgres" / "initdb" / "10-ledger-reader.sh"


def test_compose_refuses_to_start_without_the_database_passwords():
    services = compose()["services"]
    for name in ("postgres", "ledger", "grafana"):
        with pytest.raises(MissingVariable, match="openssl rand"):
            service_env(services[name], {})
    postgres = service_env(services["postgres"], REQUIRED_SHELL)
    ledger = service_env(services["ledger"], REQUIRED_SHELL)
    assert postgres["POSTGRES_PASSWORD"] == ledger["PGPASSWORD"] == REQUIRED_SHELL["POSTGRES_PASSWORD"]
    url = urlsplit(ledger["DRAFTGATE_LEDGER_DATABASE_URL"])
    assert url.password is None  # asyncpg reads PGPASSWORD: the URL can be logged
    assert (url.username, url.path) == (postgres["POSTGRES_USER"], f"/{postgres['POSTGRES_DB']}")
    grafana = service_env(services["grafana"], REQUIRED_SHELL)
    assert grafana["LEDGER_READER_PASSWORD"] == postgres["LEDGER_READER_PASSWORD"] == "reader-test-password"
    # Nothing else in the file carries a password of its own.
    text = (DEPLOY / "docker-compose.yml").read_text()
    assert re.findall(r"PASSWORD: (?!\$\{\w+:[?-])(.+)", text) == []


def test_compose_postgres_keeps_its_data_on_a_volume_and_runs_the_initdb_script():
    services = compose()["services"]
    postgres = services["postgres"]
    volumes = dict(v.split(":")[:2] for v in postgres["volumes"])
    assert volumes["postgres-data"] == "/var/lib/postgresql/data" and "postgres-data" in compose()["volumes"]
    assert volumes["./postgres/initdb"] == "/docker-entrypoint-initdb.d" and INITDB.is_file()
    assert "pg_isready" in postgres["healthcheck"]["test"] and "ports" not in postgres
    assert services["ledger"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["ledger"]["condition"] == "service_started"


def test_k8s_postgres_is_a_statefulset_with_a_volume_claim_and_secret_passwords():
    statefulset = k8s_objects("StatefulSet")["postgres"]["spec"]
    [claim] = statefulset["volumeClaimTemplates"]
    [container] = statefulset["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e for e in container["env"]}
    assert Path(env["PGDATA"]["value"]).parent == Path(mounts[claim["metadata"]["name"]])
    assert k8s_objects("Service")[statefulset["serviceName"]]["spec"]["clusterIP"] == "None"
    assert {p["containerPort"] for p in container["ports"]} == {BACKING_PORTS["postgres"]}
    for name in ("POSTGRES_PASSWORD", "LEDGER_READER_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "draftgate-postgres", "key": name}
    # The ledger logs in with the same password, and the ConfigMap's URL names the same user and database.
    ledger_env = {e["name"]: e for e in pod_spec("ledger")["containers"][0]["env"]}
    assert ledger_env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "draftgate-postgres",
                                                                     "key": "POSTGRES_PASSWORD"}
    assert "draftgate-postgres" in k8s_objects("Secret")
    assert not any("PASSWORD" in e["name"] and "value" in e
                   for spec in (pod_spec("postgres"), pod_spec("ledger")) for e in spec["containers"][0]["env"])


def test_k8s_ledger_database_url_has_no_password_and_matches_the_database(tmp_path: Path):
    url = urlsplit(k8s_config(tmp_path).ledger.database_url)
    env = {e["name"]: e.get("value") for e in pod_spec("postgres")["containers"][0]["env"]}
    assert url.password is None
    assert (url.username, url.path) == (env["POSTGRES_USER"], f"/{env['POSTGRES_DB']}")


def test_k8s_runs_the_same_initdb_script_as_compose():
    configmap = k8s_objects("ConfigMap")["postgres-initdb"]
    assert configmap["data"] == {INITDB.name: INITDB.read_text()}
    spec = pod_spec("postgres")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    [initdb] = [name for name, v in volumes.items() if v.get("configMap", {}).get("name") == "postgres-initdb"]
    assert mounts[initdb] == "/docker-entrypoint-initdb.d"


def test_every_compose_service_has_a_kubernetes_workload_and_the_same_ports():
    """Compose and Kubernetes run the same set of services (the optional local model and the monitoring
    stack aside: the cluster brings its own Prometheus and Grafana)."""
    compose_only = {"model", "prometheus", "grafana"}
    workloads = {**k8s_objects("Deployment"), **k8s_objects("StatefulSet")}
    assert set(compose()["services"]) - compose_only == set(workloads)
    services = k8s_objects("Service")
    listening = {**PORTS, **BACKING_PORTS}
    for name in workloads:
        assert services[name]["spec"]["ports"][0]["port"] == listening[name], name
        assert listening[name] in container_ports(name), name


def test_prometheus_scrapes_the_ledger_in_compose_and_in_kubernetes():
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    [static] = {job["job_name"]: job for job in config["scrape_configs"]}["ledger"]["static_configs"]
    assert static["targets"] == [f"ledger:{PORTS['ledger']}"]
    annotations = k8s_objects("Deployment")["ledger"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"


def test_grafana_reads_the_ledger_as_the_read_only_role_of_the_initdb_script():
    provisioned = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "ledger.yml")
    [source] = provisioned["datasources"]
    postgres = service_env(compose()["services"]["postgres"], REQUIRED_SHELL)
    assert source["url"] == f"postgres:{BACKING_PORTS['postgres']}"
    assert source["jsonData"]["database"] == postgres["POSTGRES_DB"]
    assert re.search(r'reader="\$\{LEDGER_READER_USER:-(\w+)\}"', INITDB.read_text())[1] == source["user"]
    assert source["secureJsonData"]["password"] == "$LEDGER_READER_PASSWORD"
    assert "LEDGER_READER_PASSWORD" in compose()["services"]["grafana"]["environment"]
    assert source["user"] != postgres["POSTGRES_USER"]
